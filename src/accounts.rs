//! Accounts and aliases: the account database file, password hashes and address resolution.
//!
//! The database is one JSON file (`DATA_DIR/accounts.json`) written atomically under an
//! exclusive `flock` by the CLI; a running server notices the change (inode/mtime) and reloads
//! it, so `ringpost user add` takes effect without a restart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// File name of the account database inside data_dir.
pub const DB_FILE: &str = "accounts.json";
const LOCK_FILE: &str = "accounts.lock";

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// I/O on the database file.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The database file is not valid.
    #[error("{path} is corrupt: {message}")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// Not a usable mail address.
    #[error("{0:?} is not a valid address (expected local@domain)")]
    BadAddress(String),
    /// The address's domain is not one of `domains.local`.
    #[error("{address}: domain {domain:?} is not in domains.local")]
    NotLocalDomain {
        /// The address.
        address: String,
        /// Its domain.
        domain: String,
    },
    /// `user add` of an existing account.
    #[error("account {0} already exists")]
    Exists(String),
    /// `user add` of an address that is an alias.
    #[error("{0} is an alias; delete the alias first")]
    IsAlias(String),
    /// Unknown account or alias.
    #[error("no such account or alias: {0}")]
    Unknown(String),
    /// Password empty or hash unusable.
    #[error("{0}")]
    BadPassword(String),
}

/// One account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Account {
    /// Password hash in PHC (`$argon2id$...`) or scheme-prefixed Dovecot form.
    pub hash: String,
    /// The shard that holds this account's mail, fixed at creation.
    pub shard: u32,
}

/// The account database.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct AccountDb {
    /// Format version.
    pub version: u32,
    /// Accounts by lowercase address.
    pub accounts: BTreeMap<String, Account>,
    /// Aliases (`user@domain` or catch-all `@domain`) to target addresses.
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// What an address means to this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Delivered to these accounts.
    Local(Vec<String>),
    /// A local domain, but nobody by that name.
    UnknownLocal,
    /// Not one of our domains.
    NonLocal,
}

/// Lowercases and checks an address; returns (local, domain).
pub fn normalize(address: &str) -> Result<String, AccountError> {
    let a = address.trim().to_lowercase();
    let (local, domain) = a
        .rsplit_once('@')
        .ok_or_else(|| AccountError::BadAddress(address.into()))?;
    let ok_local = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"\"\\<>()[],;:@%!/".contains(c));
    let ok_domain = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if !ok_local || !ok_domain || local.starts_with('.') || local.ends_with('.') {
        return Err(AccountError::BadAddress(address.into()));
    }
    Ok(a)
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

impl AccountDb {
    /// Path of the database in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DB_FILE)
    }

    /// Reads the database; a missing file is an empty database.
    pub fn load(data_dir: &Path) -> Result<AccountDb, AccountError> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AccountError::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccountDb {
                version: 1,
                ..Default::default()
            }),
            Err(source) => Err(AccountError::Io { path, source }),
        }
    }

    /// Writes the database atomically: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, data_dir: &Path) -> Result<(), AccountError> {
        let path = Self::path(data_dir);
        let tmp = data_dir.join(format!("{DB_FILE}.tmp"));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| AccountError::Io { path: p, source }
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| AccountError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(data_dir))?;
        Ok(())
    }

    /// Runs `f` on the database under an exclusive lock and saves it if `f` succeeded.
    pub fn modify<T>(
        data_dir: &Path,
        f: impl FnOnce(&mut AccountDb) -> Result<T, AccountError>,
    ) -> Result<T, AccountError> {
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| AccountError::Io {
                path: lock_path.clone(),
                source,
            })?;
        // SAFETY: flock on a valid fd we own; released when `lock` is dropped.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(AccountError::Io {
                path: lock_path,
                source: std::io::Error::last_os_error(),
            });
        }
        let mut db = AccountDb::load(data_dir)?;
        let before = db.clone();
        let out = f(&mut db)?;
        if db != before {
            db.save(data_dir)?;
        }
        Ok(out)
    }

    /// Adds an account with an already computed hash.
    pub fn add(&mut self, address: &str, hash: String, shard: u32) -> Result<(), AccountError> {
        if self.accounts.contains_key(address) {
            return Err(AccountError::Exists(address.into()));
        }
        if self.aliases.contains_key(address) {
            return Err(AccountError::IsAlias(address.into()));
        }
        self.accounts
            .insert(address.into(), Account { hash, shard });
        Ok(())
    }

    /// Resolves a recipient address (already lowercased) for delivery.
    pub fn resolve(&self, address: &str, is_local_domain: impl Fn(&str) -> bool) -> Resolution {
        let address = address.to_lowercase();
        if !is_local_domain(domain_of(&address)) {
            return Resolution::NonLocal;
        }
        let mut out = Vec::new();
        self.expand(&address, 0, &mut out);
        if out.is_empty() {
            // Sub-addressing: user+tag@domain reaches user@domain.
            if let Some((local, domain)) = address.rsplit_once('@') {
                if let Some((base, _tag)) = local.split_once('+') {
                    self.expand(&format!("{base}@{domain}"), 0, &mut out);
                }
            }
        }
        if out.is_empty() {
            if let Some(targets) = self.aliases.get(&format!("@{}", domain_of(&address))) {
                for t in targets {
                    self.expand(t, 1, &mut out);
                }
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            Resolution::UnknownLocal
        } else {
            Resolution::Local(out)
        }
    }

    fn expand(&self, address: &str, depth: usize, out: &mut Vec<String>) {
        if depth > 8 {
            return; // alias loops end here
        }
        if self.accounts.contains_key(address) {
            out.push(address.to_string());
        } else if let Some(targets) = self.aliases.get(address) {
            for t in targets {
                self.expand(t, depth + 1, out);
            }
        }
    }

    /// The accounts mail to the server's postmaster reaches (`Config::postmaster_address`);
    /// empty while none exists, which RFC 5321 §4.5.1 does not allow.
    pub fn postmaster_accounts(&self, cfg: &crate::config::Config) -> Vec<String> {
        match self.resolve(&cfg.postmaster_address(), |d| cfg.is_local_domain(d)) {
            Resolution::Local(accounts) => accounts,
            Resolution::UnknownLocal | Resolution::NonLocal => Vec::new(),
        }
    }

    /// Whether `account` may use `from` as its envelope sender: its own address or an alias of it.
    pub fn may_send_as(&self, account: &str, from: &str) -> bool {
        let from = from.to_lowercase();
        if from == account {
            return true;
        }
        let mut out = Vec::new();
        if self.aliases.contains_key(&from) {
            self.expand(&from, 0, &mut out);
        }
        out.iter().any(|a| a == account)
    }
}

