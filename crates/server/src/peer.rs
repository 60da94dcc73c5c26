//! A connection as the actors see it: where to send its messages, in the format it speaks.
//! Sending never blocks an actor: a connection whose queue is full is closed as a slow
//! consumer (4001) and resumes by sequence number when it reconnects.

use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};
use std::task::{Context, Poll};

use axum::extract::ws::Message;
use futures::task::AtomicWaker;
use spacesync_protocol::{CloseCode, Format, ServerMessage};
use tokio::sync::mpsc;

/// What the writer of a connection sends.
#[derive(Debug)]
pub enum Outbound {
    /// An encoded message.
    Frame(Message),
    /// Close with this code once everything queued before it is sent.
    Close(CloseCode),
}

/// What a connection's task is told besides what its socket and queue bring: bits of
/// [`Peer::signals`], each raised at most once and never cleared.
pub mod signal {
    /// Close at once with [`super::Peer::kill_code`]; what is queued is dropped.
    pub const KILLED: u8 = 1;
    /// The server is shutting down: read nothing more from the client.
    pub const STOP_READING: u8 = 2;
    /// Every space has flushed: send what is queued, then close with 1001.
    pub const CLOSING: u8 = 4;
}

/// One connection, shared between its own task and the actors of the spaces it joined.
#[derive(Debug)]
pub struct Peer {
    pub id: u64,
    pub client_id: String,
    pub format: Format,
    tx: mpsc::Sender<Outbound>,
    /// Raised [`signal`] bits, and the connection's task to wake when one is raised. Bits and
    /// one waker rather than a `Notify` and the server's cancellation tokens: the connection
    /// polls its signals on every pass (two per op), and a token or a `Notify` takes a mutex
    /// for each poll, the tokens' one shared by every connection (2.6% of the server's CPU).
    signals: AtomicU8,
    waker: AtomicWaker,
    kill_code: AtomicU16,
}

impl Peer {
    pub fn new(id: u64, client_id: String, format: Format, tx: mpsc::Sender<Outbound>) -> Peer {
        Peer {
            id,
            client_id,
            format,
            tx,
            signals: AtomicU8::new(0),
            waker: AtomicWaker::new(),
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
        self.raise(signal::KILLED);
    }

    /// Raises [`signal`] bits and wakes the connection's task.
    pub fn raise(&self, bits: u8) {
        self.signals.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Ready with every raised bit once a bit outside `seen` is raised. Only the connection's
    /// own task polls this (one waker is kept). A bit raised before the first poll is not lost.
    pub fn poll_signals(&self, seen: u8, cx: &mut Context<'_>) -> Poll<u8> {
        let raised = self.signals.load(Ordering::Acquire);
        if raised & !seen != 0 {
            return Poll::Ready(raised);
        }
        self.waker.register(cx.waker());
        // A raise between the load and the registration woke nothing: look again.
        let raised = self.signals.load(Ordering::Acquire);
        if raised & !seen != 0 {
            Poll::Ready(raised)
        } else {
            Poll::Pending
        }
    }

    /// The code given to [`Peer::close_now`].
    pub fn kill_code(&self) -> u16 {
        self.kill_code.load(Ordering::Relaxed)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.signals.load(Ordering::Acquire) & signal::KILLED != 0
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

    async fn next_signals(peer: &Peer, seen: u8) -> u8 {
        std::future::poll_fn(|cx| peer.poll_signals(seen, cx)).await
    }

    #[tokio::test]
    async fn a_kill_before_the_connection_waits_for_it_is_not_lost() {
        let (peer, _rx) = peer();
        assert!(!peer.is_closed());
        peer.close_now(CloseCode::SlowConsumer);
        assert!(peer.is_closed());
        let raised = tokio::time::timeout(Duration::from_secs(5), next_signals(&peer, 0))
            .await
            .expect("the kill is seen");
        assert_eq!(raised, signal::KILLED);
        assert_eq!(peer.kill_code(), CloseCode::SlowConsumer.code());
    }

    #[tokio::test]
    async fn a_kill_wakes_a_connection_waiting_for_it() {
        let (peer, _rx) = peer();
        let peer = Arc::new(peer);
        let waiting = tokio::spawn({
            let peer = peer.clone();
            async move { next_signals(&peer, 0).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        peer.close_now(CloseCode::Normal);
        let raised = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(raised & signal::KILLED, signal::KILLED);
    }

    #[tokio::test]
    async fn a_signal_already_seen_does_not_wake_again_and_a_new_one_does() {
        let (peer, _rx) = peer();
        let peer = Arc::new(peer);
        peer.raise(signal::STOP_READING);
        let waiting = tokio::spawn({
            let peer = peer.clone();
            async move { next_signals(&peer, signal::STOP_READING).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a seen signal is not news");
        peer.raise(signal::CLOSING);
        let raised = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(raised, signal::STOP_READING | signal::CLOSING);
        assert!(!peer.is_closed(), "only a kill closes the peer");
    }

    #[tokio::test]
    async fn a_peer_whose_connection_ended_is_closed() {
        let (peer, rx) = peer();
        drop(rx);
        assert!(peer.is_closed());
        assert!(!peer.send_frame(Message::Text("x".into())));
    }
}
