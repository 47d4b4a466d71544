//! `rocketgate bench store`: append throughput and latency of the store for each combination of
//! flush mode, body size and producer count, a sequential read pass, and the raw sequential-write
//! bandwidth of the same directory that every figure is divided by.
//!
//! Owns: the flags, the benchmark directory (a fresh `./data/bench-<pid>` unless `--dir`), the
//! order of a run (disk yardstick, every case once, the disk again), repeated `--runs` times,
//! and the tokio runtime the cases run on.
//!
//! Invariants: no case ever sees another case's data (each case of each run gets a fresh
//! subdirectory, and one that already exists is an error); a case directory is deleted and the
//! filesystem synced before the next case starts, so no case pays for another's clean-up; what
//! this run created is deleted at the end, also on error, unless `--keep`; a directory given
//! with `--dir` is never deleted, only what the run put into it.
//!
//! Who calls it: [`super::run`]. Concurrency: one multi-thread runtime (one worker per CPU);
//! cases run one after another, never overlapping. Whether other processes shared the machine
//! is measured per case ([`super::load`]) and reported, not prevented.
//!
//! Owns `bench store`'s run order; must not write outside its run directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Context;
use rocketgate_core::FlushMode;

use super::append::{self, Case, Setup};
use super::dirs::BenchDir;
use super::disk;
use super::goals;
use super::header::Header;
use super::load;
use super::output::{self, Output};
use super::read::{self, Pass};
use super::report::{self, AppendResult, DiskResult, ReadResult, Settings, StoreRun};
use super::units::{parse_duration, parse_size, size_label};
use crate::error::{bail, Result};

/// A flush mode as a flag value.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    Async,
    Sync,
}

impl From<Flush> for FlushMode {
    fn from(f: Flush) -> Self {
        match f {
            Flush::Async => FlushMode::Async,
            Flush::Sync => FlushMode::Sync,
        }
    }
}

/// Flags of `rocketgate bench store`.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// Directory to run in (created if missing). Default: a fresh ./data/bench-PID, deleted
    /// afterwards unless --keep.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the case directories (and a created --dir) for inspection.
    #[arg(long)]
    keep: bool,
    /// Time limit of each append case: 3s, 500ms, 1m.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Message limit of each append case (over all producers); the time limit still applies.
    #[arg(long)]
    messages: Option<u64>,
    /// Runs of the whole bench (disk yardstick and every case), each in fresh directories;
    /// every run is printed, then the median and min-max of each figure.
    #[arg(long, alias = "repeat", default_value_t = 3)]
    runs: usize,
    /// Body sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,1024,4096")]
    sizes: Vec<usize>,
    /// Concurrent producer counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    producers: Vec<usize>,
    /// Flush modes, comma-separated.
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        value_delimiter = ',',
        default_value = "async,sync"
    )]
    flush: Vec<Flush>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// CommitLog segment size: bytes, or with a unit (1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    segment_size: u64,
    /// Queues of the benchmark topic.
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// Bytes written by each raw sequential-write measurement (1GiB, 512MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    disk_size: u64,
    /// Messages per pull in the read pass (at most the broker's max_batch, 1024).
    #[arg(long, default_value_t = 256)]
    read_batch: usize,
    /// Skip the sequential read pass.
    #[arg(long)]
    no_read: bool,
}

fn check(args: &StoreArgs) -> Result<()> {
    if args.sizes.is_empty() || args.producers.is_empty() || args.flush.is_empty() {
        bail!(usage: "--sizes, --producers and --flush need at least one value each");
    }
    if args.producers.contains(&0) {
        bail!(usage: "--producers values must be at least 1");
    }
    if args.queues == 0 || !(1..=1024).contains(&args.read_batch) {
        bail!(usage: "--queues must be at least 1 and --read-batch between 1 and 1024");
    }
    if args.messages == Some(0) || args.runs == 0 {
        bail!(usage: "--messages and --runs must be at least 1");
    }
    Ok(())
}

/// Runs the whole benchmark `--runs` times and prints every run, the summary and the goals.
///
/// # Errors
/// Bad flags, I/O errors, or any case's error (the bench stops at the first).
pub fn run(args: StoreArgs) -> Result<()> {
    check(&args)?;
    let header = Header::collect("store", args.runs);
    let root = BenchDir::new(args.dir.clone(), args.keep)?;
    let (dir, filesystem) = disk::location(&root.path);
    let runner = Runner {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        root: &root,
        args: &args,
        setup: Setup {
            queues: args.queues,
            segment_size: args.segment_size,
            duration: args.duration,
            messages: args.messages,
        },
    };
    let runs = output::repeat(args.runs, |i| runner.one_run(i))?;
    drop(runner);
    let settings = Settings {
        duration_secs: args.duration.as_secs_f64(),
        messages: args.messages,
        queues: args.queues,
        segment_size: args.segment_size,
        read_batch: args.read_batch,
        disk_bytes: args.disk_size,
        dir,
        filesystem,
    };
    let out = Output::new(header, settings, runs, goals::metrics, goals::specs);
    out.print(args.json, Settings::lines, |r| {
        report::print_run(r, args.read_batch);
    })
}

