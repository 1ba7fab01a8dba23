//! One executor: the shards it owns, its view of the accounts, and the mesh to its peers.

use super::Shared;
use crate::accounts::{AccountDb, LiveAccounts};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use storage::Shard;

/// A request from one executor to another.
pub enum Req {
    /// Store a message for these accounts (all on `shard`), acknowledged after fdatasync.
    Deliver {
        /// Target shard (owned by the receiver).
        shard: u32,
        /// Trace-header prefix and body: stored back to back, never joined in memory.
        parts: Vec<Bytes>,
        /// Accounts on that shard.
        accounts: Vec<String>,
        /// Internal date (unix seconds).
        internal_date: i64,
    },
    /// Continue an authenticated connection on the executor that owns its account.
    Handoff(Box<dyn Handoff>),
    /// Take this executor's metrics snapshot.
    Stats {
        /// Reset after reading.
        reset: bool,
    },
}

/// A connection (with its session) moving to this executor after authentication.
pub trait Handoff: Send {
    /// Starts the connection's task on the receiving executor.
    fn start(self: Box<Self>, exec: Rc<Exec>);
}

/// The answer to a [`Req`].
pub enum Resp {
    /// Result of a Deliver.
    Delivered(Result<(), crate::delivery::DeliveryError>),
    /// A handoff was started.
    Started,
    /// A metrics snapshot.
    Stats(Box<crate::metrics::Snapshot>),
}

/// The state of one executor, shared by its tasks through `Rc`.
pub struct Exec {
    /// Read-only server-wide state.
    pub shared: Arc<Shared>,
    /// The mesh to the other executors.
    pub ctx: shards::Ctx<Req, Resp>,
    /// Shards this executor owns.
    pub shards: HashMap<u32, Rc<Shard>>,
    accounts: RefCell<LiveAccounts>,
    /// Accounts whose POP3 maildrop is locked (RFC 1939 exclusive access), on their owner.
    pub maildrop_locks: RefCell<HashSet<String>>,
    /// Sessions running on this executor, for graceful shutdown.
    pub active_sessions: Cell<usize>,
    /// Recent failed logins per client address, to slow down password guessing.
    auth_failures: RefCell<HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
    auth_cache: RefCell<crate::accounts::AuthCache>,
    /// Slow password checks in progress per client address.
    checking: RefCell<HashMap<std::net::IpAddr, usize>>,
    /// Message data this executor's sessions may hold in memory at once.
    pub message_memory: Rc<crate::net::MemoryBudget>,
    /// Responses with message bodies (IMAP FETCH) held while clients are slow to read them:
    /// the same share as `message_memory`, counted apart so stalled readers cannot starve
    /// SMTP of memory for incoming mail.
    pub output_memory: Rc<crate::net::MemoryBudget>,
    /// Set when the graceful stop starts: idle sessions say goodbye and close.
    pub stopping: super::stop::StopSignal,
}

impl Exec {
    /// This executor's id.
    pub fn id(&self) -> usize {
        self.ctx.id()
    }

    /// The current account database.
    pub fn accounts(&self) -> Rc<AccountDb> {
        self.accounts.borrow().db()
    }

    /// The executor that owns `shard`.
    pub fn owner_of(&self, shard: u32) -> usize {
        shards::owner_of(shard, self.shared.executors as u32) as usize
    }

    /// The shard holding `account`, per the account database (or the stable hash for
    /// accounts created before the database recorded shards).
    pub fn shard_of(&self, account: &str) -> u32 {
        self.accounts()
            .accounts
            .get(account)
            .map(|a| a.shard)
            .unwrap_or_else(|| shards::shard_of_account(account, self.shared.shards))
    }

    /// The local shard for `account`, if this executor owns it.
    pub fn local_shard(&self, account: &str) -> Option<Rc<Shard>> {
        self.shards.get(&self.shard_of(account)).cloned()
    }

