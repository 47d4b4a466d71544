//! `rocketgate bench grpc`: the RocketMQ 5 gRPC protocol end to end — SendMessage throughput
//! and latency with N concurrent clients, SendMessage latency at a fixed rate (half the measured
//! maximum by default), and ReceiveMessage + AckMessage throughput of what was sent.
//!
//! Owns: the flags, the runs (`--runs`, each with a fresh in-process server: a `Broker` in a
//! fresh directory, ASYNC flush, served by `rocketgate_gateway_grpc::serve` on 127.0.0.1:0 on
//! its own runtime) unless `--target` points at a running server, the raw-stub clients
//! (generated from `proto/`, the same frames an official SDK sends: `x-mq-client-id`, one
//! message per SendMessage), and the server's CPU time per message ([`crate::cpu`]). The
//! receive case is in `grpc/receive.rs`, the tables, figures and goals in `grpc/report.rs`, the
//! transport yardstick in `grpc/yardstick.rs`.
//!
//! Invariants:
//! - Every client has its own HTTP/2 connection, as separate SDK processes would.
//! - Paced latency is measured from each message's scheduled send time, not from when the
//!   client got round to it, so a stalled server shows up in the percentiles (no coordinated
//!   omission).
//! - Receive + ack ends when every message sent by the throughput and latency cases has been
//!   acknowledged once; duplicates (redeliveries) are counted and reported.
//! - Figures are printed, never asserted; errors are counted and reported, and a bench with
//!   errors in any run (or an incomplete receive) exits non-zero after printing.
//!
//! Who calls it: [`super::run`]. Concurrency: the server runtime (when in process) and the
//! client runtime are separate multi-thread runtimes.
//!
//! Owns `bench grpc`; it reaches a broker only through the gRPC protocol (in process through
//! `in_process.rs` and `rocketgate_gateway_grpc::serve_with`), never through the binary's
//! configuration or node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Context;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

mod receive;
mod report;
mod yardstick;

use super::cpu::{ServerCpu, CLIENT_THREADS};
use super::dirs::BenchDir;
use super::header::Header;
use super::in_process::InProcess;
use super::output::{self, Output};
use super::report::{histogram, Latency};
use super::units::{mb_per_sec, parse_duration, parse_size, per_sec};
use crate::error::{ensure, failed, BenchError, Result};

type Runtime = tokio::runtime::Runtime;

/// Topic the benchmark sends to.
const TOPIC: &str = "bench_grpc";
/// Consumer group of the receive case.
const GROUP: &str = "bench_grpc_group";

/// Flags of `rocketgate bench grpc`.
#[derive(clap::Args, Debug)]
pub struct GrpcArgs {
    /// A running server's gRPC address; without it, a broker is started in this process.
    #[arg(long)]
    target: Option<String>,
    /// Measure the transport ceiling instead: the same sends against an in-process gRPC
    /// service that answers OK without a broker (no receive case).
    #[arg(long, conflicts_with = "target")]
    yardstick: bool,
    /// Directory of the in-process broker (created if missing). Default: ./data/bench-PID.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the directory for inspection.
    #[arg(long)]
    keep: bool,
    /// Concurrent producer clients, each on its own connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long each send case runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Body size in bytes (1024, 4KiB).
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    size: u64,
    /// Messages per second of the paced latency case; default: half the measured throughput.
    #[arg(long)]
    rate: Option<f64>,
    /// Messages per SendMessage request (the SDKs' batch send); 1 is the plain `send`.
    #[arg(long, default_value_t = 1)]
    per_request: usize,
    /// Concurrent consumer clients of the receive + ack case (0 skips it).
    #[arg(long, default_value_t = 8)]
    consumers: usize,
    /// Most messages per ReceiveMessage.
    #[arg(long, default_value_t = 32)]
    batch: i32,
    /// Queues of the benchmark topic.
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// Give up the receive case after this long.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Runs of the whole bench, each with a fresh in-process server; every run is printed,
    /// then the median and min-max of each figure.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The `--target` server's process id, to read its CPU time from /proc.
    #[arg(long, requires = "target")]
    server_pid: Option<u32>,
}

