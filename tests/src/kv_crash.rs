//! What the KV `kill -9` test and its child (`rg-kv-writer`) agree on: the configuration, the
//! namespace, and the key and value of each sequence number of the test (deterministic, so a
//! value read back can be checked byte for byte).

use std::path::Path;

use rocketgate_core::Config;

/// The KV namespace the child writes.
pub const NAMESPACE: &str = "crash.kv";

/// The broker configuration of the child and of the checks: small segments, a KV compaction
/// threshold low enough that kills also land around compactions.
pub fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.store.disk_max_used_ratio = 0.99;
    c.kv.compact_log_bytes = 256 << 10;
    c
}

/// The key of test sequence `seq`.
pub fn key(seq: u64) -> String {
    format!("{seq:020}")
}

/// The value of test sequence `seq`: 16 to 2,063 bytes derived from it.
pub fn value(seq: u64) -> Vec<u8> {
    let len = 16 + (seq.wrapping_mul(2_654_435_761) % 2048) as usize;
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}