    /// Some shard this executor owns (outbound queue entries go there).
    pub fn any_local_shard(&self) -> Option<Rc<Shard>> {
        self.shards.values().min_by_key(|s| s.id()).cloned()
    }

    /// Checks a password off the executor thread (hashing takes milliseconds).
    pub async fn verify_password(&self, user: &str, password: &str) -> Option<String> {
        self.check_password(user, password, None).await
    }

    /// Checks a password; a client address with recent failures may have only
    /// [`MAX_CHECKS_PER_SUSPECT`] slow checks in progress here, and further attempts fail
    /// at once. Without that, a few hundred parallel connections guessing passwords queue up
    /// minutes of hashing that everyone else's first login waits behind (and that a
    /// graceful stop waits for).
    async fn check_password(
        &self,
        user: &str,
        password: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Option<String> {
        let address = crate::accounts::normalize(user).ok();
        let lookup = |db: &AccountDb| {
            let a = address.as_ref()?;
            db.accounts
                .get(a)
                .map(|acct| (a.clone(), acct.hash.clone()))
        };
        let mut hash = lookup(&self.accounts());
        if hash.is_none() {
            self.refresh_accounts(); // the account may have been added a moment ago
            hash = lookup(&self.accounts());
        }
        let started = std::time::Instant::now();
        if let Some((a, h)) = &hash {
            if self.auth_cache.borrow().check(a, h, password) {
                crate::metrics::record(crate::metrics::Metric::AuthVerify, started.elapsed());
                return Some(a.clone());
            }
        }
        let _slot = match peer {
            Some(ip) => match self.slow_check_slot(ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(peer = %ip, "password check refused: too many in progress");
                    crate::metrics::incr(crate::metrics::Counter::AuthFailures, 1);
                    return None;
                }
            },
            None => None,
        };
        let remember = hash.clone();
        let password_copy = password.to_string();
        let password = password.to_string();
        let ok = glommio::executor()
            .spawn_blocking(move || match hash {
                Some((a, h)) => crate::accounts::verify_password(&h, &password).then_some(a),
                None => {
                    let _ =
                        crate::accounts::verify_password(crate::accounts::DUMMY_HASH, &password);
                    None
                }
            })
            .await;
        crate::metrics::record(crate::metrics::Metric::AuthVerify, started.elapsed());
        if let (Some(_), Some((a, h))) = (&ok, remember) {
            self.auth_cache
                .borrow_mut()
                .remember(&a, &h, &password_copy);
        }
        if ok.is_none() {
            crate::metrics::incr(crate::metrics::Counter::AuthFailures, 1);
        }
        ok
    }

    /// Verifies credentials for a client; a failure is answered only after a delay that grows
    /// with the recent failures from the same address (1 s, 2 s, ... up to 8 s; forgotten
    /// after 15 minutes).
    pub async fn authenticate(
        &self,
        peer: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> Option<String> {
        let ok = self.check_password(user, password, Some(peer)).await;
        if ok.is_none() {
            let delay = {
                let mut map = self.auth_failures.borrow_mut();
                if map.len() > 100_000 {
                    map.retain(|_, (_, t)| t.elapsed() < FAILURE_MEMORY);
                    if map.len() > 100_000 {
                        // Not worth scanning again on every failure: start over.
                        map.clear();
                    }
                }
                let e = map.entry(peer).or_insert((0, std::time::Instant::now()));
                if e.1.elapsed() > FAILURE_MEMORY {
                    e.0 = 0;
                }
                e.0 = e.0.saturating_add(1);
                e.1 = std::time::Instant::now();
                Duration::from_secs(u64::from(e.0.min(8)))
            };
            glommio::timer::sleep(delay).await;
        }
        ok
    }

    /// A place among the slow password checks for `peer`, unless it failed recently and
    /// already has its share in progress.
    fn slow_check_slot(&self, peer: std::net::IpAddr) -> Option<CheckSlot<'_>> {
        let suspect = self
            .auth_failures
            .borrow()
            .get(&peer)
            .is_some_and(|(n, t)| *n >= SUSPECT_FAILURES && t.elapsed() < FAILURE_MEMORY);
        let mut checking = self.checking.borrow_mut();
        let n = checking.entry(peer).or_insert(0);
        if suspect && *n >= MAX_CHECKS_PER_SUSPECT {
            return None;
        }
        *n += 1;
        Some(CheckSlot { exec: self, peer })
    }

