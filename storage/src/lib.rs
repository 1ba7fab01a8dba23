//! The storage of ringpost: per-shard append-only logs with group commit, the in-memory
//! mailbox index rebuilt from them, crash recovery and rkyv snapshots.
//!
//! Layout of a data directory:
//! ```text
//! data_dir/MANIFEST                 format version + shard count
//! data_dir/shards/NNN/LOCK          held (flock) while the shard is open
//! data_dir/shards/NNN/00000000.seg  log segments, appended only
//! data_dir/shards/NNN/snapshot      latest index snapshot + the log position it covers
//! ```
//! Everything runs inside a glommio `LocalExecutor`; a [`Shard`] is `!Send` and used through
//! `Rc<Shard>` by the executor that owns it.

mod error;
mod index;
mod log;
mod manifest;
mod record;
mod recovery;
mod shard;
mod snapshot;
mod types;

#[cfg(test)]
mod tests;

pub use error::StorageError;
pub use index::MailboxIndex;
pub use log::Preallocate;
pub use manifest::{Manifest, FORMAT_VERSION};
pub use shard::{Shard, ShardOptions, StorageObserver};
pub use types::{
    flags, AppendResult, BodyRef, CopyResult, FlagOp, FlagUpdate, MailboxInfo, MessageMeta,
    QueueItem, SpecialUse, StoreOutcome, HIERARCHY_DELIMITER, INBOX, KEYWORD_SHIFT, MAX_KEYWORDS,
};
