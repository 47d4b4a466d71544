//! One append case of `bench store`: a fresh `Broker` in its own directory, one topic, and `n`
//! producer tasks calling `Producer::send` until the case's time or message limit.
//!
//! Owns: the case's broker from open to clean shutdown, and the producer tasks. The caller owns
//! the directory (fresh, deleted afterwards).
//!
//! Invariants:
//! - A producer sends one message at a time and awaits each acknowledgement, so "64 producers"
//!   means at most 64 sends in flight. Under ASYNC with more than one producer each task yields
//!   after every send: an ASYNC send never waits, and without the yield two tasks (one per
//!   worker) would run while 62 never start. A SYNC send waits for the flush anyway, and an extra
//!   yield there would only delay the next append past the next group commit.
//! - The send latency is taken around `Producer::send` only; building the message is the
//!   client's cost and counts in the throughput, not the latency.
//! - "durable" time = ack time + `Broker::shutdown` (final flush, dispatch and checkpoint): the
//!   moment nothing of the case is left only in memory. It includes no waiting for the next
//!   periodic ASYNC flush.
//!
//! Who calls it: [`super::store`] only. Concurrency: producers are tokio tasks on the caller's
//! multi-thread runtime; the shutdown runs on the blocking pool.
//!
//! Owns one append case; must not write outside the case directory it is given, nor print
//! (`store.rs` and `report.rs` do).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rocketgate_core::{Broker, Config, FlushMode, Message, TopicConfig};

use super::disk::fill_pattern;
use super::report::{histogram, AppendResult, Latency};
use super::units::{mb_per_sec, per_sec};
use crate::error::Result;

/// Name of the benchmark topic.
pub const TOPIC: &str = "bench";

/// What one case measures.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Flush mode of the store.
    pub flush: FlushMode,
    /// Body size of every message.
    pub body: usize,
    /// Concurrent producer tasks.
    pub producers: usize,
}

impl Case {
    /// `ASYNC` or `SYNC`.
    pub fn flush_name(&self) -> &'static str {
        match self.flush {
            FlushMode::Async => "ASYNC",
            FlushMode::Sync => "SYNC",
        }
    }
}

/// Store settings shared by every case.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Queues of the benchmark topic.
    pub queues: u32,
    /// CommitLog segment size.
    pub segment_size: u64,
    /// Time limit of a case.
    pub duration: Duration,
    /// Message limit of a case (over all producers).
    pub messages: Option<u64>,
}

/// The core configuration of a case in `dir`: defaults except the directory, the flush mode and
/// the segment size.
pub fn config(dir: &Path, flush: FlushMode, segment_size: u64) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.flush_mode = flush;
    c.store.segment_size = segment_size;
    c
}

/// A fresh broker in `dir` (ASYNC flush) with the benchmark topic of `queues` queues, MIXED:
/// the delay benchmark sends timed and plain messages to it.
///
/// # Errors
/// Broker open and topic creation errors.
pub fn open_async(dir: &Path, queues: u32, segment_size: u64) -> Result<Broker> {
    let broker = Broker::open(config(dir, FlushMode::Async, segment_size))
        .with_context(|| format!("cannot open a broker in {}", dir.display()))?;
    broker
        .topics()
        .create(TopicConfig::new(TOPIC, queues).with_type(rocketgate_core::MessageType::Mixed))?;
    Ok(broker)
}

/// A body of `len` bytes of a pseudo-random pattern.
pub fn body(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    let mut state = 0x2545_F491_4F6C_DD1D ^ len as u64;
    fill_pattern(&mut v, &mut state);
    Bytes::from(v)
}

/// Runs one case in the fresh directory `dir` and shuts its broker down cleanly. The disk
/// ratios are left at 0 for [`super::goals::apply_yardstick`].
///
/// # Errors
/// Broker open, topic creation, any failed send, or the final shutdown.
pub async fn run(dir: &Path, case: Case, setup: Setup) -> Result<AppendResult> {
    let broker = Broker::open(config(dir, case.flush, setup.segment_size))
        .with_context(|| format!("cannot open a broker in {}", dir.display()))?;
    broker
        .topics()
        .create(TopicConfig::new(TOPIC, setup.queues))?;
    let log_start = broker.storage().log_offsets().end;
    let tickets = Arc::new(AtomicU64::new(0));
    let limit = setup.messages.unwrap_or(u64::MAX);
    let body = body(case.body);

    let start = Instant::now();
    let deadline = start + setup.duration;
    let mut tasks = Vec::with_capacity(case.producers);
    for _ in 0..case.producers {
        let p = Producer {
            broker: broker.clone(),
            body: body.clone(),
            deadline,
            tickets: tickets.clone(),
            limit,
            yield_each: case.producers > 1 && case.flush == FlushMode::Async,
        };
        tasks.push(tokio::spawn(p.run()));
    }
    let mut hist = histogram()?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let ack_secs = start.elapsed().as_secs_f64();
    let log = broker.storage().log_offsets();
    let (flushed, wrote, dispatched) = (log.durable, log.end, log.dispatched);

    broker.close().await?;
    let durable_secs = start.elapsed().as_secs_f64();
    drop(broker);

    let messages = hist.len();
    let body_bytes = messages * case.body as u64;
    Ok(AppendResult {
        flush: case.flush_name(),
        body_bytes: case.body,
        producers: case.producers,
        messages,
        log_bytes: wrote - log_start,
        ack_secs,
        msgs_per_sec: per_sec(messages, ack_secs),
        mb_per_sec: mb_per_sec(body_bytes, ack_secs),
        disk_ratio: 0.0,
        durable_secs,
        durable_mb_per_sec: mb_per_sec(body_bytes, durable_secs),
        durable_disk_ratio: 0.0,
        flush_backlog_bytes: wrote.saturating_sub(flushed),
        dispatch_backlog_bytes: wrote.saturating_sub(dispatched),
        latency: Latency::from(&hist),
        others_cpu_percent: None,
    })
}

/// One producer task.
struct Producer {
    broker: Broker,
    body: Bytes,
    deadline: Instant,
    /// Messages claimed so far over all producers (for the message limit).
    tickets: Arc<AtomicU64>,
    limit: u64,
    yield_each: bool,
}

impl Producer {
    /// Sends until the deadline or the message limit; returns the latency of every send (ns).
    async fn run(self) -> Result<Histogram<u64>> {
        let mut hist = histogram()?;
        while self.tickets.fetch_add(1, Ordering::Relaxed) < self.limit {
            let msg = Message::new(TOPIC, self.body.clone());
            let t = Instant::now();
            self.broker.producer().send(msg.into()).await?;
            let now = Instant::now();
            hist.saturating_record(now.duration_since(t).as_nanos() as u64);
            if now >= self.deadline {
                break;
            }
            if self.yield_each {
                tokio::task::yield_now().await;
            }
        }
        Ok(hist)
    }
}