fn measure_disk(dir: &Path, size: u64) -> Result<DiskResult> {
    eprintln!(
        "raw disk: writing {} MiB to {} ...",
        size >> 20,
        dir.display()
    );
    let seq_write = disk::seq_write(dir, size, false)?;
    let seq_write_overlapped = disk::seq_write(dir, size, true)?;
    let fsync_4k = disk::sync_latency(dir, Duration::from_secs(1))?;
    let mut d = DiskResult {
        block_bytes: disk::BLOCK as u64,
        seq_write,
        seq_write_overlapped,
        seq_write_after: None,
        yardstick_mb_per_sec: 0.0,
        fsync_4k,
    };
    d.set_yardstick();
    eprintln!(
        "raw disk: {:.1} MB/s (write + fdatasync), {:.1} MB/s (overlapped), \
         4 KiB fdatasync p50 {:.0} µs",
        d.seq_write.mb_per_sec, d.seq_write_overlapped.mb_per_sec, d.fsync_4k.p50_us
    );
    Ok(d)
}

/// What every case of a run shares.
struct Runner<'a> {
    runtime: tokio::runtime::Runtime,
    root: &'a BenchDir,
    args: &'a StoreArgs,
    setup: Setup,
}

impl Runner<'_> {
    /// One run: the disk yardstick, every case once (each in a fresh directory, with the read
    /// pass after the first ASYNC case of each body size), the disk again.
    fn one_run(&self, run: usize) -> Result<StoreRun> {
        let args = self.args;
        let mut disk = measure_disk(&self.root.path, args.disk_size)?;
        let total = args.flush.len() * args.sizes.len() * args.producers.len();
        let mut appends = Vec::with_capacity(total);
        let mut reads = Vec::new();
        for &flush in &args.flush {
            for &size in &args.sizes {
                for (i, &producers) in args.producers.iter().enumerate() {
                    let case = Case {
                        flush: flush.into(),
                        body: size,
                        producers,
                    };
                    let read_after = flush == Flush::Async && i == 0 && !args.no_read;
                    let n = appends.len() + 1;
                    let (result, read) = self.case(case, read_after, run, (n, total))?;
                    appends.push(result);
                    reads.extend(read);
                }
            }
        }
        eprintln!("raw disk again, after the cases ...");
        disk.seq_write_after = Some(disk::seq_write(&self.root.path, args.disk_size, false)?);
        disk.set_yardstick();
        goals::apply_yardstick(&mut appends, &mut reads, disk.yardstick_mb_per_sec);
        Ok(StoreRun {
            disk,
            append: appends,
            read: reads,
        })
    }

    /// Runs one case in a fresh directory, plus its read pass when `read_after`. `(n, total)`
    /// is for progress.
    fn case(
        &self,
        case: Case,
        read_after: bool,
        run: usize,
        (n, total): (usize, usize),
    ) -> Result<(AppendResult, Option<ReadResult>)> {
        let args = self.args;
        let label = format!(
            "{} {} x{}",
            case.flush_name(),
            size_label(case.body),
            case.producers
        );
        eprint!("[{n}/{total}] append {label} ... ");
        let name = format!(
            "{}-{}-x{}-run{run}",
            case.flush_name().to_lowercase(),
            size_label(case.body),
            case.producers
        );
        let dir = self.root.case(&name, args.keep)?;
        let before = load::Probe::now();
        let mut result = self
            .runtime
            .block_on(append::run(&dir.path, case, self.setup))
            .with_context(|| format!("case {label}"))?;
        result.others_cpu_percent = before
            .zip(load::Probe::now())
            .and_then(|(a, b)| a.others_percent(&b));
        eprintln!(
            "{:.0} msgs/s, {:.1} MB/s (durable {:.1} MB/s)",
            result.msgs_per_sec, result.mb_per_sec, result.durable_mb_per_sec
        );
        if !read_after {
            return Ok((result, None));
        }
        eprint!("      read back {label} ... ");
        let pass = Pass {
            queues: args.queues,
            batch: args.read_batch,
            body: case.body,
            producers: case.producers,
            expected: result.messages,
            segment_size: args.segment_size,
        };
        let r = self
            .runtime
            .block_on(read::run(&dir.path, pass))
            .with_context(|| format!("read pass of {label}"))?;
        eprintln!("{:.0} msgs/s, {:.1} MB/s", r.msgs_per_sec, r.mb_per_sec);
        Ok((result, Some(r)))
    }
}
