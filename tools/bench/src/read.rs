//! The sequential read pass of `bench store`: reopens the store an append case left behind and
//! pulls every message back, queue by queue, in batches.
//!
//! Owns: the reopened broker, from open to clean shutdown. The caller owns the directory.
//!
//! Invariants: the pass must read back exactly the messages the case acknowledged (anything
//! else is an error, not a figure); it reads through `Consumer::pull`, so each message is
//! verified (CRC) and copied out as a consumer would get it. The data is in the page cache
//! (just written), so this measures the read path of the store, not the disk.
//!
//! Who calls it: [`super::store`] only. Concurrency: one task, one pull at a time; the shutdown
//! runs on the blocking pool.
//!
//! Owns the read pass; must not send to the store it reads (it only pulls what the append case
//! left).

use std::path::Path;
use std::time::Instant;

use crate::error::Context;
use rocketgate_core::{Broker, FlushMode};

use super::append::{config, TOPIC};
use super::report::{histogram, ReadResult};
use super::units::{mb_per_sec, per_sec};
use crate::error::{bail, Result};

/// What to read back.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// Queues of the topic.
    pub queues: u32,
    /// Messages per pull.
    pub batch: usize,
    /// Body size the case wrote.
    pub body: usize,
    /// Producers of the case that wrote it.
    pub producers: usize,
    /// Messages the case acknowledged.
    pub expected: u64,
    /// Segment size of the store.
    pub segment_size: u64,
}

/// Reads every message of the benchmark topic in `dir`. The disk ratio is left at 0 for
/// [`super::goals::apply_yardstick`].
///
/// # Errors
/// Open and pull errors, or a count that differs from `pass.expected`.
pub async fn run(dir: &Path, pass: Pass) -> Result<ReadResult> {
    let broker = Broker::open(config(dir, FlushMode::Async, pass.segment_size))
        .with_context(|| format!("cannot reopen the store in {}", dir.display()))?;
    let mut hist = histogram()?;
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    for queue in 0..pass.queues {
        let mut offset = 0;
        loop {
            let t = Instant::now();
            let r = broker
                .consumer()
                .pull(TOPIC, queue, offset, pass.batch)
                .await?;
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            if r.messages.is_empty() {
                break;
            }
            messages += r.messages.len() as u64;
            bytes += r.messages.iter().map(|m| m.body.len() as u64).sum::<u64>();
            offset = r.next_offset;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    broker.close().await?;
    drop(broker);
    if messages != pass.expected {
        bail!(
            "read back {messages} messages from {}, but {} were acknowledged",
            dir.display(),
            pass.expected
        );
    }
    Ok(ReadResult {
        body_bytes: pass.body,
        producers: pass.producers,
        messages,
        secs,
        msgs_per_sec: per_sec(messages, secs),
        mb_per_sec: mb_per_sec(bytes, secs),
        disk_ratio: 0.0,
        pull_latency: (&hist).into(),
        batch: pass.batch,
    })
}