/// One send case.
#[derive(Debug, Clone, Serialize)]
pub struct SendResult {
    /// What it was.
    pub case: String,
    /// Clients.
    pub clients: usize,
    /// Target rate (paced case).
    pub target_msgs_per_sec: Option<f64>,
    /// Sends acknowledged with OK.
    pub sent: u64,
    /// Sends that failed (transport error or a non-OK status).
    pub errors: u64,
    /// Seconds measured.
    pub secs: f64,
    /// Acknowledged sends per second.
    pub msgs_per_sec: f64,
    /// Body MB per second.
    pub mb_per_sec: f64,
    /// SendMessage latency, per request (paced: from the scheduled time).
    pub latency: Latency,
    /// The server's CPU time per message sent, µs.
    pub server_cpu_us_per_msg: Option<f64>,
}

/// The receive + ack case.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiveResult {
    /// Consumers.
    pub consumers: usize,
    /// Distinct messages acknowledged.
    pub acked: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Failed calls.
    pub errors: u64,
    /// Seconds from the first receive to the last ack.
    pub secs: f64,
    /// Distinct messages received and acknowledged per second.
    pub msgs_per_sec: f64,
    /// ReceiveMessage latency of non-empty receives.
    pub receive_latency: Latency,
    /// AckMessage latency.
    pub ack_latency: Latency,
    /// Whether every sent message was acknowledged.
    pub complete: bool,
}

/// Everything one run of `bench grpc` measured.
#[derive(Debug, Clone, Serialize)]
pub struct GrpcRun {
    /// Send cases.
    pub sends: Vec<SendResult>,
    /// Receive + ack.
    pub receive: Option<ReceiveResult>,
}

/// Settings of `bench grpc`.
#[derive(Debug, Clone, Serialize)]
pub struct GrpcSettings {
    /// The server measured (`in-process`, the yardstick or the target address).
    pub server: String,
    /// Body size.
    pub body_bytes: u64,
    /// Messages per SendMessage.
    pub per_request: usize,
    /// Producer clients.
    pub clients: usize,
    /// Seconds of each send case.
    pub duration_secs: f64,
    /// Consumers of the receive case (0: none).
    pub consumers: usize,
    /// Whose CPU time is the server's.
    pub server_cpu: String,
}

/// Runs the benchmark `--runs` times and prints every run, the summary and the goals.
///
/// # Errors
/// Bad flags, a server that cannot be started or reached, or failed calls (after printing).
pub fn run(args: GrpcArgs) -> Result<()> {
    ensure!(usage: args.clients > 0, "--clients must be at least 1");
    ensure!(
        usage: (1..=1024).contains(&args.per_request),
        "--per-request must be 1..=1024"
    );
    ensure!(usage: (1..=1024).contains(&args.batch), "--batch must be 1..=1024");
    ensure!(usage: args.runs > 0, "--runs must be at least 1");
    let header = Header::collect("grpc", args.runs);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-server")
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(CLIENT_THREADS)
        .build()?;
    let cpu = match (&args.target, args.server_pid) {
        (None, _) => ServerCpu::InProcess,
        (Some(_), Some(pid)) => ServerCpu::Pid(pid),
        (Some(_), None) => ServerCpu::Unknown,
    };
    let root = match &args.target {
        None if !args.yardstick => Some(BenchDir::new(args.dir.clone(), args.keep)?),
        _ => None,
    };
    let rts = (&server_rt, &client_rt);
    let runs = output::repeat(args.runs, |i| one_run(&args, rts, root.as_ref(), cpu, i))?;
    drop(root);
    let settings = GrpcSettings {
        server: match (&args.target, args.yardstick) {
            (Some(t), _) => t.clone(),
            (None, true) => "yardstick (no broker), in process".into(),
            (None, false) => "in process".into(),
        },
        body_bytes: args.size,
        per_request: args.per_request,
        clients: args.clients,
        duration_secs: args.duration.as_secs_f64(),
        consumers: if args.yardstick { 0 } else { args.consumers },
        server_cpu: cpu.describe(),
    };
    let out = Output::new(header, settings, runs, report::metrics, |s| {
        report::specs(s, &args)
    });
    out.print(args.json, GrpcSettings::lines, report::print_run)?;
    let errors: u64 = out
        .runs
        .iter()
        .flat_map(|r| {
            let receive = r.result.receive.as_ref().map_or(0, |c| c.errors);
            r.result.sends.iter().map(|s| s.errors).chain([receive])
        })
        .sum();
    ensure!(errors == 0, "{errors} calls failed (see the tables)");
    let incomplete = out
        .runs
        .iter()
        .any(|r| r.result.receive.as_ref().is_some_and(|c| !c.complete));
    ensure!(
        !incomplete,
        "not every sent message was received and acknowledged (see the tables)"
    );
    Ok(())
}

