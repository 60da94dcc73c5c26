//! One WebSocket connection: a single task that reads client messages, hands them to space
//! actors, writes what the actors queued for it (a bounded queue), and pings. A connection
//! whose queue fills up is closed with 4001; one that stays silent past the idle timeout is
//! closed with 4002. Nothing a client sends can end anything but its own connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use spacesync_protocol::{
    ClientMessage, CloseCode, DecodeError, Format, Limits, RejectCode, ServerError, ServerMessage,
    negotiate_version,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::actor::{ActorMsg, Answer, Waiter, answer_message};
use crate::peer::{Outbound, Peer, encode, signal};
use crate::shared::{ActorHandle, DispatchError, Shared};

/// Most queued frames written together before a flush.
const MAX_BURST: usize = 64;

/// Longest space id or client id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Runs one upgraded connection to its end.
pub async fn serve(shared: Arc<Shared>, socket: WebSocket) {
    let open = shared.open_connections.fetch_add(1, Ordering::AcqRel);
    if open >= shared.config.max_connections {
        shared.open_connections.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.connections_refused.inc();
        let mut socket = socket;
        let _ = socket.send(close(CloseCode::TryAgainLater)).await;
        return;
    }
    shared.metrics.connections.inc();
    let reason = Connection::run(&shared, socket).await;
    shared.metrics.closed(reason);
    shared.metrics.connections.dec();
    shared.open_connections.fetch_sub(1, Ordering::AcqRel);
}

fn close(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: code.reason().into(),
    }))
}

fn decode(
    shared: &Shared,
    message: &Message,
) -> Option<(Format, Result<ClientMessage, DecodeError>)> {
    let limit = shared.config.max_message_bytes;
    match message {
        Message::Text(text) => Some((
            Format::Json,
            Format::Json.decode_client(text.as_bytes(), limit),
        )),
        Message::Binary(bytes) => Some((
            Format::MessagePack,
            Format::MessagePack.decode_client(bytes, limit),
        )),
        _ => None,
    }
}

struct Connection {
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    /// The spaces joined, each with the mailbox of its actor as last used.
    joined: HashMap<String, Option<ActorHandle>>,
}

impl Connection {
    /// Returns a short label of how the connection ended, for metrics.
    ///
    /// The socket is not split into halves: every read and write through a half takes the lock
    /// the halves share (1% of the server's CPU), and this task is the only one that touches
    /// the socket anyway. `select!` drops the read future before a branch's handler runs, so
    /// the handlers can write.
    async fn run(shared: &Arc<Shared>, mut socket: WebSocket) -> &'static str {
        let hello_deadline = Instant::now() + shared.config.hello_timeout;
        // The hello phase: nothing but `hello` is accepted.
        let (format, client_id) = loop {
            let message = tokio::select! {
                message = socket.next() => message,
                () = tokio::time::sleep_until(hello_deadline) => {
                    let _ = socket.send(close(CloseCode::Timeout)).await;
                    return "hello_timeout";
                }
                () = shared.stop_reading.cancelled() => {
                    let _ = socket.send(close(CloseCode::GoingAway)).await;
                    return "shutdown";
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(_)) | None => return "gone",
            };
            if matches!(message, Message::Close(_)) {
                return "client_closed";
            }
            let Some((format, decoded)) = decode(shared, &message) else {
                continue; // ping/pong
            };
            let (code, close_code, text) = match decoded {
                Ok(ClientMessage::Hello {
                    versions,
                    client_id,
                }) => match negotiate_version(&versions) {
                    Some(version) => {
                        let client_id = client_id
                            .filter(|id| valid_id(id))
                            .unwrap_or_else(|| format!("anon-{}", shared.next_id()));
                        let welcome = ServerMessage::Welcome {
                            version,
                            server: format!("spacesync {}", env!("CARGO_PKG_VERSION")),
                            client_id: client_id.clone(),
                            limits: Limits {
                                max_message_bytes: shared.config.max_message_bytes as u64,
                                max_ops_per_batch: u32::try_from(shared.config.max_ops_per_batch)
                                    .unwrap_or(u32::MAX),
                                hold_timeout_ms: shared.config.space.hold_timeout_ms,
                            },
                        };
                        if let Some(frame) = encode(format, &welcome)
                            && socket.send(frame).await.is_err()
                        {
                            return "gone";
                        }
                        break (format, client_id);
                    }
                    None => (
                        ServerError::UnsupportedVersion,
                        CloseCode::UnsupportedVersion,
                        format!(
                            "none of the versions {versions:?} is supported; this server speaks {:?}",
                            spacesync_protocol::SUPPORTED_VERSIONS
                        ),
                    ),
                },
                Ok(_) => (
                    ServerError::HelloRequired,
                    CloseCode::ProtocolError,
                    "the first message must be hello".to_owned(),
                ),
                Err(error) => (
                    ServerError::MalformedMessage,
                    CloseCode::ProtocolError,
                    error.to_string(),
                ),
            };
            if let Some(frame) = encode(
                format,
                &ServerMessage::Error {
                    code,
                    message: text,
                },
            ) {
                let _ = socket.send(frame).await;
            }
            let _ = socket.send(close(close_code)).await;
            return "refused_hello";
        };

