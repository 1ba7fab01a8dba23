//! A shard: its log writer, the group-commit task, its index, and the mailbox operations.
//!
//! Every mutating operation runs in two halves. The synchronous half validates, then for each
//! record encodes it into the pending batch *and* applies it to the index, with no `.await` in
//! between, so the log order is the index order. The asynchronous half waits until the commit
//! task has written and fdatasynced the batch holding those records. New messages stay hidden
//! from readers (`MailboxIndex::messages`) and IDLE watchers are woken only once durable.

mod compaction;

use crate::error::StorageError;
use crate::index::{canonical, Index, MailboxIndex, DEFAULT_MAILBOXES};
use crate::log::{
    open_segment, preallocate, prep_name, segment_name, write_all_at_inline, Batch, LogState, Pos,
    Preallocate, Stall, Touch,
};
use crate::manifest::Manifest;
use crate::record::{Record, BODY_PREFIX, MAX_BODY_LEN};
use crate::recovery;
use crate::snapshot;
use crate::types::{
    flags, AppendResult, BodyRef, CopyResult, FlagOp, FlagUpdate, MailboxInfo, QueueItem,
    StoreOutcome, HIERARCHY_DELIMITER, INBOX, KEYWORD_SHIFT, MAX_KEYWORDS,
};
use bytes::Bytes;
use futures_lite::future::poll_fn;
use glommio::io::BufferedFile;
use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::fmt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Longest account name accepted.
const MAX_ACCOUNT_LEN: usize = 320;
/// Longest mailbox name (or keyword) accepted.
const MAX_NAME_LEN: usize = 1024;

/// Receives storage latencies (for the per-executor histograms).
pub trait StorageObserver {
    /// One log-writing operation took `micros` from call to durable.
    fn append(&self, micros: u64);
    /// One group commit wrote `records` records / `bytes` bytes; its fdatasync took `micros`.
    fn commit(&self, records: usize, bytes: usize, fdatasync_micros: u64);
    /// One body read took `micros`.
    fn read(&self, micros: u64);
    /// Whether to call [`StorageObserver::usage`]: finding an account's usage costs a pass
    /// over its messages after every durable change to it.
    fn wants_usage(&self) -> bool {
        false
    }
    /// After a durable change to `account`, its messages take `bytes` in all (for quotas).
    fn usage(&self, _account: &str, _bytes: u64) {}
    /// Compaction deleted one segment after moving `moved_bytes` of live bodies; it took
    /// `micros`.
    fn compacted(&self, _moved_bytes: u64, _micros: u64) {}
}

/// Tuning of a shard.
#[derive(Clone)]
pub struct ShardOptions {
    /// A new segment starts when a record would take the current one past this size.
    pub segment_size: u64,
    /// A snapshot is taken when the log has grown this much since the last one.
    pub snapshot_bytes: u64,
    /// Latency observer.
    pub observer: Option<Rc<dyn StorageObserver>>,
    /// How segment space is reserved.
    pub preallocate: Preallocate,
    /// Compact in the background when old segments are mostly dead ([`Shard::compact`]
    /// does it on demand either way).
    pub auto_compact: bool,
    /// How often the background also looks, for shards where mail is deleted but no new
    /// segment gets sealed (sealing one is the other moment it looks).
    pub compact_check: std::time::Duration,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            segment_size: 64 << 20,
            snapshot_bytes: 64 << 20,
            observer: None,
            // Measured (benches/log_append.rs): zero-filling doubles the bytes written and lost
            // at the bandwidth limit, without a visible gain for group commits.
            preallocate: Preallocate::Fallocate,
            auto_compact: true,
            compact_check: std::time::Duration::from_secs(300),
        }
    }
}

impl fmt::Debug for ShardOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardOptions")
            .field("segment_size", &self.segment_size)
            .field("snapshot_bytes", &self.snapshot_bytes)
            .field("observer", &self.observer.is_some())
            .field("preallocate", &self.preallocate)
            .field("auto_compact", &self.auto_compact)
            .field("compact_check", &self.compact_check)
            .finish()
    }
}

/// One shard of the mail store. `!Send`: owned by one executor, shared there as `Rc<Shard>`.
pub struct Shard {
    id: u32,
    dir: PathBuf,
    opts: ShardOptions,
    index: RefCell<Index>,
    log: RefCell<LogState>,
    /// IDLE waiters by (account, mailbox id); id 0 = "any mailbox of the account".
    watchers: RefCell<HashMap<(String, u64), Vec<Waker>>>,
    /// Source of mailbox versions; every change takes a new value, so a version never repeats.
    versions: Cell<u64>,
    closed: Cell<bool>,
    snapshot_scheduled: Cell<bool>,
    snapshot_lock: glommio::sync::Semaphore,
    /// The next segment, prepared in the background (unless `Preallocate::None`).
    prep: RefCell<Prep>,
    /// A background growth of the head segment is running.
    growing: Cell<bool>,
    /// A compaction pass is running.
    compacting: Cell<bool>,
    /// Deleted segments still open for reads that looked their bodies up before the move.
    retired: RefCell<Vec<compaction::Retired>>,
    #[cfg(test)]
    prepared_used: Cell<u32>,
    /// Test hook: 1 stops a compaction pass before its snapshot, 2 before the delete.
    #[cfg(test)]
    compaction_stop: Cell<u8>,
    weak: Weak<Shard>,
    _lock: std::fs::File,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .finish()
    }
}

/// State of the background preparation of the next segment.
enum Prep {
    Idle,
    Running,
    Ready {
        segment: u32,
        file: BufferedFile,
        /// Bytes allocated to it.
        allocated: u64,
    },
}

/// Space a new segment starts with in `Fallocate` mode; it doubles as the head fills, up to
/// the segment size. A fresh data directory then takes megabytes, not a segment per shard.
const INITIAL_ALLOCATION: u64 = 1 << 20;

/// How often a commit that waits for a segment (a full disk) tries again.
const STALL_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a batch did not commit.
enum CommitError {
    /// A segment it needs could not be made; nothing of it was written, it can be retried.
    NoSegment(StorageError),
    /// A write or fdatasync failed: the shard is failed.
    Write(StorageError),
}

/// The synchronous half of an operation: holds the index and log for its duration.
struct Txn<'s> {
    index: RefMut<'s, Index>,
    log: RefMut<'s, LogState>,
}

