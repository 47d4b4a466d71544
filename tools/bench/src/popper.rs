//! The consumer side shared by `bench consume` and `bench delay`: tasks that pop a topic with
//! long polling and acknowledge every batch, timing each pop and each `ack_batch`, and optionally
//! the delay of every message from a time the producer wrote into one of its properties.
//!
//! Owns: the consumer tasks, the progress counter they share, and the exactly-once check over
//! what they received.
//!
//! Invariants:
//! - Every popped message is acknowledged with one `ack_batch` per pop; a refused handle is an
//!   error, not a figure. Nothing is ever left to expire, so a message received twice is a
//!   duplicate delivery by the broker, not a retry the bench caused.
//! - Per-message delays are taken once per returned batch, right after `pop` returns, before the
//!   ack: the time a consumer would start processing it.
//! - Only pops that returned messages count in the pop latency; empty long polls (which last
//!   `wait`) are only counted.
//! - A consumer yields after every pop + ack, as a remote client would wait for the network, so
//!   that `n` consumers are `n` interleaved sessions and not one per runtime worker.
//!
//! Who calls it: [`super::consume`] and [`super::delay`]. Concurrency: tokio tasks on the
//! caller's runtime; they share only atomics.
//!
//! Owns the consumer tasks and the exactly-once check; must not print (the callers report).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rocketgate_core::{Broker, PopRequest, PoppedMessage};
use tokio::task::JoinHandle;

use super::report::histogram;
use crate::error::{bail, failed, Result};

/// Consumer group of every bench consumer.
pub const GROUP: &str = "bench";
/// Property: when the message was sent, in ns since the run's origin `Instant`.
pub const PROP_SENT_NS: &str = "bench_sent_ns";
/// Property: when the message is due, in ms since the epoch (its `deliver_at`).
pub const PROP_DUE_MS: &str = "bench_due";
/// Property: the message's number in the run, from 0 (for the exactly-once check).
pub const PROP_SEQ: &str = "bench_seq";

/// What a consumer measures per message.
#[derive(Debug, Clone, Copy)]
pub enum Stamp {
    /// Nothing per message (pure throughput).
    None,
    /// Receive time minus [`PROP_SENT_NS`] (ns since this origin).
    Sent(Instant),
    /// Wall-clock receive time minus [`PROP_DUE_MS`]; seconds counted from this wall-clock
    /// time (ms since the epoch).
    Due(i64),
}

/// How a received message is identified for the exactly-once check.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// `queue_offset * queues + queue_id`: dense for round-robin sends into `queues` queues.
    QueueOffset(u32),
    /// The [`PROP_SEQ`] property.
    Seq,
}

/// Settings of every consumer of one case.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Topic to pop.
    pub topic: String,
    /// Most messages per pop.
    pub batch: usize,
    /// Invisible time of popped messages.
    pub invisible: Duration,
    /// Long-polling wait of a pop.
    pub wait: Duration,
    /// Per-message measurement.
    pub stamp: Stamp,
    /// Identification for the exactly-once check.
    pub key: Key,
    /// Give up at this time even if not everything arrived.
    pub deadline: Instant,
}

/// Progress shared by the consumers of one case.
#[derive(Debug)]
pub struct Progress {
    /// Messages received so far (over all consumers).
    pub received: AtomicU64,
    /// Stop once `received` reaches this (`u64::MAX` while unknown).
    pub target: AtomicU64,
    /// When `received` reached `target`, in ns since `start` (0 until then).
    pub done_ns: AtomicU64,
    /// Start of the measured interval.
    pub start: Instant,
}

