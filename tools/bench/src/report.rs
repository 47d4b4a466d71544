//! The results of `rocketgate bench store` and their two renderings: a human table on stdout and
//! one JSON object (`--json`).
//!
//! Owns: the result types (serialised as they are, so the JSON field names are part of this
//! module's contract) and the latency summaries taken from hdrhistograms. The goals are checked
//! in [`super::goals`].
//!
//! Invariants: every rate is per second of wall-clock time, MB is 10^6 bytes
//! ([`super::units::MB`]), body bytes are what rates count (not record headers), latencies are
//! recorded in ns and printed in µs, and every throughput figure carries its ratio to the disk
//! yardstick measured in the same run.
//!
//! Called by [`super::store`] once all cases ran. Pure formatting; no I/O besides stdout.
//!
//! Owns how results look; must not measure or decide goals (`goals.rs` does).

use hdrhistogram::Histogram;
use serde::Serialize;

use super::goal::Goal;
use super::units::size_label;
use crate::error::Result;

/// Latency percentiles of one case, in µs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Operations measured.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl From<&Histogram<u64>> for Latency {
    fn from(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        Self {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// A histogram of nanoseconds from 1 ns to 100 s with 3 significant digits.
///
/// # Errors
/// Never in practice (the bounds are constants); reported rather than unwrapped.
pub fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 100_000_000_000, 3)?)
}

/// Where the benchmark ran.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The benchmark directory.
    pub dir: String,
    /// Filesystem type and device holding it (from `/proc/self/mounts`).
    pub filesystem: String,
}

/// One timed sequential write of the raw disk.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SeqWrite {
    /// Bytes written.
    pub bytes: u64,
    /// Seconds for all writes plus the final `fdatasync`.
    pub secs: f64,
    /// MB per second over `secs`.
    pub mb_per_sec: f64,
}

/// The raw disk: what the store's figures are compared with.
#[derive(Debug, Clone, Serialize)]
pub struct DiskResult {
    /// Size of each `write`.
    pub block_bytes: u64,
    /// `write`s and one `fdatasync` at the end, before the cases.
    pub seq_write: SeqWrite,
    /// `write`s while a second thread `fdatasync`s every 100 ms, before the cases.
    pub seq_write_overlapped: SeqWrite,
    /// `write`s and one `fdatasync` again after the cases (the disk drifts on shared hosts).
    pub seq_write_after: Option<SeqWrite>,
    /// The bandwidth every ratio divides by: the best of the three.
    pub yardstick_mb_per_sec: f64,
    /// Latency of one 4 KiB append + `fdatasync`.
    pub fsync_4k: Latency,
}

impl DiskResult {
    /// Recomputes the yardstick from the measurements present.
    pub fn set_yardstick(&mut self) {
        self.yardstick_mb_per_sec = [
            Some(self.seq_write),
            Some(self.seq_write_overlapped),
            self.seq_write_after,
        ]
        .into_iter()
        .flatten()
        .map(|w| w.mb_per_sec)
        .fold(0.0, f64::max);
    }
}

/// One append case.
#[derive(Debug, Clone, Serialize)]
pub struct AppendResult {
    /// `ASYNC` or `SYNC`.
    pub flush: &'static str,
    /// Body size of every message.
    pub body_bytes: usize,
    /// Concurrent producer tasks.
    pub producers: usize,
    /// Messages acknowledged.
    pub messages: u64,
    /// CommitLog bytes those messages took (records with their headers).
    pub log_bytes: u64,
    /// Seconds from the first send to the last acknowledgement.
    pub ack_secs: f64,
    /// Acknowledged messages per second (of the median run when repeated).
    pub msgs_per_sec: f64,
    /// Runs of this case (`--repeat`); the other figures are those of the median run.
    pub runs: usize,
    /// Slowest run's messages per second.
    pub msgs_per_sec_min: f64,
    /// Fastest run's messages per second.
    pub msgs_per_sec_max: f64,
    /// Acknowledged body MB per second.
    pub mb_per_sec: f64,
    /// `mb_per_sec` / the disk yardstick.
    pub disk_ratio: f64,
    /// Seconds from the first send until everything was durable and dispatched (ack time plus a
    /// clean shutdown's final flush, dispatch and checkpoint).
    pub durable_secs: f64,
    /// Body MB per second over `durable_secs`.
    pub durable_mb_per_sec: f64,
    /// `durable_mb_per_sec` / the disk yardstick.
    pub durable_disk_ratio: f64,
    /// CommitLog bytes written but not yet flushed when the last send returned.
    pub flush_backlog_bytes: u64,
    /// CommitLog bytes written but not yet dispatched when the last send returned.
    pub dispatch_backlog_bytes: u64,
    /// Per-send latency as the producer saw it.
    pub latency: Latency,
    /// Most CPU (percent of all CPUs) that other processes used during any run of the case.
    pub others_cpu_percent: Option<f64>,
}

