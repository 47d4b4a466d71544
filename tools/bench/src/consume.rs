//! `rocketgate bench consume`: pop + ack throughput of a preloaded topic for several consumer
//! counts, and send → pop latency under a paced producer with long-polling consumers.
//!
//! Owns: the flags, the order of a run (throughput cases, then the latency case of
//! [`super::latency`]), repeated `--runs` times, each throughput case's broker from open to
//! clean shutdown, and the goals of consumption (issue 3): pop + ack of 1 KiB messages
//! >= 200,000 msgs/s, send -> pop p99 <= 5 ms at 10,000 msgs/s.
//!
//! Invariants:
//! - Every case gets a fresh `Broker` (ASYNC flush, defaults otherwise) in its own directory
//!   ([`super::dirs`]), with topic `bench` of `--queues` queues and the one consumer group
//!   [`popper::GROUP`].
//! - Throughput: the preload is written, flushed and dispatched, and the process idle, before
//!   the clock starts, so the figure is pop + ack alone, not the write-back of the preload or the
//!   prefault of the segment it rolled into. It ends with the ack that brings the count to the
//!   preload's; then nothing may be left unacknowledged (`lag`), and every message must have
//!   been received exactly once.
//! - Latency: see [`super::latency`] (paced producer, delays from a stamp in the message).
//! - Goals are reported, never asserted (the machine is shared); a count that differs from what
//!   was sent is an error, after the figures are printed.
//! - The latency goal is judged on every message sent. `--warmup` leaves the first whole seconds
//!   of sends out of it; the header then says so, and the goal is judged on that figure.
//!
//! Who calls it: [`super::run`]. Concurrency: one multi-thread runtime (one worker per CPU) for
//! the consumers and the preload; cases run one after another.
//!
//! Owns `bench consume`; must not write outside its run directory, and reaches the core only
//! through `Broker` (its public API).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Context;
use rocketgate_core::{Broker, Message};
use serde::Serialize;

use super::append::{self, TOPIC};
use super::dirs::{BenchDir, CaseDir};
use super::goal::Spec;
use super::header::Header;
use super::latency::{self, LatencyResult};
use super::output::{self, Output};
use super::popper::{self, Key, Progress, Stamp};
use super::report::{self, Latency};
use super::summary::{Metric, Summary};
use super::units::{mb_per_sec, parse_duration, parse_size, per_sec, size_label};
use super::{disk, load};
use crate::error::{bail, BenchError, Result};

/// Flags of `rocketgate bench consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// Directory to run in (created if missing). Default: a fresh ./data/bench-PID.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the case directories (and a created --dir) for inspection.
    #[arg(long)]
    keep: bool,
    /// Messages preloaded for each throughput case.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Body size in bytes (1024, 4KiB).
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    size: u64,
    /// Concurrent consumers of each throughput case, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    consumers: Vec<usize>,
    /// Messages per second of the latency case's producer.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// How long the latency case's producer sends.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Consumers of the latency case.
    #[arg(long, default_value_t = 4)]
    latency_consumers: usize,
    /// Most messages per pop.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Long-polling wait of every pop (at most 60s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    wait: Duration,
    /// Invisible time of popped messages.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    invisible: Duration,
    /// Give up a case this long after its consumers started (throughput) or its producer ended.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Skip the throughput cases.
    #[arg(long)]
    no_throughput: bool,
    /// Skip the latency case.
    #[arg(long)]
    no_latency: bool,
    /// Queues of the benchmark topic.
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
    /// Whole seconds of the latency case's first sends to leave out of the latency goal
    /// (printed in the header). Default: none; every message counts.
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
}

/// One throughput case.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputResult {
    /// Concurrent consumer tasks.
    pub consumers: usize,
    /// Messages preloaded.
    pub messages: u64,
    /// Preload rate (one producer), msgs/s.
    pub preload_msgs_per_sec: f64,
    /// Seconds from the first pop until the last ack that completed the count.
    pub secs: f64,
    /// Messages popped and acknowledged per second.
    pub msgs_per_sec: f64,
    /// Body MB per second.
    pub mb_per_sec: f64,
    /// Mean messages per non-empty pop.
    pub msgs_per_pop: f64,
    /// Pops that returned nothing (long polls that ran out).
    pub empty_pops: u64,
    /// Latency of non-empty pops.
    pub pop_latency: Latency,
    /// Latency of `ack_batch`.
    pub ack_latency: Latency,
    /// Messages received, duplicates included.
    pub received: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages not acknowledged at the end, by `lag`.
    pub unacked: u64,
    /// Received == preloaded, no duplicates, nothing left.
    pub exactly_once: bool,
    /// CPU time of the whole process per message consumed, µs.
    pub cpu_us_per_msg: Option<f64>,
    /// Percent of all CPUs other processes used while consuming.
    pub others_cpu_percent: Option<f64>,
}

