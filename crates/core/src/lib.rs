//! The space as a pure state machine (BRIEF §3, §4): parse and validate ops, apply them with
//! gapless sequence numbers, hold ops whose references do not exist yet and release them in
//! dependency order, reject and classify what can never apply, recognise replays, and encode
//! snapshots. No sockets, no database, no clock: time is passed in.

pub mod action;
pub mod collection;
mod hold;
pub mod kinopio;
pub mod snapshot;
pub mod space;
pub mod state;
pub mod synthetic;
pub mod validate;

pub use action::{Action, ParseError, ParsedOp};
pub use collection::Collection;
pub use kinopio::ImportError;
pub use snapshot::{Snapshot, SnapshotError};
pub use space::{Applied, Outcome, Prior, Rejection, ReplayError, Space, SpaceConfig};
pub use state::SpaceState;
