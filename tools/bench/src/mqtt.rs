//! `rocketgate bench mqtt`: MQTT 3.1.1 publish throughput (QoS 0 and QoS 1 with N clients,
//! QoS 1 on one connection) and publish → subscriber latency at a fixed rate, against a
//! rocketgate MQTT listener and, in the same run, against Debian's Mosquitto.
//!
//! Owns: the flags, the runs (`--runs`, each with a fresh in-process broker and a fresh
//! Mosquitto), whether the Mosquitto comparison runs, and the goals' inputs. The cases are in
//! `mqtt/cases.rs`, the raw client in `mqtt/wire.rs`, the Mosquitto process in
//! `mqtt/mosquitto.rs`, the count of stored messages in `mqtt/count.rs`, the tables, figures
//! and goals in `mqtt/report.rs`.
//!
//! Invariants:
//! - Every client has its own TCP connection. QoS 0 throughput counts, for rocketgate, the
//!   messages **stored** (the core's count for the topic after the case, polled until every
//!   publish written is there or the count stops moving), over the time from the first publish
//!   until the last one was stored; for Mosquitto, which stores nothing, the publishes it read
//!   (written before its answer to a closing PINGREQ). QoS 1 counts PUBACKs, with at most
//!   `--inflight` (`--single-inflight` on one connection) unacknowledged publishes per client;
//!   rocketgate's store count must then match them.
//! - Latency is measured from each message's scheduled send time (carried in its payload) to
//!   its arrival at one subscriber, so a stalled broker shows up (no coordinated omission).
//! - Figures are printed, never asserted. Any error — a failed connection or publisher, a QoS 0
//!   publish not stored, a QoS 1 acknowledgement without a stored message, a message the
//!   subscriber never got — fails the bench after printing. A missing Mosquitto fails it
//!   before measuring, unless `--no-compare` or `RG_ALLOW_SKIP=1`; the header then says that
//!   there is no comparison and why.
//!
//! Who calls it: [`super::run`]. The rocketgate target is `--target` (a running server's MQTT
//! listener, with `--admin` its gRPC address for the store count), or else a broker (ASYNC
//! flush, in a fresh directory) with the MQTT gateway on 127.0.0.1:0 started in this process on
//! its own runtime. Concurrency: one multi-thread runtime for the clients, one task per client;
//! the in-process server has its own.
//!
//! Owns `bench mqtt`; it publishes only through MQTT and reads only the store count through the
//! core's public API (`Topics::describe`) or the admin gRPC API, and must not touch a Mosquitto
//! it did not start.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

mod cases;
mod count;
mod mosquitto;
mod report;
mod wire;

use count::Counter;
use mosquitto::Mosquitto;

use super::cpu::{ServerCpu, CLIENT_THREADS};
use super::dirs::BenchDir;
use super::header::Header;
use super::output::{self, Output};
use super::report::Latency;
use super::units::{parse_duration, parse_size};
use crate::error::{ensure, Result};

type Runtime = tokio::runtime::Runtime;

/// The opt-out of a missing comparison tool (see docs/testing.md).
const ALLOW_SKIP: &str = "RG_ALLOW_SKIP";