/// One sequential read pass.
#[derive(Debug, Clone, Serialize)]
pub struct ReadResult {
    /// Body size of the messages read.
    pub body_bytes: usize,
    /// Producers of the append case that wrote them.
    pub producers: usize,
    /// Messages read.
    pub messages: u64,
    /// Seconds for the whole pass.
    pub secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Body MB per second.
    pub mb_per_sec: f64,
    /// `mb_per_sec` / the disk (write) yardstick.
    pub disk_ratio: f64,
    /// Latency of one `pull` of up to `batch` messages.
    pub pull_latency: Latency,
    /// Messages asked for per pull.
    pub batch: usize,
}

/// Settings the run used.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Time limit of each append case.
    pub duration_secs: f64,
    /// Message limit of each append case, if any.
    pub messages: Option<u64>,
    /// Runs of each append case.
    pub repeat: usize,
    /// Queues of the benchmark topic.
    pub queues: u32,
    /// CommitLog segment size.
    pub segment_size: u64,
    /// Messages per pull in the read pass.
    pub read_batch: usize,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// With what settings.
    pub settings: Settings,
    /// The yardstick.
    pub disk: DiskResult,
    /// Append cases, in run order.
    pub append: Vec<AppendResult>,
    /// Read passes.
    pub read: Vec<ReadResult>,
    /// Goals that this run's cases can decide.
    pub goals: Vec<Goal>,
}

/// Prints the report as one JSON object.
///
/// # Errors
/// Serialisation errors (none expected).
pub fn print_json(r: &Report) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(r)?);
    Ok(())
}

/// Prints the report as tables.
pub fn print_table(r: &Report) {
    let m = &r.machine;
    let s = &r.settings;
    println!("rocketgate bench store");
    println!(
        "machine: {} CPUs, {}; dir {} ({})",
        m.cpus, m.cpu_model, m.dir, m.filesystem
    );
    let limit = s
        .messages
        .map_or_else(String::new, |n| format!(" or {n} messages"));
    println!(
        "settings: {:.1} s{limit} per case, {} run(s) each (median shown), {} queues, \
         segment {} MiB, MB = 10^6 bytes",
        s.duration_secs,
        s.repeat,
        s.queues,
        s.segment_size >> 20
    );
    print_disk(&r.disk);
    print_appends(&r.append, s.repeat > 1);
    print_reads(&r.read, s.read_batch);
    print_goals(&r.goals);
}

fn print_disk(d: &DiskResult) {
    println!();
    println!(
        "raw disk, same directory, {} KiB writes",
        d.block_bytes >> 10
    );
    let line = |what: &str, w: &SeqWrite| {
        println!(
            "  {what:<46} {:>5} MiB {:>6.2} s {:>8.1} MB/s",
            w.bytes >> 20,
            w.secs,
            w.mb_per_sec
        );
    };
    line("write, then one fdatasync", &d.seq_write);
    line(
        "write, fdatasync every 100 ms by a 2nd thread",
        &d.seq_write_overlapped,
    );
    if let Some(after) = &d.seq_write_after {
        line("write, then one fdatasync (after the cases)", after);
    }
    println!(
        "  {:<46} {:>27.1} MB/s",
        "yardstick (best of the above)", d.yardstick_mb_per_sec
    );
    let f = &d.fsync_4k;
    println!(
        "  4 KiB append + fdatasync: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs ({} samples)",
        f.p50_us, f.p99_us, f.max_us, f.samples
    );
}

