//! Snapshots: a space's content at a sequence number, encoded as MessagePack (with field names,
//! so a snapshot stays readable by later versions that add fields). Load = latest snapshot +
//! the log after it.

use serde::{Deserialize, Serialize};
use spacesync_protocol::Seq;

use crate::space::{Space, SpaceConfig};
use crate::state::SpaceState;

/// Current snapshot format. A decoder refuses versions it does not know instead of guessing.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A space's content at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub space_id: String,
    pub seq: Seq,
    pub state: SpaceState,
}

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot encode snapshot: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode snapshot: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("snapshot format {0} is not supported (this build reads {SNAPSHOT_VERSION})")]
    Version(u32),
}

impl Snapshot {
    /// The snapshot of a space as it is now.
    pub fn of(space: &Space) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            space_id: space.id().to_owned(),
            seq: space.seq(),
            state: space.state().clone(),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        Ok(rmp_serde::to_vec_named(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let snapshot: Snapshot = rmp_serde::from_slice(bytes)?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(snapshot.version));
        }
        Ok(snapshot)
    }

    /// The space this snapshot describes, ready to replay the log after `seq`.
    pub fn into_space(self, config: SpaceConfig) -> Space {
        Space::from_state(self.space_id, self.seq, self.state, config)
    }
}