/// Settings of `bench consume`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeSettings {
    /// Body size.
    pub body_bytes: u64,
    /// Messages per pop.
    pub batch: usize,
    /// Long-polling wait, ms.
    pub wait_ms: u128,
    /// Queues of the topic.
    pub queues: u32,
    /// The run directory and its filesystem.
    pub dir: String,
    /// Filesystem type and device holding it.
    pub filesystem: String,
}

impl ConsumeSettings {
    fn lines(&self) -> Vec<String> {
        vec![format!(
            "settings: {} bodies, {} queues, ASYNC flush, pop of {} with wait {} ms, ack_batch \
             per pop; dir {} ({}); MB = 10^6 bytes",
            size_label(self.body_bytes as usize),
            self.queues,
            self.batch,
            self.wait_ms,
            self.dir,
            self.filesystem
        )]
    }
}

/// Everything one run of `bench consume` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeRun {
    /// Throughput cases.
    pub throughput: Vec<ThroughputResult>,
    /// Latency case.
    pub latency: Option<LatencyResult>,
}

fn check(a: &ConsumeArgs) -> Result<()> {
    if a.consumers.is_empty() || a.consumers.contains(&0) || a.latency_consumers == 0 {
        bail!(usage: "--consumers and --latency-consumers need values of at least 1");
    }
    if a.messages == 0 || a.queues == 0 || !(1..=256).contains(&a.batch) {
        bail!(usage: "--messages and --queues must be at least 1, --batch within 1..=256");
    }
    if !(a.rate.is_finite() && a.rate >= 1.0) || a.size > 4 << 20 {
        bail!(usage: "--rate must be at least 1 and --size at most 4 MiB");
    }
    if a.runs == 0 {
        bail!(usage: "--runs must be at least 1");
    }
    if warmup_secs(a).is_none() {
        bail!(usage: "--warmup must be whole seconds (1s, 2s)");
    }
    Ok(())
}

/// `--warmup` in whole seconds (0 without it); `None` if it is not whole seconds.
fn warmup_secs(a: &ConsumeArgs) -> Option<usize> {
    match a.warmup {
        None => Some(0),
        Some(d) if d.subsec_nanos() == 0 => usize::try_from(d.as_secs()).ok(),
        Some(_) => None,
    }
}

/// Runs the benchmark `--runs` times and prints every run, the summary and the goals.
///
/// # Errors
/// Bad flags, broker errors, or a case that did not receive exactly what was sent (after the
/// output is printed).
pub fn run(a: ConsumeArgs) -> Result<()> {
    check(&a)?;
    let warmup = warmup_secs(&a).unwrap_or(0);
    let mut header = Header::collect("consume", a.runs);
    if warmup > 0 {
        header.warmup = format!(
            "the first {warmup} s of the latency case's sends are left out of the latency goal \
             (--warmup); its all-messages p99 is printed too"
        );
    }
    let root = BenchDir::new(a.dir.clone(), a.keep)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runs = output::repeat(a.runs, |i| one_run(&rt, &root, &a, i, warmup))?;
    let (dir, filesystem) = disk::location(&root.path);
    let settings = ConsumeSettings {
        body_bytes: a.size,
        batch: a.batch,
        wait_ms: a.wait.as_millis(),
        queues: a.queues,
        dir,
        filesystem,
    };
    let out = Output::new(header, settings, runs, metrics, |s| specs(s, &a, warmup));
    out.print(a.json, ConsumeSettings::lines, print_run)?;
    let bad = out.runs.iter().any(|r| {
        r.result.throughput.iter().any(|t| !t.exactly_once)
            || r.result.latency.as_ref().is_some_and(|l| !l.exactly_once)
    });
    if bad {
        bail!("a case did not receive every message exactly once (see above)");
    }
    Ok(())
}

