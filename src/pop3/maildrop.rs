//! The maildrop as one POP3 session sees it: a fixed snapshot of the account's INBOX taken
//! when the session enters TRANSACTION, with message numbers, deletion marks and unique ids.

use std::fmt;
use thiserror::Error;

/// One message of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaildropEntry {
    /// IMAP UID of the message in INBOX.
    pub uid: u32,
    /// Exact stored size in octets (what `RETR` will send before byte-stuffing).
    pub size: u64,
}

/// The snapshot the driver hands to the session after locking the maildrop.
/// Message number `n` is `entries[n - 1]`; numbers stay fixed for the whole session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maildrop {
    /// UIDVALIDITY of INBOX; part of every unique id.
    pub uidvalidity: u32,
    /// The messages, in the order they are numbered (ascending UID is the natural order).
    pub entries: Vec<MaildropEntry>,
}

/// Why the driver could not open the maildrop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MaildropError {
    /// Another POP3 session holds the exclusive lock (RFC 1939 section 8).
    #[error("[IN-USE] maildrop locked")]
    InUse,
    /// Storage failed for a reason that may pass.
    #[error("[SYS/TEMP] maildrop unavailable")]
    Unavailable,
}

/// The `UIDL` unique id of a message: UIDVALIDITY and UID as 8 lower-case hex digits each.
///
/// IMAP guarantees a (UIDVALIDITY, UID) pair never names two different messages, so the id is
/// stable across sessions and never reused; if UIDVALIDITY changes, every id changes and
/// clients download again, which is the correct outcome. 16 characters of `[0-9a-f]` satisfy
/// RFC 1939's 1..70 octets in 0x21..0x7E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UniqueId {
    /// UIDVALIDITY of the mailbox.
    pub uidvalidity: u32,
    /// IMAP UID of the message.
    pub uid: u32,
}

impl fmt::Display for UniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}{:08x}", self.uidvalidity, self.uid)
    }
}

/// Why a message number cannot be used. `Display` is the text after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MessageError {
    /// Zero or larger than the number of messages in the snapshot.
    #[error("no such message")]
    NoSuchMessage,
    /// Marked deleted in this session.
    #[error("message deleted")]
    Deleted,
}

/// A snapshot plus this session's deletion marks, with running totals for `STAT`.
#[derive(Debug)]
pub struct MaildropView {
    drop: Maildrop,
    deleted: Vec<bool>,
    live_count: usize,
    live_octets: u64,
}

impl MaildropView {
    /// Wrap a fresh snapshot; nothing is marked.
    pub fn new(drop: Maildrop) -> Self {
        let live_octets = drop.entries.iter().map(|e| e.size).sum();
        MaildropView {
            deleted: vec![false; drop.entries.len()],
            live_count: drop.entries.len(),
            live_octets,
            drop,
        }
    }

    /// Number of messages not marked deleted, and their total size (`STAT`).
    pub fn stat(&self) -> (usize, u64) {
        (self.live_count, self.live_octets)
    }

    /// The entry for message number `msg`, unless it does not exist or is marked deleted.
    pub fn get(&self, msg: u32) -> Result<&MaildropEntry, MessageError> {
        let i = index(msg, self.drop.entries.len())?;
        if self.deleted[i] {
            return Err(MessageError::Deleted);
        }
        Ok(&self.drop.entries[i])
    }

    /// The unique id of an entry of this snapshot.
    pub fn unique_id(&self, entry: &MaildropEntry) -> UniqueId {
        UniqueId {
            uidvalidity: self.drop.uidvalidity,
            uid: entry.uid,
        }
    }

    /// Mark message `msg` deleted (`DELE`).
    pub fn delete(&mut self, msg: u32) -> Result<(), MessageError> {
        let i = index(msg, self.drop.entries.len())?;
        if self.deleted[i] {
            return Err(MessageError::Deleted);
        }
        self.deleted[i] = true;
        self.live_count -= 1;
        self.live_octets -= self.drop.entries[i].size;
        Ok(())
    }

    /// Unmark every message (`RSET`).
    pub fn reset(&mut self) {
        self.deleted.fill(false);
        self.live_count = self.drop.entries.len();
        self.live_octets = self.drop.entries.iter().map(|e| e.size).sum();
    }

    /// Messages not marked deleted, with their message numbers, in order.
    pub fn live(&self) -> impl Iterator<Item = (u32, &MaildropEntry)> + '_ {
        self.drop
            .entries
            .iter()
            .zip(&self.deleted)
            .zip(1u32..)
            .filter(|((_, &deleted), _)| !deleted)
            .map(|((entry, _), msg)| (msg, entry))
    }

    /// UIDs of the messages marked deleted, ascending (for the expunge at `QUIT`).
    pub fn deleted_uids(&self) -> Vec<u32> {
        let mut uids: Vec<u32> = self
            .drop
            .entries
            .iter()
            .zip(&self.deleted)
            .filter(|(_, &deleted)| deleted)
            .map(|(entry, _)| entry.uid)
            .collect();
        uids.sort_unstable();
        uids
    }
}

/// Index into the snapshot for 1-based message number `msg`.
fn index(msg: u32, len: usize) -> Result<usize, MessageError> {
    let i = usize::try_from(msg)
        .ok()
        .and_then(|m| m.checked_sub(1))
        .ok_or(MessageError::NoSuchMessage)?;
    if i < len {
        Ok(i)
    } else {
        Err(MessageError::NoSuchMessage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> MaildropView {
        MaildropView::new(Maildrop {
            uidvalidity: 0x5eed,
            entries: vec![
                MaildropEntry { uid: 7, size: 100 },
                MaildropEntry { uid: 9, size: 250 },
                MaildropEntry { uid: 12, size: 1 },
            ],
        })
    }

    #[test]
    fn unique_id_format() {
        let id = UniqueId {
            uidvalidity: 0x5eed,
            uid: 0xffff_ffff,
        }
        .to_string();
        assert_eq!(id, "00005eedffffffff");
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(
            UniqueId {
                uidvalidity: 0,
                uid: 1
            }
            .to_string()
            .len(),
            16
        );
    }

    #[test]
    fn numbering_and_bounds() {
        let v = view();
        assert_eq!(v.get(1).map(|e| e.uid), Ok(7));
        assert_eq!(v.get(3).map(|e| e.uid), Ok(12));
        assert_eq!(v.get(0), Err(MessageError::NoSuchMessage));
        assert_eq!(v.get(4), Err(MessageError::NoSuchMessage));
        assert_eq!(v.get(u32::MAX), Err(MessageError::NoSuchMessage));
        assert_eq!(v.stat(), (3, 351));
    }

    #[test]
    fn delete_and_reset() {
        let mut v = view();
        assert_eq!(v.delete(2), Ok(()));
        assert_eq!(v.delete(2), Err(MessageError::Deleted));
        assert_eq!(v.get(2), Err(MessageError::Deleted));
        assert_eq!(v.delete(9), Err(MessageError::NoSuchMessage));
        assert_eq!(v.stat(), (2, 101));
        assert_eq!(v.live().map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(v.delete(1), Ok(()));
        assert_eq!(v.deleted_uids(), vec![7, 9]);
        v.reset();
        assert_eq!(v.stat(), (3, 351));
        assert!(v.deleted_uids().is_empty());
        assert_eq!(v.get(2).map(|e| e.uid), Ok(9));
    }
}
