//! `rocketgate bench consume`: pop + ack throughput of a preloaded topic for several consumer
//! counts, and send → pop latency under a paced producer with long-polling consumers.
//!
//! Owns: the flags, the run order (throughput cases, then the latency case of
//! [`super::latency`]), and each throughput case's broker from open to clean shutdown.
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
use super::goal::Goal;
use super::latency::{self, LatencyResult};
use super::popper::{self, Key, Progress, Stamp};
use super::report::{self, Latency, Machine};
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

/// Everything `bench consume` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    /// Where.
    pub machine: Machine,
    /// Body size.
    pub body_bytes: u64,
    /// Messages per pop.
    pub batch: usize,
    /// Long-polling wait, ms.
    pub wait_ms: u128,
    /// Queues of the topic.
    pub queues: u32,
    /// Throughput cases.
    pub throughput: Vec<ThroughputResult>,
    /// Latency case.
    pub latency: Option<LatencyResult>,
    /// Goals this run can decide.
    pub goals: Vec<Goal>,
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
    Ok(())
}

/// Runs the benchmark and prints the report.
///
/// # Errors
/// Bad flags, broker errors, or a case that did not receive exactly what was sent.
pub fn run(a: ConsumeArgs) -> Result<()> {
    check(&a)?;
    let root = BenchDir::new(a.dir.clone(), a.keep)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut throughput = Vec::new();
    if !a.no_throughput {
        for (i, &c) in a.consumers.iter().enumerate() {
            eprint!("[{}/{}] pop+ack x{c} ... ", i + 1, a.consumers.len());
            let dir = root.case(&format!("consume-x{c}"), a.keep)?;
            let r = throughput_case(&rt, &dir, &a, c).with_context(|| format!("pop+ack x{c}"))?;
            eprintln!("{:.0} msgs/s", r.msgs_per_sec);
            throughput.push(r);
        }
    }
    let latency = if a.no_latency {
        None
    } else {
        eprint!("latency: {} msgs/s for {:?} ... ", a.rate, a.duration);
        let dir = root.case("consume-latency", a.keep)?;
        let setup = latency::Setup {
            rate: a.rate,
            duration: a.duration,
            consumers: a.latency_consumers,
            body: a.size as usize,
            queues: a.queues,
            segment_size: a.segment_size,
            pop: pop_settings(&a, Instant::now()),
            timeout: a.timeout,
        };
        let r = latency::run(&rt, &dir.path, setup).context("latency case")?;
        eprintln!("p99 {:.2} ms", r.latency.p99_us / 1e3);
        Some(r)
    };
    let report = ConsumeReport {
        machine: disk::machine(&root.path),
        body_bytes: a.size,
        batch: a.batch,
        wait_ms: a.wait.as_millis(),
        queues: a.queues,
        goals: goals(&throughput, latency.as_ref(), &a),
        throughput,
        latency,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let bad = report.throughput.iter().any(|t| !t.exactly_once)
        || report.latency.as_ref().is_some_and(|l| !l.exactly_once);
    if bad {
        bail!("a case did not receive every message exactly once (see above)");
    }
    Ok(())
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

fn goals(t: &[ThroughputResult], l: Option<&LatencyResult>, a: &ConsumeArgs) -> Vec<Goal> {
    let mut out = Vec::new();
    if a.size == 1024 {
        for c in t {
            let name = format!("pop+ack 1KiB x{}: msgs/s", c.consumers);
            out.push(Goal::at_least(name, c.msgs_per_sec, 200_000.0));
        }
    }
    if let Some(l) = l.filter(|l| (l.rate - 10_000.0).abs() < 0.5) {
        let name = "send->pop p99 at 10000 msgs/s: ms".to_owned();
        out.push(Goal::at_most(name, l.latency.p99_us / 1e3, 5.0));
    }
    out
}

fn print_table(r: &ConsumeReport) {
    let m = &r.machine;
    println!("rocketgate bench consume");
    println!(
        "machine: {} CPUs, {}; dir {} ({})",
        m.cpus, m.cpu_model, m.dir, m.filesystem
    );
    let size = size_label(r.body_bytes as usize);
    println!(
        "settings: {size} bodies, {} queues, ASYNC flush, pop of {} with wait {} ms, \
         ack_batch per pop, MB = 10^6 bytes",
        r.queues, r.batch, r.wait_ms
    );
    let mut busy = Vec::new();
    if !r.throughput.is_empty() {
        println!();
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
    report::print_goals(&r.goals);
}