impl Progress {
    /// Progress towards `target` (or an unknown target), measured from now.
    pub fn new(target: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            received: AtomicU64::new(0),
            target: AtomicU64::new(target.unwrap_or(u64::MAX)),
            done_ns: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// Sets the target once it is known (the producer finished).
    pub fn set_target(&self, target: u64) {
        self.target.store(target, Ordering::Release);
        if self.received.load(Ordering::Acquire) >= target {
            self.mark_done();
        }
    }

    fn done(&self) -> bool {
        self.received.load(Ordering::Acquire) >= self.target.load(Ordering::Acquire)
    }

    fn mark_done(&self) {
        let ns = (self.start.elapsed().as_nanos() as u64).max(1);
        let _ = self
            .done_ns
            .compare_exchange(0, ns, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Seconds from `start` until the target was reached, if it was.
    pub fn done_secs(&self) -> Option<f64> {
        match self.done_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(ns as f64 / 1e9),
        }
    }
}

/// What one consumer saw.
#[derive(Debug)]
pub struct Output {
    /// Latency of pops that returned messages (ns).
    pub pops: Histogram<u64>,
    /// Latency of `ack_batch` (ns).
    pub acks: Histogram<u64>,
    /// Per-message delay by [`Stamp`] (ns); empty for [`Stamp::None`].
    pub delays: Histogram<u64>,
    /// The same delays (µs, 2 digits) by second of the send ([`Stamp::Sent`]) or of the due
    /// time ([`Stamp::Due`]) from the origin.
    pub by_second: Vec<Histogram<u64>>,
    /// Pops that returned nothing.
    pub empty_pops: u64,
    /// Messages received before their due time ([`Stamp::Due`]; recorded as 0).
    pub early: u64,
    /// Keys of every message received, duplicates included.
    pub keys: Vec<u64>,
}

/// Pops and acknowledges until the progress reaches its target or the deadline passes.
///
/// # Errors
/// Pop or ack errors, a refused handle, a message without the expected property.
pub async fn consume(broker: Broker, s: Settings, progress: Arc<Progress>) -> Result<Output> {
    let mut out = Output {
        pops: histogram()?,
        acks: histogram()?,
        delays: histogram()?,
        by_second: Vec::new(),
        empty_pops: 0,
        early: 0,
        keys: Vec::new(),
    };
    let req = PopRequest {
        group: GROUP.into(),
        topic: s.topic.clone(),
        filter: None,
        max: s.batch,
        invisible: s.invisible,
        wait: s.wait,
    };
    while !progress.done() && Instant::now() < s.deadline {
        let t = Instant::now();
        let popped = broker.consumer().pop(req.clone()).await?;
        let received_at = Instant::now();
        if popped.is_empty() {
            out.empty_pops += 1;
            continue;
        }
        out.pops
            .saturating_record(received_at.duration_since(t).as_nanos() as u64);
        measure(&s, &popped, received_at, &mut out)?;
        let handles: Vec<&str> = popped.iter().map(|p| p.receipt_handle.as_str()).collect();
        let t = Instant::now();
        let results = broker.consumer().ack_batch(GROUP, &handles).await?;
        out.acks.saturating_record(t.elapsed().as_nanos() as u64);
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            bail!("an ack was refused: {e}");
        }
        let n = popped.len() as u64;
        let before = progress.received.fetch_add(n, Ordering::AcqRel);
        if before < progress.target.load(Ordering::Acquire)
            && before + n >= progress.target.load(Ordering::Acquire)
        {
            progress.mark_done();
        }
        // A pop that finds messages and an ASYNC ack never wait: without a yield, two tasks
        // (one per worker) would do all the work while the others never run.
        tokio::task::yield_now().await;
    }
    Ok(out)
}

fn property<T: std::str::FromStr>(p: &PoppedMessage, name: &str) -> Result<T> {
    p.message
        .properties
        .get(name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| failed!("message {} lacks property {name}", p.message.message_id))
}

/// Wall-clock time in µs since the epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn measure(
    s: &Settings,
    popped: &[PoppedMessage],
    received_at: Instant,
    out: &mut Output,
) -> Result<()> {
    let wall_us = now_us();
    for p in popped {
        let key = match s.key {
            Key::QueueOffset(queues) => {
                p.message.queue_offset * u64::from(queues) + u64::from(p.message.queue_id)
            }
            Key::Seq => property(p, PROP_SEQ)?,
        };
        out.keys.push(key);
        let (second, delay_ns) = match s.stamp {
            Stamp::None => continue,
            Stamp::Sent(origin) => {
                let sent: u64 = property(p, PROP_SENT_NS)?;
                let now = received_at.duration_since(origin).as_nanos() as u64;
                (sent / 1_000_000_000, now.saturating_sub(sent))
            }
            Stamp::Due(origin_ms) => {
                let due_ms: i64 = property(p, PROP_DUE_MS)?;
                let late_us = wall_us - due_ms * 1000;
                if late_us < 0 {
                    out.early += 1;
                }
                let second = (due_ms - origin_ms).max(0) as u64 / 1000;
                (second, late_us.max(0) as u64 * 1000)
            }
        };
        out.delays.saturating_record(delay_ns);
        let second = second.min(MAX_SECONDS) as usize;
        while out.by_second.len() <= second {
            out.by_second.push(coarse()?);
        }
        out.by_second[second].saturating_record(delay_ns / 1000);
    }
    Ok(())
}

