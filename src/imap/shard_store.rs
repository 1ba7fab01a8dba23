//! The IMAP session's [`MailStore`] over a real shard of the storage crate.
//!
//! The IMAP layer mirrors the storage API with its own types (so it can be tested against an
//! in-memory store); this adapter only converts between the two.

use super::mime::{self, SortHeaders};
use super::store::{
    AppendResult, CopyResult, FlagOp, FlagUpdate, MailStore, MailboxInfo, MailboxView, MessageView,
    SpecialUse, StoreError, StoreOutcome,
};
use crate::net::Hold;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use storage::{BodyRef, MailboxIndex, MessageMeta, Shard, StorageError};

/// `\Recent` marks: per (account, mailbox) the first UID no session has claimed yet. Kept in
/// memory on the owning executor, as RFC 3501 allows.
#[derive(Default)]
pub struct RecentMarks(RefCell<HashMap<(String, String), (u32, u32)>>);

/// Header fields cached per executor for SORT and THREAD, which a webmail client sends on
/// every page it shows. A body never changes, and compaction gives a moved body a new
/// reference, so an entry never goes stale; the cache is just dropped when it is full.
const SORT_CACHE_BYTES: usize = 16 << 20;

/// The cache and the bytes its entries take.
type SortCache = (HashMap<(u32, BodyRef), Rc<SortHeaders>>, usize);

thread_local! {
    static SORT_CACHE: RefCell<SortCache> = RefCell::new((HashMap::new(), 0));
}

/// A shard seen through the IMAP session's eyes.
pub struct ShardStore<'a> {
    /// The account's shard (owned by this executor).
    pub shard: &'a Shard,
    /// This executor's `\Recent` marks.
    pub recent: &'a RecentMarks,
    /// The session's claim on the executor's output memory.
    pub output: &'a RefCell<Hold>,
}

fn err(e: StorageError) -> StoreError {
    match e {
        StorageError::NotFound => StoreError::NotFound,
        StorageError::AlreadyExists => StoreError::AlreadyExists,
        StorageError::TooManyKeywords => StoreError::TooManyKeywords,
        StorageError::InvalidName => StoreError::InvalidName,
        StorageError::NotPermitted => StoreError::NotPermitted,
        StorageError::TooLarge(n) => StoreError::TooLarge(n),
        e @ StorageError::NoSpace { .. } => StoreError::NoSpace(e.to_string()),
        other => StoreError::Failed(other.to_string()),
    }
}

fn flags(f: &FlagUpdate) -> storage::FlagUpdate {
    storage::FlagUpdate {
        system: f.system,
        keywords: f.keywords.clone(),
    }
}

fn special(s: storage::SpecialUse) -> SpecialUse {
    match s {
        storage::SpecialUse::Sent => SpecialUse::Sent,
        storage::SpecialUse::Drafts => SpecialUse::Drafts,
        storage::SpecialUse::Trash => SpecialUse::Trash,
        storage::SpecialUse::Junk => SpecialUse::Junk,
        storage::SpecialUse::Archive => SpecialUse::Archive,
    }
}

fn copy_result(r: storage::CopyResult) -> CopyResult {
    CopyResult {
        uidvalidity: r.uidvalidity,
        pairs: r.pairs,
    }
}

impl MessageView for MessageMeta {
    type Body = BodyRef;
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
    fn body(&self) -> BodyRef {
        self.body
    }
}

impl MailboxView for MailboxIndex {
    type Message = MessageMeta;
    fn uidvalidity(&self) -> u32 {
        MailboxIndex::uidvalidity(self)
    }
    fn uidnext(&self) -> u32 {
        MailboxIndex::uidnext(self)
    }
    fn highest_modseq(&self) -> u64 {
        MailboxIndex::highest_modseq(self)
    }
    fn keywords(&self) -> &[String] {
        MailboxIndex::keywords(self)
    }
    fn messages(&self) -> &[MessageMeta] {
        MailboxIndex::messages(self)
    }
}

