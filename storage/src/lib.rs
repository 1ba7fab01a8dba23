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
//!
//! Semantics callers rely on:
//! - Every mutating call resolves only after the group commit covering its records returned
//!   from fdatasync. A failed write or fdatasync poisons the shard: that call and every later
//!   one get [`StorageError::Failed`]; nothing is retried.
//! - Operations are applied to the index in call order, synchronously at the call; a new
//!   message stays out of [`MailboxIndex::messages`] (and UIDNEXT) until it is durable, and
//!   [`Shard::mailbox_changed`] fires only for durable changes. Flag changes and expunges are
//!   visible to readers at once.
//! - Mailbox names are opaque UTF-8 except `INBOX` (any case) and the hierarchy delimiter
//!   [`HIERARCHY_DELIMITER`] (`/`), used to rename inferiors along with their parent.
//! - Recovery cuts off a torn tail and refuses to open on damage before it
//!   ([`StorageError::Corrupt`] names the segment file and offset). A limitation: a crash
//!   that persisted only some pages of the last, unacknowledged batch out of order can look
//!   like damage before the tail, and then needs an operator.

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
