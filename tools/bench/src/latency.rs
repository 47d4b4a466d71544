//! The latency case of `bench consume`: a producer sending at a fixed rate for a fixed time,
//! and long-polling consumers that time every message from its send to its receipt.
//!
//! Owns: the case's broker from open to clean shutdown, and the paced producer.
//!
//! Invariants:
//! - The producer paces by absolute time: message `i` is due at `start + i / rate`, so a late
//!   send never shifts the later ones (no drift); a late producer catches up by sending at once.
//!   It runs on the calling thread, not on a runtime worker, and sleeps with the OS timer.
//! - The delay counted is the consumer's receive time minus the send time the producer wrote
//!   into the message just before `send` ([`popper::PROP_SENT_NS`]), both from one monotonic
//!   clock; the producer's own send latency is reported apart.
//! - The consumers are started, and have parked in a long poll, before the first send.
//!
//! Who calls it: [`super::consume`]. Concurrency: consumers on the caller's runtime.
//!
//! Owns the latency case; must not write outside the directory it is given.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocketgate_core::{Broker, Message};
use serde::Serialize;

use super::append::{self, TOPIC};
use super::load;
use super::popper::{self, Key, Progress, Stamp};
use super::report::{self, histogram, Latency};
use super::units::per_sec;
use crate::error::Result;

/// What the case runs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Messages per second.
    pub rate: f64,
    /// How long the producer sends.
    pub duration: Duration,
    /// Consumers.
    pub consumers: usize,
    /// Body size.
    pub body: usize,
    /// Queues of the topic.
    pub queues: u32,
    /// CommitLog segment size.
    pub segment_size: u64,
    /// Consumer settings except the stamp and the deadline.
    pub pop: popper::Settings,
    /// How long after the last send the consumers may take to receive everything.
    pub timeout: Duration,
    /// Whole seconds of sends at the start left out of `p99_after_warmup_ms` (`--warmup`).
    pub warmup_secs: usize,
}

/// The latency case.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// Target send rate, msgs/s.
    pub rate: f64,
    /// Consumer tasks.
    pub consumers: usize,
    /// Messages sent.
    pub sent: u64,
    /// Seconds from the first to the last send.
    pub send_secs: f64,
    /// Sent messages per second.
    pub achieved_rate: f64,
    /// Largest delay of a send behind its schedule, ms.
    pub max_behind_ms: f64,
    /// Latency of `Producer::send`.
    pub send_latency: Latency,
    /// Receive time minus send time.
    pub latency: Latency,
    /// The 99th percentile of that, by second of the send, ms.
    pub p99_by_second_ms: Vec<f64>,
    /// Seconds of sends left out of `p99_after_warmup_ms` (0: no warm-up excluded).
    pub warmup_secs: usize,
    /// The 99th percentile of messages sent after the warm-up, ms (2 digits), if one was set.
    pub p99_after_warmup_ms: Option<f64>,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Pops that returned nothing.
    pub empty_pops: u64,
    /// Received == sent, no duplicates.
    pub exactly_once: bool,
    /// CPU time of the whole process (broker threads, consumers and producer) per message
    /// sent, µs.
    pub cpu_us_per_msg: Option<f64>,
    /// Percent of all CPUs other processes used during the case.
    pub others_cpu_percent: Option<f64>,
}

/// What the paced producer did.
struct Paced {
    sent: u64,
    secs: f64,
    max_behind: Duration,
    latency: Latency,
}

/// Sends at `rate` for `duration`, message `i` at `start + i / rate`, stamping each with its
/// send time relative to `start`.
fn produce_paced(
    rt: &tokio::runtime::Runtime,
    broker: &Broker,
    body: &Bytes,
    (rate, duration): (f64, Duration),
    start: Instant,
) -> Result<Paced> {
    let mut hist = histogram()?;
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let mut max_behind = Duration::ZERO;
    let mut last = start;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        } else {
            max_behind = max_behind.max(now - due);
        }
        let sent_ns = Instant::now().saturating_duration_since(start).as_nanos() as u64;
        let msg = Message::new(TOPIC, body.clone())
            .with_property(popper::PROP_SENT_NS, sent_ns.to_string());
        let t = Instant::now();
        rt.block_on(broker.producer().send(msg.into()))?;
        last = Instant::now();
        hist.saturating_record(last.duration_since(t).as_nanos() as u64);
    }
    Ok(Paced {
        sent: total,
        secs: last.duration_since(start).as_secs_f64(),
        max_behind,
        latency: Latency::from(&hist),
    })
}

