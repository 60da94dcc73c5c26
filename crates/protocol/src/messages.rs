//! The native WebSocket messages, as two closed enums: what a client may send and what the
//! server may answer. Both are tagged by `type` and use camelCase field names, the same in JSON
//! and in MessagePack (which is encoded with field names, so both formats mean the same thing).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Operation, RejectCode, Seq};

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ClientMessage {
    /// First message of every connection: the protocol versions the client speaks.
    Hello {
        versions: Vec<u32>,
        /// A stable id for this client installation; the server makes one up when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Join a space. `since` is the last sequence number the client has applied; absent means
    /// the client has nothing and wants the whole space.
    Join {
        space_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Seq>,
    },
    /// Stop receiving a space's broadcasts and presence.
    Leave { space_id: String },
    /// A batch of ops for one space. Each op is answered by an `ack` or a `rejected`
    /// (possibly after a `held`).
    Submit {
        space_id: String,
        ops: Vec<Operation>,
    },
    /// Ephemeral presence (cursor, selection): relayed to the other members, never stored.
    Presence { space_id: String, data: Value },
    /// One page of a space's committed log: the ops after `after`, in seq order, at most
    /// `limit` of them (and at most the server's page size). Answered by `log`. Reading a log
    /// does not join the space.
    ReadLog {
        space_id: String,
        after: Seq,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// Answer to `hello`: the version that will be spoken and the server's limits.
    Welcome {
        version: u32,
        server: String,
        client_id: String,
        limits: Limits,
    },
    /// Answer to `join`. The client's state at `seq` is `snapshot` when one is sent, otherwise
    /// its own state at `since` followed by `ops` (every op after `since`, in order). Live
    /// `broadcast`s that follow start at `seq + 1`.
    Joined {
        space_id: String,
        seq: Seq,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Value>,
        #[serde(default)]
        ops: Vec<SequencedOperation>,
    },
    /// The space was left; no more broadcasts for it.
    Left { space_id: String },
    /// The op is durable with this sequence number. `duplicate` says the op had been accepted
    /// before (a replay) and this is its original sequence number.
    Ack {
        space_id: String,
        operation_id: String,
        seq: Seq,
        #[serde(default)]
        duplicate: bool,
    },
    /// The op waits for items that do not exist yet; an `ack` or a `rejected` follows.
    Held {
        space_id: String,
        operation_id: String,
        waiting_for: Vec<String>,
    },
    /// The op was not accepted. `permanent: true` means do not retry it.
    Rejected {
        space_id: String,
        operation_id: String,
        code: RejectCode,
        permanent: bool,
        message: String,
    },
    /// An op another client (or this one) made durable, in sequence order.
    Broadcast {
        space_id: String,
        seq: Seq,
        op: Operation,
    },
    /// Presence of another client, relayed as sent.
    Presence {
        space_id: String,
        client_id: String,
        data: Value,
    },
    /// A connection-level problem (not about one op). Fatal ones are followed by a close frame.
    Error { code: ServerError, message: String },
    /// Answer to `readLog`: the space's committed seq (`head`) and the log's ops after the
    /// asked `after`, in seq order, none above `head`. The next page starts after the last op
    /// here; the log has been read when that reaches `head` (or a page comes back empty).
    Log {
        space_id: String,
        head: Seq,
        ops: Vec<SequencedOperation>,
    },
}

/// An op with its sequence number, as sent in `joined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequencedOperation {
    pub seq: Seq,
    pub op: Operation,
}

/// The server's limits, announced in `welcome` so clients can size their batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_message_bytes: u64,
    pub max_ops_per_batch: u32,
    pub hold_timeout_ms: u64,
}

/// Connection-level error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerError {
    /// The frame could not be decoded as a client message.
    MalformedMessage,
    /// A message other than `hello` arrived before `hello`.
    HelloRequired,
    /// None of the offered versions is supported.
    UnsupportedVersion,
    /// A `submit` or `presence` for a space the connection has not joined.
    NotJoined,
    /// The message or batch is over the limits announced in `welcome`.
    TooLarge,
    /// The space could not be loaded right now; retry the join.
    SpaceUnavailable,
    /// Presence was sent faster than the rate limit; the excess was dropped.
    RateLimited,
}

impl ServerError {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: &'static [ServerError] = &[
        ServerError::MalformedMessage,
        ServerError::HelloRequired,
        ServerError::UnsupportedVersion,
        ServerError::NotJoined,
        ServerError::TooLarge,
        ServerError::SpaceUnavailable,
        ServerError::RateLimited,
    ];
}
