//! MessagePack and JSON codecs. The server answers in the format it was spoken to: binary
//! WebSocket frames are MessagePack, text frames are JSON. Decoding never panics; every failure
//! is a [`DecodeError`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ClientMessage, Operation, Seq, ServerMessage};

/// Deepest nesting of arrays and maps accepted in MessagePack. Real items nest three or four
/// levels; the limit keeps a hostile frame from exhausting the stack while decoding. (JSON has
/// serde_json's own limit of 128.)
pub const MAX_NESTING: usize = 64;

/// The two encodings of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// MessagePack with field names (maps, not arrays), carried in binary frames.
    MessagePack,
    /// UTF-8 JSON, carried in text frames.
    Json,
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid JSON message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid MessagePack message: {0}")]
    MessagePack(#[from] rmp_serde::decode::Error),
}

/// Why a message could not be encoded (only possible for values serde cannot represent).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot encode MessagePack: {0}")]
    MessagePack(#[from] rmp_serde::encode::Error),
}

impl Format {
    /// Encodes any protocol value.
    pub fn encode<T: Serialize>(self, value: &T) -> Result<Vec<u8>, EncodeError> {
        // Most messages (acks, small ops) fit, so the buffer is not regrown on the way.
        let mut bytes = Vec::with_capacity(128);
        self.encode_into(value, &mut bytes)?;
        Ok(bytes)
    }

    /// Encodes any protocol value at the end of `bytes` (a buffer reused across messages).
    pub fn encode_into<T: Serialize>(
        self,
        value: &T,
        bytes: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self {
            Format::MessagePack => rmp_serde::encode::write_named(bytes, value)?,
            Format::Json => serde_json::to_writer(bytes, value)?,
        }
        Ok(())
    }

    /// Decodes any protocol value, refusing input over `limit` bytes before parsing it.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(match self {
            Format::MessagePack => {
                let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
                deserializer.set_max_depth(MAX_NESTING);
                serde::Deserialize::deserialize(&mut deserializer)?
            }
            Format::Json => serde_json::from_slice(bytes)?,
        })
    }

    /// Decodes a client message (what the server reads).
    pub fn decode_client(self, bytes: &[u8], limit: usize) -> Result<ClientMessage, DecodeError> {
        // The hot message first, as a plain struct: serde's tagged enums buffer the whole
        // message before building it (8% of the server's CPU went to decoding). Anything else,
        // including a malformed `submit`, takes the general path and gets its error.
        if let Ok(SubmitFrame { space_id, ops, .. }) = self.decode::<SubmitFrame>(bytes, limit) {
            return Ok(ClientMessage::Submit { space_id, ops });
        }
        self.decode(bytes, limit)
    }

    /// Decodes a server message (what clients read).
    pub fn decode_server(self, bytes: &[u8], limit: usize) -> Result<ServerMessage, DecodeError> {
        // Acks are most of what a client reads; see `decode_client`.
        if let Ok(AckFrame {
            space_id,
            operation_id,
            seq,
            duplicate,
            ..
        }) = self.decode::<AckFrame>(bytes, limit)
        {
            return Ok(ServerMessage::Ack {
                space_id,
                operation_id,
                seq,
                duplicate,
            });
        }
        self.decode(bytes, limit)
    }
}

/// `ClientMessage::Submit` with its tag as a field, for the direct decoding path: the same
/// fields, names and strictness as the enum variant.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubmitFrame {
    #[serde(rename = "type")]
    _tag: SubmitTag,
    space_id: String,
    ops: Vec<Operation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum SubmitTag {
    Submit,
}

/// `ServerMessage::Ack` with its tag as a field; see [`SubmitFrame`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckFrame {
    #[serde(rename = "type")]
    _tag: AckTag,
    space_id: String,
    operation_id: String,
    seq: Seq,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum AckTag {
    Ack,
}

#[cfg(test)]
mod tests;