    /// Whether `account`'s shard is owned by this executor.
    pub fn owns_account(&self, account: &str) -> bool {
        self.owner_of(self.shard_of(account)) == self.id()
    }

    /// Hands an authenticated connection to the executor that owns `account`'s shard.
    pub async fn hand_off(&self, account: &str, h: Box<dyn Handoff>) {
        let owner = self.owner_of(self.shard_of(account));
        if let Err(e) = self.ctx.call(owner, Req::Handoff(h)).await {
            tracing::error!(owner, error = %e, "connection handoff failed");
        }
    }

    /// Marks a session started; the guard marks it ended.
    pub fn session_guard(self: &Rc<Self>) -> SessionGuard {
        self.active_sessions.set(self.active_sessions.get() + 1);
        SessionGuard(self.clone())
    }

    /// Reloads the account database if the file changed (one stat when it did not).
    pub fn refresh_accounts(&self) {
        if let Err(e) = self.accounts.borrow_mut().refresh() {
            tracing::warn!(error = %e, "account database not reloaded");
        }
    }
}

/// Failed logins from one address within this window slow its later attempts.
const FAILURE_MEMORY: Duration = Duration::from_secs(900);
/// Recent failures after which an address counts as guessing passwords.
const SUSPECT_FAILURES: u32 = 3;
/// Slow password checks one guessing address may have in progress on one executor.
const MAX_CHECKS_PER_SUSPECT: usize = 1;

/// A slow password check in progress for a client address.
struct CheckSlot<'a> {
    exec: &'a Exec,
    peer: std::net::IpAddr,
}

impl Drop for CheckSlot<'_> {
    fn drop(&mut self) {
        let mut checking = self.exec.checking.borrow_mut();
        if let Some(n) = checking.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                checking.remove(&self.peer);
            }
        }
    }
}

/// Counts a live session on its executor.
pub struct SessionGuard(Rc<Exec>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let n = self.0.active_sessions.get();
        self.0.active_sessions.set(n.saturating_sub(1));
    }
}

/// Serves one request from a peer (or from this executor itself).
async fn handle(exec: Rc<Exec>, req: Req) -> Resp {
    match req {
        Req::Deliver {
            shard,
            parts,
            accounts,
            internal_date,
        } => {
            let r = crate::delivery::deliver_local(&exec, shard, &parts, &accounts, internal_date)
                .await;
            Resp::Delivered(r)
        }
        Req::Handoff(h) => {
            crate::metrics::incr(crate::metrics::Counter::CrossShardHandoffs, 1);
            h.start(exec);
            Resp::Started
        }
        Req::Stats { reset } => Resp::Stats(Box::new(crate::metrics::Snapshot::take(reset))),
    }
}

