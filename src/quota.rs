//! Account quotas (`limits.quota_bytes`): which accounts are full, readable from every executor.
//!
//! An account's usage is known only to the executor that owns its shard. That executor reports
//! it here after every durable change to the account (storage's usage observer) and at start-up;
//! any executor's SMTP session reads the answer at RCPT time without a round trip. The set
//! changes only when an account crosses its limit, so the lock is read almost always.

use std::collections::HashSet;
use std::sync::RwLock;

/// The accounts at or over their quota.
#[derive(Debug, Default)]
pub struct QuotaBoard {
    limit: Option<u64>,
    full: RwLock<HashSet<String>>,
}

impl QuotaBoard {
    /// A board for `limit` bytes per account (`None`: no quota, nothing is ever full).
    pub fn new(limit: Option<u64>) -> QuotaBoard {
        QuotaBoard {
            limit,
            full: RwLock::default(),
        }
    }

    /// The configured limit in bytes.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Records that `account` now stores `bytes` (called by the executor that owns it).
    pub fn update(&self, account: &str, bytes: u64) {
        let Some(limit) = self.limit else {
            return;
        };
        let full = bytes >= limit;
        if self.is_full(account) == full {
            return;
        }
        // A panic while the lock was held cannot leave the set half-changed: take it anyway.
        let mut set = self.full.write().unwrap_or_else(|e| e.into_inner());
        if full {
            set.insert(account.to_string());
        } else {
            set.remove(account);
        }
    }

    /// Whether `account` is at or over its quota: new mail for it must wait.
    pub fn is_full(&self, account: &str) -> bool {
        self.limit.is_some()
            && self
                .full
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_full_from_its_limit_until_it_drops_below() {
        let b = QuotaBoard::new(Some(1000));
        b.update("a@x", 999);
        assert!(!b.is_full("a@x"));
        b.update("a@x", 1000);
        assert!(b.is_full("a@x"));
        assert!(!b.is_full("b@x"));
        b.update("a@x", 5000);
        assert!(b.is_full("a@x"));
        b.update("a@x", 10);
        assert!(!b.is_full("a@x"));
    }

    #[test]
    fn without_a_limit_nothing_is_full() {
        let b = QuotaBoard::new(None);
        b.update("a@x", u64::MAX);
        assert!(!b.is_full("a@x"));
        assert_eq!(b.limit(), None);
    }
}