/// A valid argon2id hash of nothing in particular, verified for unknown users so timing does not reveal accounts.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3MLVR7Cdkma7MUXR1JCE7GqVQomhg0WDx2iuxI0Lrcc";

/// Hashes a new password with argon2id (the default parameters of the argon2 crate).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    if password.is_empty() {
        return Err(AccountError::BadPassword("empty password".into()));
    }
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::BadPassword(format!("cannot hash password: {e}")))
}

/// Checks that a stored hash is in a scheme we can verify.
pub fn check_hash_format(hash: &str) -> Result<(), AccountError> {
    let h = strip_scheme(hash);
    let known = h.starts_with("$argon2")
        || h.starts_with("$6$")
        || h.starts_with("$2y$")
        || h.starts_with("$2b$")
        || h.starts_with("$2a$");
    if known {
        Ok(())
    } else {
        Err(AccountError::BadPassword(
            "unsupported hash: use {ARGON2ID}, {SHA512-CRYPT} ($6$) or {BLF-CRYPT} ($2y$)".into(),
        ))
    }
}

fn strip_scheme(hash: &str) -> &str {
    // Dovecot / docker-mailserver prefix hashes with their scheme: {SHA512-CRYPT}$6$...
    match hash.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((_scheme, rest)) => rest,
        None => hash,
    }
}

/// Verifies a password against argon2 (PHC), SHA512-CRYPT or BLF-CRYPT hashes.
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let h = strip_scheme(hash);
    if h.starts_with("$argon2") {
        PasswordHash::new(h)
            .map(|p| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &p)
                    .is_ok()
            })
            .unwrap_or(false)
    } else if h.starts_with("$6$") {
        sha_crypt::sha512_check(password, h).is_ok()
    } else if h.starts_with("$2") {
        bcrypt::verify(password, h).unwrap_or(false)
    } else {
        false
    }
}

/// A server-side view of the database that reloads itself when the file changes.
pub struct LiveAccounts {
    data_dir: PathBuf,
    stamp: Option<(u64, i64, i64)>,
    db: std::rc::Rc<AccountDb>,
}

impl LiveAccounts {
    /// Loads the database now.
    pub fn open(data_dir: &Path) -> Result<LiveAccounts, AccountError> {
        let mut l = LiveAccounts {
            data_dir: data_dir.to_path_buf(),
            stamp: None,
            db: Default::default(),
        };
        l.refresh()?;
        Ok(l)
    }

    /// The current database.
    pub fn db(&self) -> std::rc::Rc<AccountDb> {
        self.db.clone()
    }

