//! `rg-crash-writer <data dir> <first seq> [producers] [max seconds] [SYNC|ASYNC]`: the child
//! process of the T1a/T1b crash tests (`it/store_crash.rs`).
//!
//! Opens the store in `<data dir>` with the configuration of [`rocketgate_tests::crash::config`]
//! (SYNC_FLUSH unless told otherwise), prints `READY ...`, then runs `producers` concurrent
//! tasks that send messages `first seq`, `first seq + 1`, ... as fast as they can and print one
//! `ACK ...` line per acknowledged send, flushing stdout after each line, until the test kills the
//! process with SIGKILL. As a safety net against orphans it exits on its own after `max seconds`
//! (60) or as soon as stdout is closed (the test is gone).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rocketgate_core::{Broker, Error, FlushMode, StoreError, TopicConfig};
use rocketgate_tests::crash::{self, Ack, Ready};

/// Writes one line and flushes; exits the process if the reader is gone.
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
        bail!(
            "usage: rg-crash-writer <data dir> <first seq> [producers] [max seconds] [SYNC|ASYNC]"
        );
    }
    let dir = PathBuf::from(&args[1]);
    let first: u64 = args[2].parse().context("first seq")?;
    let producers: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let max_secs: u64 = args.get(4).map_or(Ok(60), |s| s.parse())?;
    let mode = match args.get(5) {
        Some(s) => crash::parse_flush_mode(s).map_err(anyhow::Error::msg)?,
        None => FlushMode::Sync,
    };

    // The test process may be forking another child right now, which then briefly holds a copy
    // of the test's (already released) lock descriptor: retry "in use" for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let broker = loop {
        match Broker::open(crash::config(&dir, mode)) {
            Err(Error::Store(StoreError::Io { ref source, .. }))
                if source.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other.context("open the store")?,
        }
    };
    match broker
        .topics()
        .create(TopicConfig::new(crash::TOPIC, crash::QUEUES))
    {
        Ok(_) | Err(Error::TopicExists(_)) => {}
        Err(e) => return Err(e).context("create the topic"),
    }
    let report = broker.storage().recovery_report();
    emit(
        &Ready {
            after_crash: report.after_crash,
            cut_tail: report.cut_tail,
            log_end: report.log_end,
        }
        .to_string(),
    );

    let next = Arc::new(AtomicU64::new(first));
    for _ in 0..producers {
        let broker = broker.clone();
        let next = next.clone();
        tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                match broker.producer().send(crash::message(seq).into()).await {
                    Ok(r) => emit(
                        &Ack {
                            seq,
                            queue_id: r.queue_id,
                            // A plain message always has one; MAX would fail the check.
                            queue_offset: r.queue_offset.unwrap_or(u64::MAX),
                            physical_offset: r.physical_offset,
                            message_id: r.message_id,
                        }
                        .to_string(),
                    ),
                    Err(e) => {
                        eprintln!("rg-crash-writer: send {seq} failed: {e}");
                        emit(&format!("ERR {seq} {:?}", e.kind()));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(max_secs)).await;
    eprintln!("rg-crash-writer: not killed within {max_secs} s, exiting");
    // Exit without a clean shutdown, like the kill this process was waiting for.
    std::process::exit(3);
}
