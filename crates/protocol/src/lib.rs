//! The spacesync wire protocol: typed ids, operations, the native WebSocket messages in both
//! directions, rejection codes, close codes and the MessagePack and JSON codecs.
//!
//! This crate has no I/O and no async runtime: it is shared by the server, the load harness and
//! any Rust client. `docs/protocol.md` is the human description of the same contract.

pub mod close;
pub mod codec;
pub mod codes;
pub mod messages;
pub mod operation;

pub use close::CloseCode;
pub use codec::{DecodeError, EncodeError, Format};
pub use codes::RejectCode;
pub use messages::{ClientMessage, Limits, SequencedOperation, ServerError, ServerMessage};
pub use operation::{Envelope, EnvelopeError, OpJson, Operation};

/// The protocol versions this build speaks, oldest first. A client offers the versions it
/// speaks in `hello`; the server answers with the highest one both sides know.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// The newest protocol version this build speaks.
pub const CURRENT_VERSION: u32 = 1;

/// Picks the version to speak: the highest version that both the client and this build support.
pub fn negotiate_version(offered: &[u32]) -> Option<u32> {
    offered
        .iter()
        .copied()
        .filter(|version| SUPPORTED_VERSIONS.contains(version))
        .max()
}

/// A space's sequence number: gapless, starting at 1 for the first accepted op of a space.
pub type Seq = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        fn check(offered: &[u32], expected: Option<u32>) {
            assert_eq!(negotiate_version(offered), expected, "offered {offered:?}");
        }
        check(&[1], Some(1));
        check(&[1, 2, 3], Some(1));
        check(&[3, 1], Some(1));
        check(&[], None);
        check(&[0, 2], None);
    }
}
