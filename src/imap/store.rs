//! The mail store the IMAP session works against ([`MailStore`], mirroring the shard-log
//! storage crate so an adapter is a thin wrapper), and [`MemStore`], an in-memory
//! implementation for tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Mutex;
use std::task::{Poll, Waker};

use bytes::Bytes;

use super::mime::SortHeaders;

/// Bits of [`MessageView::flags`]: system flags in bits 0–4, keyword i of
/// [`MailboxView::keywords`] in bit 8+i.
pub mod flags {
    /// `\Seen`.
    pub const SEEN: u64 = 1;
    /// `\Answered`.
    pub const ANSWERED: u64 = 1 << 1;
    /// `\Flagged`.
    pub const FLAGGED: u64 = 1 << 2;
    /// `\Deleted`.
    pub const DELETED: u64 = 1 << 3;
    /// `\Draft`.
    pub const DRAFT: u64 = 1 << 4;
    /// All system flags.
    pub const SYSTEM: u64 = 0x1f;
    /// Bit of the first keyword.
    pub const KEYWORD_SHIFT: u32 = 8;
    /// Most keywords a mailbox can have.
    pub const MAX_KEYWORDS: usize = 56;
    /// System flags in bit order with their IMAP names.
    pub const NAMES: [(u64, &str); 5] = [
        (ANSWERED, "\\Answered"),
        (FLAGGED, "\\Flagged"),
        (DELETED, "\\Deleted"),
        (SEEN, "\\Seen"),
        (DRAFT, "\\Draft"),
    ];
}

/// RFC 6154 special use of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The LIST attribute.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

/// A mailbox as listed, with its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Full UTF-8 name, `/`-separated, `INBOX` canonical.
    pub name: String,
    /// Special use, if any.
    pub special_use: Option<SpecialUse>,
    /// Whether the account subscribes to it.
    pub subscribed: bool,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT.
    pub uidnext: u32,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Number of messages.
    pub exists: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Total RFC822.SIZE of the messages.
    pub size: u64,
}

/// Flags to set: system bits plus keyword names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlagUpdate {
    /// System flag bits (`flags::SEEN` ...), low byte.
    pub system: u8,
    /// Keyword names.
    pub keywords: Vec<String>,
}

/// How STORE combines flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// Add.
    Add,
    /// Remove.
    Remove,
    /// Replace.
    Replace,
}

/// Result of an APPEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// UIDVALIDITY of the target mailbox.
    pub uidvalidity: u32,
    /// UID assigned.
    pub uid: u32,
}

/// Result of a flag store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreOutcome {
    /// (UID, new MODSEQ) of every message whose flags changed.
    pub updated: Vec<(u32, u64)>,
    /// UIDs not stored because their MODSEQ exceeded UNCHANGEDSINCE.
    pub modified_since_failed: Vec<u32>,
}

/// Result of COPY / MOVE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResult {
    /// UIDVALIDITY of the destination.
    pub uidvalidity: u32,
    /// (source UID, destination UID) pairs, source ascending.
    pub pairs: Vec<(u32, u32)>,
}

/// Storage failures as the IMAP layer distinguishes them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The mailbox (or account) does not exist.
    #[error("mailbox not found")]
    NotFound,
    /// The mailbox already exists.
    #[error("mailbox already exists")]
    AlreadyExists,
    /// The mailbox cannot hold more keywords.
    #[error("too many keywords")]
    TooManyKeywords,
    /// The name is not acceptable to the store.
    #[error("invalid mailbox name")]
    InvalidName,
    /// Not allowed on this mailbox (deleting INBOX, renaming a mailbox under itself).
    #[error("operation not permitted")]
    NotPermitted,
    /// The message is larger than the store can hold.
    #[error("message too large ({0} bytes)")]
    TooLarge(u64),
    /// The disk is full: nothing can be written until space is freed.
    #[error("no space: {0}")]
    NoSpace(String),
    /// I/O or another internal failure.
    #[error("storage failure: {0}")]
    Failed(String),
}

/// One message's metadata in a mailbox index.
pub trait MessageView {
    /// Handle to the message bytes.
    type Body: Copy;
    /// UID.
    fn uid(&self) -> u32;
    /// Flag bits (see [`flags`]).
    fn flags(&self) -> u64;
    /// MODSEQ.
    fn modseq(&self) -> u64;
    /// RFC822.SIZE.
    fn size(&self) -> u32;
    /// INTERNALDATE, Unix seconds.
    fn internal_date(&self) -> i64;
    /// Handle for [`MailStore::read_body`].
    fn body(&self) -> Self::Body;
}

