//! Fuzzes the NameServer: each input is a sequence of `[kind][u16 LE length][protobuf]` records
//! (register, unregister, heartbeat, route and cluster queries, expiry scans, replies decoded by
//! the broker side) applied to a fresh in-memory service
//! (`rocketgate_nameserver::fuzz::NameServerFuzz::run`).
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run nameserver /tmp/rg-corpus-nameserver
//! corpus/nameserver -- -max_total_time=60 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20`.
#![no_main]

use std::sync::{Mutex, OnceLock};

use rocketgate_nameserver::fuzz::NameServerFuzz;

fn harness() -> &'static Mutex<NameServerFuzz> {
    static H: OnceLock<Mutex<NameServerFuzz>> = OnceLock::new();
    H.get_or_init(|| Mutex::new(NameServerFuzz::new().expect("runtime")))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness().lock().expect("harness").run(data);
});
