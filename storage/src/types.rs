//! Public value types of the storage API: flags, body references, message metadata, results.

use rkyv::{Archive, Deserialize, Serialize};

/// System flag bits as stored in the low byte of [`MessageMeta::flags`].
pub mod flags {
    /// `\Seen`.
    pub const SEEN: u8 = 1;
    /// `\Answered`.
    pub const ANSWERED: u8 = 2;
    /// `\Flagged`.
    pub const FLAGGED: u8 = 4;
    /// `\Deleted`.
    pub const DELETED: u8 = 8;
    /// `\Draft`.
    pub const DRAFT: u8 = 16;
    /// Every system flag bit.
    pub const SYSTEM_MASK: u8 = 0x1f;
}

/// Most keywords one mailbox can define (flag bits 8..=63).
pub const MAX_KEYWORDS: usize = 56;

/// Bit of the first keyword in [`MessageMeta::flags`]; keyword `i` is bit `KEYWORD_SHIFT + i`.
pub const KEYWORD_SHIFT: u32 = 8;

/// Hierarchy delimiter of mailbox names; renaming a mailbox renames its inferiors too.
pub const HIERARCHY_DELIMITER: char = '/';

/// The name of the inbox, matched case-insensitively.
pub const INBOX: &str = "INBOX";

/// Where a message body lives in the shard log: segment, byte offset of the body, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Archive, Serialize, Deserialize)]
pub struct BodyRef {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

impl BodyRef {
    /// Segment file number holding the body.
    pub fn segment(&self) -> u32 {
        self.segment
    }
    /// Byte offset of the first body byte inside the segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Body length in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }
    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One message of a mailbox index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct MessageMeta {
    /// IMAP UID, strictly ascending within a mailbox.
    pub uid: u32,
    /// Bits 0..=4: system flags ([`flags`]); bit `8 + i`: keyword `i` of the mailbox.
    pub flags: u64,
    /// MODSEQ of the last change to this message (RFC 7162).
    pub modseq: u64,
    /// Body size in bytes (RFC822.SIZE).
    pub size: u32,
    /// INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
    /// Where the body is stored.
    pub body: BodyRef,
}

impl MessageMeta {
    /// The system flag bits of this message.
    pub fn system_flags(&self) -> u8 {
        (self.flags & u64::from(flags::SYSTEM_MASK)) as u8
    }
    /// True when keyword number `i` of the mailbox is set.
    pub fn has_keyword(&self, i: usize) -> bool {
        i < MAX_KEYWORDS && self.flags & (1u64 << (KEYWORD_SHIFT as usize + i)) != 0
    }
}

/// Special-use attribute of a mailbox (RFC 6154).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Archive, Serialize, Deserialize)]
pub enum SpecialUse {
    /// `\Sent`.
    Sent,
    /// `\Drafts`.
    Drafts,
    /// `\Trash`.
    Trash,
    /// `\Junk`.
    Junk,
    /// `\Archive`.
    Archive,
}

impl SpecialUse {
    /// The RFC 6154 attribute, e.g. `\Sent`.
    pub fn attribute(&self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            SpecialUse::Sent => 1,
            SpecialUse::Drafts => 2,
            SpecialUse::Trash => 3,
            SpecialUse::Junk => 4,
            SpecialUse::Archive => 5,
        }
    }
    pub(crate) fn from_byte(b: u8) -> Option<Option<SpecialUse>> {
        Some(match b {
            0 => None,
            1 => Some(SpecialUse::Sent),
            2 => Some(SpecialUse::Drafts),
            3 => Some(SpecialUse::Trash),
            4 => Some(SpecialUse::Junk),
            5 => Some(SpecialUse::Archive),
            _ => return None,
        })
    }
}

/// Result of appending one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// UIDVALIDITY of the mailbox appended to.
    pub uidvalidity: u32,
    /// UID given to the message.
    pub uid: u32,
}

/// Result of COPY / MOVE: destination UIDVALIDITY and (source UID, destination UID) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyResult {
    /// UIDVALIDITY of the destination mailbox.
    pub uidvalidity: u32,
    /// (source UID, new destination UID), source UIDs ascending.
    pub pairs: Vec<(u32, u32)>,
}

/// How STORE combines the given flags with the current ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    /// `+FLAGS`.
    Add,
    /// `-FLAGS`.
    Remove,
    /// `FLAGS`.
    Replace,
}

/// A set of flags: system bits ([`flags`]) plus keywords by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagUpdate {
    /// System flag bits ([`flags`]).
    pub system: u8,
    /// Keywords, compared case-insensitively.
    pub keywords: Vec<String>,
}

/// Result of STORE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// Messages whose flags changed, with their new MODSEQ (UID ascending). Messages whose flags
    /// were already as requested are not listed and keep their MODSEQ.
    pub updated: Vec<(u32, u64)>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE (RFC 7162 MODIFIED).
    pub modified_since_failed: Vec<u32>,
}

/// Summary of one mailbox for LIST / STATUS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Mailbox name (`INBOX` spelled in capitals).
    pub name: String,
    /// Special-use attribute, if any.
    pub special_use: Option<SpecialUse>,
    /// Whether the name is in the subscription list.
    pub subscribed: bool,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT.
    pub uidnext: u32,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Number of messages.
    pub exists: u32,
    /// Number of messages without `\Seen`.
    pub unseen: u32,
    /// Sum of message sizes in bytes.
    pub size: u64,
}

/// One outbound message waiting in the queue of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct QueueItem {
    /// Queue id, unique per shard.
    pub id: u64,
    /// Envelope sender (empty for the null sender `<>`).
    pub sender: String,
    /// Envelope recipients still to deliver.
    pub rcpts: Vec<String>,
    /// The message.
    pub body: BodyRef,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Earliest time of the next attempt, seconds since the Unix epoch.
    pub next_attempt: i64,
    /// When the message was queued, seconds since the Unix epoch.
    pub queued_at: i64,
}
