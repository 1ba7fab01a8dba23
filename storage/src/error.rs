//! The error type of the storage crate.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file system call failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The log is damaged before its tail; the shard refuses to open.
    #[error("corrupt log segment {} at offset {offset}: {reason}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the first bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The data directory manifest is missing or malformed.
    #[error("bad manifest {}: {reason}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A write or fdatasync failed earlier: the shard is poisoned and accepts nothing more.
    #[error("shard {shard} failed after a write or fdatasync error (restart required): {source}")]
    Failed {
        /// The shard.
        shard: u32,
        /// The error that poisoned the shard.
        #[source]
        source: Arc<StorageError>,
    },
    /// The shard could not make a new log segment (the disk is full, most likely). Nothing
    /// was written; the shard refuses changes until its commit task manages to make one.
    #[error("shard {shard} cannot grow its log, refusing changes until it can: {source}")]
    NoSpace {
        /// The shard.
        shard: u32,
        /// Why the segment could not be made.
        #[source]
        source: Arc<StorageError>,
    },
    /// The shard was closed.
    #[error("shard {shard} is closed")]
    Closed {
        /// The shard.
        shard: u32,
    },
    /// Another process holds the shard directory.
    #[error("shard directory {} is in use by another process", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The account, mailbox, message or queue entry does not exist.
    #[error("not found")]
    NotFound,
    /// The mailbox already exists.
    #[error("already exists")]
    AlreadyExists,
    /// The operation is not allowed on INBOX (delete).
    #[error("operation not permitted on INBOX")]
    NotPermitted,
    /// The mailbox would need more than 56 keywords.
    #[error("too many keywords in mailbox (at most 56)")]
    TooManyKeywords,
    /// An account or mailbox name is empty, too long or contains control characters.
    #[error("invalid name")]
    InvalidName,
    /// A body is larger than one record can hold.
    #[error("message too large for the log ({0} bytes)")]
    TooLarge(u64),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        StorageError::Io {
            path: path.into(),
            source: source.into(),
        }
    }
}
