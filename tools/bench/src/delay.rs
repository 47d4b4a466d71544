//! `rocketgate bench delay`: how fast timed messages can be scheduled compared with plain sends,
//! how late they reach long-polling consumers, and what the schedule costs in memory.
//!
//! Owns: the flags, the two cases of a run (scheduled with consumers, then plain), repeated
//! `--runs` times, each case's broker from open to clean shutdown, the producer, the memory
//! sampler, and the goals of timed delivery (issue 4): 1,000,000 messages due within 60 s
//! delivered with lateness p50 <= 100 ms and p99 <= 1 s; scheduling >= 0.8x plain sends.
//!
//! Invariants:
//! - Both cases use a fresh `Broker` (ASYNC flush) in their own directory, one producer task
//!   awaiting each send, and the same messages: `--size` bodies with the properties
//!   [`popper::PROP_SEQ`] and [`popper::PROP_DUE_MS`]. Only the scheduled case calls
//!   `with_deliver_at` (the due time: the wall clock at the send plus uniform 1 ms ..= window),
//!   so the ratio of the two rates is the cost of scheduling alone.
//! - Lateness is the consumer's wall-clock receive time minus the due time carried in the
//!   message; the broker's timer uses the same wall clock. A message received early would be
//!   counted (and recorded as 0); a message received twice is a duplicate.
//! - The scheduled case ends when every message was received, or `--grace` after the window,
//!   counted from the first send. Consumers run from before the first send, since messages
//!   fall due while scheduling is still going on.
//! - Memory is this process's: `VmHWM` (peak resident set, file-backed pages of the mapped
//!   CommitLog included) before and after, and the peak of `RssAnon` (heap) sampled every
//!   100 ms, with the largest number of pending scheduled messages seen.
//!
//! Who calls it: [`super::run`]. Concurrency: one multi-thread runtime (one worker per CPU) for
//! the producer, the consumers and the sampler.
//!
//! Owns `bench delay`; must not write outside its run directory, and reaches the core only
//! through `Broker` (its public API).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rocketgate_core::{Broker, Message};
use serde::Serialize;

use super::append::{self, TOPIC};
use super::dirs::BenchDir;
use super::goal::Spec;
use super::header::Header;
use super::memory::{self, Memory, Sampler};
use super::output::{self, Output};
use super::popper::{self, Key, Progress, Stamp};
use super::report::{self, histogram, Latency};
use super::summary::Metric;
use super::units::{parse_duration, parse_size, per_sec, size_label};
use super::{disk, load};
use crate::error::{bail, Result};

type Runtime = tokio::runtime::Runtime;

