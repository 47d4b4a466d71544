//! `rocketgate bench replication`: what replication costs a send — 1 KiB SendMessage throughput
//! and latency with N concurrent producers against an unreplicated master, a master with ASYNC
//! replication and one with SYNC replication (`min_in_sync_replicas` = the master and every
//! slave), and the replication lag the master reports under that load.
//!
//! Owns: the flags, the runs (`--runs`, each starting every case's processes afresh), the
//! order of the cases, and the CPU time of the server processes. The processes are in
//! `replication/nodes.rs`, the lag sampling in `replication/lag.rs`, the tables, figures and
//! goals in `replication/report.rs`. The producers are `bench grpc`'s ([`crate::grpc`]: raw
//! stubs, one HTTP/2 connection each, one message per SendMessage).
//!
//! Invariants:
//! - Every case is a fresh master (and fresh slaves) in a fresh case directory: real
//!   `rocketgate broker` processes started from `--bin` (default: this executable), never a
//!   broker in this process; the bench does not depend on the server crate.
//! - A replicated case starts its load only once the master counts every slave in sync, and
//!   its processes are killed when the case ends, also on error (`nodes::Group`'s drop).
//! - The lag is sampled from the master's `/metrics` every `--sample-every` during the load
//!   only; figures are printed, never asserted; a failed send in any case makes the bench exit
//!   non-zero after printing.
//!
//! Who calls it: [`super::run`]. Concurrency: the producers and the sampler run on one client
//! runtime; the processes are separate.
//!
//! Must not touch a broker it did not start, nor any directory but its case directories.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

mod lag;
mod nodes;
mod report;

use super::cpu::{ServerCpu, CLIENT_THREADS};
use super::dirs::{BenchDir, CaseDir};
use super::grpc::{self, Load, SendResult};
use super::header::Header;
use super::output::{self, Output};
use crate::error::{ensure, Context, Result};
use lag::LagResult;
use nodes::{CpuReading, Group};

type Runtime = tokio::runtime::Runtime;

/// Flags of `rocketgate bench replication`.
#[derive(clap::Args, Debug)]
pub struct ReplicationArgs {
    /// The `rocketgate` binary to start the master and slaves from. Default: this executable.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Directory of the case directories (created if missing). Default: ./data/bench-PID.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the directories (data and logs of every process) for inspection.
    #[arg(long)]
    keep: bool,
    /// Slaves of the replicated cases.
    #[arg(long, default_value_t = 1)]
    slaves: usize,
    /// Concurrent producers, each on its own connection.
    #[arg(long, visible_alias = "clients", default_value_t = 64)]
    producers: usize,
    /// How long each case sends.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration)]
    duration: Duration,
    /// Body size in bytes (1024, 4KiB).
    #[arg(long, default_value = "1024", value_parser = crate::units::parse_size)]
    size: u64,
    /// Flush mode of the master and the slaves.
    #[arg(long, value_enum, ignore_case = true, default_value_t = FlushMode::Async)]
    flush_mode: FlushMode,
    /// Queues of the benchmark topic.
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// How often the replication lag is read from the master's /metrics.
    #[arg(long, default_value = "100ms", value_parser = crate::units::parse_duration)]
    sample_every: Duration,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Runs of the whole bench (every case each time, with fresh processes); every run is
    /// printed, then the median and min-max of each figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// `store.flush_mode` of every process.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FlushMode {
    /// Acknowledged once written to the page cache.
    #[value(name = "ASYNC")]
    #[serde(rename = "ASYNC")]
    Async,
    /// Acknowledged once fsynced.
    #[value(name = "SYNC")]
    #[serde(rename = "SYNC")]
    Sync,
}

impl FlushMode {
    /// As `--flush-mode` takes it.
    fn flag(self) -> &'static str {
        match self {
            Self::Async => "ASYNC",
            Self::Sync => "SYNC",
        }
    }
}

/// The cases of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// A master with replication off.
    Unreplicated,
    /// ASYNC replication to every slave.
    Async,
    /// SYNC replication, every slave required in sync.
    Sync,
}