/// Most seconds kept apart in [`Output::by_second`]; later ones share the last.
const MAX_SECONDS: u64 = 3600;

/// A histogram of µs up to 100 s with 2 significant digits (small: one per second of a run).
fn coarse() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 100_000_000, 2)?)
}

/// The 99th percentile of the delays of every second from `skip` on, in ms (0 if none).
///
/// # Errors
/// Histogram merge errors (none expected: same bounds).
pub fn p99_from_second_ms(by_second: &[Histogram<u64>], skip: usize) -> Result<f64> {
    let mut all = coarse()?;
    for h in by_second.iter().skip(skip) {
        all.add(h)?;
    }
    Ok(all.value_at_quantile(0.99) as f64 / 1e3)
}

/// The 99th percentile of each second's delays, in ms (0 for a second without messages).
pub fn p99_by_second_ms(by_second: &[Histogram<u64>]) -> Vec<f64> {
    by_second
        .iter()
        .map(|h| h.value_at_quantile(0.99) as f64 / 1e3)
        .collect()
}

/// Starts `n` consumers on `rt`; they run until `progress` is done or their deadline.
pub fn spawn(
    rt: &tokio::runtime::Runtime,
    broker: &Broker,
    n: usize,
    s: &Settings,
    progress: &Arc<Progress>,
) -> Vec<JoinHandle<Result<Output>>> {
    (0..n)
        .map(|_| rt.spawn(consume(broker.clone(), s.clone(), progress.clone())))
        .collect()
}

/// Waits for the consumers and merges what they saw.
///
/// # Errors
/// The first consumer's error.
pub async fn join(tasks: Vec<JoinHandle<Result<Output>>>) -> Result<Merged> {
    let mut outputs = Vec::with_capacity(tasks.len());
    for t in tasks {
        outputs.push(t.await??);
    }
    merge(outputs)
}

/// All consumers of a case together.
#[derive(Debug)]
pub struct Merged {
    /// Pop latency of non-empty pops.
    pub pops: Histogram<u64>,
    /// `ack_batch` latency.
    pub acks: Histogram<u64>,
    /// Per-message delays.
    pub delays: Histogram<u64>,
    /// Per-message delays by second (µs).
    pub by_second: Vec<Histogram<u64>>,
    /// Empty pops.
    pub empty_pops: u64,
    /// Messages received before they were due.
    pub early: u64,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Distinct messages received.
    pub unique: u64,
}

/// Merges the consumers' outputs and counts distinct keys.
///
/// # Errors
/// Histogram merge errors (none expected: same bounds); a key too large for the bitmap.
fn merge(outputs: Vec<Output>) -> Result<Merged> {
    let mut m = Merged {
        pops: histogram()?,
        acks: histogram()?,
        delays: histogram()?,
        by_second: Vec::new(),
        empty_pops: 0,
        early: 0,
        received: 0,
        unique: 0,
    };
    let top = outputs
        .iter()
        .flat_map(|o| o.keys.iter().copied())
        .max()
        .unwrap_or(0);
    if top >= 1 << 36 {
        bail!("message key {top} is out of range for the exactly-once check");
    }
    let mut seen = vec![0u64; (top / 64 + 1) as usize];
    for o in outputs {
        m.pops.add(&o.pops)?;
        m.acks.add(&o.acks)?;
        m.delays.add(&o.delays)?;
        for (i, h) in o.by_second.iter().enumerate() {
            if m.by_second.len() <= i {
                m.by_second.push(coarse()?);
            }
            m.by_second[i].add(h)?;
        }
        m.empty_pops += o.empty_pops;
        m.early += o.early;
        m.received += o.keys.len() as u64;
        for k in o.keys {
            let (word, bit) = ((k / 64) as usize, 1u64 << (k % 64));
            if seen[word] & bit == 0 {
                seen[word] |= bit;
                m.unique += 1;
            }
        }
    }
    Ok(m)
}