/// Runs the case in the fresh directory `dir`.
///
/// # Errors
/// Broker errors of the producer or the consumers.
pub fn run(rt: &tokio::runtime::Runtime, dir: &Path, s: Setup) -> Result<LatencyResult> {
    let broker = append::open_async(dir, s.queues, s.segment_size)?;
    let body = append::body(s.body);
    let before = load::Probe::now();
    // The first send; meanwhile the consumers create the group and park in a long poll.
    let origin = Instant::now() + Duration::from_millis(300);
    let progress = Progress::new(None);
    let pop = popper::Settings {
        stamp: Stamp::Sent(origin),
        key: Key::QueueOffset(s.queues),
        deadline: origin + s.duration + s.timeout,
        ..s.pop
    };
    let tasks = popper::spawn(rt, &broker, s.consumers, &pop, &progress);
    let paced = produce_paced(rt, &broker, &body, (s.rate, s.duration), origin)?;
    progress.set_target(paced.sent);
    let m = rt.block_on(popper::join(tasks))?;
    let after = load::Probe::now();
    let others = before.zip(after).and_then(|(x, y)| x.others_percent(&y));
    let cpu = before.zip(after).map(|(x, y)| x.own_secs(&y));
    broker.shutdown()?;
    Ok(LatencyResult {
        rate: s.rate,
        consumers: s.consumers,
        sent: paced.sent,
        send_secs: paced.secs,
        achieved_rate: per_sec(paced.sent.saturating_sub(1), paced.secs),
        max_behind_ms: paced.max_behind.as_secs_f64() * 1e3,
        send_latency: paced.latency,
        latency: Latency::from(&m.delays),
        p99_by_second_ms: popper::p99_by_second_ms(&m.by_second),
        warmup_secs: s.warmup_secs,
        p99_after_warmup_ms: match s.warmup_secs {
            0 => None,
            w => Some(popper::p99_from_second_ms(&m.by_second, w)?),
        },
        received: m.received,
        duplicates: m.received - m.unique,
        empty_pops: m.empty_pops,
        exactly_once: m.unique == paced.sent && m.received == m.unique,
        cpu_us_per_msg: cpu.map(|s| s * 1e6 / paced.sent.max(1) as f64),
        others_cpu_percent: others,
    })
}

/// Prints the case; names it in `busy` if other processes disturbed it.
pub fn print(l: &LatencyResult, busy: &mut Vec<String>) {
    println!();
    println!(
        "send -> pop latency: paced producer at {:.0} msgs/s, {} long-polling consumers",
        l.rate, l.consumers
    );
    let s = &l.send_latency;
    println!(
        "  sent {} in {:.2} s: {:.0} msgs/s achieved, at most {:.2} ms behind schedule; \
         send p50 {:.1} µs, p99 {:.1} µs",
        l.sent, l.send_secs, l.achieved_rate, l.max_behind_ms, s.p50_us, s.p99_us
    );
    let d = &l.latency;
    println!(
        "  send -> received: p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms, max {:.3} ms",
        d.p50_us / 1e3,
        d.p99_us / 1e3,
        d.p999_us / 1e3,
        d.max_us / 1e3
    );
    let by_second: Vec<String> = l
        .p99_by_second_ms
        .iter()
        .map(|ms| format!("{ms:.1}"))
        .collect();
    let warm = l.p99_after_warmup_ms.map_or_else(String::new, |p| {
        format!("; after the {} s warm-up (--warmup): {p:.1}", l.warmup_secs)
    });
    println!(
        "  p99 by second of the send, ms: {}{warm}",
        by_second.join(" ")
    );
    let once = if l.exactly_once {
        ""
    } else {
        "; NOT exactly once"
    };
    let cpu = l.cpu_us_per_msg.map_or_else(String::new, |us| {
        format!("; process CPU {us:.0} µs per message")
    });
    println!(
        "  received {} ({} duplicates, {} empty pops){once}{cpu}",
        l.received, l.duplicates, l.empty_pops
    );
    busy.extend(report::busy("latency", l.others_cpu_percent));
}
