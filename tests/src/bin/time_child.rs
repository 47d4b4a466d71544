//! `rg-time-child <mode> <data dir> [args]`: the child process of the time-semantics tests
//! (`it/time_delay.rs`, `it/time_transaction.rs`, `it/time_load.rs`). The line protocol and the
//! configuration are in [`rocketgate_tests::time`].
//!
//! - `schedule <dir>`: SYNC_FLUSH; sends a message of delay level 1, one of level 2 and one
//!   timed [`TIMED_AFTER_MS`] ahead, prints `SCHEDULED` per message and `READY`, then waits to
//!   be killed.
//! - `halves <dir> <n> [commit]`: SYNC_FLUSH; sends `n` half messages (no checker registered,
//!   first check-back pushed far out so that none is counted here), prints `HALF` per half and
//!   `READY`; with `commit` it then commits them one at a time, in order of `n`, printing
//!   `COMMITTED` after each; then waits to be killed.
//! - `load <dir> <n> <lead ms> <spread ms> <seed>`: ASYNC_FLUSH; prints `MEMORY open` and
//!   `READY`, then sends `n` messages timed at `start + lead + h(seed, seq) % spread` from four
//!   tasks while a consumer pops them (long polling, batches of 256, `ack_batch`), printing
//!   `GOT` per delivery. Once every seq arrived it pops 500 ms more (to catch duplicates),
//!   prints `MEMORY end` and `DONE` and exits.
//!
//! As a safety net against orphans the process exits on its own after 120 s, or as soon as
//! stdout is closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rocketgate_core::Resolution;
use rocketgate_core::{Broker, Error, FlushMode, PopRequest, StoreError, TopicConfig};
use rocketgate_tests::payload::mix;
use rocketgate_tests::time::{
    self, Line, DELAY_TOPIC, LOAD_GROUP, LOAD_TOPIC, PRODUCER_GROUP, QUEUES, TIMED_AFTER_MS,
    TX_TOPIC,
};

/// Writes lines and flushes; exits the process if the reader is gone.
fn emit_all(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    for l in lines {
        ok &= writeln!(out, "{l}").is_ok();
    }
    if !ok || out.flush().is_err() {
        std::process::exit(0);
    }
}

fn emit(line: impl std::fmt::Display) {
    emit_all(&[line.to_string()]);
}

fn now_ms() -> i64 {
    rocketgate_core::now_ms()
}

/// Opens the broker, retrying "in use" for a few seconds (the test process may be forking
/// another child that briefly holds a copy of a released lock descriptor).
fn open(config: rocketgate_core::Config) -> anyhow::Result<Broker> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Broker::open(config.clone()) {
            Err(Error::Store(StoreError::Io { ref source, .. }))
                if source.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other.context("open the store"),
        }
    }
}

fn memory_line(at: &str) -> Line {
    let (hwm_kb, rss_kb) = time::memory_kb().unwrap_or((0, 0));
    Line::Memory {
        at: at.into(),
        hwm_kb,
        rss_kb,
    }
}

async fn schedule(dir: &Path) -> anyhow::Result<Option<Broker>> {
    let broker = open(time::config(dir, FlushMode::Sync))?;
    broker.topics().create(
        TopicConfig::new(DELAY_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Delay),
    )?;
    for n in 0..3 {
        let m = time::scheduled_message(n, now_ms() + TIMED_AFTER_MS);
        let r = broker.producer().send(m.into()).await?;
        let deliver_at_ms = r.deliver_at_ms.context("no deliver_at_ms in the receipt")?;
        emit(Line::Scheduled {
            n,
            id: r.message_id,
            deliver_at_ms,
            queue_id: r.queue_id,
        });
    }
    emit(Line::Ready);
    // Kept open until the kill: a clean shutdown here would race the crash under test.
    Ok(Some(broker))
}

async fn halves(dir: &Path, n: u64, commit: bool) -> anyhow::Result<Option<Broker>> {
    let mut config = time::config(dir, FlushMode::Sync);
    config.transaction.check_first_ms = 600_000;
    let broker = open(config)?;
    broker.topics().create(
        TopicConfig::new(TX_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Transaction),
    )?;
    // Eight concurrent producers share the fsyncs.
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            let mut lines = Vec::new();
            for i in (t..n).step_by(8) {
                let r = broker
                    .transactions()
                    .send_half(time::half_message(i).into(), PRODUCER_GROUP)
                    .await?;
                lines.push(
                    Line::Half {
                        n: i,
                        transaction_id: r.transaction_id.context("no transaction id")?,
                        message_id: r.message_id,
                    }
                    .to_string(),
                );
            }
            anyhow::Ok(lines)
        }));
    }
    let mut txs = Vec::new();
    for t in tasks {
        let lines = t.await??;
        for l in &lines {
            if let Ok(Line::Half {
                n, transaction_id, ..
            }) = l.parse()
            {
                txs.push((n, transaction_id));
            }
        }
        emit_all(&lines);
    }
    emit(Line::Ready);
    if commit {
        txs.sort();
        for (n, tx) in txs {
            broker
                .transactions()
                .end(&tx, Resolution::Commit)
                .await
                .with_context(|| format!("commit half {n}"))?;
            emit(Line::Committed { n });
        }
    }
    // Kept open until the kill: a clean shutdown here would race the crash under test.
    Ok(Some(broker))
}