/// Flags of `rocketgate bench mqtt`.
#[derive(clap::Args, Debug)]
pub struct MqttArgs {
    /// A running rocketgate MQTT listener (host:port); without it, a broker and its MQTT
    /// gateway are started in this process.
    #[arg(long, requires = "admin")]
    target: Option<String>,
    /// The `--target` server's gRPC address (host:port), to count the messages it stored.
    #[arg(long, requires = "target")]
    admin: Option<String>,
    /// The `--target` server's process id, to read its CPU time from /proc.
    #[arg(long, requires = "target")]
    server_pid: Option<u32>,
    /// Directory of the in-process broker (created if missing). Default: ./data/bench-PID.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the directory for inspection.
    #[arg(long)]
    keep: bool,
    /// The Mosquitto binary to compare with (a missing one fails the bench, unless
    /// --no-compare or RG_ALLOW_SKIP=1).
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// Do not run the Mosquitto comparison (the output says so; its goals are not decided).
    #[arg(long, alias = "no-mosquitto")]
    no_compare: bool,
    /// Concurrent publisher connections.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long each throughput case runs.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Payload size in bytes (at least 16).
    #[arg(long, default_value = "256", value_parser = parse_size)]
    size: u64,
    /// Unacknowledged QoS 1 publishes per client.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Unacknowledged QoS 1 publishes of the one-connection case.
    #[arg(long, default_value_t = 1000)]
    single_inflight: usize,
    /// Messages per second of the latency case (all publishers together).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// QoS of the latency case (0 or 1).
    #[arg(long, default_value_t = 1)]
    latency_qos: u8,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Runs of the whole bench, each with a fresh in-process broker and a fresh Mosquitto;
    /// every run is printed, then the median and min-max of each figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// One case against one broker.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Broker name (`rocketgate`, `mosquitto`).
    pub broker: &'static str,
    /// Case name (`QoS 0, 8 conns`).
    pub case: String,
    /// QoS of the publishes.
    pub qos: u8,
    /// Publisher connections.
    pub clients: usize,
    /// Unacknowledged QoS 1 publishes per connection.
    pub inflight: Option<usize>,
    /// Publishes the clients completed: QoS 0 written before the PINGRESP, QoS 1 PUBACKed,
    /// latency case published.
    pub written: u64,
    /// Messages the broker's store gained during the case (rocketgate only).
    pub stored: Option<u64>,
    /// What `messages` counts (`stored`, `read by the broker`, `PUBACKs`, `received`).
    pub counted: &'static str,
    /// Messages counted.
    pub messages: u64,
    /// Seconds measured.
    pub secs: f64,
    /// `messages` per second.
    pub msgs_per_sec: f64,
    /// Publish → subscriber latency (latency case only).
    pub latency: Option<Latency>,
    /// The server's CPU time per message counted, µs.
    pub server_cpu_us_per_msg: Option<f64>,
    /// Errors: failed connections or publishers, lost or unstored messages.
    pub errors: u64,
    /// What the errors were.
    pub error_notes: Vec<String>,
}

/// Everything one run of `bench mqtt` measured.
#[derive(Debug, Clone, Serialize)]
pub struct MqttRun {
    /// Every case of every broker, rocketgate first.
    pub cases: Vec<CaseResult>,
}

/// Settings of `bench mqtt`.
#[derive(Debug, Clone, Serialize)]
pub struct MqttSettings {
    /// In process or the target.
    pub server: String,
    /// Publisher connections.
    pub clients: usize,
    /// Payload bytes.
    pub payload_bytes: u64,
    /// Seconds of each case.
    pub duration_secs: f64,
    /// In flight per client (QoS 1).
    pub inflight: usize,
    /// In flight of the one-connection case.
    pub single_inflight: usize,
    /// The latency case's rate.
    pub rate: f64,
    /// The comparison (`Mosquitto /usr/sbin/mosquitto, persistence false` or why none).
    pub comparison: String,
    /// Whose CPU time is the server's (rocketgate).
    pub server_cpu: String,
}

/// Whether the Mosquitto comparison runs: `Ok(None)` if it does, `Ok(Some(note))` when it is
/// explicitly skipped.
///
/// # Errors
/// Mosquitto missing without an opt-out.
fn comparison(args: &MqttArgs) -> Result<Option<String>> {
    if args.no_compare {
        return Ok(Some(
            "no Mosquitto comparison (--no-compare): its goals are NOT DECIDED".into(),
        ));
    }
    if args.mosquitto.exists() {
        return Ok(None);
    }
    let missing = format!("{} not found", args.mosquitto.display());
    if std::env::var(ALLOW_SKIP).is_ok_and(|v| v == "1") {
        return Ok(Some(format!(
            "no Mosquitto comparison: {missing}, skipped under {ALLOW_SKIP}=1; its goals are \
             NOT DECIDED"
        )));
    }
    crate::error::bail!(
        "{missing}: the comparison needs it (apt-get install mosquitto); pass --no-compare or \
         set {ALLOW_SKIP}=1 to run without it"
    )
}

