//! WebSocket close codes the server uses. 1000–1015 are RFC 6455's; 4000–4999 are ours.

/// A close code the server sends, with the reason documented in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the client asked to close, or the server is done with the connection.
    Normal,
    /// 1001: the server is shutting down; reconnect (to another node) and resume.
    GoingAway,
    /// 1002: a frame that is not a protocol message, or a message out of turn (no `hello`).
    ProtocolError,
    /// 1003: a frame type the protocol does not use (for example a continuation-only stream).
    UnsupportedData,
    /// 1009: a message over the size limit.
    MessageTooBig,
    /// 1011: an unexpected server error; reconnect and resume.
    InternalError,
    /// 1013: the server is at its connection limit; retry with backoff.
    TryAgainLater,
    /// 4000: none of the offered protocol versions is supported.
    UnsupportedVersion,
    /// 4001: the client did not read fast enough and its outbound queue filled up; reconnect
    /// and resume from the last sequence number seen.
    SlowConsumer,
    /// 4002: the client did not answer pings in time.
    Timeout,
}

impl CloseCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: &'static [CloseCode] = &[
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::TryAgainLater,
        CloseCode::UnsupportedVersion,
        CloseCode::SlowConsumer,
        CloseCode::Timeout,
    ];

    /// The numeric code sent in the close frame.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::TryAgainLater => 1013,
            CloseCode::UnsupportedVersion => 4000,
            CloseCode::SlowConsumer => 4001,
            CloseCode::Timeout => 4002,
        }
    }

    /// The short reason string sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::UnsupportedData => "unsupported data",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::InternalError => "internal error",
            CloseCode::TryAgainLater => "connection limit reached",
            CloseCode::UnsupportedVersion => "unsupported protocol version",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::Timeout => "ping timeout",
        }
    }

    /// Looks a numeric code up, for clients.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL
            .iter()
            .copied()
            .find(|known| known.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for close in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(close.code()), Some(*close));
            assert!(!close.reason().is_empty());
        }
        assert_eq!(CloseCode::from_code(4999), None);
    }
}