        let (tx, mut rx) = mpsc::channel(shared.config.outbound_queue.max(1));
        let peer = Arc::new(Peer::new(shared.next_id(), client_id, format, tx));
        let mut connection = Connection {
            shared: shared.clone(),
            peer: peer.clone(),
            joined: HashMap::new(),
        };
        let _registration = shared.register_peer(&peer);
        let mut ping = tokio::time::interval(shared.config.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let mut reading = true;
        // The signal bits handled so far (a kill, the server's shutdown steps).
        let mut seen = 0;
        // Armed for the idle timeout from the last message heard; it lives for the whole loop
        // (made anew on every pass it would cost a timer wheel entry, twice per op) and is
        // moved on only when it fires (a busy connection hears many messages per timeout, and
        // moving a timer locks the wheel).
        let idle = tokio::time::sleep_until(last_heard + shared.config.idle_timeout);
        tokio::pin!(idle);
        let reason = loop {
            tokio::select! {
                biased;
                raised = std::future::poll_fn(|cx| peer.poll_signals(seen, cx)) => {
                    let new = raised & !seen;
                    seen = raised;
                    if new & signal::KILLED != 0 {
                        let code = CloseCode::ALL
                            .iter()
                            .copied()
                            .find(|code| code.code() == peer.kill_code())
                            .unwrap_or(CloseCode::InternalError);
                        let _ = socket.send(close(code)).await;
                        break if code == CloseCode::SlowConsumer { "slow_consumer" } else { "killed" };
                    }
                    if new & signal::CLOSING != 0 {
                        // Every actor has flushed: send what is queued, then 1001.
                        while let Ok(outbound) = rx.try_recv() {
                            if let Outbound::Frame(frame) = outbound
                                && socket.send(frame).await.is_err()
                            {
                                break;
                            }
                        }
                        let _ = socket.send(close(CloseCode::GoingAway)).await;
                        break "shutdown";
                    }
                    if new & signal::STOP_READING != 0 {
                        reading = false;
                    }
                }
                outbound = rx.recv() => match outbound {
                    Some(Outbound::Frame(frame)) => {
                        // Everything queued goes out in one write (acks and broadcasts come
                        // in bursts). A client that reads nothing for the idle timeout is
                        // gone; a slow one is closed (4001) as soon as this burst is out.
                        let mut close_after = None;
                        let burst = async {
                            socket.feed(frame).await?;
                            for _ in 0..MAX_BURST {
                                match rx.try_recv() {
                                    Ok(Outbound::Frame(frame)) => socket.feed(frame).await?,
                                    Ok(Outbound::Close(code)) => {
                                        close_after = Some(code);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            socket.flush().await
                        };
                        match tokio::time::timeout(shared.config.idle_timeout, burst).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break "gone",
                            Err(_) => break "write_timeout",
                        }
                        if let Some(code) = close_after {
                            let _ = socket.send(close(code)).await;
                            break "closed";
                        }
                    }
                    Some(Outbound::Close(code)) => {
                        let _ = socket.send(close(code)).await;
                        break "closed";
                    }
                    None => break "gone",
                },
                _ = ping.tick() => {
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break "gone";
                    }
                }
                () = &mut idle, if reading => {
                    let deadline = last_heard + shared.config.idle_timeout;
                    if deadline > Instant::now() {
                        idle.as_mut().reset(deadline);
                    } else {
                        let _ = socket.send(close(CloseCode::Timeout)).await;
                        break "ping_timeout";
                    }
                }
                message = socket.next(), if reading => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Close(_))) | None => break "client_closed",
                        Some(Err(error)) => {
                            // tungstenite reports an oversized message as a capacity error.
                            let too_big = error.to_string().to_ascii_lowercase().contains("too long")
                                || error.to_string().to_ascii_lowercase().contains("capacity");
                            if too_big {
                                let _ = socket.send(close(CloseCode::MessageTooBig)).await;
                                break "too_big";
                            }
                            break "gone";
                        }
                        Some(Ok(message)) => {
                            if let Some((_, decoded)) = decode(shared, &message) {
                                connection.receive(decoded);
                            }
                        }
                    }
                }
            }
        };
        connection.leave_all();
        reason
    }

    fn send(&self, message: &ServerMessage) {
        self.peer.send(message);
    }

    fn error(&self, code: ServerError, message: String) {
        self.send(&ServerMessage::Error { code, message });
    }

    fn receive(&mut self, decoded: Result<ClientMessage, DecodeError>) {
        let message = match decoded {
            Ok(message) => message,
            Err(DecodeError::TooLarge { size, limit }) => {
                self.error(
                    ServerError::TooLarge,
                    format!("message of {size} bytes is over the limit of {limit}"),
                );
                return;
            }
            Err(error) => {
                self.error(ServerError::MalformedMessage, error.to_string());
                return;
            }
        };
        match message {
            ClientMessage::Hello { .. } => self.error(
                ServerError::MalformedMessage,
                "hello was already received on this connection".to_owned(),
            ),
            ClientMessage::Join { space_id, since } => {
                if !valid_id(&space_id) {
                    self.error(ServerError::MalformedMessage, invalid_space(&space_id));
                    return;
                }
                let msg = ActorMsg::Join {
                    peer: self.peer.clone(),
                    since,
                };
                let mut cached = self.joined.get(&space_id).cloned().flatten();
                match self.shared.dispatch_cached(&space_id, &mut cached, msg) {
                    Ok(()) => {
                        self.joined.insert(space_id, cached);
                    }
                    Err(_) => self.error(
                        ServerError::SpaceUnavailable,
                        format!(
                            "space {space_id} is busy or the server is stopping; retry the join"
                        ),
                    ),
                }
            }
            ClientMessage::ReadLog {
                space_id,
                after,
                limit,
            } => {
                if !valid_id(&space_id) {
                    self.error(ServerError::MalformedMessage, invalid_space(&space_id));
                    return;
                }
                let page = self.shared.config.log_page.max(1);
                let limit = limit.map_or(page, |limit| (limit as usize).clamp(1, page));
                let msg = ActorMsg::ReadLog {
                    peer: self.peer.clone(),
                    after,
                    limit,
                };
                let mut cached = self.joined.get(&space_id).cloned().flatten();
                let sent = self.shared.dispatch_cached(&space_id, &mut cached, msg);
                if let Some(kept) = self.joined.get_mut(&space_id) {
                    *kept = cached;
                }
                if sent.is_err() {
                    self.error(
                        ServerError::SpaceUnavailable,
                        format!(
                            "space {space_id} is busy or the server is stopping; retry the readLog"
                        ),
                    );
                }
            }
            ClientMessage::Leave { space_id } => {
                if self.joined.remove(&space_id).is_some() {
                    self.shared.notify(
                        &space_id,
                        ActorMsg::Leave {
                            peer_id: self.peer.id,
                        },
                    );
                }
                self.send(&ServerMessage::Left { space_id });
            }
            ClientMessage::Submit { space_id, ops } => {
                let too_many = ops.len() > self.shared.config.max_ops_per_batch;
                let Some(cached) = self.joined.get_mut(&space_id) else {
                    self.error(
                        ServerError::NotJoined,
                        format!("submit to {} before joining it", shorten(&space_id)),
                    );
                    return;
                };
                if too_many {
                    self.error(
                        ServerError::TooLarge,
                        format!(
                            "a batch of {} ops is over the limit of {}; nothing was applied",
                            ops.len(),
                            self.shared.config.max_ops_per_batch
                        ),
                    );
                    return;
                }
                if ops.is_empty() {
                    return;
                }
                let waiter = Waiter::Peer(self.peer.clone());
                let msg = ActorMsg::Submit {
                    waiter,
                    ops,
                    received: Instant::now(),
                };
                if let Err(error) = self.shared.dispatch_cached(&space_id, cached, msg) {
                    let (code, msg) = match error {
                        DispatchError::Overloaded(msg) => (RejectCode::Overloaded, msg),
                        DispatchError::ShuttingDown(msg) => (RejectCode::ShuttingDown, msg),
                    };
                    if let ActorMsg::Submit { ops, .. } = msg {
                        for op in ops {
                            let operation_id = op.operation_id().unwrap_or_default();
                            self.send(&answer_message(
                                &space_id,
                                &operation_id,
                                Answer::Rejected {
                                    code,
                                    message: "not applied; retry with backoff".to_owned(),
                                },
                            ));
                        }
                    }
                }
            }
            ClientMessage::Presence { space_id, data } => {
                if !self.joined.contains_key(&space_id) {
                    self.error(
                        ServerError::NotJoined,
                        format!("presence for {} before joining it", shorten(&space_id)),
                    );
                    return;
                }
                // A full mailbox drops presence: it is ephemeral and the next one replaces it.
                if self
                    .shared
                    .dispatch(
                        &space_id,
                        ActorMsg::Presence {
                            peer: self.peer.clone(),
                            data,
                        },
                    )
                    .is_err()
                {
                    self.error(
                        ServerError::RateLimited,
                        "presence dropped: the space is busy".to_owned(),
                    );
                }
            }
        }
    }

    fn leave_all(&mut self) {
        for space_id in std::mem::take(&mut self.joined).into_keys() {
            self.shared.notify(
                &space_id,
                ActorMsg::Leave {
                    peer_id: self.peer.id,
                },
            );
        }
    }
}

/// Space and client ids: non-empty, at most [`MAX_ID_LEN`] characters, no control characters.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

fn invalid_space(space_id: &str) -> String {
    format!(
        "space id {:?} is not valid: 1 to {MAX_ID_LEN} characters, no control characters",
        shorten(space_id)
    )
}

pub(crate) fn shorten(text: &str) -> String {
    text.chars().take(MAX_ID_LEN).collect()
}