/// One run: every throughput case, then the latency case, each with a fresh broker.
fn one_run(
    rt: &tokio::runtime::Runtime,
    root: &BenchDir,
    a: &ConsumeArgs,
    run: usize,
    warmup_secs: usize,
) -> Result<ConsumeRun> {
    let mut throughput = Vec::new();
    if !a.no_throughput {
        for (i, &c) in a.consumers.iter().enumerate() {
            eprint!("[{}/{}] pop+ack x{c} ... ", i + 1, a.consumers.len());
            let dir = root.case(&format!("consume-x{c}-run{run}"), a.keep)?;
            let r = throughput_case(rt, &dir, a, c).with_context(|| format!("pop+ack x{c}"))?;
            eprintln!("{:.0} msgs/s", r.msgs_per_sec);
            throughput.push(r);
        }
    }
    let latency = if a.no_latency {
        None
    } else {
        eprint!("latency: {} msgs/s for {:?} ... ", a.rate, a.duration);
        let dir = root.case(&format!("consume-latency-run{run}"), a.keep)?;
        let setup = latency::Setup {
            rate: a.rate,
            duration: a.duration,
            consumers: a.latency_consumers,
            body: a.size as usize,
            queues: a.queues,
            segment_size: a.segment_size,
            pop: pop_settings(a, Instant::now()),
            timeout: a.timeout,
            warmup_secs,
        };
        let r = latency::run(rt, &dir.path, setup).context("latency case")?;
        eprintln!("p99 {:.2} ms", r.latency.p99_us / 1e3);
        Some(r)
    };
    Ok(ConsumeRun {
        throughput,
        latency,
    })
}

fn pop_settings(a: &ConsumeArgs, deadline: Instant) -> popper::Settings {
    popper::Settings {
        topic: TOPIC.into(),
        batch: a.batch,
        invisible: a.invisible,
        wait: a.wait,
        stamp: Stamp::None,
        key: Key::QueueOffset(a.queues),
        deadline,
    }
}

fn throughput_case(
    rt: &tokio::runtime::Runtime,
    dir: &CaseDir,
    a: &ConsumeArgs,
    n: usize,
) -> Result<ThroughputResult> {
    let broker = append::open_async(&dir.path, a.queues, a.segment_size)?;
    let body = append::body(a.size as usize);
    let t = Instant::now();
    rt.block_on(async {
        for _ in 0..a.messages {
            broker
                .producer()
                .send(Message::new(TOPIC, body.clone()).into())
                .await?;
        }
        Ok::<_, BenchError>(())
    })?;
    let preload_secs = t.elapsed().as_secs_f64();
    settle(&broker, a.timeout)?;
    let before = load::Probe::now();
    let progress = Progress::new(Some(a.messages));
    let s = pop_settings(a, Instant::now() + a.timeout);
    let m = rt.block_on(popper::join(popper::spawn(rt, &broker, n, &s, &progress)))?;
    let after = load::Probe::now();
    let others = before.zip(after).and_then(|(x, y)| x.others_percent(&y));
    let cpu = before.zip(after).map(|(x, y)| x.own_secs(&y));
    let secs = progress
        .done_secs()
        .unwrap_or_else(|| progress.start.elapsed().as_secs_f64());
    let unacked = broker
        .consumer()
        .lag(popper::GROUP, TOPIC)?
        .iter()
        .map(|q| q.pop_unacked)
        .sum();
    broker.shutdown()?;
    let pops = m.pops.len();
    Ok(ThroughputResult {
        consumers: n,
        messages: a.messages,
        preload_msgs_per_sec: per_sec(a.messages, preload_secs),
        secs,
        msgs_per_sec: per_sec(m.unique, secs),
        mb_per_sec: mb_per_sec(m.unique * a.size, secs),
        msgs_per_pop: if pops > 0 {
            m.received as f64 / pops as f64
        } else {
            0.0
        },
        empty_pops: m.empty_pops,
        pop_latency: Latency::from(&m.pops),
        ack_latency: Latency::from(&m.acks),
        received: m.received,
        duplicates: m.received - m.unique,
        unacked,
        exactly_once: m.unique == a.messages && m.received == m.unique && unacked == 0,
        cpu_us_per_msg: cpu.map(|s| s * 1e6 / m.unique.max(1) as f64),
        others_cpu_percent: others,
    })
}