async fn load(dir: &Path, n: u64, lead_ms: i64, spread_ms: u64, seed: u64) -> anyhow::Result<()> {
    let broker = open(time::config(dir, FlushMode::Async))?;
    broker.topics().create(
        TopicConfig::new(LOAD_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Delay),
    )?;
    emit(memory_line("open"));
    emit(Line::Ready);
    let start = now_ms();
    let due = move |seq: u64| start + lead_ms + (mix(seed ^ seq) % spread_ms.max(1)) as i64;

    let consumer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut seen: HashSet<u64> = HashSet::new();
            let give_up = Instant::now()
                + Duration::from_millis(lead_ms.max(0) as u64 + spread_ms)
                + Duration::from_secs(60);
            let mut extra_until: Option<Instant> = None;
            loop {
                let now = Instant::now();
                if now >= give_up || extra_until.is_some_and(|t| now >= t) {
                    break;
                }
                let batch = broker
                    .consumer()
                    .pop(PopRequest {
                        group: LOAD_GROUP.into(),
                        topic: LOAD_TOPIC.into(),
                        filter: None,
                        max: 256,
                        invisible: Duration::from_secs(120),
                        wait: Duration::from_millis(500),
                    })
                    .await;
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        emit(format!("ERR pop: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let popped_ms = now_ms();
                let mut lines = Vec::with_capacity(batch.len());
                for p in &batch {
                    match time::load_seq(&p.message.body) {
                        Some(seq) => {
                            seen.insert(seq);
                            lines.push(
                                Line::Got {
                                    seq,
                                    deliver_at_ms: due(seq),
                                    stored_ms: p.message.store_timestamp_ms,
                                    popped_ms,
                                }
                                .to_string(),
                            );
                        }
                        None => lines.push(format!("ERR body of {}", p.message.message_id)),
                    }
                }
                emit_all(&lines);
                let handles: Vec<&str> = batch.iter().map(|p| p.receipt_handle.as_str()).collect();
                if !handles.is_empty() {
                    match broker.consumer().ack_batch(LOAD_GROUP, &handles).await {
                        Ok(results) => {
                            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                                emit(format!("ERR ack: {e}"));
                            }
                        }
                        Err(e) => emit(format!("ERR ack_batch: {e}")),
                    }
                }
                if seen.len() as u64 >= n && extra_until.is_none() {
                    extra_until = Some(Instant::now() + Duration::from_millis(500));
                }
            }
        })
    };

    let t0 = Instant::now();
    let mut senders = Vec::new();
    for t in 0..4u64 {
        let broker = broker.clone();
        senders.push(tokio::spawn(async move {
            let mut past = 0u64;
            for seq in (t..n).step_by(4) {
                let r = broker
                    .producer()
                    .send(time::load_message(seq, due(seq)).into())
                    .await?;
                past += u64::from(r.deliver_at_ms.is_none());
            }
            anyhow::Ok(past)
        }));
    }
    let mut past = 0;
    for s in senders {
        past += s.await??;
    }
    emit(Line::Sent {
        n,
        past,
        took_ms: t0.elapsed().as_millis() as u64,
    });
    emit(memory_line("sent"));
    consumer.await?;
    emit(memory_line("end"));
    emit(Line::Done);
    broker.shutdown()?;
    std::process::exit(0);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: rg-time-child <schedule|halves|load> <data dir> [args]");
    }
    let dir = PathBuf::from(&args[2]);
    let arg = |i: usize| -> anyhow::Result<u64> {
        args.get(i)
            .with_context(|| format!("argument {i} missing"))?
            .parse()
            .with_context(|| format!("argument {i}"))
    };
    let run = match args[1].as_str() {
        "schedule" => schedule(&dir).await,
        "halves" => halves(&dir, arg(3)?, args.get(4).is_some_and(|a| a == "commit")).await,
        "load" => load(&dir, arg(3)?, arg(4)? as i64, arg(5)?, arg(6)?)
            .await
            .map(|()| None),
        other => bail!("unknown mode {other}"),
    };
    let _open = match run {
        Ok(broker) => broker,
        Err(e) => {
            emit(format!("ERR {e:#}"));
            std::process::exit(2);
        }
    };
    tokio::time::sleep(Duration::from_secs(120)).await;
    eprintln!("rg-time-child: not killed within 120 s, exiting");
    // Exit without a clean shutdown, like the kill this process was waiting for.
    std::process::exit(3);
}
