//! A connection as the actors see it: where to send its messages, in the format it speaks.
//! Sending never blocks an actor: a connection whose queue is full is closed as a slow
//! consumer (4001) and resumes by sequence number when it reconnects.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use axum::extract::ws::Message;
use spacesync_protocol::{CloseCode, Format, ServerMessage};
use tokio::sync::{Notify, mpsc};

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
    /// Set, then notified, to close the connection at once (the queue is not drained). A flag
    /// and a `Notify` rather than a cancellation token: actors ask `is_closed` of every member
    /// each cycle and the connection polls its kill signal on every pass, and a token takes a
    /// mutex for each (1.6% of the server's CPU).
    killed: AtomicBool,
    kill: Notify,
    kill_code: AtomicU16,
}

impl Peer {
    pub fn new(id: u64, client_id: String, format: Format, tx: mpsc::Sender<Outbound>) -> Peer {
        Peer {
            id,
            client_id,
            format,
            tx,
            killed: AtomicBool::new(false),
            kill: Notify::new(),
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
        self.killed.store(true, Ordering::Release);
        // One waiter, the connection's task; if it is not waiting yet, the permit this leaves
        // wakes its first wait.
        self.kill.notify_one();
    }

    /// Resolves once [`Peer::close_now`] was called (the connection's task alone waits).
    pub async fn killed(&self) {
        while !self.killed.load(Ordering::Acquire) {
            self.kill.notified().await;
        }
    }

    /// The code given to [`Peer::close_now`].
    pub fn kill_code(&self) -> u16 {
        self.kill_code.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.killed.load(Ordering::Acquire)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn peer() -> (Peer, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(1);
        (Peer::new(1, "client".to_owned(), Format::Json, tx), rx)
    }

    #[tokio::test]
    async fn a_kill_before_the_connection_waits_for_it_is_not_lost() {
        let (peer, _rx) = peer();
        assert!(!peer.is_closed());
        peer.close_now(CloseCode::SlowConsumer);
        assert!(peer.is_closed());
        tokio::time::timeout(Duration::from_secs(5), peer.killed())
            .await
            .expect("the kill is seen");
        assert_eq!(peer.kill_code(), CloseCode::SlowConsumer.code());
    }

    #[tokio::test]
    async fn a_kill_wakes_a_connection_waiting_for_it() {
        let (peer, _rx) = peer();
        let peer = Arc::new(peer);
        let waiting = tokio::spawn({
            let peer = peer.clone();
            async move { peer.killed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        peer.close_now(CloseCode::Normal);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_peer_whose_connection_ended_is_closed() {
        let (peer, rx) = peer();
        drop(rx);
        assert!(peer.is_closed());
        assert!(!peer.send_frame(Message::Text("x".into())));
    }
}