fn print_appends(cases: &[AppendResult], ranges: bool) {
    println!();
    println!("append (msgs/s and MB/s until the last ack; dur = until flushed and dispatched)");
    print!(
        "{:<6} {:>6} {:>4} {:>10} {:>10} {:>7} {:>6} {:>8} {:>8} {:>9} {:>8} {:>6}",
        "flush",
        "body",
        "prod",
        "messages",
        "msgs/s",
        "MB/s",
        "xdisk",
        "p50 µs",
        "p99 µs",
        "p999 µs",
        "dur MB/s",
        "xdisk"
    );
    println!("{}", if ranges { "  msgs/s min-max" } else { "" });
    for c in cases {
        print!(
            "{:<6} {:>6} {:>4} {:>10} {:>10.0} {:>7.1} {:>6.2} {:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>6.2}",
            c.flush,
            size_label(c.body_bytes),
            c.producers,
            c.messages,
            c.msgs_per_sec,
            c.mb_per_sec,
            c.disk_ratio,
            c.latency.p50_us,
            c.latency.p99_us,
            c.latency.p999_us,
            c.durable_mb_per_sec,
            c.durable_disk_ratio
        );
        if ranges {
            print!("  {:.0}-{:.0}", c.msgs_per_sec_min, c.msgs_per_sec_max);
        }
        println!();
    }
    let busy: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let label = format!("{} {} x{}", c.flush, size_label(c.body_bytes), c.producers);
            busy(&label, c.others_cpu_percent)
        })
        .collect();
    print_busy(&busy);
}

/// `"<label> (<p>%)"` if other processes used at least [`BUSY_PERCENT`] of the CPUs.
pub fn busy(label: &str, others_cpu_percent: Option<f64>) -> Option<String> {
    let p = others_cpu_percent.filter(|p| *p >= BUSY_PERCENT)?;
    Some(format!("{label} ({p:.0}%)"))
}

/// Prints the interference note naming the disturbed cases (nothing if there are none).
pub fn print_busy(busy: &[String]) {
    if !busy.is_empty() {
        println!(
            "note: other processes used >= {BUSY_PERCENT:.0}% of the CPUs during: {}; rerun on \
             a quiet machine",
            busy.join(", ")
        );
    }
}

/// Share of the CPUs (percent) used by other processes above which a case is flagged.
const BUSY_PERCENT: f64 = 10.0;

fn print_reads(reads: &[ReadResult], batch: usize) {
    if reads.is_empty() {
        return;
    }
    println!();
    println!(
        "sequential read (pull of {batch} per call, queue by queue, of what an ASYNC case wrote; \
         warm page cache)"
    );
    println!(
        "{:>6} {:>4} {:>10} {:>10} {:>7} {:>6} {:>12} {:>12}",
        "body", "prod", "messages", "msgs/s", "MB/s", "xdisk", "pull p50 µs", "pull p99 µs"
    );
    for c in reads {
        println!(
            "{:>6} {:>4} {:>10} {:>10.0} {:>7.1} {:>6.2} {:>12.1} {:>12.1}",
            size_label(c.body_bytes),
            c.producers,
            c.messages,
            c.msgs_per_sec,
            c.mb_per_sec,
            c.disk_ratio,
            c.pull_latency.p50_us,
            c.pull_latency.p99_us
        );
    }
}

/// Prints the goal lines (nothing without goals).
pub fn print_goals(goals: &[Goal]) {
    if goals.is_empty() {
        return;
    }
    println!();
    println!("goals");
    for g in goals {
        println!(
            "  {:<40} {:>12.2} (target {} {}) {}",
            g.name,
            g.value,
            g.bound,
            g.target,
            if g.met { "MET" } else { "NOT MET" }
        );
    }
}