/// The body of one executor, from opening its shards to the end of graceful shutdown.
pub async fn run(ctx: shards::Ctx<Req, Resp>, shared: Arc<Shared>) -> Result<(), String> {
    let id = ctx.id();
    let data_dir = shared.cfg.server.data_dir.clone();
    let mut owned = HashMap::new();
    for s in shards::shards_of(id as u32, shared.executors as u32, shared.shards) {
        let opts = storage::ShardOptions {
            observer: Some(Rc::new(super::StorageMetrics {
                shared: shared.clone(),
            })),
            segment_size: shared.cfg.server.segment_size,
            ..Default::default()
        };
        match Shard::open(&data_dir, s, opts).await {
            Ok(shard) => {
                for (account, bytes) in shard.account_usage() {
                    shared.quota.update(&account, bytes);
                }
                owned.insert(s, shard);
            }
            Err(e) => {
                // Bring the other executors down too: the server refuses to start.
                shared.shutdown.trigger();
                return Err(format!("shard {s}: {e}"));
            }
        }
    }
    crate::metrics::init();
    let accounts = LiveAccounts::open(&data_dir).map_err(|e| e.to_string())?;
    let exec = Rc::new(Exec {
        shared: shared.clone(),
        ctx: ctx.clone(),
        shards: owned,
        accounts: RefCell::new(accounts),
        maildrop_locks: RefCell::new(HashSet::new()),
        active_sessions: Cell::new(0),
        auth_failures: RefCell::new(HashMap::new()),
        auth_cache: RefCell::new(crate::accounts::AuthCache::new()),
        checking: RefCell::new(HashMap::new()),
        message_memory: crate::net::MemoryBudget::new(message_memory_share(&shared)),
        output_memory: crate::net::MemoryBudget::new(message_memory_share(&shared)),
        stopping: super::stop::StopSignal::new(),
    });
    {
        let exec = exec.clone();
        ctx.serve(move |req| handle(exec.clone(), req));
    }
    let listeners = match super::listeners::bind_all(&exec) {
        Ok(l) => l,
        Err(e) => {
            shared.shutdown.trigger();
            return Err(e);
        }
    };
    // Account changes made by `ringpost user ...` reach us within half a second.
    let refresher = {
        let exec = exec.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(500)).await;
                exec.refresh_accounts();
            }
        })
        .detach()
    };
    let outbound = glommio::spawn_local(crate::outbound::run(exec.clone()));
    // The last executor to finish recovery and bind its listeners announces readiness.
    let ready = shared
        .ready
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
        + 1;
    if ready == shared.executors {
        // Before "ready": whoever waits for that line finds the warning already logged.
        if shared.cfg.listen.smtp.is_some()
            && exec.accounts().postmaster_accounts(&shared.cfg).is_empty()
        {
            let postmaster = shared.cfg.postmaster_address();
            tracing::warn!(
                %postmaster,
                "no account or alias for postmaster: RFC 5321 requires it, and mail to it is refused until one is added (ringpost alias add {postmaster} ACCOUNT)"
            );
        }
        tracing::info!(
            executors = shared.executors,
            shards = shared.shards,
            "ringpost ready"
        );
    }
    shared.shutdown.wait().await;
    drop(listeners);
    exec.stopping.trigger();
    let grace = Duration::from_secs(10);
    let started = std::time::Instant::now();
    while exec.active_sessions.get() > 0 && started.elapsed() < grace {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    refresher.cancel();
    drop(outbound);
    for shard in exec.shards.values() {
        if let Err(e) = shard.close().await {
            tracing::error!(shard = shard.id(), error = %e, "shard close failed");
        }
    }
    Ok(())
}

/// This executor's share of `limits.max_message_memory`: an equal part, but never less than
/// one message of the largest size, which must always be receivable.
fn message_memory_share(shared: &Shared) -> usize {
    let l = &shared.cfg.limits;
    let share = l.max_message_memory / shared.executors.max(1) as u64;
    usize::try_from(share.max(l.max_message_size)).unwrap_or(usize::MAX)
}

/// Runs a session future so that a panic in it costs only that connection: glommio does not
/// catch panics in tasks, and an unwinding executor would take every session on it along.
pub async fn contain_panics(what: &'static str, session: impl std::future::Future<Output = ()>) {
    let session = std::panic::AssertUnwindSafe(session);
    if futures::FutureExt::catch_unwind(session).await.is_err() {
        tracing::error!(session = what, "session panicked; connection dropped");
    }
}
