//! The shard map: which executor owns which shard, and which shard owns an account.
//!
//! Both functions are part of the on-disk format: a data directory records its shard count and
//! every account its shard, so `shard_of_account` must give the same answer on every version,
//! platform and core count, forever. Never change it.

/// FNV-1a 64-bit offset basis (from the FNV specification).
const FNV64_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime (from the FNV specification).
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The executor that owns `shard` when `executors` executors run: `shard % executors`.
///
/// Panics if `executors` is 0 (a configuration bug, never peer input).
pub fn owner_of(shard: u32, executors: u32) -> u32 {
    assert!(executors > 0, "owner_of: executor count must be at least 1");
    shard % executors
}

/// The shards (ascending) that `executor` owns out of `shards`, when `executors` executors run.
///
/// Empty when `executor >= executors` or when there are fewer shards than executors and this
/// one gets none. Panics if `executors` is 0.
pub fn shards_of(executor: u32, executors: u32, shards: u32) -> Vec<u32> {
    assert!(
        executors > 0,
        "shards_of: executor count must be at least 1"
    );
    if executor >= executors {
        return Vec::new();
    }
    (executor..shards).step_by(executors as usize).collect()
}

/// The stable 64-bit hash of an account name: FNV-1a 64 over its bytes with ASCII `A-Z`
/// folded to `a-z`.
///
/// Only ASCII is folded, on purpose: Unicode case tables change between Rust versions, and this
/// value must never change. Non-ASCII bytes (SMTPUTF8 local parts) are hashed as they are.
/// FNV-1a is written out here rather than taken from a crate so that no dependency upgrade can
/// ever move an account to another shard.
pub fn account_hash(account: &str) -> u64 {
    account.bytes().fold(FNV64_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(FNV64_PRIME)
    })
}

/// The shard (0..`shards`) that owns `account`: `account_hash(account) % shards`.
///
/// Panics if `shards` is 0 (a configuration bug, never peer input).
pub fn shard_of_account(account: &str, shards: u32) -> u32 {
    assert!(
        shards > 0,
        "shard_of_account: shard count must be at least 1"
    );
    // The remainder is < shards <= u32::MAX, so the narrowing cannot lose bits.
    (account_hash(account) % u64::from(shards)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_covers_every_shard_exactly_once() {
        for executors in [1u32, 2, 3, 16] {
            for shards in [7u32, 16, 64] {
                let mut seen = vec![0u32; shards as usize];
                for executor in 0..executors {
                    let owned = shards_of(executor, executors, shards);
                    assert!(
                        owned.windows(2).all(|w| w[0] < w[1]),
                        "ascending, no repeats"
                    );
                    for shard in owned {
                        assert_eq!(owner_of(shard, executors), executor);
                        seen[shard as usize] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|&n| n == 1),
                    "executors={executors} shards={shards}: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn shards_of_examples() {
        assert_eq!(shards_of(0, 1, 4), vec![0, 1, 2, 3]);
        assert_eq!(shards_of(1, 3, 16), vec![1, 4, 7, 10, 13]);
        assert_eq!(shards_of(15, 16, 7), Vec::<u32>::new());
        assert_eq!(shards_of(3, 3, 16), Vec::<u32>::new());
        assert_eq!(owner_of(17, 16), 1);
    }

    #[test]
    fn account_hash_is_standard_fnv1a64() {
        // Test vectors from the FNV reference (draft-eastlake-fnv).
        assert_eq!(account_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(account_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(account_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shard_of_account_is_pinned() {
        // These values are on disk in every data directory: if this test fails, the change is
        // wrong, not the test.
        let pinned: [(&str, u64, u32, u32); 4] = [
            ("alice@example.org", 0xfe0b_59c4_6c41_d4d1, 1, 17),
            ("bob@example.org", 0x856b_eca9_1409_abca, 10, 10),
            ("postmaster@localhost", 0xf0d7_9fe2_4d0a_9a50, 0, 16),
            ("user1@example.org", 0x38f8_63a8_8896_60e3, 3, 35),
        ];
        for (account, hash, of16, of64) in pinned {
            assert_eq!(account_hash(account), hash, "{account}");
            assert_eq!(shard_of_account(account, 16), of16, "{account}");
            assert_eq!(shard_of_account(account, 64), of64, "{account}");
        }
    }

    #[test]
    fn account_hash_folds_ascii_case_only() {
        assert_eq!(
            account_hash("Alice@Example.ORG"),
            account_hash("alice@example.org")
        );
        assert_eq!(
            shard_of_account("BOB@EXAMPLE.ORG", 16),
            shard_of_account("bob@example.org", 16)
        );
        // Non-ASCII is hashed byte for byte: 'É' and 'é' stay distinct.
        assert_ne!(account_hash("É@example.org"), account_hash("é@example.org"));
    }

    #[test]
    fn shard_of_account_in_range() {
        for shards in [1u32, 7, 16, 64] {
            for i in 0..200 {
                assert!(shard_of_account(&format!("user{i}@example.org"), shards) < shards);
            }
        }
    }
}