/// A mailbox index, borrowed inside [`MailStore::with_mailbox`].
pub trait MailboxView {
    /// Message metadata type.
    type Message: MessageView;
    /// UIDVALIDITY.
    fn uidvalidity(&self) -> u32;
    /// UIDNEXT.
    fn uidnext(&self) -> u32;
    /// HIGHESTMODSEQ.
    fn highest_modseq(&self) -> u64;
    /// Keyword table: keyword i is flag bit 8+i.
    fn keywords(&self) -> &[String];
    /// Messages, UID ascending.
    fn messages(&self) -> &[Self::Message];
}

/// Everything the IMAP session needs from storage, per account (lower-case address).
/// Mailbox names are UTF-8, `/`-separated, with `INBOX` spelled so. Async methods resolve
/// once the change is durable.
// The executor is thread-per-core: these futures never cross threads, so `Send` bounds on
// them would only get in the way.
#[allow(async_fn_in_trait)]
pub trait MailStore {
    /// Handle to message bytes.
    type Body: Copy;
    /// Message metadata.
    type Message: MessageView<Body = Self::Body>;
    /// Mailbox index.
    type Index: MailboxView<Message = Self::Message>;

    /// Creates the account with INBOX and the special-use mailboxes if missing.
    async fn ensure_account(&self, account: &str) -> Result<(), StoreError>;
    /// All mailboxes of the account.
    fn list_mailboxes(&self, account: &str) -> Vec<MailboxInfo>;
    /// Subscribed names (which may include mailboxes that no longer exist).
    fn subscriptions(&self, account: &str) -> Vec<String>;
    /// Runs `f` on the mailbox index; `None` if the mailbox does not exist.
    fn with_mailbox<R>(
        &self,
        account: &str,
        mailbox: &str,
        f: impl FnOnce(&Self::Index) -> R,
    ) -> Option<R>;
    /// Appends one message made of `parts` concatenated.
    async fn append(
        &self,
        account: &str,
        mailbox: &str,
        parts: &[Bytes],
        flags: &FlagUpdate,
        internal_date: i64,
    ) -> Result<AppendResult, StoreError>;
    /// Creates a mailbox.
    async fn create_mailbox(&self, account: &str, name: &str) -> Result<(), StoreError>;
    /// Deletes a mailbox and its messages (not its inferiors); INBOX is `NotPermitted`.
    async fn delete_mailbox(&self, account: &str, name: &str) -> Result<(), StoreError>;
    /// Renames a mailbox with its inferiors (`from/x` → `to/x`), each getting a new
    /// UIDVALIDITY. Renaming INBOX moves its messages to `to` and leaves INBOX empty.
    async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<(), StoreError>;
    /// Subscribes or unsubscribes a name.
    async fn set_subscribed(
        &self,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<(), StoreError>;
    /// Changes flags of `uids` (absent UIDs are ignored); with `unchanged_since`, messages
    /// whose MODSEQ is higher are left alone and reported.
    async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &FlagUpdate,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StoreError>;
    /// Removes `uids`; returns the new HIGHESTMODSEQ.
    async fn expunge(&self, account: &str, mailbox: &str, uids: &[u32]) -> Result<u64, StoreError>;
    /// Copies `uids` to `to`.
    async fn copy(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StoreError>;
    /// Moves `uids` to `to` (copy, then expunge from `from`, atomically).
    async fn move_messages(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StoreError>;
    /// The exact message bytes.
    async fn read_body(&self, body: Self::Body) -> Result<Bytes, StoreError>;
    /// The header fields SORT and THREAD order by. A store may cache them: bodies never
    /// change.
    async fn sort_headers(&self, body: Self::Body) -> Result<Rc<SortHeaders>, StoreError> {
        let b = self.read_body(body).await?;
        Ok(Rc::new(super::mime::sort_headers(&b)))
    }
    /// Claims `bytes` of memory for this session's responses (all its pending output, a body
    /// about to be read included), replacing its previous claim; false when they do not fit
    /// next to what other sessions hold. Responses wait in memory until the client reads them,
    /// so this keeps clients that stop reading from making the server hold a body each.
    fn claim_output(&self, _bytes: usize) -> bool {
        true
    }
    /// A number that changes whenever the mailbox changes (for IDLE).
    fn mailbox_version(&self, account: &str, mailbox: &str) -> u64;
    /// Resolves when the mailbox version differs from `seen_version`.
    async fn mailbox_changed(&self, account: &str, mailbox: &str, seen_version: u64);
    /// `\Recent` bookkeeping (RFC 3501 §2.3.2): the first UID not yet seen by any session.
    /// With `claim`, the caller takes every message from there on as recent for itself and
    /// the mark moves to UIDNEXT. May be kept in memory only.
    fn first_recent_uid(&self, account: &str, mailbox: &str, claim: bool) -> u32;
}

/// Handle to a body in a [`MemStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemBody(u64);

/// A message in a [`MemStore`].
#[derive(Debug, Clone)]
pub struct MemMessage {
    uid: u32,
    flags: u64,
    modseq: u64,
    size: u32,
    internal_date: i64,
    body: MemBody,
}

impl MessageView for MemMessage {
    type Body = MemBody;
    fn uid(&self) -> u32 {
        self.uid
    }
    fn flags(&self) -> u64 {
        self.flags
    }
    fn modseq(&self) -> u64 {
        self.modseq
    }
    fn size(&self) -> u32 {
        self.size
    }
    fn internal_date(&self) -> i64 {
        self.internal_date
    }
    fn body(&self) -> MemBody {
        self.body
    }
}

/// A mailbox in a [`MemStore`].
#[derive(Debug, Clone)]
pub struct MemMailbox {
    special_use: Option<SpecialUse>,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    keywords: Vec<String>,
    messages: Vec<MemMessage>,
    version: u64,
    first_recent: u32,
}

impl MailboxView for MemMailbox {
    type Message = MemMessage;
    fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }
    fn uidnext(&self) -> u32 {
        self.uidnext
    }
    fn highest_modseq(&self) -> u64 {
        self.highest_modseq
    }
    fn keywords(&self) -> &[String] {
        &self.keywords
    }
    fn messages(&self) -> &[MemMessage] {
        &self.messages
    }
}

impl MemMailbox {
    fn new(uidvalidity: u32, special_use: Option<SpecialUse>) -> Self {
        MemMailbox {
            special_use,
            uidvalidity,
            uidnext: 1,
            highest_modseq: 1,
            keywords: Vec::new(),
            messages: Vec::new(),
            version: 0,
            first_recent: 1,
        }
    }

    fn bump(&mut self) -> u64 {
        self.highest_modseq += 1;
        self.version += 1;
        self.highest_modseq
    }

    fn keyword_bits(&mut self, names: &[String]) -> Result<u64, StoreError> {
        let mut bits = 0;
        for n in names {
            let i = match self.keywords.iter().position(|k| k.eq_ignore_ascii_case(n)) {
                Some(i) => i,
                None => {
                    if self.keywords.len() >= flags::MAX_KEYWORDS {
                        return Err(StoreError::TooManyKeywords);
                    }
                    self.keywords.push(n.clone());
                    self.keywords.len() - 1
                }
            };
            bits |= 1u64 << (flags::KEYWORD_SHIFT as usize + i);
        }
        Ok(bits)
    }

    fn add_message(&mut self, flags: u64, size: u32, date: i64, body: MemBody) -> u32 {
        let uid = self.uidnext;
        self.uidnext += 1;
        let modseq = self.bump();
        self.messages.push(MemMessage {
            uid,
            flags,
            modseq,
            size,
            internal_date: date,
            body,
        });
        uid
    }
}

#[derive(Default)]
struct MemAccount {
    mailboxes: BTreeMap<String, MemMailbox>,
    subscriptions: BTreeSet<String>,
}

#[derive(Default)]
struct MemInner {
    accounts: HashMap<String, MemAccount>,
    bodies: HashMap<u64, Bytes>,
    next_body: u64,
    next_uidvalidity: u32,
    waiters: Vec<Waker>,
}

impl MemInner {
    fn mailbox(&mut self, account: &str, name: &str) -> Result<&mut MemMailbox, StoreError> {
        self.accounts
            .get_mut(account)
            .and_then(|a| a.mailboxes.get_mut(name))
            .ok_or(StoreError::NotFound)
    }

    fn uidvalidity(&mut self) -> u32 {
        self.next_uidvalidity += 1;
        1_000 + self.next_uidvalidity
    }

    fn wake(&mut self) {
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }

    fn body_of(&self, b: MemBody) -> Bytes {
        self.bodies.get(&b.0).cloned().unwrap_or_default()
    }
}

/// In-memory [`MailStore`] for tests (and anything that needs no durability).
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<MemInner>,
    /// Largest output claim granted ([`MailStore::claim_output`]); `None` is no limit.
    output_limit: Mutex<Option<usize>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants output claims only up to `limit` bytes (`None`: any).
    pub fn set_output_limit(&self, limit: Option<usize>) {
        *self.output_limit.lock().unwrap_or_else(|e| e.into_inner()) = limit;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        // A panic elsewhere while holding the lock is a test failure already; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers a message as the MTA would (for tests); returns its UID.
    pub fn deliver(&self, account: &str, mailbox: &str, msg: &[u8], date: i64) -> Option<u32> {
        let mut g = self.lock();
        let id = g.next_body;
        g.next_body += 1;
        g.bodies.insert(id, Bytes::copy_from_slice(msg));
        let mb = g.mailbox(account, mailbox).ok()?;
        let uid = mb.add_message(0, msg.len() as u32, date, MemBody(id));
        g.wake();
        Some(uid)
    }
}

const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 6] = [
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

impl MailStore for MemStore {
    type Body = MemBody;
    type Message = MemMessage;
    type Index = MemMailbox;

    async fn ensure_account(&self, account: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.accounts.contains_key(account) {
            return Ok(());
        }
        let mut a = MemAccount::default();
        for (name, su) in DEFAULT_MAILBOXES {
            let v = g.uidvalidity();
            a.mailboxes.insert(name.to_string(), MemMailbox::new(v, su));
            a.subscriptions.insert(name.to_string());
        }
        g.accounts.insert(account.to_string(), a);
        Ok(())
    }

    fn list_mailboxes(&self, account: &str) -> Vec<MailboxInfo> {
        let g = self.lock();
        let Some(a) = g.accounts.get(account) else {
            return Vec::new();
        };
        a.mailboxes
            .iter()
            .map(|(name, m)| MailboxInfo {
                name: name.clone(),
                special_use: m.special_use,
                subscribed: a.subscriptions.contains(name),
                uidvalidity: m.uidvalidity,
                uidnext: m.uidnext,
                highest_modseq: m.highest_modseq,
                exists: m.messages.len() as u32,
                unseen: m
                    .messages
                    .iter()
                    .filter(|x| x.flags & flags::SEEN == 0)
                    .count() as u32,
                size: m.messages.iter().map(|x| u64::from(x.size)).sum(),
            })
            .collect()
    }

    fn subscriptions(&self, account: &str) -> Vec<String> {
        let g = self.lock();
        g.accounts
            .get(account)
            .map(|a| a.subscriptions.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn with_mailbox<R>(
        &self,
        account: &str,
        mailbox: &str,
        f: impl FnOnce(&MemMailbox) -> R,
    ) -> Option<R> {
        let g = self.lock();
        g.accounts
            .get(account)
            .and_then(|a| a.mailboxes.get(mailbox))
            .map(f)
    }

    async fn append(
        &self,
        account: &str,
        mailbox: &str,
        parts: &[Bytes],
        flags: &FlagUpdate,
        internal_date: i64,
    ) -> Result<AppendResult, StoreError> {
        let mut g = self.lock();
        let mut data = Vec::new();
        for p in parts {
            data.extend_from_slice(p);
        }
        let id = g.next_body;
        let mb = g.mailbox(account, mailbox)?;
        let bits = u64::from(flags.system) & flags::SYSTEM | mb.keyword_bits(&flags.keywords)?;
        let size = data.len() as u32;
        let uid = mb.add_message(bits, size, internal_date, MemBody(id));
        let uidvalidity = mb.uidvalidity;
        g.next_body += 1;
        g.bodies.insert(id, Bytes::from(data));
        g.wake();
        Ok(AppendResult { uidvalidity, uid })
    }

    async fn create_mailbox(&self, account: &str, name: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        let v = g.uidvalidity();
        let a = g.accounts.get_mut(account).ok_or(StoreError::NotFound)?;
        if a.mailboxes.contains_key(name) {
            return Err(StoreError::AlreadyExists);
        }
        a.mailboxes
            .insert(name.to_string(), MemMailbox::new(v, None));
        Ok(())
    }

    async fn delete_mailbox(&self, account: &str, name: &str) -> Result<(), StoreError> {
        if name == "INBOX" {
            return Err(StoreError::NotPermitted);
        }
        let mut g = self.lock();
        let a = g.accounts.get_mut(account).ok_or(StoreError::NotFound)?;
        a.mailboxes.remove(name).ok_or(StoreError::NotFound)?;
        g.wake();
        Ok(())
    }

    async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<(), StoreError> {
        let mut g = self.lock();
        let prefix = format!("{from}/");
        if to.starts_with(&prefix) {
            return Err(StoreError::NotPermitted);
        }
        let a = g.accounts.get(account).ok_or(StoreError::NotFound)?;
        if !a.mailboxes.contains_key(from) {
            return Err(StoreError::NotFound);
        }
        let mut plan = vec![(from.to_string(), to.to_string())];
        if from != "INBOX" {
            for name in a.mailboxes.keys() {
                if let Some(rest) = name.strip_prefix(&prefix) {
                    plan.push((name.clone(), format!("{to}/{rest}")));
                }
            }
        }
        if plan.iter().any(|(_, t)| a.mailboxes.contains_key(t)) {
            return Err(StoreError::AlreadyExists);
        }
        for (f, t) in plan {
            let v = g.uidvalidity();
            let a = g.accounts.get_mut(account).ok_or(StoreError::NotFound)?;
            if f == "INBOX" {
                // INBOX stays, empty; its messages move to the new name.
                let inbox = a.mailboxes.get_mut("INBOX").ok_or(StoreError::NotFound)?;
                let mut moved = MemMailbox::new(v, None);
                moved.messages = std::mem::take(&mut inbox.messages);
                moved.keywords = inbox.keywords.clone();
                moved.uidnext = inbox.uidnext;
                moved.highest_modseq = inbox.highest_modseq;
                inbox.bump();
                a.mailboxes.insert(t, moved);
            } else {
                let mut mb = a.mailboxes.remove(&f).ok_or(StoreError::NotFound)?;
                mb.uidvalidity = v;
                mb.version += 1;
                a.mailboxes.insert(t, mb);
            }
        }
        g.wake();
        Ok(())
    }

    async fn set_subscribed(
        &self,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        let a = g.accounts.get_mut(account).ok_or(StoreError::NotFound)?;
        if subscribed {
            a.subscriptions.insert(name.to_string());
        } else {
            a.subscriptions.remove(name);
        }
        Ok(())
    }

    async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        update: &FlagUpdate,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StoreError> {
        let mut g = self.lock();
        let mb = g.mailbox(account, mailbox)?;
        // Like the shard log: removing never defines keywords, and all messages changed by
        // one STORE share one new MODSEQ.
        let kw = if op == FlagOp::Remove {
            let known: Vec<String> = update
                .keywords
                .iter()
                .filter(|k| mb.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)))
                .cloned()
                .collect();
            mb.keyword_bits(&known)?
        } else {
            mb.keyword_bits(&update.keywords)?
        };
        let bits = u64::from(update.system) & flags::SYSTEM | kw;
        let mut out = StoreOutcome::default();
        let mut modseq = None;
        for &uid in uids {
            let Ok(i) = mb.messages.binary_search_by_key(&uid, |m| m.uid) else {
                continue;
            };
            if let Some(limit) = unchanged_since {
                if mb.messages[i].modseq > limit {
                    out.modified_since_failed.push(uid);
                    continue;
                }
            }
            let old = mb.messages[i].flags;
            let new = match op {
                FlagOp::Add => old | bits,
                FlagOp::Remove => old & !bits,
                FlagOp::Replace => bits,
            };
            if new != old {
                let modseq = *modseq.get_or_insert_with(|| mb.bump());
                let m = &mut mb.messages[i];
                m.flags = new;
                m.modseq = modseq;
                out.updated.push((uid, modseq));
            }
        }
        g.wake();
        Ok(out)
    }

    async fn expunge(&self, account: &str, mailbox: &str, uids: &[u32]) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let mb = g.mailbox(account, mailbox)?;
        let before = mb.messages.len();
        mb.messages.retain(|m| uids.binary_search(&m.uid).is_err());
        if mb.messages.len() != before {
            mb.bump();
        }
        let h = mb.highest_modseq;
        g.wake();
        Ok(h)
    }

    async fn copy(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StoreError> {
        let mut g = self.lock();
        let src = g.mailbox(account, from)?;
        let keywords = src.keywords.clone();
        let picked: Vec<MemMessage> = src
            .messages
            .iter()
            .filter(|m| uids.binary_search(&m.uid).is_ok())
            .cloned()
            .collect();
        let dst = g.mailbox(account, to)?;
        let mut pairs = Vec::new();
        for m in picked {
            // Keyword bits are per mailbox: translate by name.
            let names: Vec<String> = keywords
                .iter()
                .enumerate()
                .filter(|(i, _)| m.flags & (1u64 << (flags::KEYWORD_SHIFT as usize + i)) != 0)
                .map(|(_, k)| k.clone())
                .collect();
            let kw = dst.keyword_bits(&names)?;
            let uid = dst.add_message(
                (m.flags & flags::SYSTEM) | kw,
                m.size,
                m.internal_date,
                m.body,
            );
            pairs.push((m.uid, uid));
        }
        let uidvalidity = dst.uidvalidity;
        g.wake();
        Ok(CopyResult { uidvalidity, pairs })
    }

    async fn move_messages(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StoreError> {
        let r = self.copy(account, from, to, uids).await?;
        let moved: Vec<u32> = r.pairs.iter().map(|p| p.0).collect();
        self.expunge(account, from, &moved).await?;
        Ok(r)
    }

    fn claim_output(&self, bytes: usize) -> bool {
        let limit = *self.output_limit.lock().unwrap_or_else(|e| e.into_inner());
        limit.is_none_or(|l| bytes <= l)
    }

    async fn read_body(&self, body: MemBody) -> Result<Bytes, StoreError> {
        Ok(self.lock().body_of(body))
    }

    fn mailbox_version(&self, account: &str, mailbox: &str) -> u64 {
        self.with_mailbox(account, mailbox, |m| m.version)
            .unwrap_or(u64::MAX)
    }

    fn mailbox_changed(
        &self,
        account: &str,
        mailbox: &str,
        seen_version: u64,
    ) -> impl Future<Output = ()> {
        std::future::poll_fn(move |cx| {
            if self.mailbox_version(account, mailbox) != seen_version {
                return Poll::Ready(());
            }
            self.lock().waiters.push(cx.waker().clone());
            Poll::Pending
        })
    }

    fn first_recent_uid(&self, account: &str, mailbox: &str, claim: bool) -> u32 {
        let mut g = self.lock();
        let Ok(mb) = g.mailbox(account, mailbox) else {
            return u32::MAX;
        };
        let first = mb.first_recent;
        if claim {
            mb.first_recent = mb.uidnext;
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn append_store_expunge_roundtrip() {
        let s = MemStore::new();
        block_on(async {
            s.ensure_account("a@x").await.unwrap();
            let r = s
                .append(
                    "a@x",
                    "INBOX",
                    &[Bytes::from_static(b"hi")],
                    &FlagUpdate {
                        system: flags::SEEN as u8,
                        keywords: vec!["$Work".into()],
                    },
                    5,
                )
                .await
                .unwrap();
            assert_eq!(r.uid, 1);
            let f = s
                .with_mailbox("a@x", "INBOX", |m| m.messages()[0].flags())
                .unwrap();
            assert_eq!(f, flags::SEEN | 1 << 8);
            let out = s
                .store_flags(
                    "a@x",
                    "INBOX",
                    &[1],
                    FlagOp::Remove,
                    &FlagUpdate {
                        system: flags::SEEN as u8,
                        keywords: vec![],
                    },
                    Some(0),
                )
                .await
                .unwrap();
            assert_eq!(out.modified_since_failed, vec![1]);
            let c = s.copy("a@x", "INBOX", "Trash", &[1]).await.unwrap();
            assert_eq!(c.pairs, vec![(1, 1)]);
            s.expunge("a@x", "INBOX", &[1]).await.unwrap();
            assert_eq!(
                s.with_mailbox("a@x", "INBOX", |m| m.messages().len()),
                Some(0)
            );
            let info = s.list_mailboxes("a@x");
            assert_eq!(info.len(), 6);
            assert!(info.iter().any(|i| i.name == "Trash" && i.exists == 1));
        });
    }
}