impl Case {
    const ALL: [Case; 3] = [Case::Unreplicated, Case::Async, Case::Sync];

    /// As printed and named in the figures.
    fn name(self) -> &'static str {
        match self {
            Self::Unreplicated => "unreplicated",
            Self::Async => "ASYNC",
            Self::Sync => "SYNC",
        }
    }

    /// `--replication-mode` of the master; `None` when replication is off.
    fn replication_mode(self) -> Option<&'static str> {
        match self {
            Self::Unreplicated => None,
            Self::Async => Some("async"),
            Self::Sync => Some("sync"),
        }
    }
}

/// One case of one run.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// `unreplicated`, `ASYNC`, `SYNC`.
    pub case: String,
    /// Slaves following the master (0 unreplicated).
    pub slaves: usize,
    /// `replication.min_in_sync_replicas` of the master, when it replicates.
    pub min_in_sync_replicas: Option<usize>,
    /// The sends (`server_cpu_us_per_msg` is the master's).
    pub send: SendResult,
    /// The master's CPU time over the load, percent of one CPU.
    pub master_cpu_percent: Option<f64>,
    /// All slaves' CPU time over the load, percent of one CPU.
    pub slaves_cpu_percent: Option<f64>,
    /// All slaves' CPU time per message sent, µs.
    pub slaves_cpu_us_per_msg: Option<f64>,
    /// The replication lag during the load.
    pub lag: Option<LagResult>,
}

/// Everything one run of `bench replication` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationRun {
    /// The cases, in the order they ran.
    pub cases: Vec<CaseResult>,
}

/// Settings of `bench replication`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationSettings {
    /// The binary the processes were started from.
    pub bin: String,
    /// Slaves of the replicated cases.
    pub slaves: usize,
    /// Producers.
    pub producers: usize,
    /// Body size.
    pub body_bytes: u64,
    /// Seconds of each case's load.
    pub duration_secs: f64,
    /// Flush mode of every process.
    pub flush_mode: FlushMode,
    /// Milliseconds between lag samples.
    pub sample_every_ms: f64,
}

/// Runs the benchmark `--runs` times and prints every run, the summary and the goals.
///
/// # Errors
/// Bad flags, a process that cannot be started or does not get in sync, or failed sends
/// (after printing).
pub fn run(args: ReplicationArgs) -> Result<()> {
    ensure!(usage: args.producers > 0, "--producers must be at least 1");
    ensure!(usage: (1..=15).contains(&args.slaves), "--slaves must be 1..=15");
    ensure!(usage: args.runs > 0, "--runs must be at least 1");
    ensure!(usage: args.queues > 0, "--queues must be at least 1");
    ensure!(
        usage: args.sample_every >= Duration::from_millis(10),
        "--sample-every must be at least 10ms"
    );
    let bin = match &args.bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find this executable; pass --bin")?,
    };
    ensure!(
        usage: bin.is_file(),
        "--bin {}: no such file (the rocketgate binary to start)",
        bin.display()
    );
    let mut header = Header::collect("replication", args.runs);
    header.notes.push(
        "each run's `other processes` share includes the master and slaves this bench started \
         (their own CPU is in the tables)"
            .into(),
    );
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(CLIENT_THREADS)
        .build()?;
    let root = BenchDir::new(args.dir.clone(), args.keep)?;
    let runs = output::repeat(args.runs, |i| one_run(&args, &bin, &client_rt, &root, i))?;
    drop(root);
    let settings = ReplicationSettings {
        bin: bin.display().to_string(),
        slaves: args.slaves,
        producers: args.producers,
        body_bytes: args.size,
        duration_secs: args.duration.as_secs_f64(),
        flush_mode: args.flush_mode,
        sample_every_ms: args.sample_every.as_secs_f64() * 1e3,
    };
    let out = Output::new(header, settings, runs, report::metrics, |s| {
        report::specs(s, &args)
    });
    out.print(args.json, ReplicationSettings::lines, report::print_run)?;
    let errors: u64 = out
        .runs
        .iter()
        .flat_map(|r| r.result.cases.iter().map(|c| c.send.errors))
        .sum();
    ensure!(errors == 0, "{errors} sends failed (see the tables)");
    Ok(())
}