/// One run against a fresh in-process server, the yardstick, or the target.
fn one_run(
    args: &GrpcArgs,
    (server_rt, client_rt): (&Runtime, &Runtime),
    root: Option<&BenchDir>,
    cpu: ServerCpu,
    run: usize,
) -> Result<GrpcRun> {
    if args.yardstick {
        let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let target = listener.local_addr()?.to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = server_rt.spawn(yardstick::serve(listener, stopped));
        let measured = client_rt.block_on(measure(args, &target, (cpu, run), false));
        let _ = stop.send(());
        let _ = server_rt.block_on(task);
        return measured;
    }
    let Some(root) = root else {
        let target = args.target.clone().unwrap_or_default();
        ensure_topic_blocking(client_rt, &target, args.queues)?;
        return client_rt.block_on(measure(args, &target, (cpu, run), true));
    };
    let dir = root.case(&format!("grpc-run{run}"), args.keep)?;
    let server = server_rt.block_on(InProcess::start(
        &dir.path,
        "gRPC",
        |_| {},
        |listener, broker, stopped| {
            let address = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let node = rocketgate_gateway_grpc::NodeInfo {
                cluster: "BenchCluster".into(),
                broker_name: "bench".into(),
                broker_id: 0,
                endpoints: vec![("grpc".into(), address)],
                nameservers: Vec::new(),
                registered_nameservers: Arc::new(|| 0),
                started_at_ms: 0,
                routes: None,
            };
            rocketgate_gateway_grpc::serve(listener, broker, node, stopped)
        },
    ))?;
    server
        .broker
        .topics()
        .create(rocketgate_core::TopicConfig::new(TOPIC, args.queues))?;
    let target = server.address.clone();
    let measured = client_rt.block_on(measure(args, &target, (cpu, run), true));
    server_rt.block_on(server.stop())?;
    drop(dir);
    measured
}

fn ensure_topic_blocking(rt: &Runtime, target: &str, queues: u32) -> Result<()> {
    rt.block_on(ensure_topic(target, queues))
}

pub(crate) async fn connect(target: &str) -> Result<MessagingServiceClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    Ok(MessagingServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

fn request<T>(client_id: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Ok(v) = client_id.parse() {
        r.metadata_mut().insert("x-mq-client-id", v);
    }
    r.metadata_mut().insert(
        "x-mq-language",
        tonic::metadata::MetadataValue::from_static("RUST"),
    );
    r
}

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

fn message(id: String, body: &bytes::Bytes) -> pb::Message {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    pb::Message {
        topic: resource(TOPIC),
        user_properties: Default::default(),
        system_properties: Some(pb::SystemProperties {
            message_id: id,
            message_type: pb::MessageType::Normal as i32,
            body_encoding: pb::Encoding::Identity as i32,
            born_timestamp: Some(prost_types::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: 0,
            }),
            born_host: "bench".into(),
            ..Default::default()
        }),
        body: body.to_vec(),
    }
}

fn ok(status: Option<&pb::Status>) -> bool {
    status.is_some_and(|s| s.code == pb::Code::Ok as i32)
}

/// Sends `per_request` messages in one SendMessage; `true` when the server answered OK.
async fn send_one(
    client: &mut MessagingServiceClient<Channel>,
    client_id: &str,
    id: &str,
    per_request: usize,
    body: &bytes::Bytes,
) -> bool {
    let req = pb::SendMessageRequest {
        messages: (0..per_request)
            .map(|j| message(format!("{id}-{j}"), body))
            .collect(),
    };
    match client.send_message(request(client_id, req)).await {
        Ok(r) => ok(r.get_ref().status.as_ref()),
        Err(_) => false,
    }
}

/// Per-client tallies of a send case.
struct Tally {
    hist: hdrhistogram::Histogram<u64>,
    sent: u64,
    errors: u64,
}

