//! `rg-kv-writer <data dir> <first seq> [writers] [max seconds]`: the child process of the KV
//! `kill -9` test (`it/store_kv_crash.rs`).
//!
//! Opens a broker in `<data dir>` (1 MiB segments, a 256 KiB KV compaction threshold so that
//! kills also land around compactions), prints `READY <last KV sequence>`, then runs `writers`
//! concurrent tasks that put the keys `first seq`, `first seq + 1`, ... (20 digits) into the KV
//! namespace `crash.kv` with the value of [`value`], and delete every seventh key they wrote
//! before. Each acknowledged put prints `PUT <seq>`, each acknowledged delete `DEL <seq>`,
//! flushing stdout after each line, until the test kills the process with SIGKILL. As a safety
//! net it exits on its own after `max seconds` (60) or when stdout is closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rocketgate_core::{Broker, Error, StoreError};

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: rg-kv-writer <data dir> <first seq> [writers] [max seconds]");
    }
    let dir = PathBuf::from(&args[1]);
    let first: u64 = args[2].parse().context("first seq")?;
    let writers: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let max_secs: u64 = args.get(4).map_or(Ok(60), |s| s.parse())?;
    // The test process may be forking another child right now, which then briefly holds a copy
    // of the test's (already released) lock descriptor: retry "in use" for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let broker = loop {
        match Broker::open(rocketgate_tests::kv_crash::config(&dir)) {
            Err(Error::Store(StoreError::Io { ref source, .. }))
                if source.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other.context("open the broker")?,
        }
    };
    emit(&format!("READY {}", broker.kv().last_sequence()));
    let next = Arc::new(AtomicU64::new(first));
    for _ in 0..writers {
        let broker = broker.clone();
        let next = next.clone();
        tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let key = rocketgate_tests::kv_crash::key(seq);
                let value = rocketgate_tests::kv_crash::value(seq);
                let ns = rocketgate_tests::kv_crash::NAMESPACE;
                match broker.kv().put(ns, key.as_bytes(), value).await {
                    Ok(_) => emit(&format!("PUT {seq}")),
                    Err(e) => {
                        eprintln!("rg-kv-writer: put {seq} failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                if seq.is_multiple_of(7) && broker.kv().delete(ns, key.as_bytes()).await.is_ok() {
                    emit(&format!("DEL {seq}"));
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(max_secs)).await;
    eprintln!("rg-kv-writer: not killed within {max_secs} s, exiting");
    std::process::exit(3);
}