/// Runs the benchmark `--runs` times and prints every run, the summary and the goals.
///
/// # Errors
/// Bad flags, a missing Mosquitto without an opt-out, a target that does not accept MQTT
/// connections, or any error of a case (after printing).
pub fn run(args: MqttArgs) -> Result<()> {
    ensure!(usage: args.clients > 0, "--clients must be at least 1");
    ensure!(usage: args.size >= 16, "--size must be at least 16");
    ensure!(usage: args.latency_qos <= 1, "--latency-qos must be 0 or 1");
    ensure!(usage: args.runs > 0, "--runs must be at least 1");
    ensure!(
        usage: args.rate.is_finite() && args.rate >= 1.0,
        "--rate must be at least 1"
    );
    let skipped = comparison(&args)?;
    let mut header = Header::collect("mqtt", args.runs);
    header.notes.extend(skipped.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(CLIENT_THREADS)
        .build()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-server")
        .build()?;
    let cpu = match (&args.target, args.server_pid) {
        (None, _) => ServerCpu::InProcess,
        (Some(_), Some(pid)) => ServerCpu::Pid(pid),
        (Some(_), None) => ServerCpu::Unknown,
    };
    let root = match &args.target {
        None => Some(BenchDir::new(args.dir.clone(), args.keep)?),
        Some(_) => None,
    };
    let compare = skipped.is_none();
    let rts = (&rt, &server_rt);
    let runs = output::repeat(args.runs, |i| {
        one_run(&args, rts, root.as_ref(), (cpu, compare), i)
    })?;
    drop(root);
    let settings = MqttSettings {
        server: args.target.clone().unwrap_or_else(|| "in process".into()),
        clients: args.clients,
        payload_bytes: args.size,
        duration_secs: args.duration.as_secs_f64(),
        inflight: args.inflight,
        single_inflight: args.single_inflight,
        rate: args.rate,
        comparison: skipped.unwrap_or_else(|| {
            format!(
                "Mosquitto {}, persistence false (keeps nothing on disk), started fresh in \
                 every run",
                args.mosquitto.display()
            )
        }),
        server_cpu: cpu.describe(),
    };
    let out = Output::new(header, settings, runs, report::metrics, |_| {
        report::specs(&args, cpu, compare)
    });
    out.print(args.json, MqttSettings::lines, report::print_run)?;
    let errors: u64 = out
        .runs
        .iter()
        .flat_map(|r| r.result.cases.iter().map(|c| c.errors))
        .sum();
    ensure!(errors == 0, "{errors} errors in the cases (see the tables)");
    Ok(())
}

/// One run: every case against a fresh rocketgate (or the target), then against a fresh
/// Mosquitto when `compare`.
fn one_run(
    args: &MqttArgs,
    (rt, server_rt): (&Runtime, &Runtime),
    root: Option<&BenchDir>,
    (cpu, compare): (ServerCpu, bool),
    run: usize,
) -> Result<MqttRun> {
    let mut cases = match root {
        None => {
            let target = args.target.clone().unwrap_or_default();
            let counter = Counter::Admin(args.admin.clone().unwrap_or_default());
            let peer = cases::Peer {
                name: "rocketgate",
                addr: &target,
                counter: Some(&counter),
                cpu,
            };
            rt.block_on(cases::measure(args, &peer))?
        }
        Some(root) => {
            let dir = root.case(&format!("mqtt-run{run}"), args.keep)?;
            let server = server_rt.block_on(super::in_process::InProcess::start(
                &dir.path,
                "MQTT",
                |_| {},
                |listener, broker, stopped| {
                    rocketgate_gateway_mqtt::serve(
                        Some(listener),
                        None,
                        broker,
                        rocketgate_gateway_mqtt::MqttConfig::default(),
                        stopped,
                    )
                },
            ))?;
            let counter = Counter::Broker(server.broker.clone());
            let peer = cases::Peer {
                name: "rocketgate",
                addr: &server.address,
                counter: Some(&counter),
                cpu,
            };
            let measured = rt.block_on(cases::measure(args, &peer));
            server_rt.block_on(server.stop())?;
            drop(dir);
            measured?
        }
    };
    if compare {
        let m = rt.block_on(Mosquitto::start(&args.mosquitto))?;
        let peer = cases::Peer {
            name: "mosquitto",
            addr: &m.address,
            counter: None,
            cpu: m.pid().map_or(ServerCpu::Unknown, ServerCpu::Pid),
        };
        let measured = rt.block_on(cases::measure(args, &peer));
        rt.block_on(m.stop());
        cases.extend(measured?);
    }
    Ok(MqttRun { cases })
}