impl Txn<'_> {
    /// Logs `rec` and applies it to the index.
    fn record(&mut self, rec: &Record<'_>) {
        self.log.push(rec);
        let touched = self
            .index
            .apply(rec)
            .unwrap_or_else(|e| panic!("storage invariant violated by live record {rec:?}: {e}"));
        if let Some(account) = record_account(rec) {
            let account: Rc<str> = Rc::from(account);
            for (mid, uidnext) in touched.into_iter().flatten() {
                self.log.pending.touches.push(Touch {
                    account: account.clone(),
                    mid,
                    uidnext,
                });
            }
        }
    }

    fn body(&mut self, parts: &[Bytes]) -> BodyRef {
        self.log.push_body(parts)
    }

    fn mailbox(&self, account: &str, name: &str) -> Result<&MailboxIndex, StorageError> {
        self.index
            .mailbox(account, name)
            .ok_or(StorageError::NotFound)
    }

    /// Logs the account and its default mailboxes.
    fn create_account(&mut self, account: &str, now: i64) {
        self.record(&Record::AccountCreated { account });
        for (name, special_use) in DEFAULT_MAILBOXES {
            let uidvalidity = self.index.next_uidvalidity(now, 0);
            self.record(&Record::MailboxCreated {
                account,
                name,
                uidvalidity,
                special_use,
            });
            self.record(&Record::Subscription {
                account,
                name,
                on: true,
            });
        }
    }

    /// Appends one message (body already logged) to `mailbox`, defining `new_keywords` first.
    fn append_message(
        &mut self,
        account: &str,
        mailbox: &str,
        body: BodyRef,
        internal_date: i64,
        flags: u64,
        new_keywords: &[&str],
    ) -> AppendResult {
        for keyword in new_keywords {
            self.record(&Record::KeywordDefined {
                account,
                mailbox,
                keyword,
            });
        }
        let (uid, modseq, uidvalidity) = match self.index.mailbox(account, mailbox) {
            Some(mb) => (mb.uidnext, mb.highest_modseq + 1, mb.uidvalidity),
            None => panic!("append target {account}/{mailbox} vanished mid-operation"),
        };
        self.record(&Record::Appended {
            account,
            mailbox,
            uid,
            body,
            internal_date,
            flags,
            modseq,
        });
        AppendResult { uidvalidity, uid }
    }
}

fn record_account<'a>(rec: &Record<'a>) -> Option<&'a str> {
    match rec {
        Record::AccountCreated { account }
        | Record::MailboxCreated { account, .. }
        | Record::MailboxRenamed { account, .. }
        | Record::MailboxDeleted { account, .. }
        | Record::Subscription { account, .. }
        | Record::KeywordDefined { account, .. }
        | Record::Appended { account, .. }
        | Record::FlagsChanged { account, .. }
        | Record::Expunged { account, .. } => Some(account),
        Record::QueueAdded { .. }
        | Record::QueueDone { .. }
        | Record::QueueRetry { .. }
        | Record::BodiesMoved { .. } => None,
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn micros_since(t: Instant) -> u64 {
    t.elapsed().as_micros().min(u128::from(u64::MAX)) as u64
}

fn check_account(account: &str) -> Result<(), StorageError> {
    if account.is_empty()
        || account.len() > MAX_ACCOUNT_LEN
        || account.chars().any(char::is_control)
    {
        return Err(StorageError::InvalidName);
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), StorageError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(StorageError::InvalidName);
    }
    Ok(())
}

fn check_body(parts: &[Bytes]) -> Result<(), StorageError> {
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    if len > MAX_BODY_LEN {
        return Err(StorageError::TooLarge(len));
    }
    Ok(())
}

/// Resolves keyword names against a mailbox's table. Unknown ones get planned bits after the
/// existing table (returned in order) when `create`, and are ignored otherwise.
fn resolve_keywords<'k>(
    mb: &MailboxIndex,
    keywords: &'k [String],
    create: bool,
) -> Result<(u64, Vec<&'k str>), StorageError> {
    let mut bits = 0u64;
    let mut new: Vec<&'k str> = Vec::new();
    for k in keywords {
        check_name(k)?;
        let i = match mb.keyword_index(k) {
            Some(i) => i,
            None if !create => continue,
            None => match new.iter().position(|n| n.eq_ignore_ascii_case(k)) {
                Some(j) => mb.keywords().len() + j,
                None => {
                    new.push(k);
                    mb.keywords().len() + new.len() - 1
                }
            },
        };
        if i >= MAX_KEYWORDS {
            return Err(StorageError::TooManyKeywords);
        }
        bits |= 1u64 << (KEYWORD_SHIFT as usize + i);
    }
    Ok((bits, new))
}

/// Sorted, deduplicated copy of a UID list.
fn sorted_uids(uids: &[u32]) -> Vec<u32> {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Locks the shard directory against a second opener (another process or a second `open`).
fn lock_dir(dir: &Path) -> Result<std::fs::File, StorageError> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    // SAFETY: flock on a valid, owned descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StorageError::Locked { path });
    }
    Ok(f)
}

