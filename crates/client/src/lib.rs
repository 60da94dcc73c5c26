//! A Rust client of the spacesync native WebSocket protocol (`docs/protocol.md`): connect and
//! negotiate, join with a resume point, submit ops, read acks, rejections and broadcasts.
//! Used by the example, the tests and the load harness.

use futures::{SinkExt, StreamExt};
use spacesync_protocol::{
    ClientMessage, Format, Limits, Operation, SUPPORTED_VERSIONS, Seq, ServerMessage,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tokio_tungstenite::tungstenite;

/// Largest message the client reads. The server's limit applies to what clients send; what
/// it sends can be larger (a `joined` carries a whole space).
const READ_LIMIT: usize = 256 << 20;

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("cannot encode: {0}")]
    Encode(#[from] spacesync_protocol::EncodeError),
    #[error("cannot decode a server message: {0}")]
    Decode(#[from] spacesync_protocol::DecodeError),
    #[error("the server closed the connection with {code}: {reason}")]
    Closed { code: u16, reason: String },
    #[error("the connection ended without a close frame")]
    Ended,
    #[error("unexpected message: {0:?}")]
    Unexpected(Box<ServerMessage>),
}

impl ClientError {
    /// Whether a client should reconnect and resume after this: the server shutting down
    /// (1001), failing (1011) or full (1013), a slow consumer or a ping timeout (4001, 4002),
    /// a connection that ended without a close frame or could not be opened (a restart, the
    /// network). Anything else (a protocol error, a message too big, an unsupported version,
    /// a message it cannot read) would fail again the same way.
    pub fn should_reconnect(&self) -> bool {
        use tokio_tungstenite::tungstenite::Error as WsError;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        match self {
            ClientError::Closed { code, .. } => matches!(code, 1001 | 1011 | 1013 | 4001 | 4002),
            ClientError::Ended => true,
            ClientError::WebSocket(
                WsError::Io(_)
                | WsError::ConnectionClosed
                | WsError::AlreadyClosed
                | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            ) => true,
            _ => false,
        }
    }
}

/// A connected, negotiated client.
#[derive(Debug)]
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    format: Format,
    client_id: String,
    limits: Option<Limits>,
}

impl Client {
    /// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:8080/ws`) without saying hello.
    pub async fn open(url: &str, format: Format) -> Result<Client, ClientError> {
        // tungstenite zero-fills the free part of its read buffer (up to `read_buffer_size`)
        // before every read: at the 128 KiB default that memset was 39% of the load
        // harness's CPU with small frames, and at 8 KiB still 3%. 2 KiB takes a typical burst
        // of acks and broadcasts (60-300 bytes each) in one read; larger frames take several.
        let config = WebSocketConfig::default()
            .read_buffer_size(2 * 1024)
            .max_message_size(Some(READ_LIMIT))
            .max_frame_size(Some(READ_LIMIT));
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        Ok(Client {
            socket,
            format,
            client_id: String::new(),
            limits: None,
        })
    }