    /// Reloads if the file's inode or mtime moved; returns whether it reloaded.
    pub fn refresh(&mut self) -> Result<bool, AccountError> {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(AccountDb::path(&self.data_dir))
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()));
        if stamp == self.stamp && self.stamp.is_some() {
            return Ok(false);
        }
        let db = AccountDb::load(&self.data_dir)?;
        self.db = std::rc::Rc::new(db);
        self.stamp = stamp;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(d: &str) -> bool {
        d == "example.org"
    }

    #[test]
    fn addresses_are_normalized_and_checked() {
        assert_eq!(
            normalize(" Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        for bad in [
            "alice",
            "@x.org",
            "a@",
            "a b@x.org",
            "a%b@x.org",
            "a@x..org",
            "a!b@x.org",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_accounts_aliases_catch_all_and_subaddress() {
        let mut db = AccountDb::default();
        db.add("alice@example.org", "x".into(), 1).unwrap();
        db.add("bob@example.org", "x".into(), 2).unwrap();
        db.aliases.insert(
            "team@example.org".into(),
            vec!["alice@example.org".into(), "bob@example.org".into()],
        );
        let r = |a: &str| db.resolve(a, local);
        assert_eq!(
            r("Alice@example.org"),
            Resolution::Local(vec!["alice@example.org".into()])
        );
        assert_eq!(
            r("alice+news@example.org"),
            Resolution::Local(vec!["alice@example.org".into()])
        );
        assert_eq!(
            r("team@example.org"),
            Resolution::Local(vec!["alice@example.org".into(), "bob@example.org".into()])
        );
        assert_eq!(r("nobody@example.org"), Resolution::UnknownLocal);
        assert_eq!(r("alice@elsewhere.net"), Resolution::NonLocal);
        db.aliases
            .insert("@example.org".into(), vec!["bob@example.org".into()]);
        assert_eq!(
            db.resolve("nobody@example.org", local),
            Resolution::Local(vec!["bob@example.org".into()])
        );
        assert!(db.may_send_as("alice@example.org", "team@example.org"));
        assert!(db.may_send_as("alice@example.org", "ALICE@example.org"));
        assert!(!db.may_send_as("alice@example.org", "bob@example.org"));
    }

    #[test]
    fn alias_loops_terminate() {
        let mut db = AccountDb::default();
        db.aliases
            .insert("a@example.org".into(), vec!["b@example.org".into()]);
        db.aliases
            .insert("b@example.org".into(), vec!["a@example.org".into()]);
        assert_eq!(db.resolve("a@example.org", local), Resolution::UnknownLocal);
    }

    #[test]
    fn password_schemes_verify() {
        let h = hash_password("s3cret").unwrap();
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "wrong"));
        let sha =
            sha_crypt::sha512_simple("pw", &sha_crypt::Sha512Params::new(5000).unwrap()).unwrap();
        assert!(verify_password(&format!("{{SHA512-CRYPT}}{sha}"), "pw"));
        assert!(!verify_password(&format!("{{SHA512-CRYPT}}{sha}"), "pW"));
        let blf = bcrypt::hash("pw", 4).unwrap().replacen("$2b$", "$2y$", 1);
        assert!(verify_password(&format!("{{BLF-CRYPT}}{blf}"), "pw"));
        assert!(!verify_password("{PLAIN}pw", "pw"));
        assert!(check_hash_format("{MD5}abc").is_err());
    }

    #[test]
    fn modify_saves_atomically_and_live_view_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = LiveAccounts::open(dir.path()).unwrap();
        assert!(live.db().accounts.is_empty());
        AccountDb::modify(dir.path(), |db| db.add("a@example.org", "h".into(), 3)).unwrap();
        assert!(live.refresh().unwrap());
        assert_eq!(live.db().accounts["a@example.org"].shard, 3);
        assert!(!live.refresh().unwrap());
        let err = AccountDb::modify(dir.path(), |db| db.add("a@example.org", "h".into(), 3));
        assert!(matches!(err, Err(AccountError::Exists(_))));
    }
}

/// Successful logins remembered per executor, so a client that logs in again (POP3 polling,
/// one IMAP connection per folder) costs one HMAC instead of an argon2 run. Entries hold an
/// HMAC of the password under a key made at start-up, never the password, and are dropped
/// as soon as the stored hash changes (`ringpost user passwd`).
pub struct AuthCache {
    key: ring::hmac::Key,
    entries: std::collections::HashMap<String, (String, ring::hmac::Tag)>,
}

impl AuthCache {
    /// An empty cache with a fresh random key.
    pub fn new() -> AuthCache {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rand::random::<[u8; 32]>())
        });
        AuthCache {
            key,
            entries: Default::default(),
        }
    }

    /// Whether `account` logged in with this `password` against this `hash` before.
    pub fn check(&self, account: &str, hash: &str, password: &str) -> bool {
        match self.entries.get(account) {
            Some((h, tag)) if h == hash => {
                ring::hmac::verify(&self.key, password.as_bytes(), tag.as_ref()).is_ok()
            }
            _ => false,
        }
    }

    /// Remembers a successful verification.
    pub fn remember(&mut self, account: &str, hash: &str, password: &str) {
        if self.entries.len() >= 100_000 {
            self.entries.clear(); // crude bound; a miss only costs one real verification
        }
        let tag = ring::hmac::sign(&self.key, password.as_bytes());
        self.entries
            .insert(account.to_string(), (hash.to_string(), tag));
    }
}

impl Default for AuthCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod auth_cache_tests {
    use super::AuthCache;

    #[test]
    fn cache_hits_only_for_same_password_and_hash() {
        let mut c = AuthCache::new();
        assert!(!c.check("a@x", "h1", "pw"));
        c.remember("a@x", "h1", "pw");
        assert!(c.check("a@x", "h1", "pw"));
        assert!(!c.check("a@x", "h1", "pW"));
        assert!(
            !c.check("a@x", "h2", "pw"),
            "a changed hash invalidates the entry"
        );
        assert!(!c.check("b@x", "h1", "pw"));
    }
}