/// One run: every case with fresh processes in a fresh directory.
fn one_run(
    args: &ReplicationArgs,
    bin: &Path,
    rt: &Runtime,
    root: &BenchDir,
    run: usize,
) -> Result<ReplicationRun> {
    let mut cases = Vec::with_capacity(Case::ALL.len());
    for case in Case::ALL {
        let dir = root.case(
            &format!("replication-run{run}-{}", case.name().to_lowercase()),
            args.keep,
        )?;
        std::fs::create_dir_all(&dir.path)
            .with_context(|| format!("cannot create {}", dir.path.display()))?;
        let measured = one_case(args, bin, rt, &dir, case, run)
            .with_context(|| format!("case {}", case.name()))?;
        cases.push(measured);
    }
    Ok(ReplicationRun { cases })
}

/// One case: start its processes, wait for the in-sync set, send for `--duration` while the
/// lag is sampled, and kill the processes (dropping the group, also on error).
fn one_case(
    args: &ReplicationArgs,
    bin: &Path,
    rt: &Runtime,
    dir: &CaseDir,
    case: Case,
    run: usize,
) -> Result<CaseResult> {
    let slaves = if case == Case::Unreplicated {
        0
    } else {
        args.slaves
    };
    eprintln!(
        "bench replication: {} ({} slave(s), {} flush)",
        case.name(),
        slaves,
        args.flush_mode.flag()
    );
    let group = Group::start(bin, &dir.path, case, args.slaves, args.flush_mode)?;
    let grpc_addr = group.master.endpoint("grpc")?;
    let http_addr = group.master.endpoint("http")?;
    let body = bytes::Bytes::from(vec![b'x'; usize::try_from(args.size)?]);
    let load = Load {
        body: &body,
        pid: std::process::id(),
        per_request: 1,
        cpu: ServerCpu::Pid(group.master.pid()),
    };
    let (send, before, after, lag) = rt.block_on(async {
        grpc::ensure_topic(&grpc_addr, args.queues).await?;
        if slaves > 0 {
            lag::wait_in_sync(&http_addr, 1 + slaves, nodes::WAIT).await?;
        }
        let mut clients = Vec::with_capacity(args.producers);
        for _ in 0..args.producers {
            clients.push(grpc::connect(&grpc_addr).await?);
        }
        eprintln!(
            "bench replication: {} producers sending {} B bodies for {:?}",
            args.producers, args.size, args.duration
        );
        let sampler =
            (slaves > 0).then(|| lag::Sampler::start(http_addr.clone(), args.sample_every));
        let before = group.cpu();
        let send = grpc::send_case(case.name(), &clients, args.duration, None, &load, run).await?;
        let after = group.cpu();
        let lag = match sampler {
            Some(s) => Some(s.stop().await?),
            None => None,
        };
        Ok::<_, crate::error::BenchError>((send, before, after, lag))
    })?;
    drop(group);
    let secs = send.secs;
    let used = |f: fn(&CpuReading) -> Option<f64>| Some((f(&after)? - f(&before)?).max(0.0));
    let master = used(|r| r.master);
    let slaves_cpu = used(|r| r.slaves);
    Ok(CaseResult {
        case: case.name().into(),
        slaves,
        min_in_sync_replicas: (case == Case::Sync).then_some(1 + slaves),
        master_cpu_percent: master.map(|c| c * 100.0 / secs),
        slaves_cpu_percent: slaves_cpu.map(|c| c * 100.0 / secs),
        slaves_cpu_us_per_msg: slaves_cpu
            .filter(|_| send.sent > 0)
            .map(|c| c * 1e6 / send.sent as f64),
        send,
        lag,
    })
}
