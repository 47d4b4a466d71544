//! The results of one run of `rocketgate bench store` and their tables, and the latency
//! summaries every bench takes from hdrhistograms.
//!
//! Owns: the result types (serialised as they are, so the JSON field names are part of this
//! module's contract), the tables of one run, and the interference note. The header, the
//! summary over the runs and the goals are printed by [`super::output`]; the store's goals are
//! stated in [`super::goals`].
//!
//! Invariants: every rate is per second of wall-clock time, MB is 10^6 bytes
//! ([`super::units::MB`]), body bytes are what rates count (not record headers), latencies are
//! recorded in ns and printed in µs, and every throughput figure carries its ratio to the disk
//! yardstick measured in the same run.
//!
//! Called by [`super::store`] once a run's cases ran. Pure formatting; no I/O besides stdout.
//!
//! Owns how results look; must not measure or decide goals (`goals.rs` does).

use hdrhistogram::Histogram;
use serde::Serialize;

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
    /// Acknowledged messages per second.
    pub msgs_per_sec: f64,
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
    /// Percent of all CPUs that other processes used during the case.
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

/// Settings of `bench store`.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Time limit of each append case.
    pub duration_secs: f64,
    /// Message limit of each append case, if any.
    pub messages: Option<u64>,
    /// Queues of the benchmark topic.
    pub queues: u32,
    /// CommitLog segment size.
    pub segment_size: u64,
    /// Messages per pull in the read pass.
    pub read_batch: usize,
    /// Bytes of each raw sequential write.
    pub disk_bytes: u64,
    /// The benchmark directory.
    pub dir: String,
    /// Filesystem type and device holding it (from `/proc/self/mounts`).
    pub filesystem: String,
}

impl Settings {
    /// The settings as printed under the header.
    pub fn lines(&self) -> Vec<String> {
        let limit = self
            .messages
            .map_or_else(String::new, |n| format!(" or {n} messages"));
        vec![format!(
            "settings: {:.1} s{limit} per append case, {} queues, segment {} MiB, raw disk {} MiB \
             per write; dir {} ({}); MB = 10^6 bytes",
            self.duration_secs,
            self.queues,
            self.segment_size >> 20,
            self.disk_bytes >> 20,
            self.dir,
            self.filesystem
        )]
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRun {
    /// The yardstick.
    pub disk: DiskResult,
    /// Append cases, in run order.
    pub append: Vec<AppendResult>,
    /// Read passes.
    pub read: Vec<ReadResult>,
}

/// Prints one run's tables.
pub fn print_run(r: &StoreRun, read_batch: usize) {
    print_disk(&r.disk);
    print_appends(&r.append);
    print_reads(&r.read, read_batch);
}

fn print_disk(d: &DiskResult) {
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

fn print_appends(cases: &[AppendResult]) {
    println!();
    println!("append (msgs/s and MB/s until the last ack; dur = until flushed and dispatched)");
    println!(
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
    for c in cases {
        println!(
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