/// Waits until everything written is flushed and dispatched, and then until the process is
/// idle (under 5% of one CPU over 200 ms): a preload that rolled into a new segment leaves its
/// background prefault running for a second or more.
fn settle(broker: &Broker, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    loop {
        let log = broker.storage().log_offsets();
        if log.durable >= log.end && log.dispatched >= log.end {
            break;
        }
        if Instant::now() >= until {
            bail!("the preload was not flushed and dispatched within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    while Instant::now() < until {
        let before = load::Probe::now();
        std::thread::sleep(Duration::from_millis(200));
        let busy = before.zip(load::Probe::now()).map(|(x, y)| x.own_secs(&y));
        if busy.is_none_or(|s| s < 0.01) {
            break;
        }
    }
    Ok(())
}

/// The figures of one run that the summary keeps.
fn metrics(r: &ConsumeRun) -> Vec<Metric> {
    let mut out = Vec::new();
    for c in &r.throughput {
        let name = format!("pop+ack x{}", c.consumers);
        out.push(Metric::new(name.clone(), "msgs/s", c.msgs_per_sec));
        if let Some(cpu) = c.cpu_us_per_msg {
            out.push(Metric::new(format!("{name} process CPU"), "µs/msg", cpu));
        }
    }
    if let Some(l) = &r.latency {
        let ms = |us: f64| us / 1e3;
        out.push(Metric::new("send->pop p50", "ms", ms(l.latency.p50_us)));
        out.push(Metric::new("send->pop p99", "ms", ms(l.latency.p99_us)));
        out.push(Metric::new("send->pop p999", "ms", ms(l.latency.p999_us)));
        if let Some(p) = l.p99_after_warmup_ms {
            let name = format!("send->pop p99 after {} s warm-up", l.warmup_secs);
            out.push(Metric::new(name, "ms", p));
        }
        if let Some(cpu) = l.cpu_us_per_msg {
            out.push(Metric::new("send->pop process CPU", "µs/msg", cpu));
        }
    }
    out
}

/// The goals of issue 3, on the figures of [`metrics`].
fn specs(summary: &[Summary], a: &ConsumeArgs, warmup: usize) -> Vec<Spec> {
    let mut out = Vec::new();
    let size = (a.size != 1024).then(|| format!("the goal is for 1 KiB bodies; --size {}", a.size));
    let cases: Vec<&Summary> = summary
        .iter()
        .filter(|s| s.name.starts_with("pop+ack x") && s.unit == "msgs/s")
        .collect();
    if cases.is_empty() {
        out.push(
            Spec::at_least("pop+ack x1", 200_000.0, "issue 3")
                .unless(Some("no throughput case ran (--no-throughput)".into())),
        );
    }
    for c in cases {
        out.push(Spec::at_least(c.name.clone(), 200_000.0, "issue 3").unless(size.clone()));
    }
    let metric = match warmup {
        0 => "send->pop p99".to_owned(),
        w => format!("send->pop p99 after {w} s warm-up"),
    };
    let rate = ((a.rate - 10_000.0).abs() >= 0.5)
        .then(|| format!("the goal is at 10000 msgs/s; --rate {}", a.rate));
    let skipped = a
        .no_latency
        .then(|| "no latency case ran (--no-latency)".to_owned());
    out.push(Spec::at_most(metric, 5.0, "issue 3").unless(skipped.or(rate)));
    out
}

/// Prints one run's tables.
fn print_run(r: &ConsumeRun) {
    let mut busy = Vec::new();
    if !r.throughput.is_empty() {
        println!("pop + ack of a preloaded, flushed topic (until the last ack)");
        println!(
            "cons  messages preload/s    msgs/s    MB/s   /pop  pop p50  pop p99  pop p999  \
             ack p50  ack p99 cpu/msg empty  dup unacked"
        );
        for c in &r.throughput {
            let (p, k) = (&c.pop_latency, &c.ack_latency);
            let cpu = c.cpu_us_per_msg.unwrap_or(f64::NAN);
            print!(
                "{:>4} {:>9} {:>9.0} {:>9.0} {:>7.1} {:>6.1} ",
                c.consumers,
                c.received,
                c.preload_msgs_per_sec,
                c.msgs_per_sec,
                c.mb_per_sec,
                c.msgs_per_pop
            );
            println!(
                "{:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>8.1} {cpu:>7.2} {:>5} {:>4} {:>7}",
                p.p50_us,
                p.p99_us,
                p.p999_us,
                k.p50_us,
                k.p99_us,
                c.empty_pops,
                c.duplicates,
                c.unacked
            );
            if !c.exactly_once {
                println!("  ^ NOT exactly once: {} messages preloaded", c.messages);
            }
            busy.extend(report::busy(
                &format!("pop+ack x{}", c.consumers),
                c.others_cpu_percent,
            ));
        }
        println!("(latencies and cpu/msg, the process's CPU time per message, in µs)");
    }
    if let Some(l) = &r.latency {
        latency::print(l, &mut busy);
    }
    report::print_busy(&busy);
}