/// The send cases, and the receive + ack case when `receive` (and `--consumers` > 0), of run
/// `run`, with the server's CPU time read through `cpu`.
async fn measure(
    args: &GrpcArgs,
    target: &str,
    (cpu, run): (ServerCpu, usize),
    receive: bool,
) -> Result<GrpcRun> {
    let body = bytes::Bytes::from(vec![b'x'; usize::try_from(args.size)?]);
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(connect(target).await?);
    }
    let pid = std::process::id();
    let load = Load {
        body: &body,
        pid,
        per_request: args.per_request,
        cpu,
    };

    eprintln!(
        "bench grpc: {} clients sending {} B bodies for {:?}",
        args.clients, args.size, args.duration
    );
    let max = send_case("max rate", &clients, args.duration, None, &load, run * 2).await?;
    let rate = args.rate.unwrap_or(max.msgs_per_sec / 2.0).max(1.0);
    eprintln!(
        "bench grpc: paced at {rate:.0} msgs/s for {:?}",
        args.duration
    );
    let paced = send_case(
        "paced",
        &clients,
        args.duration,
        Some(rate),
        &load,
        run * 2 + 1,
    )
    .await?;
    let total_sent = max.sent + paced.sent;
    let receive = if receive && args.consumers > 0 {
        eprintln!(
            "bench grpc: {} consumers receiving and acking {total_sent} messages",
            args.consumers
        );
        Some(receive::receive_case(args, target, total_sent).await?)
    } else {
        None
    };
    Ok(GrpcRun {
        sends: vec![max, paced],
        receive,
    })
}

pub(crate) async fn ensure_topic(target: &str, queues: u32) -> Result<()> {
    use rocketgate_proto::cluster::v1 as admin;
    let mut c = admin::broker_admin_client::BrokerAdminClient::connect(format!("http://{target}"))
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    let created = c
        .create_topic(admin::CreateTopicRequest {
            topic: Some(admin::TopicSpec {
                name: TOPIC.into(),
                queue_count: queues,
                ..Default::default()
            }),
        })
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => Err(failed!("cannot create topic {TOPIC}: {}", s.message())),
    }
}

/// What every request of a send case carries (also used by `bench replication`).
#[derive(Clone, Copy)]
pub(crate) struct Load<'a> {
    pub(crate) body: &'a bytes::Bytes,
    pub(crate) pid: u32,
    pub(crate) per_request: usize,
    pub(crate) cpu: ServerCpu,
}

/// Runs every client for `duration`, as fast as it can or paced at `rate` in total (also the
/// send load of `bench replication`).
pub(crate) async fn send_case(
    case: &str,
    clients: &[MessagingServiceClient<Channel>],
    duration: Duration,
    rate: Option<f64>,
    load: &Load<'_>,
    run: usize,
) -> Result<SendResult> {
    let Load {
        body,
        pid,
        per_request,
        cpu,
    } = *load;
    let n = clients.len();
    let cpu = cpu.start();
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in clients.iter().enumerate() {
        let mut client = client.clone();
        let body = body.clone();
        let client_id = format!("bench@{pid}#{i}");
        // Paced: client i sends request k at start + (i + k * n) / (rate / per_request).
        let requests_per_sec = rate.map(|r| r / per_request as f64);
        let interval = requests_per_sec.map(|r| Duration::from_secs_f64(n as f64 / r));
        let offset =
            requests_per_sec.map_or(Duration::ZERO, |r| Duration::from_secs_f64(i as f64 / r));
        tasks.spawn(async move {
            let mut t = Tally {
                hist: histogram()?,
                sent: 0,
                errors: 0,
            };
            tokio::time::sleep_until((start + offset).into()).await;
            let mut k = 0u64;
            loop {
                let scheduled = match interval {
                    Some(every) => {
                        let due = start + offset + every.mul_f64(k as f64);
                        if due >= end {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                let id = format!("BENCH{run}-{i}-{k}");
                if send_one(&mut client, &client_id, &id, per_request, &body).await {
                    t.sent += per_request as u64;
                    let ns = u64::try_from(scheduled.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    t.hist.record(ns.max(1))?;
                } else {
                    t.errors += 1;
                }
                k += 1;
            }
            Ok::<_, BenchError>(t)
        });
    }
    let mut hist = histogram()?;
    let (mut sent, mut errors) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let t = joined??;
        hist.add(&t.hist)?;
        sent += t.sent;
        errors += t.errors;
    }
    let secs = duration.as_secs_f64();
    Ok(SendResult {
        case: case.into(),
        clients: n,
        target_msgs_per_sec: rate,
        sent,
        errors,
        secs,
        msgs_per_sec: per_sec(sent, secs),
        mb_per_sec: mb_per_sec(sent * body.len() as u64, secs),
        latency: Latency::from(&hist),
        server_cpu_us_per_msg: cpu.per_message_us(sent),
    })
}
