//! A connection as the actors see it: where to send its messages, in the format it speaks.
//! Sending never blocks an actor: a connection whose queue is full is closed as a slow
//! consumer (4001) and resumes by sequence number when it reconnects.

use std::sync::atomic::{AtomicU16, Ordering};

use axum::extract::ws::Message;
use spacesync_protocol::{CloseCode, Format, ServerMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the writer of a connection sends.
#[derive(Debug)]
pub enum Outbound {
    /// An encoded message.
    Frame(Message),
    /// Close with this code once everything queued before it is sent.
    Close(CloseCode),
}

/// One connection, shared between its own task and the actors of the spaces it joined.
#[derive(Debug)]
pub struct Peer {
    pub id: u64,
    pub client_id: String,
    pub format: Format,
    tx: mpsc::Sender<Outbound>,
    /// Cancelled to close the connection at once (the queue is not drained).
    kill: CancellationToken,
    kill_code: AtomicU16,
}

impl Peer {
    pub fn new(
        id: u64,
        client_id: String,
        format: Format,
        tx: mpsc::Sender<Outbound>,
        kill: CancellationToken,
    ) -> Peer {
        Peer {
            id,
            client_id,
            format,
            tx,
            kill,
            kill_code: AtomicU16::new(CloseCode::Normal.code()),
        }
    }

    /// Queues a message. Returns false when the connection is gone or was just closed
    /// because its queue is full.
    pub fn send(&self, message: &ServerMessage) -> bool {
        match encode(self.format, message) {
            Some(frame) => self.send_frame(frame),
            None => true,
        }
    }

    /// Queues an already encoded frame (broadcasts are encoded once per format).
    pub fn send_frame(&self, frame: Message) -> bool {
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_now(CloseCode::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes the connection at once with `code`, dropping what is queued.
    pub fn close_now(&self, code: CloseCode) {
        self.kill_code.store(code.code(), Ordering::Relaxed);
        self.kill.cancel();
    }

    /// The code given to [`Peer::close_now`].
    pub fn kill_code(&self) -> u16 {
        self.kill_code.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.kill.is_cancelled()
    }
}

/// Encodes a server message as a frame of the given format. Encoding a server message cannot
/// fail for the values the server builds; if it ever does, the message is dropped and logged.
pub fn encode(format: Format, message: &ServerMessage) -> Option<Message> {
    match format.encode(message) {
        Ok(bytes) => Some(match format {
            Format::MessagePack => Message::Binary(bytes.into()),
            Format::Json => match String::from_utf8(bytes) {
                Ok(text) => Message::Text(text.into()),
                Err(_) => return None,
            },
        }),
        Err(error) => {
            tracing::error!(%error, "cannot encode a server message");
            None
        }
    }
}

/// A message encoded lazily once per format, for fan-out to many connections.
#[derive(Debug)]
pub struct Encoded<'a> {
    message: &'a ServerMessage,
    json: Option<Option<Message>>,
    msgpack: Option<Option<Message>>,
}

impl<'a> Encoded<'a> {
    pub fn new(message: &'a ServerMessage) -> Encoded<'a> {
        Encoded {
            message,
            json: None,
            msgpack: None,
        }
    }

    /// The frame for `format`, encoding it the first time.
    pub fn frame(&mut self, format: Format) -> Option<Message> {
        let slot = match format {
            Format::Json => &mut self.json,
            Format::MessagePack => &mut self.msgpack,
        };
        slot.get_or_insert_with(|| encode(format, self.message))
            .clone()
    }
}
