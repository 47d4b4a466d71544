//! `rg-consume-child <data dir> <persist interval ms> <snapshot after first pop: 0|1> [max s]`:
//! the child process of the consumer crash test (`it/consume_restart.rs`).
//!
//! Opens the store in `<data dir>` with [`rocketgate_tests::consume::config`] (SYNC_FLUSH, the
//! consumer snapshot every `<persist interval ms>`), prints `READY`, then runs two consumers
//! until the test kills the process with SIGKILL, printing the lines of
//! [`rocketgate_tests::consume::Line`] and flushing stdout after each:
//! - a simple consumer popping [`POP_TOPIC`] in small batches and acknowledging every message
//!   except the [`consume::skipped`] ones;
//! - a pull consumer reading every queue of [`PULL_TOPIC`] from its committed offset and
//!   committing after each batch.
//!
//! Both pace themselves (a few ms per batch) so that a kill finds them mid-way. With
//! `snapshot after first pop = 1` the consumer state is persisted once right after the first
//! pop, so that the kill never comes before the first snapshot that knows the pop state (that
//! case has its own test). As a safety net against orphans the process exits on its own after
//! `max seconds` (60) or as soon as stdout is closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rocketgate_core::{Broker, Error, GroupPullRequest, PopRequest, StoreError};
use rocketgate_tests::consume::{
    self, Line, POP_BATCH, POP_GROUP, POP_INVISIBLE_MS, POP_TOPIC, PULL_BATCH, PULL_GROUP,
    PULL_TOPIC, QUEUES,
};

/// Writes one line and flushes; exits the process if the reader is gone.
fn emit(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

async fn popper(broker: Broker, snapshot_after_first_pop: bool) {
    let mut first = true;
    loop {
        let popped = broker
            .consumer()
            .pop(PopRequest {
                group: POP_GROUP.into(),
                topic: POP_TOPIC.into(),
                filter: None,
                max: POP_BATCH,
                invisible: Duration::from_millis(POP_INVISIBLE_MS),
                wait: Duration::from_millis(200),
            })
            .await;
        if std::mem::take(&mut first) && snapshot_after_first_pop {
            if let Err(e) = broker.consumer().persist_state() {
                emit(format!("ERR persist: {e}"));
            }
        }
        match popped {
            Ok(batch) => {
                for p in batch {
                    let seq = match consume::check(&p.message) {
                        Ok(s) => s,
                        Err(e) => {
                            emit(format!("ERR popped a damaged message: {e}"));
                            continue;
                        }
                    };
                    emit(Line::Popped(seq, p.attempt));
                    if consume::skipped(seq) {
                        continue;
                    }
                    emit(Line::Acking(seq));
                    match broker.consumer().ack(POP_GROUP, &p.receipt_handle).await {
                        Ok(()) => emit(Line::Acked(seq)),
                        Err(e) => emit(format!("ERR ack {seq}: {e}")),
                    }
                }
            }
            Err(e) => {
                emit(format!("ERR pop: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
}

async fn puller(broker: Broker) {
    let mut next = Vec::new();
    for q in 0..QUEUES {
        match broker
            .consumer()
            .committed_offset(PULL_GROUP, PULL_TOPIC, q)
        {
            Ok(o) => next.push(o.unwrap_or(0)),
            // Not created yet: the first commit creates it (`auto_create_groups`).
            Err(Error::GroupNotFound(_)) => next.push(0),
            Err(e) => {
                emit(format!("ERR committed_offset {q}: {e}"));
                return;
            }
        }
    }
    for q in (0..QUEUES).cycle() {
        let i = q as usize;
        let pulled = broker
            .consumer()
            .pull_group(GroupPullRequest {
                group: PULL_GROUP.into(),
                topic: PULL_TOPIC.into(),
                queue_id: q,
                offset: next[i],
                max: PULL_BATCH,
                filter: None,
                wait: Duration::ZERO,
            })
            .await;
        match pulled {
            Ok(r) if !r.messages.is_empty() => {
                if let Some(Err(e)) = r.messages.iter().map(consume::check).find(Result::is_err) {
                    emit(format!("ERR pulled a damaged message: {e}"));
                }
                let to = r.next_offset;
                emit(Line::Committing(q, to));
                match broker
                    .consumer()
                    .commit_offset(PULL_GROUP, PULL_TOPIC, q, to)
                {
                    Ok(()) => emit(Line::Committed(q, to)),
                    Err(e) => emit(format!("ERR commit {q} {to}: {e}")),
                }
                next[i] = to;
            }
            Ok(_) => {}
            Err(e) => emit(format!("ERR pull {q}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: rg-consume-child <data dir> <persist interval ms> <0|1> [max seconds]");
    }
    let dir = PathBuf::from(&args[1]);
    let persist_ms: u64 = args[2].parse().context("persist interval")?;
    let snapshot_after_first_pop = args[3] == "1";
    let max_secs: u64 = args.get(4).map_or(Ok(60), |s| s.parse())?;

    // The test process may be forking another child right now, which then briefly holds a copy
    // of the test's (already released) lock descriptor: retry "in use" for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let broker = loop {
        match Broker::open(consume::config(&dir, persist_ms)) {
            Err(Error::Store(StoreError::Io { ref source, .. }))
                if source.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other.context("open the store")?,
        }
    };
    emit(Line::Ready);
    tokio::spawn(popper(broker.clone(), snapshot_after_first_pop));
    tokio::spawn(puller(broker.clone()));
    tokio::time::sleep(Duration::from_secs(max_secs)).await;
    eprintln!("rg-consume-child: not killed within {max_secs} s, exiting");
    // Exit without a clean shutdown, like the kill this process was waiting for.
    std::process::exit(3);
}