/// Flags of `rocketgate bench delay`.
#[derive(clap::Args, Debug)]
pub struct DelayArgs {
    /// Directory to run in (created if missing). Default: a fresh ./data/bench-PID.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the case directories (and a created --dir) for inspection.
    #[arg(long)]
    keep: bool,
    /// Messages of each case.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Due times are spread uniformly over this window after each send.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    window: Duration,
    /// Body size in bytes.
    #[arg(long, default_value = "128", value_parser = parse_size)]
    size: u64,
    /// Long-polling consumers of the target topic.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Most messages per pop.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Long-polling wait of every pop (at most 60s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    wait: Duration,
    /// How long after the window the scheduled case waits for missing messages.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    grace: Duration,
    /// Skip the plain-send case.
    #[arg(long)]
    no_plain: bool,
    /// Queues of the target topic.
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// CommitLog segment size: bytes, or with a unit (1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    segment_size: u64,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Runs of the whole bench, each with fresh brokers; every run is printed, then the median
    /// and min-max of each figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// One send phase.
#[derive(Debug, Clone, Serialize)]
pub struct SendPhase {
    /// Messages sent.
    pub messages: u64,
    /// Seconds from the first send to the last acknowledgement.
    pub secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Latency of `Producer::send`.
    pub latency: Latency,
    /// CPU time of the whole process per message during the phase (producer, broker threads,
    /// and in the scheduled case the consumers), µs.
    pub cpu_us_per_msg: Option<f64>,
    /// Percent of all CPUs other processes used during the phase.
    pub others_cpu_percent: Option<f64>,
}

/// Settings of `bench delay`.
#[derive(Debug, Clone, Serialize)]
pub struct DelaySettings {
    /// Messages of each case.
    pub messages: u64,
    /// Body size.
    pub body_bytes: u64,
    /// Due-time window, s.
    pub window_secs: f64,
    /// Consumers.
    pub consumers: usize,
    /// The run directory.
    pub dir: String,
    /// Filesystem type and device holding it.
    pub filesystem: String,
}

impl DelaySettings {
    fn lines(&self) -> Vec<String> {
        vec![format!(
            "settings: {} messages of {}, due uniformly within {:.0} s of their send, ASYNC \
             flush, {} long-polling consumers; dir {} ({})",
            self.messages,
            size_label(self.body_bytes as usize),
            self.window_secs,
            self.consumers,
            self.dir,
            self.filesystem
        )]
    }
}

/// Everything one run of `bench delay` measured.
#[derive(Debug, Clone, Serialize)]
pub struct DelayRun {
    /// Scheduling: `send` with a delivery time.
    pub scheduled: SendPhase,
    /// Plain `send` of the same messages, if run.
    pub plain: Option<SendPhase>,
    /// `scheduled.msgs_per_sec / plain.msgs_per_sec`.
    pub ratio: Option<f64>,
    /// Receive time minus due time.
    pub lateness: Latency,
    /// The 99th percentile of that, by second of the due time from the first send, ms.
    pub p99_by_second_ms: Vec<f64>,
    /// Messages sent.
    pub messages: u64,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages received before their due time.
    pub early: u64,
    /// Seconds from the first send until the last message was received (if all were).
    pub all_received_secs: Option<f64>,
    /// Scheduled messages still pending at the end.
    pub pending_after: u64,
    /// Every message received exactly once.
    pub exactly_once: bool,
    /// Memory.
    pub memory: Memory,
    /// Percent of all CPUs other processes used during the delivery phase.
    pub others_cpu_percent: Option<f64>,
}

/// Sends `n` messages, each due 1 ms ..= `window` after its send (scheduled with
/// `with_deliver_at` only if `schedule`). Returns the seconds and the send latencies.
async fn produce(
    broker: Broker,
    n: u64,
    body: Bytes,
    window: Duration,
    schedule: bool,
) -> Result<SendPhase> {
    let window_ms = window.as_millis().max(1) as u64;
    let mut hist = histogram()?;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let start = Instant::now();
    for seq in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let due = popper::now_us() / 1000 + 1 + (state % window_ms) as i64;
        let mut msg = Message::new(TOPIC, body.clone())
            .with_property(popper::PROP_SEQ, seq.to_string())
            .with_property(popper::PROP_DUE_MS, due.to_string());
        if schedule {
            msg = msg.with_deliver_at(due);
        }
        let t = Instant::now();
        broker.producer().send(msg.into()).await?;
        hist.saturating_record(t.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(SendPhase {
        messages: n,
        secs,
        msgs_per_sec: per_sec(n, secs),
        latency: Latency::from(&hist),
        cpu_us_per_msg: None,
        others_cpu_percent: None,
    })
}

/// Fills in the interference and the CPU per message of a phase that began at `before`.
fn account(p: &mut SendPhase, before: Option<load::Probe>) {
    let after = load::Probe::now();
    p.others_cpu_percent = before.zip(after).and_then(|(x, y)| x.others_percent(&y));
    p.cpu_us_per_msg = before
        .zip(after)
        .map(|(x, y)| x.own_secs(&y) * 1e6 / p.messages.max(1) as f64);
}

/// What the scheduled case measured besides the send phase.
struct Delivered {
    phase: SendPhase,
    consumed: popper::Merged,
    all_received_secs: Option<f64>,
    pending_after: u64,
    memory: Memory,
    others_cpu_percent: Option<f64>,
}

/// Schedules `--messages` messages with long-polling consumers running, and waits until they
/// all arrived or the window plus the grace passed.
fn scheduled_case(rt: &Runtime, root: &BenchDir, a: &DelayArgs, run: usize) -> Result<Delivered> {
    let dir = root.case(&format!("delay-scheduled-run{run}"), a.keep)?;
    let memory_before = memory::status();
    let broker = append::open_async(&dir.path, a.queues, a.segment_size)?;
    let progress = Progress::new(Some(a.messages));
    let s = popper::Settings {
        topic: TOPIC.into(),
        batch: a.batch,
        invisible: Duration::from_secs(30),
        wait: a.wait,
        // Seconds of the due time count from the first send, 300 ms from now.
        stamp: Stamp::Due(popper::now_us() / 1000 + 300),
        key: Key::Seq,
        deadline: Instant::now() + a.window + a.grace,
    };
    let tasks = popper::spawn(rt, &broker, a.consumers, &s, &progress);
    let sampler = Sampler::start(rt, broker.clone(), memory_before);
    std::thread::sleep(Duration::from_millis(300));
    let first_send = Instant::now();
    let before = load::Probe::now();
    let body = append::body(a.size as usize);
    let producer = produce(broker.clone(), a.messages, body, a.window, true);
    let mut phase = rt.block_on(rt.spawn(producer))??;
    account(&mut phase, before);
    eprint!("{:.0} msgs/s; delivering ... ", phase.msgs_per_sec);
    let before = load::Probe::now();
    let consumed = rt.block_on(popper::join(tasks))?;
    let others_cpu_percent = before
        .zip(load::Probe::now())
        .and_then(|(x, y)| x.others_percent(&y));
    let all_received_secs = progress
        .done_secs()
        .map(|s| s - first_send.duration_since(progress.start).as_secs_f64());
    let memory = sampler.finish(rt)?;
    let pending_after = broker.scheduler().pending() as u64;
    broker.shutdown()?;
    Ok(Delivered {
        phase,
        consumed,
        all_received_secs,
        pending_after,
        memory,
        others_cpu_percent,
    })
}

/// Sends the same messages without a delivery time, in a fresh broker.
fn plain_case(rt: &Runtime, root: &BenchDir, a: &DelayArgs, run: usize) -> Result<SendPhase> {
    let dir = root.case(&format!("delay-plain-run{run}"), a.keep)?;
    let broker = append::open_async(&dir.path, a.queues, a.segment_size)?;
    let before = load::Probe::now();
    let body = append::body(a.size as usize);
    let producer = produce(broker.clone(), a.messages, body, a.window, false);
    let mut p = rt.block_on(rt.spawn(producer))??;
    account(&mut p, before);
    broker.shutdown()?;
    Ok(p)
}

/// Runs the benchmark `--runs` times and prints every run, the summary and the goals.
///
/// # Errors
/// Bad flags, broker errors, or messages not received exactly once (after the output).
pub fn run(a: DelayArgs) -> Result<()> {
    if a.messages == 0 || a.consumers == 0 || a.queues == 0 || !(1..=256).contains(&a.batch) {
        bail!(usage: "--messages, --consumers, --queues must be >= 1, --batch within 1..=256");
    }
    if a.runs == 0 {
        bail!(usage: "--runs must be at least 1");
    }
    let header = Header::collect("delay", a.runs);
    let root = BenchDir::new(a.dir.clone(), a.keep)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runs = output::repeat(a.runs, |i| one_run(&rt, &root, &a, i))?;
    let (dir, filesystem) = disk::location(&root.path);
    let settings = DelaySettings {
        messages: a.messages,
        body_bytes: a.size,
        window_secs: a.window.as_secs_f64(),
        consumers: a.consumers,
        dir,
        filesystem,
    };
    let out = Output::new(header, settings, runs, metrics, |_| specs(&a));
    out.print(a.json, DelaySettings::lines, print_run)?;
    if out.runs.iter().any(|r| !r.result.exactly_once) {
        bail!("the scheduled messages were not received exactly once (see above)");
    }
    Ok(())
}

/// One run: the scheduled case, then the plain one, each with a fresh broker.
fn one_run(rt: &Runtime, root: &BenchDir, a: &DelayArgs, run: usize) -> Result<DelayRun> {
    eprint!(
        "scheduling {} messages within {:?} ... ",
        a.messages, a.window
    );
    let d = scheduled_case(rt, root, a, run)?;
    let m = d.consumed;
    let lateness = Latency::from(&m.delays);
    eprintln!("lateness p99 {:.1} ms", lateness.p99_us / 1e3);
    let plain = if a.no_plain {
        None
    } else {
        eprint!("plain sends of the same messages ... ");
        let p = plain_case(rt, root, a, run)?;
        eprintln!("{:.0} msgs/s", p.msgs_per_sec);
        Some(p)
    };
    let ratio = plain
        .as_ref()
        .map(|p| d.phase.msgs_per_sec / p.msgs_per_sec.max(f64::MIN_POSITIVE));
    Ok(DelayRun {
        scheduled: d.phase,
        plain,
        ratio,
        lateness,
        p99_by_second_ms: popper::p99_by_second_ms(&m.by_second),
        messages: a.messages,
        received: m.received,
        duplicates: m.received - m.unique,
        early: m.early,
        all_received_secs: d.all_received_secs,
        pending_after: d.pending_after,
        exactly_once: m.unique == a.messages && m.received == m.unique,
        memory: d.memory,
        others_cpu_percent: d.others_cpu_percent,
    })
}

/// The figures of one run that the summary keeps.
fn metrics(r: &DelayRun) -> Vec<Metric> {
    let ms = |us: f64| us / 1e3;
    let mut out = vec![Metric::new(
        "scheduled send",
        "msgs/s",
        r.scheduled.msgs_per_sec,
    )];
    if let Some(p) = &r.plain {
        out.push(Metric::new("plain send", "msgs/s", p.msgs_per_sec));
    }
    if let Some(ratio) = r.ratio {
        out.push(Metric::new("scheduled / plain send", "x", ratio));
    }
    if let Some(cpu) = r.scheduled.cpu_us_per_msg {
        out.push(Metric::new("scheduled send process CPU", "µs/msg", cpu));
    }
    out.extend([
        Metric::new("lateness p50", "ms", ms(r.lateness.p50_us)),
        Metric::new("lateness p99", "ms", ms(r.lateness.p99_us)),
        Metric::new("lateness p999", "ms", ms(r.lateness.p999_us)),
        Metric::new("lateness max", "ms", ms(r.lateness.max_us)),
        Metric::new(
            "RssAnon peak",
            "MiB",
            r.memory.anon_peak_kib as f64 / 1024.0,
        ),
    ]);
    out
}

/// The goals of issue 4, on the figures of [`metrics`].
fn specs(a: &DelayArgs) -> Vec<Spec> {
    let scale = (a.messages < 1_000_000 || a.window > Duration::from_secs(60)).then(|| {
        format!(
            "the goal is for 1000000 messages due within 60 s; --messages {} --window {:?}",
            a.messages, a.window
        )
    });
    let plain = a
        .no_plain
        .then(|| "no plain case ran (--no-plain)".to_owned());
    vec![
        Spec::at_most("lateness p50", 100.0, "issue 4").unless(scale.clone()),
        Spec::at_most("lateness p99", 1000.0, "issue 4").unless(scale),
        Spec::at_least("scheduled / plain send", 0.8, "issue 4").unless(plain),
    ]
}

/// Prints one run's tables.
fn print_run(r: &DelayRun) {
    let n = r.messages;
    println!("send (one producer awaiting each send; the same messages in both cases)");
    println!("  kind        messages    secs    msgs/s   p50 µs   p99 µs  p999 µs  cpu µs/msg");
    let mut busy = Vec::new();
    for (kind, p) in [
        ("plain", r.plain.as_ref()),
        ("scheduled", Some(&r.scheduled)),
    ] {
        let Some(p) = p else { continue };
        let (l, cpu) = (&p.latency, p.cpu_us_per_msg.unwrap_or(f64::NAN));
        println!(
            "  {kind:<10} {:>9} {:>7.2} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {cpu:>11.2}",
            p.messages, p.secs, p.msgs_per_sec, l.p50_us, l.p99_us, l.p999_us
        );
        busy.extend(report::busy(&format!("{kind} send"), p.others_cpu_percent));
    }
    if let Some(ratio) = r.ratio {
        println!("  scheduled / plain: {ratio:.2}");
    }
    println!();
    println!("delivery lateness (consumer's receive time - due time)");
    let l = &r.lateness;
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, max {:.1} ms",
        l.p50_us / 1e3,
        l.p99_us / 1e3,
        l.p999_us / 1e3,
        l.max_us / 1e3
    );
    let all = r
        .all_received_secs
        .map_or_else(|| "not all received".into(), |s| format!("all by {s:.1} s"));
    let once = if r.exactly_once {
        ""
    } else {
        "; NOT exactly once"
    };
    println!(
        "  received {} of {n} ({} duplicates, {} early; {all} after the first send); \
         {} still pending{once}",
        r.received, r.duplicates, r.early, r.pending_after
    );
    println!("  p99 by second of the due time, ms:");
    for row in r.p99_by_second_ms.chunks(15) {
        let row: Vec<String> = row.iter().map(|ms| format!("{ms:.0}")).collect();
        println!("    {}", row.join(" "));
    }
    busy.extend(report::busy("delivery", r.others_cpu_percent));
    r.memory.print();
    report::print_busy(&busy);
}