impl Shard {
    /// Opens (creating if needed) shard `id` under `data_dir`: recovers the log, starts the
    /// commit task.
    pub async fn open(
        data_dir: &Path,
        id: u32,
        opts: ShardOptions,
    ) -> Result<Rc<Shard>, StorageError> {
        let dir = Manifest::shard_dir(data_dir, id);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
            if let Some(parent) = dir.parent() {
                snapshot::sync_dir(parent).await?;
                if let Some(grand) = parent.parent() {
                    snapshot::sync_dir(grand).await?;
                }
            }
        }
        let lock = lock_dir(&dir)?;
        let segment_size = opts.segment_size.max(4096);
        let rec = recovery::recover(&dir, id).await?;
        let mut files = rec.files;
        let end = rec.end;
        let path = dir.join(segment_name(end.segment));
        let inline = opts.preallocate.inline();
        let first_space = segment_size.min(INITIAL_ALLOCATION);
        let head_allocated = match files.last() {
            None => {
                let f = open_segment(&path).await?;
                preallocate(&f, &path, 0, first_space, inline).await?;
                snapshot::sync_dir(&dir).await?;
                files.push(Rc::new(f));
                first_space
            }
            Some(last) => {
                // A torn tail was cut, or the file was never preallocated: restore some space.
                let size = last
                    .file_size()
                    .await
                    .map_err(|e| StorageError::io(&path, e))?;
                let space = size.max(first_space);
                preallocate(last, &path, size, space, inline).await?;
                space
            }
        };
        let log = LogState {
            dir: dir.clone(),
            segment_size,
            files,
            first_segment: rec.first_segment,
            end,
            durable: end,
            pending: Batch::default(),
            open_seq: 1,
            durable_seq: 0,
            poisoned: None,
            stalls: Default::default(),
            head_allocated,
            waiters: Vec::new(),
            commit_waker: None,
            closing: false,
            since_snapshot: rec.since_snapshot,
            #[cfg(test)]
            fail_next_sync: false,
            #[cfg(test)]
            fail_allocations: 0,
        };
        let shard = Rc::new_cyclic(|weak| Shard {
            id,
            dir,
            opts,
            index: RefCell::new(rec.index),
            log: RefCell::new(log),
            watchers: RefCell::new(HashMap::new()),
            versions: Cell::new(1),
            closed: Cell::new(false),
            snapshot_scheduled: Cell::new(false),
            snapshot_lock: glommio::sync::Semaphore::new(1),
            prep: RefCell::new(Prep::Idle),
            growing: Cell::new(false),
            compacting: Cell::new(false),
            retired: RefCell::new(Vec::new()),
            #[cfg(test)]
            prepared_used: Cell::new(0),
            #[cfg(test)]
            compaction_stop: Cell::new(0),
            weak: weak.clone(),
            _lock: lock,
        });
        glommio::spawn_local(commit_task(Rc::downgrade(&shard))).detach();
        tracing::debug!(shard = id, ?end, "shard opened");
        shard.maybe_compact();
        if shard.opts.auto_compact {
            glommio::spawn_local(compaction::check_task(
                Rc::downgrade(&shard),
                shard.opts.compact_check,
            ))
            .detach();
        }
        Ok(shard)
    }

    /// The shard number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// True once a write or fdatasync failed: every later operation fails.
    pub fn is_failed(&self) -> bool {
        self.log.borrow().poisoned.is_some()
    }

    fn failed(&self, source: &Arc<StorageError>) -> StorageError {
        StorageError::Failed {
            shard: self.id,
            source: source.clone(),
        }
    }

    /// Starts an operation: refuses when closed or failed.
    fn begin(&self) -> Result<Instant, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed { shard: self.id });
        }
        let log = self.log.borrow();
        if let Some(e) = &log.poisoned {
            return Err(self.failed(e));
        }
        if let Some(e) = log.stalled() {
            return Err(StorageError::NoSpace {
                shard: self.id,
                source: e.clone(),
            });
        }
        Ok(Instant::now())
    }

    fn txn(&self) -> Txn<'_> {
        Txn {
            index: self.index.borrow_mut(),
            log: self.log.borrow_mut(),
        }
    }

    /// Resolves when batch `seq` is durable; fails if the shard failed first.
    async fn wait_durable(&self, seq: u64) -> Result<(), StorageError> {
        poll_fn(|cx| {
            let mut log = self.log.borrow_mut();
            if log.durable_seq >= seq {
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &log.poisoned {
                return Poll::Ready(Err(self.failed(e)));
            }
            log.waiters.push((seq, cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Second half of an operation: wait for durability, report latency.
    async fn finish(&self, start: Instant, ticket: u64) -> Result<(), StorageError> {
        self.wait_durable(ticket).await?;
        if let Some(o) = &self.opts.observer {
            o.append(micros_since(start));
        }
        Ok(())
    }

    /// Resolves when everything logged so far is durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let ticket = self.log.borrow().ticket();
        self.wait_durable(ticket).await
    }

    /// Creates the account with its default mailboxes (INBOX, Sent, Drafts, Trash, Junk,
    /// Archive; all subscribed) unless it exists. True if it was created now.
    pub async fn ensure_account(&self, account: &str) -> Result<bool, StorageError> {
        check_account(account)?;
        if self.has_account(account) {
            // Nothing to log, so logins go on while the disk is full; wait only for a
            // creation that may still be on its way to disk.
            self.flush().await?;
            return Ok(false);
        }
        let start = self.begin()?;
        let (created, ticket) = {
            let mut t = self.txn();
            let created = !t.index.accounts.contains_key(account);
            if created {
                t.create_account(account, now_secs());
            }
            (created, t.log.ticket())
        };
        self.finish(start, ticket).await?;
        Ok(created)
    }

    /// True if the account exists (possibly not yet durable).
    pub fn has_account(&self, account: &str) -> bool {
        self.index.borrow().accounts.contains_key(account)
    }

    /// Stores one body (the concatenation of `parts`) and appends it to the INBOX of every
    /// account (creating missing accounts); resolves after fdatasync. Results are in
    /// `accounts` order.
    pub async fn deliver(
        &self,
        parts: &[Bytes],
        accounts: &[&str],
        internal_date: i64,
    ) -> Result<Vec<AppendResult>, StorageError> {
        let start = self.begin()?;
        check_body(parts)?;
        for a in accounts {
            check_account(a)?;
        }
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let (results, ticket) = {
            let mut t = self.txn();
            let now = now_secs();
            for a in accounts {
                if !t.index.accounts.contains_key(*a) {
                    t.create_account(a, now);
                }
            }
            let body = t.body(parts);
            let results: Vec<AppendResult> = accounts
                .iter()
                .map(|a| t.append_message(a, INBOX, body, internal_date, 0, &[]))
                .collect();
            (results, t.log.ticket())
        };
        self.finish(start, ticket).await?;
        Ok(results)
    }

    /// APPEND: stores a body in `mailbox` with `flags`.
    pub async fn append(
        &self,
        account: &str,
        mailbox: &str,
        parts: &[Bytes],
        flags: &FlagUpdate,
        internal_date: i64,
    ) -> Result<AppendResult, StorageError> {
        let start = self.begin()?;
        check_body(parts)?;
        let mailbox = canonical(mailbox);
        let (result, ticket) = {
            let mut t = self.txn();
            let mb = t.mailbox(account, &mailbox)?;
            let (bits, new) = resolve_keywords(mb, &flags.keywords, true)?;
            let f = u64::from(flags.system & flags::SYSTEM_MASK) | bits;
            let body = t.body(parts);
            let r = t.append_message(account, &mailbox, body, internal_date, f, &new);
            (r, t.log.ticket())
        };
        self.finish(start, ticket).await?;
        Ok(result)
    }

    /// CREATE. `AlreadyExists` if the name (or INBOX in any case) is taken.
    pub async fn create_mailbox(&self, account: &str, name: &str) -> Result<(), StorageError> {
        let start = self.begin()?;
        check_name(name)?;
        let name = canonical(name);
        let ticket = {
            let mut t = self.txn();
            if !t.index.accounts.contains_key(account) {
                return Err(StorageError::NotFound);
            }
            if t.index.mailbox(account, &name).is_some() {
                return Err(StorageError::AlreadyExists);
            }
            let uidvalidity = t.index.next_uidvalidity(now_secs(), 0);
            t.record(&Record::MailboxCreated {
                account,
                name: &name,
                uidvalidity,
                special_use: None,
            });
            t.log.ticket()
        };
        self.finish(start, ticket).await
    }

    /// DELETE. INBOX cannot be deleted (`NotPermitted`); its inferiors stay.
    pub async fn delete_mailbox(&self, account: &str, name: &str) -> Result<(), StorageError> {
        let start = self.begin()?;
        let name = canonical(name);
        if name == INBOX {
            return Err(StorageError::NotPermitted);
        }
        let ticket = {
            let mut t = self.txn();
            t.mailbox(account, &name)?;
            t.record(&Record::MailboxDeleted {
                account,
                name: &name,
            });
            t.log.ticket()
        };
        self.finish(start, ticket).await
    }

    /// RENAME, with inferiors (`from/...` → `to/...`); every renamed mailbox gets a new
    /// UIDVALIDITY. Renaming INBOX moves its messages to `to` and leaves INBOX empty.
    pub async fn rename_mailbox(
        &self,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        let start = self.begin()?;
        check_name(to)?;
        let from = canonical(from);
        let to = canonical(to);
        let ticket = {
            let mut t = self.txn();
            t.mailbox(account, &from)?;
            if to == INBOX || from == to || t.index.mailbox(account, &to).is_some() {
                return Err(StorageError::AlreadyExists);
            }
            let mut plan: Vec<(String, String)> = vec![(from.to_string(), to.to_string())];
            if from != INBOX {
                let prefix = format!("{from}{HIERARCHY_DELIMITER}");
                if to.starts_with(&prefix) {
                    return Err(StorageError::NotPermitted);
                }
                let acct = t
                    .index
                    .accounts
                    .get(account)
                    .ok_or(StorageError::NotFound)?;
                for name in acct.mailboxes.keys() {
                    if let Some(rest) = name.strip_prefix(&prefix) {
                        let target = format!("{to}{HIERARCHY_DELIMITER}{rest}");
                        check_name(&target)?;
                        plan.push((name.clone(), target));
                    }
                }
                let renamed: std::collections::HashSet<&str> =
                    plan.iter().map(|(f, _)| f.as_str()).collect();
                if plan.iter().any(|(_, to)| {
                    canonical(to) == INBOX
                        || (acct.mailboxes.contains_key(to.as_str())
                            && !renamed.contains(to.as_str()))
                }) {
                    return Err(StorageError::AlreadyExists);
                }
                // Shorter names first: when `from` sits under `to`, a target may still be
                // held by a deeper source that is renamed later.
                plan.sort_by_key(|(f, _)| f.len());
            }
            let now = now_secs();
            for (f, to) in &plan {
                let uidvalidity = t.index.next_uidvalidity(now, 0);
                t.record(&Record::MailboxRenamed {
                    account,
                    from: f,
                    to,
                    uidvalidity,
                });
            }
            t.log.ticket()
        };
        self.finish(start, ticket).await
    }

    /// SUBSCRIBE / UNSUBSCRIBE; the mailbox need not exist.
    pub async fn set_subscribed(
        &self,
        account: &str,
        name: &str,
        on: bool,
    ) -> Result<(), StorageError> {
        let start = self.begin()?;
        check_name(name)?;
        let name = canonical(name);
        let ticket = {
            let mut t = self.txn();
            let acct = t
                .index
                .accounts
                .get(account)
                .ok_or(StorageError::NotFound)?;
            if acct.subscriptions.contains(name.as_ref()) != on {
                t.record(&Record::Subscription {
                    account,
                    name: &name,
                    on,
                });
            }
            t.log.ticket()
        };
        self.finish(start, ticket).await
    }

    /// All mailboxes of an account, sorted by name.
    pub fn list_mailboxes(&self, account: &str) -> Vec<MailboxInfo> {
        let index = self.index.borrow();
        let Some(acct) = index.accounts.get(account) else {
            return Vec::new();
        };
        acct.mailboxes
            .values()
            .map(|mb| mb.info(acct.subscriptions.contains(&mb.name)))
            .collect()
    }

    /// Every account of this shard with the bytes its messages take (for quotas at start-up).
    pub fn account_usage(&self) -> Vec<(String, u64)> {
        let index = self.index.borrow();
        index
            .accounts
            .keys()
            .map(|a| (a.clone(), index.account_bytes(a)))
            .collect()
    }

    /// One mailbox's summary (STATUS).
    pub fn mailbox_info(&self, account: &str, mailbox: &str) -> Option<MailboxInfo> {
        let index = self.index.borrow();
        let acct = index.accounts.get(account)?;
        let mb = acct.mailboxes.get(canonical(mailbox).as_ref())?;
        Some(mb.info(acct.subscriptions.contains(&mb.name)))
    }

    /// Subscribed names of an account, sorted.
    pub fn subscriptions(&self, account: &str) -> Vec<String> {
        let index = self.index.borrow();
        index
            .accounts
            .get(account)
            .map(|a| a.subscriptions.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Read access to one mailbox's index without copying it. `f` must not call back into
    /// this shard's mutating operations (they are async, so it cannot).
    pub fn with_mailbox<R>(
        &self,
        account: &str,
        mailbox: &str,
        f: impl FnOnce(&MailboxIndex) -> R,
    ) -> Option<R> {
        let index = self.index.borrow();
        index.mailbox(account, mailbox).map(f)
    }

    /// STORE. `unchanged_since` is CONDSTORE's UNCHANGEDSINCE. All changed messages share one
    /// new MODSEQ; unknown UIDs are ignored; `Remove` never defines keywords.
    pub async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &FlagUpdate,
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, StorageError> {
        let start = self.begin()?;
        let mailbox = canonical(mailbox);
        let (outcome, ticket) = {
            let mut t = self.txn();
            let mb = t.mailbox(account, &mailbox)?;
            let (bits, new) = resolve_keywords(mb, &flags.keywords, op != FlagOp::Remove)?;
            let mask = u64::from(flags.system & flags::SYSTEM_MASK) | bits;
            let mut outcome = StoreOutcome::default();
            let mut changes = Vec::new();
            for uid in sorted_uids(uids) {
                let Some(m) = mb.find_any(uid) else { continue };
                if unchanged_since.is_some_and(|u| m.modseq > u) {
                    outcome.modified_since_failed.push(uid);
                    continue;
                }
                let f = match op {
                    FlagOp::Add => m.flags | mask,
                    FlagOp::Remove => m.flags & !mask,
                    FlagOp::Replace => mask,
                };
                if f != m.flags {
                    changes.push((uid, f));
                }
            }
            if !changes.is_empty() {
                let modseq = mb.highest_modseq + 1;
                outcome.updated = changes.iter().map(|(u, _)| (*u, modseq)).collect();
                for keyword in &new {
                    t.record(&Record::KeywordDefined {
                        account,
                        mailbox: &mailbox,
                        keyword,
                    });
                }
                t.record(&Record::FlagsChanged {
                    account,
                    mailbox: &mailbox,
                    modseq,
                    changes,
                });
            }
            (outcome, t.log.ticket())
        };
        self.finish(start, ticket).await?;
        Ok(outcome)
    }

    /// EXPUNGE of the given UIDs (unknown ones ignored). Returns the new HIGHESTMODSEQ.
    pub async fn expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<u64, StorageError> {
        let start = self.begin()?;
        let mailbox = canonical(mailbox);
        let (modseq, ticket) = {
            let mut t = self.txn();
            let mb = t.mailbox(account, &mailbox)?;
            let present: Vec<u32> = sorted_uids(uids)
                .into_iter()
                .filter(|u| mb.find_any(*u).is_some())
                .collect();
            let mut modseq = mb.highest_modseq;
            if !present.is_empty() {
                modseq += 1;
                t.record(&Record::Expunged {
                    account,
                    mailbox: &mailbox,
                    modseq,
                    uids: present,
                });
            }
            (modseq, t.log.ticket())
        };
        self.finish(start, ticket).await?;
        Ok(modseq)
    }

    /// COPY: new messages in `to` referencing the same bodies, flags and dates kept.
    pub async fn copy(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StorageError> {
        self.copy_or_move(account, from, to, uids, false).await
    }

    /// MOVE: copy then expunge from the source, in one commit.
    pub async fn move_messages(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> Result<CopyResult, StorageError> {
        self.copy_or_move(account, from, to, uids, true).await
    }

    async fn copy_or_move(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
        expunge: bool,
    ) -> Result<CopyResult, StorageError> {
        let start = self.begin()?;
        let from = canonical(from);
        let to = canonical(to);
        let (result, ticket) = {
            let mut t = self.txn();
            let src = t.mailbox(account, &from)?;
            let dst = t.mailbox(account, &to)?;
            let msgs: Vec<_> = sorted_uids(uids)
                .into_iter()
                .filter_map(|u| src.find_any(u).copied())
                .collect();
            // Map source keyword bits to destination bits, planning new definitions.
            let used = msgs.iter().fold(0u64, |acc, m| acc | m.flags) >> KEYWORD_SHIFT;
            let names: Vec<String> = (0..src.keywords().len())
                .filter(|i| used & (1 << i) != 0)
                .map(|i| src.keywords()[i].clone())
                .collect();
            let (_, new) = resolve_keywords(dst, &names, true)?;
            let new: Vec<String> = new.into_iter().map(str::to_owned).collect();
            let src_keywords = src.keywords().to_vec();
            let uidvalidity = dst.uidvalidity();
            for keyword in &new {
                t.record(&Record::KeywordDefined {
                    account,
                    mailbox: &to,
                    keyword,
                });
            }
            let mut pairs = Vec::with_capacity(msgs.len());
            for m in &msgs {
                let dst = t.mailbox(account, &to)?;
                let mut f = m.flags & u64::from(flags::SYSTEM_MASK);
                for (i, k) in src_keywords.iter().enumerate() {
                    if m.has_keyword(i) {
                        let j = dst.keyword_index(k).unwrap_or_else(|| {
                            panic!("keyword {k} should have been defined in {to}")
                        });
                        f |= 1 << (KEYWORD_SHIFT as usize + j);
                    }
                }
                let r = t.append_message(account, &to, m.body, m.internal_date, f, &[]);
                pairs.push((m.uid, r.uid));
            }
            if expunge && !msgs.is_empty() {
                let modseq = t.mailbox(account, &from)?.highest_modseq + 1;
                t.record(&Record::Expunged {
                    account,
                    mailbox: &from,
                    modseq,
                    uids: msgs.iter().map(|m| m.uid).collect(),
                });
            }
            (CopyResult { uidvalidity, pairs }, t.log.ticket())
        };
        self.finish(start, ticket).await?;
        Ok(result)
    }

    /// Reads a body back, verifying its record CRC.
    pub async fn read_body(&self, body: BodyRef) -> Result<Bytes, StorageError> {
        let start = Instant::now();
        let end = Pos {
            segment: body.segment,
            offset: body.offset + u64::from(body.len),
        };
        let (ticket, durable) = {
            let log = self.log.borrow();
            (log.ticket(), log.durable)
        };
        if end > durable {
            // Logged but not yet written: wait for its commit.
            self.wait_durable(ticket).await?;
        }
        let (file, path) = {
            let log = self.log.borrow();
            (log.file(body.segment), log.segment_path(body.segment))
        };
        let Some(file) = file.or_else(|| self.retired_file(body.segment)) else {
            return Err(StorageError::NotFound);
        };
        let corrupt = |reason: &str| StorageError::Corrupt {
            segment: path.clone(),
            offset: body.offset.saturating_sub(BODY_PREFIX as u64),
            reason: reason.to_owned(),
        };
        let Some(frame_at) = body.offset.checked_sub(BODY_PREFIX as u64) else {
            return Err(corrupt("body reference before the first record"));
        };
        let want = BODY_PREFIX + body.len as usize;
        let data = file
            .read_at(frame_at, want)
            .await
            .map_err(|e| StorageError::io(&path, e))?;
        if data.len() != want {
            return Err(corrupt("body runs past the end of its segment"));
        }
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        if len != body.len + 1 || data[8] != crate::record::Kind::Body as u8 {
            return Err(corrupt("body reference does not point at a body record"));
        }
        if crc32c::crc32c(&data[8..]) != crc {
            return Err(corrupt("body CRC mismatch"));
        }
        let out = Bytes::copy_from_slice(&data[BODY_PREFIX..]);
        if let Some(o) = &self.opts.observer {
            o.read(micros_since(start));
        }
        Ok(out)
    }

    /// Change counter of a mailbox: moves on every durable append, flag change, expunge,
    /// rename or delete. 0 when the mailbox does not exist.
    pub fn mailbox_version(&self, account: &str, mailbox: &str) -> u64 {
        self.index
            .borrow()
            .mailbox(account, mailbox)
            .map_or(0, |mb| mb.version)
    }

    /// Resolves when [`mailbox_version`](Self::mailbox_version) differs from `seen` (IDLE).
    pub async fn mailbox_changed(&self, account: &str, mailbox: &str, seen: u64) {
        poll_fn(|cx| {
            let (version, mid) = self
                .index
                .borrow()
                .mailbox(account, mailbox)
                .map_or((0, 0), |mb| (mb.version, mb.mid));
            if version != seen {
                return Poll::Ready(());
            }
            let mut watchers = self.watchers.borrow_mut();
            let list = watchers.entry((account.to_owned(), mid)).or_default();
            if !list.iter().any(|w| w.will_wake(cx.waker())) {
                list.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Queues an outbound message; returns its queue id once durable.
    pub async fn queue_add(
        &self,
        sender: &str,
        rcpts: &[String],
        parts: &[Bytes],
    ) -> Result<u64, StorageError> {
        let start = self.begin()?;
        check_body(parts)?;
        if sender.len() > MAX_NAME_LEN || rcpts.iter().any(|r| r.len() > MAX_NAME_LEN) {
            return Err(StorageError::InvalidName);
        }
        let (id, ticket) = {
            let mut t = self.txn();
            let id = t.index.next_queue_id;
            let body = t.body(parts);
            t.record(&Record::QueueAdded {
                id,
                sender,
                rcpts: rcpts.iter().map(String::as_str).collect(),
                body,
                queued_at: now_secs(),
            });
            (id, t.log.ticket())
        };
        self.finish(start, ticket).await?;
        Ok(id)
    }

    /// Records the end of a queue entry (delivered or bounced).
    pub async fn queue_done(&self, id: u64) -> Result<(), StorageError> {
        let start = self.begin()?;
        let ticket = {
            let mut t = self.txn();
            if !t.index.queue.contains_key(&id) {
                return Err(StorageError::NotFound);
            }
            t.record(&Record::QueueDone { id });
            t.log.ticket()
        };
        self.finish(start, ticket).await
    }

    /// Records a failed delivery attempt and when to try next.
    pub async fn queue_retry(
        &self,
        id: u64,
        attempts: u32,
        next_attempt: i64,
    ) -> Result<(), StorageError> {
        let start = self.begin()?;
        let ticket = {
            let mut t = self.txn();
            if !t.index.queue.contains_key(&id) {
                return Err(StorageError::NotFound);
            }
            t.record(&Record::QueueRetry {
                id,
                attempts,
                next_attempt,
            });
            t.log.ticket()
        };
        self.finish(start, ticket).await
    }

    /// Queue entries not yet done, by id.
    pub fn queue_pending(&self) -> Vec<QueueItem> {
        self.index.borrow().queue.values().cloned().collect()
    }

    /// Writes a snapshot of the index covering everything logged so far.
    pub async fn snapshot(&self) -> Result<(), StorageError> {
        let _permit = self
            .snapshot_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::io(&self.dir, e))?;
        if let Some(e) = &self.log.borrow().poisoned {
            return Err(self.failed(e));
        }
        let (bytes, ticket) = {
            let index = self.index.borrow();
            let mut log = self.log.borrow_mut();
            log.since_snapshot = 0;
            let bytes = snapshot::encode(self.id, log.end, &index).map_err(|reason| {
                StorageError::Corrupt {
                    segment: self.dir.join(snapshot::FILE_NAME),
                    offset: 0,
                    reason: format!("cannot serialize index: {reason}"),
                }
            })?;
            (bytes, log.ticket())
        };
        // The snapshot must never claim records that are not durable yet.
        self.wait_durable(ticket).await?;
        snapshot::write(&self.dir, bytes).await
    }

    /// Flushes everything pending, writes a snapshot and stops the commit task. Later
    /// operations fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.closed.replace(true) {
            return Ok(());
        }
        {
            // A batch stalled on a full disk would keep the flush below waiting forever: its
            // appenders get an error instead (they were never acknowledged). A stall with
            // nothing waiting (only the next segment could not be prepared) changes nothing.
            let mut log = self.log.borrow_mut();
            if log.stalled().is_some() && log.durable_seq < log.ticket() {
                log.poisoned = log.stalled().cloned();
                log.stalls = Default::default();
                for (_, w) in log.waiters.drain(..) {
                    w.wake();
                }
            }
        }
        let result = async {
            self.flush().await?;
            self.snapshot().await
        }
        .await;
        let mut log = self.log.borrow_mut();
        log.closing = true;
        if let Some(w) = log.commit_waker.take() {
            w.wake();
        }
        result
    }

    /// Applies the touches of a durable batch: reveal new messages, bump versions, wake IDLE.
    fn reveal(&self, touches: Vec<Touch>) {
        if touches.is_empty() {
            return;
        }
        let observer = self.opts.observer.as_ref().filter(|o| o.wants_usage());
        let mut touched_accounts: Vec<Rc<str>> = Vec::new();
        let mut index = self.index.borrow_mut();
        let mut watchers = self.watchers.borrow_mut();
        for t in touches {
            if observer.is_some() && !touched_accounts.contains(&t.account) {
                touched_accounts.push(t.account.clone());
            }
            if let Some(acct) = index.accounts.get_mut(t.account.as_ref()) {
                if let Some(mb) = acct.mailboxes.values_mut().find(|m| m.mid == t.mid) {
                    mb.visible_uidnext = mb.visible_uidnext.max(t.uidnext.min(mb.uidnext));
                    let v = self.versions.get() + 1;
                    self.versions.set(v);
                    mb.version = v;
                }
            }
            if watchers.is_empty() {
                continue;
            }
            for mid in [t.mid, 0] {
                if let Some(list) = watchers.remove(&(t.account.to_string(), mid)) {
                    list.into_iter().for_each(Waker::wake);
                }
            }
        }
        drop(watchers);
        // After the loop: a batch may touch several mailboxes of one account (MOVE).
        let usage: Vec<(Rc<str>, u64)> = touched_accounts
            .into_iter()
            .map(|a| {
                let bytes = index.account_bytes(&a);
                (a, bytes)
            })
            .collect();
        drop(index);
        if let Some(o) = observer {
            for (account, bytes) in usage {
                o.usage(&account, bytes);
            }
        }
    }

    /// Writes one batch: each chunk to its segment (creating new segments; a segment is
    /// fdatasynced before the next one is written, so a crash never leaves a gap), then one
    /// fdatasync. Returns the fdatasync time in microseconds.
    async fn write_batch(&self, batch: &mut Batch) -> Result<u64, CommitError> {
        // Every segment the batch needs is made before any byte of it is written: a failure
        // there (a full disk) leaves the batch whole, so it can be retried as it is.
        for chunk in &batch.chunks {
            self.segment_for_write(chunk.segment)
                .await
                .map_err(CommitError::NoSegment)?;
            let head = self.log.borrow().head_segment();
            assert_eq!(chunk.segment, head, "the log only grows at its head");
            let end = chunk.offset + chunk.data.len() as u64;
            self.grow_head(chunk.segment, end)
                .await
                .map_err(CommitError::NoSegment)?;
        }
        self.write_chunks(batch).await.map_err(CommitError::Write)
    }

    /// Writes the chunks of a batch into their (existing) segments and fdatasyncs them.
    async fn write_chunks(&self, batch: &mut Batch) -> Result<u64, StorageError> {
        let mut sync_us = 0;
        let mut current: Option<(Rc<BufferedFile>, PathBuf)> = None;
        for chunk in batch.chunks.drain(..) {
            let (file, path) = self.segment_for_write(chunk.segment).await?;
            if let Some((prev, prev_path)) = current.take() {
                if !Rc::ptr_eq(&prev, &file) {
                    let t = Instant::now();
                    prev.fdatasync()
                        .await
                        .map_err(|e| StorageError::io(&prev_path, e))?;
                    sync_us += micros_since(t);
                }
            }
            write_all_at_inline(&file, &path, &chunk.data, chunk.offset)?;
            current = Some((file, path));
        }
        if let Some((file, path)) = current {
            let t = Instant::now();
            #[cfg(test)]
            if std::mem::take(&mut self.log.borrow_mut().fail_next_sync) {
                return Err(StorageError::io(
                    &path,
                    std::io::Error::other("injected fdatasync failure"),
                ));
            }
            file.fdatasync()
                .await
                .map_err(|e| StorageError::io(&path, e))?;
            sync_us += micros_since(t);
        }
        Ok(sync_us)
    }

    /// The file of segment `n`: the prepared one if ready, else created on the spot (never
    /// waiting for a preparation still running: that would stall commits; the late
    /// preparation discards its file). A new segment's directory entry is synced before use.
    async fn segment_for_write(&self, n: u32) -> Result<(Rc<BufferedFile>, PathBuf), StorageError> {
        let (existing, path, next) = {
            let log = self.log.borrow();
            (log.file(n), log.segment_path(n), log.head_segment() + 1)
        };
        if let Some(f) = existing {
            return Ok((f, path));
        }
        assert_eq!(n, next, "segments are created in order");
        let state = std::mem::replace(&mut *self.prep.borrow_mut(), Prep::Idle);
        let prepared = match state {
            Prep::Ready {
                segment,
                file,
                allocated,
            } if segment == n => Some((file, allocated)),
            other => {
                *self.prep.borrow_mut() = other;
                None
            }
        };
        let (f, allocated) = match prepared {
            Some((mut f, allocated)) => {
                #[cfg(test)]
                self.prepared_used.set(self.prepared_used.get() + 1);
                f.rename(&path)
                    .await
                    .map_err(|e| StorageError::io(&path, e))?;
                (f, allocated)
            }
            None => {
                self.new_segment_file(&path, self.opts.preallocate.inline())
                    .await?
            }
        };
        snapshot::sync_dir(&self.dir).await?;
        let f = Rc::new(f);
        {
            let mut log = self.log.borrow_mut();
            log.files.push(f.clone());
            log.head_allocated = allocated;
        }
        // A segment was sealed: the natural moment to see whether old ones are mostly dead.
        self.maybe_compact();
        Ok((f, path))
    }

    /// Creates a segment file at `path` with its first space (all of it when zero-filled);
    /// returns it with the bytes allocated. Where a full disk shows up, with `grow_head`.
    async fn new_segment_file(
        &self,
        path: &Path,
        mode: Preallocate,
    ) -> Result<(BufferedFile, u64), StorageError> {
        self.injected_enospc(path)?;
        let f = open_segment(path).await?;
        let size = self.log.borrow().segment_size;
        let len = match mode {
            Preallocate::ZeroFill => size,
            _ => size.min(INITIAL_ALLOCATION),
        };
        preallocate(&f, path, 0, len, mode).await?;
        Ok((f, len))
    }

    /// Allocates head segment `seg` up to at least `end`, doubling its space (up to the
    /// segment size, or `end` for a record larger than a segment). Nothing happens if `seg`
    /// is no longer the head. `head_allocated` may understate the space (a later growth is
    /// then a no-op fallocate), never overstate it.
    async fn grow_head(&self, seg: u32, end: u64) -> Result<(), StorageError> {
        if self.opts.preallocate == Preallocate::None {
            return Ok(());
        }
        let (file, path, have, size) = {
            let log = self.log.borrow();
            if log.head_segment() != seg {
                return Ok(());
            }
            let file = log
                .file(seg)
                .unwrap_or_else(|| unreachable!("the head is open"));
            (
                file,
                log.segment_path(seg),
                log.head_allocated,
                log.segment_size,
            )
        };
        if end <= have {
            return Ok(());
        }
        let want = end.max(have.saturating_mul(2)).min(size.max(end));
        self.injected_enospc(&path)?;
        preallocate(&file, &path, have, want, Preallocate::Fallocate).await?;
        let mut log = self.log.borrow_mut();
        if log.head_segment() == seg {
            log.head_allocated = log.head_allocated.max(want);
        }
        Ok(())
    }

    /// Doubles the head's space in the background once half of it is used, so a full disk is
    /// found (and new changes refused) while the space allocated still holds those accepted.
    fn maybe_grow_head(&self) {
        if self.opts.preallocate == Preallocate::None || self.growing.get() {
            return;
        }
        let (seg, want) = {
            let log = self.log.borrow();
            let have = log.head_allocated;
            if log.closing || log.end.offset < have / 2 || have >= log.segment_size {
                return;
            }
            (log.end.segment, (have * 2).min(log.segment_size))
        };
        let Some(me) = self.weak.upgrade() else {
            return;
        };
        self.growing.set(true);
        glommio::spawn_local(async move {
            loop {
                match me.grow_head(seg, want).await {
                    Ok(()) => {
                        me.unstall(Stall::Grow);
                        break;
                    }
                    Err(_) if me.log.borrow().closing || me.is_failed() => {
                        me.unstall(Stall::Grow);
                        break;
                    }
                    Err(e) => {
                        me.stall(Stall::Grow, e);
                        glommio::timer::sleep(STALL_RETRY).await;
                    }
                }
            }
            me.growing.set(false);
        })
        .detach();
    }

    /// ENOSPC for the next `fail_allocations` allocations (tests of a full disk).
    #[allow(clippy::unnecessary_wraps)]
    fn injected_enospc(&self, _path: &Path) -> Result<(), StorageError> {
        #[cfg(test)]
        {
            let mut log = self.log.borrow_mut();
            if log.fail_allocations > 0 {
                log.fail_allocations -= 1;
                return Err(StorageError::io(
                    _path,
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                ));
            }
        }
        Ok(())
    }

    /// Marks the log as unable to grow (new changes are refused); logged once per episode.
    fn stall(&self, source: Stall, e: StorageError) {
        let mut log = self.log.borrow_mut();
        if log.stalled().is_none() {
            tracing::error!(shard = self.id, error = %e, "cannot make a new log segment; refusing changes until it can");
        }
        log.stalls[source as usize] = Some(Arc::new(e));
    }

    /// Ends what `source` found; changes are taken again once nothing else stalls the log.
    fn unstall(&self, source: Stall) {
        let mut log = self.log.borrow_mut();
        if log.stalls[source as usize].take().is_some() && log.stalled().is_none() {
            tracing::info!(
                shard = self.id,
                "new log segment made; accepting changes again"
            );
        }
    }

    /// Starts preparing the segment after the current one when the current one is half full,
    /// so a full disk is found while the current segment still has room for the changes
    /// already accepted: new ones are refused (and preparation retried) instead of a commit
    /// waiting for space.
    fn maybe_prepare_next(&self) {
        if self.opts.preallocate == Preallocate::None {
            return;
        }
        let next = {
            let log = self.log.borrow();
            if log.closing || log.end.offset < log.segment_size / 2 {
                return;
            }
            log.end.segment + 1
        };
        if !matches!(*self.prep.borrow(), Prep::Idle) {
            return;
        }
        let Some(me) = self.weak.upgrade() else {
            return;
        };
        *self.prep.borrow_mut() = Prep::Running;
        let mode = self.opts.preallocate;
        glommio::spawn_local(async move {
            let path = me.dir.join(prep_name(next));
            let state = loop {
                let result = async {
                    // A stale file of that name may still be written by an earlier owner of
                    // this directory: unlink it so the new file is a new inode.
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(StorageError::io(&path, e))
                        }
                        _ => {}
                    }
                    me.new_segment_file(&path, mode).await
                }
                .await;
                let (too_late, closing) = {
                    let log = me.log.borrow();
                    (log.file(next).is_some(), log.closing)
                };
                match result {
                    Ok((file, allocated)) if !too_late => {
                        me.unstall(Stall::Prepare);
                        break Prep::Ready {
                            segment: next,
                            file,
                            allocated,
                        };
                    }
                    Ok((file, _)) => {
                        // The commit path already created the segment itself.
                        me.unstall(Stall::Prepare);
                        let _ = file.close().await;
                        let _ = std::fs::remove_file(&path);
                        break Prep::Idle;
                    }
                    // The commit path makes (or waits for) the segment itself.
                    Err(_) if too_late || closing || me.is_failed() => {
                        me.unstall(Stall::Prepare);
                        break Prep::Idle;
                    }
                    Err(e) => {
                        me.stall(Stall::Prepare, e);
                        glommio::timer::sleep(STALL_RETRY).await;
                    }
                }
            };
            *me.prep.borrow_mut() = state;
        })
        .detach();
    }

    /// Takes and commits the pending batch. A batch that waits for a segment is retried
    /// every [`STALL_RETRY`] while new changes are refused; its appenders keep waiting.
    async fn commit_once(&self) {
        let (seq, mut batch, end) = self.log.borrow_mut().take_batch();
        let (records, bytes) = (batch.records, batch.bytes);
        let mut stalled = false;
        let result = loop {
            match self.write_batch(&mut batch).await {
                Ok(us) => break Ok(us),
                Err(CommitError::NoSegment(e)) if !self.log.borrow().closing => {
                    stalled = true;
                    self.stall(Stall::Commit, e);
                    glommio::timer::sleep(STALL_RETRY).await;
                    // `close` gives up on a stalled batch and fails its appenders.
                    if let Some(p) = self.log.borrow().poisoned.clone() {
                        break Err(self.failed(&p));
                    }
                }
                Err(CommitError::NoSegment(e) | CommitError::Write(e)) => break Err(e),
            }
        };
        if result.is_ok() && stalled {
            self.unstall(Stall::Commit);
        }
        let mut log = self.log.borrow_mut();
        match result {
            Ok(sync_us) => {
                assert!(seq == log.durable_seq + 1, "batches commit in order");
                log.durable_seq = seq;
                log.durable = end;
                log.since_snapshot += bytes as u64;
                let mut waiters = std::mem::take(&mut log.waiters);
                waiters.retain(|(s, w)| {
                    if *s <= seq {
                        w.wake_by_ref();
                        false
                    } else {
                        true
                    }
                });
                log.waiters = waiters;
                let want_snapshot = log.since_snapshot >= self.opts.snapshot_bytes
                    && !log.closing
                    && !self.snapshot_scheduled.get();
                drop(log);
                self.reveal(std::mem::take(&mut batch.touches));
                self.maybe_grow_head();
                self.maybe_prepare_next();
                if let Some(o) = &self.opts.observer {
                    o.commit(records, bytes, sync_us);
                }
                if want_snapshot {
                    if let Some(me) = self.weak.upgrade() {
                        self.snapshot_scheduled.set(true);
                        glommio::spawn_local(async move {
                            if let Err(e) = me.snapshot().await {
                                tracing::warn!(shard = me.id, error = %e, "snapshot failed");
                            }
                            me.snapshot_scheduled.set(false);
                        })
                        .detach();
                    }
                }
            }
            Err(e) => {
                // Never retried: after a failed fdatasync the page cache may have dropped the
                // dirty pages, so a later "success" would be a lie.
                if log.poisoned.is_none() {
                    tracing::error!(shard = self.id, error = %e, "shard log write failed; shard is now failed");
                    log.poisoned = Some(Arc::new(e));
                }
                for (_, w) in log.waiters.drain(..) {
                    w.wake();
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn fail_next_sync(&self) {
        self.log.borrow_mut().fail_next_sync = true;
    }

    /// Makes the next `n` segment creations or growths fail with ENOSPC.
    #[cfg(test)]
    pub(crate) fn fail_allocations(&self, n: u32) {
        self.log.borrow_mut().fail_allocations = n;
    }

    /// Replaces the writable handle of the current segment with a read-only one, so the next
    /// write fails with a real EBADF.
    #[cfg(test)]
    pub(crate) async fn break_current_segment(&self) {
        let (n, path) = {
            let log = self.log.borrow();
            (log.end.segment, log.segment_path(log.end.segment))
        };
        let ro = Rc::new(BufferedFile::open(&path).await.unwrap());
        let mut log = self.log.borrow_mut();
        let i = (n - log.first_segment) as usize;
        log.files[i] = ro;
    }

    #[cfg(test)]
    pub(crate) fn index_snapshot(&self) -> Index {
        self.index.borrow().clone()
    }

    /// True while a background snapshot or segment preparation holds the shard.
    #[cfg(test)]
    pub(crate) fn snapshot_running(&self) -> bool {
        self.snapshot_scheduled.get()
            || self.growing.get()
            || matches!(*self.prep.borrow(), Prep::Running)
    }

    #[cfg(test)]
    pub(crate) fn prepared_used(&self) -> u32 {
        self.prepared_used.get()
    }

    #[cfg(test)]
    pub(crate) fn since_snapshot(&self) -> u64 {
        self.log.borrow().since_snapshot
    }

    #[cfg(test)]
    pub(crate) fn log_end(&self) -> Pos {
        self.log.borrow().end
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        // Let the commit task notice the shard is gone and end.
        if let Some(w) = self.log.get_mut().commit_waker.take() {
            w.wake();
        }
    }
}

/// The group-commit task: waits for pending records, commits them, repeats.
async fn commit_task(weak: Weak<Shard>) {
    loop {
        let next = poll_fn(|cx| {
            let Some(shard) = weak.upgrade() else {
                return Poll::Ready(None);
            };
            let ready = {
                let mut log = shard.log.borrow_mut();
                if log.poisoned.is_some() {
                    Some(false)
                } else if log.pending.records > 0 {
                    Some(true)
                } else if log.closing {
                    Some(false)
                } else {
                    log.commit_waker = Some(cx.waker().clone());
                    None
                }
            };
            match ready {
                Some(true) => Poll::Ready(Some(shard)),
                Some(false) => Poll::Ready(None),
                None => Poll::Pending,
            }
        })
        .await;
        let Some(shard) = next else { return };
        shard.commit_once().await;
    }
}