impl MailStore for ShardStore<'_> {
    type Body = BodyRef;
    type Message = MessageMeta;
    type Index = MailboxIndex;

    fn claim_output(&self, bytes: usize) -> bool {
        let mut hold = self.output.borrow_mut();
        if !hold.fits(bytes) {
            return false;
        }
        hold.set(bytes);
        true
    }

    async fn ensure_account(&self, account: &str) -> Result<(), StoreError> {
        self.shard
            .ensure_account(account)
            .await
            .map(|_| ())
            .map_err(err)
    }

    fn list_mailboxes(&self, account: &str) -> Vec<MailboxInfo> {
        self.shard
            .list_mailboxes(account)
            .into_iter()
            .map(|m| MailboxInfo {
                name: m.name,
                special_use: m.special_use.map(special),
                subscribed: m.subscribed,
                uidvalidity: m.uidvalidity,
                uidnext: m.uidnext,
                highest_modseq: m.highest_modseq,
                exists: m.exists,
                unseen: m.unseen,
                size: m.size,
            })
            .collect()
    }

    fn subscriptions(&self, account: &str) -> Vec<String> {
        self.shard.subscriptions(account)
    }

    fn with_mailbox<R>(
        &self,
        account: &str,
        mailbox: &str,
        f: impl FnOnce(&MailboxIndex) -> R,
    ) -> Option<R> {
        self.shard.with_mailbox(account, mailbox, f)
    }

    async fn append(
        &self,
        account: &str,
        mailbox: &str,
        parts: &[Bytes],
        f: &FlagUpdate,
        internal_date: i64,
    ) -> Result<AppendResult, StoreError> {
        let r = self
            .shard
            .append(account, mailbox, parts, &flags(f), internal_date)
            .await
            .map_err(err)?;
        Ok(AppendResult {
            uidvalidity: r.uidvalidity,
            uid: r.uid,
        })
    }

    async fn create_mailbox(&self, account: &str, name: &str) -> Result<(), StoreError> {
        self.shard.create_mailbox(account, name).await.map_err(err)
    }

    async fn delete_mailbox(&self, account: &str, name: &str) -> Result<(), StoreError> {
        self.shard.delete_mailbox(account, name).await.map_err(err)
    }

    async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> Result<(), StoreError> {
        self.shard
            .rename_mailbox(account, from, to)
            .await
            .map_err(err)
    }

    async fn set_subscribed(
        &self,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        self.shard
            .set_subscribed(account, name, subscribed)
            .await
            .map_err(err)
    }

    async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        f: &FlagUpdate,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StoreError> {
        let op = match op {
            FlagOp::Add => storage::FlagOp::Add,
            FlagOp::Remove => storage::FlagOp::Remove,
            FlagOp::Replace => storage::FlagOp::Replace,
        };
        let r = self
            .shard
            .store_flags(account, mailbox, uids, op, &flags(f), unchanged_since)
            .await
            .map_err(err)?;
        Ok(StoreOutcome {
            updated: r.updated,
            modified_since_failed: r.modified_since_failed,
        })
    }

    async fn expunge(&self, account: &str, mailbox: &str, uids: &[u32]) -> Result<u64, StoreError> {
        self.shard
            .expunge(account, mailbox, uids)
            .await
            .map_err(err)
    }

    async fn copy(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StoreError> {
        self.shard
            .copy(account, from, to, uids)
            .await
            .map(copy_result)
            .map_err(err)
    }

    async fn move_messages(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StoreError> {
        self.shard
            .move_messages(account, from, to, uids)
            .await
            .map(copy_result)
            .map_err(err)
    }

    async fn read_body(&self, body: BodyRef) -> Result<Bytes, StoreError> {
        self.shard.read_body(body).await.map_err(err)
    }

    async fn sort_headers(&self, body: BodyRef) -> Result<Rc<SortHeaders>, StoreError> {
        let key = (self.shard.id(), body);
        if let Some(h) = SORT_CACHE.with(|c| c.borrow().0.get(&key).cloned()) {
            return Ok(h);
        }
        let b = self.shard.read_body(body).await.map_err(err)?;
        let h = Rc::new(mime::sort_headers(&b));
        let cost = h.heap_bytes() + std::mem::size_of::<SortHeaders>() + 64;
        SORT_CACHE.with(|c| {
            let (map, bytes) = &mut *c.borrow_mut();
            if *bytes + cost > SORT_CACHE_BYTES {
                map.clear();
                *bytes = 0;
            }
            if map.insert(key, h.clone()).is_none() {
                *bytes += cost;
            }
        });
        Ok(h)
    }

    fn mailbox_version(&self, account: &str, mailbox: &str) -> u64 {
        self.shard.mailbox_version(account, mailbox)
    }

    async fn mailbox_changed(&self, account: &str, mailbox: &str, seen_version: u64) {
        self.shard
            .mailbox_changed(account, mailbox, seen_version)
            .await
    }

    fn first_recent_uid(&self, account: &str, mailbox: &str, claim: bool) -> u32 {
        let Some((uidvalidity, uidnext)) = self
            .shard
            .with_mailbox(account, mailbox, |m| (m.uidvalidity(), m.uidnext()))
        else {
            return u32::MAX;
        };
        let mut marks = self.recent.0.borrow_mut();
        let key = (account.to_string(), mailbox.to_string());
        // Keyed by UIDVALIDITY too: a deleted and re-created (or renamed) mailbox starts afresh.
        let first = match marks.get(&key) {
            Some(&(v, uid)) if v == uidvalidity => uid,
            _ => 1,
        };
        if claim {
            marks.insert(key, (uidvalidity, uidnext));
        }
        first
    }
}
