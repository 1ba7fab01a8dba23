//! TEMPORARY stub in main until the shards branch lands.
/// Stable shard of an account.
pub fn shard_of_account(account: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in account.to_lowercase().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % shards as u64) as u32
}