    /// Connects and negotiates: `hello` with the versions this build speaks, then `welcome`.
    pub async fn connect(
        url: &str,
        format: Format,
        client_id: Option<&str>,
    ) -> Result<Client, ClientError> {
        let mut client = Client::open(url, format).await?;
        client
            .send(&ClientMessage::Hello {
                versions: SUPPORTED_VERSIONS.to_vec(),
                client_id: client_id.map(str::to_owned),
            })
            .await?;
        match client.recv().await? {
            ServerMessage::Welcome {
                client_id, limits, ..
            } => {
                client.client_id = client_id;
                client.limits = Some(limits);
                Ok(client)
            }
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Sends a message in the client's format.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        let frame = frame(self.format, message)?;
        self.send_frame(frame).await
    }

    /// Sends any frame (tests use it to send what a correct client never would).
    pub async fn send_frame(&mut self, frame: Message) -> Result<(), ClientError> {
        self.socket.send(frame).await?;
        Ok(())
    }

    /// Joins a space; `since` is the last seq this client applied.
    pub async fn join(&mut self, space_id: &str, since: Option<Seq>) -> Result<(), ClientError> {
        self.send(&ClientMessage::Join {
            space_id: space_id.to_owned(),
            since,
        })
        .await
    }

    /// Submits a batch of ops to a joined space.
    pub async fn submit(&mut self, space_id: &str, ops: Vec<Operation>) -> Result<(), ClientError> {
        self.send(&ClientMessage::Submit {
            space_id: space_id.to_owned(),
            ops,
        })
        .await
    }

    /// The next server message. Pings are answered by the library; a close frame is
    /// returned as [`ClientError::Closed`] with its code.
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            let frame = match self.socket.next().await {
                Some(frame) => frame?,
                None => return Err(ClientError::Ended),
            };
            if let Some(message) = decode(frame)? {
                return Ok(message);
            }
        }
    }

    /// Closes the connection normally.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.socket.close(None).await?;
        Ok(())
    }

    /// Splits the connection so one task can send while it waits for messages.
    pub fn split(self) -> (ClientSender, ClientReceiver) {
        let (sink, stream) = self.socket.split();
        (
            ClientSender {
                sink,
                format: self.format,
            },
            ClientReceiver { stream },
        )
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The sending half of a split [`Client`].
#[derive(Debug)]
pub struct ClientSender {
    sink: futures::stream::SplitSink<Socket, Message>,
    format: Format,
}

/// The receiving half of a split [`Client`].
#[derive(Debug)]
pub struct ClientReceiver {
    stream: futures::stream::SplitStream<Socket>,
}

impl ClientSender {
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.sink.send(frame(self.format, message)?).await?;
        Ok(())
    }

    pub async fn submit(&mut self, space_id: &str, ops: Vec<Operation>) -> Result<(), ClientError> {
        self.send(&ClientMessage::Submit {
            space_id: space_id.to_owned(),
            ops,
        })
        .await
    }
}

impl ClientReceiver {
    /// The next server message; see [`Client::recv`].
    pub async fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            let frame = match self.stream.next().await {
                Some(frame) => frame?,
                None => return Err(ClientError::Ended),
            };
            if let Some(message) = decode(frame)? {
                return Ok(message);
            }
        }
    }
}

/// A server message from a frame; `None` for pings and pongs.
fn decode(frame: Message) -> Result<Option<ServerMessage>, ClientError> {
    match frame {
        Message::Binary(bytes) => Ok(Some(Format::MessagePack.decode_server(&bytes, READ_LIMIT)?)),
        Message::Text(text) => Ok(Some(
            Format::Json.decode_server(text.as_bytes(), READ_LIMIT)?,
        )),
        Message::Close(frame) => Err(closed(frame)),
        _ => Ok(None),
    }
}

fn frame(format: Format, message: &ClientMessage) -> Result<Message, ClientError> {
    let bytes = format.encode(message)?;
    Ok(match format {
        Format::MessagePack => Message::Binary(bytes.into()),
        Format::Json => Message::Text(String::from_utf8_lossy(&bytes).into_owned().into()),
    })
}

fn closed(frame: Option<CloseFrame>) -> ClientError {
    match frame {
        Some(frame) => ClientError::Closed {
            code: frame.code.into(),
            reason: frame.reason.to_string(),
        },
        None => ClientError::Closed {
            code: 1005,
            reason: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_comes_back_after_what_a_server_ends_connections_for_and_not_after_a_finding() {
        let closed = |code| ClientError::Closed {
            code,
            reason: String::new(),
        };
        for code in [1001, 1011, 1013, 4001, 4002] {
            assert!(closed(code).should_reconnect(), "{code}");
        }
        for code in [1000, 1002, 1003, 1009, 4000] {
            assert!(!closed(code).should_reconnect(), "{code}");
        }
        assert!(ClientError::Ended.should_reconnect());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(ClientError::WebSocket(refused.into()).should_reconnect());
        let unreadable = spacesync_protocol::Format::Json
            .decode_server(b"{", 1024)
            .expect_err("not a message");
        assert!(!ClientError::Decode(unreadable).should_reconnect());
    }
}
