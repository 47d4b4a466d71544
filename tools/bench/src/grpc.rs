//! `rocketgate bench grpc`: the RocketMQ 5 gRPC protocol end to end — SendMessage throughput
//! and latency with N concurrent clients, SendMessage latency at a fixed rate (half the measured
//! maximum by default), and ReceiveMessage + AckMessage throughput of what was sent.
//!
//! Owns: the flags, the in-process server (a `Broker` in a fresh directory, ASYNC flush, served
//! by `rocketgate_gateway_grpc::serve` on 127.0.0.1:0 on its own runtime) unless `--target`
//! points at a running server, and the raw-stub clients (generated from `proto/`, the same
//! frames an official SDK sends: `x-mq-client-id`, one message per SendMessage).
//!
//! Invariants:
//! - Every client has its own HTTP/2 connection, as separate SDK processes would.
//! - Paced latency is measured from each message's scheduled send time, not from when the
//!   client got round to it, so a stalled server shows up in the percentiles (no coordinated
//!   omission).
//! - Receive + ack ends when every message sent by the throughput and latency cases has been
//!   acknowledged once; duplicates (redeliveries) are counted and reported.
//! - Figures are printed, never asserted; errors are counted and reported, and a run with
//!   errors exits non-zero after printing.
//!
//! Who calls it: [`super::run`]. Concurrency: the server runtime (when in process) and the
//! client runtime are separate multi-thread runtimes.
//!
//! Owns `bench grpc`; it reaches a broker only through the gRPC protocol (in process through
//! `in_process.rs` and `rocketgate_gateway_grpc::serve_with`), never through the binary's
//! configuration or node.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Context;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

mod yardstick;

use super::dirs::BenchDir;
use super::in_process::InProcess;
use super::report::{histogram, Latency};
use super::units::{mb_per_sec, parse_duration, parse_size, per_sec};
use crate::error::{ensure, failed, BenchError, Result};

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

/// Everything `bench grpc` measured.
#[derive(Debug, Clone, Serialize)]
pub struct GrpcReport {
    /// The server measured (`in-process` or the target address).
    pub server: String,
    /// Body size.
    pub body_bytes: u64,
    /// Messages per SendMessage.
    pub per_request: usize,
    /// Send cases.
    pub sends: Vec<SendResult>,
    /// Receive + ack.
    pub receive: Option<ReceiveResult>,
}

/// Runs the benchmark.
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
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-server")
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-client")
        .build()?;
    if args.yardstick {
        return run_yardstick(&args, &server_rt, &client_rt);
    }
    let (server, target, dir) = match &args.target {
        Some(t) => (None, t.clone(), None),
        None => {
            let dir = BenchDir::new(args.dir.clone(), args.keep)?;
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
            (Some(server), target, Some(dir))
        }
    };
    let report = client_rt.block_on(measure(&args, &target, server.is_some(), true));
    if let Some(server) = server {
        server_rt.block_on(server.stop())?;
    }
    drop(dir);
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let errors: u64 = report.sends.iter().map(|s| s.errors).sum::<u64>()
        + report.receive.as_ref().map_or(0, |r| r.errors);
    ensure!(errors == 0, "{errors} calls failed (see the table)");
    if let Some(r) = &report.receive {
        ensure!(
            r.complete,
            "not every sent message was received and acknowledged"
        );
    }
    Ok(())
}

/// `--yardstick`: the send cases against [`yardstick`], on the same runtimes.
fn run_yardstick(
    args: &GrpcArgs,
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
) -> Result<()> {
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let target = listener.local_addr()?.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = server_rt.spawn(yardstick::serve(listener, stopped));
    let measured = client_rt.block_on(measure(args, &target, true, false));
    let _ = stop.send(());
    let _ = server_rt.block_on(task);
    let mut report = measured?;
    report.server = "yardstick (no broker)".into();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

async fn connect(target: &str) -> Result<MessagingServiceClient<Channel>> {
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

/// The send cases, and the receive + ack case when `receive` (and `--consumers` > 0).
async fn measure(
    args: &GrpcArgs,
    target: &str,
    in_process: bool,
    receive: bool,
) -> Result<GrpcReport> {
    let body = bytes::Bytes::from(vec![b'x'; usize::try_from(args.size)?]);
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(connect(target).await?);
    }
    if !in_process {
        ensure_topic(target, args.queues).await?;
    }
    let pid = std::process::id();
    let load = Load {
        body: &body,
        pid,
        per_request: args.per_request,
    };

    eprintln!(
        "bench grpc: {} clients sending {} B bodies for {:?}",
        args.clients, args.size, args.duration
    );
    let max = send_case("max rate", &clients, args.duration, None, &load, 0).await?;
    let rate = args.rate.unwrap_or(max.msgs_per_sec / 2.0).max(1.0);
    eprintln!(
        "bench grpc: paced at {rate:.0} msgs/s for {:?}",
        args.duration
    );
    let paced = send_case("paced", &clients, args.duration, Some(rate), &load, 1).await?;
    let total_sent = max.sent + paced.sent;
    let receive = if receive && args.consumers > 0 {
        eprintln!(
            "bench grpc: {} consumers receiving and acking {total_sent} messages",
            args.consumers
        );
        Some(receive_case(args, target, total_sent).await?)
    } else {
        None
    };
    Ok(GrpcReport {
        server: if in_process {
            "in-process".into()
        } else {
            target.into()
        },
        body_bytes: args.size,
        per_request: args.per_request,
        sends: vec![max, paced],
        receive,
    })
}

async fn ensure_topic(target: &str, queues: u32) -> Result<()> {
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

/// What every request of a send case carries.
#[derive(Clone, Copy)]
struct Load<'a> {
    body: &'a bytes::Bytes,
    pid: u32,
    per_request: usize,
}

/// Runs every client for `duration`, as fast as it can or paced at `rate` in total.
async fn send_case(
    case: &str,
    clients: &[MessagingServiceClient<Channel>],
    duration: Duration,
    rate: Option<f64>,
    load: &Load<'_>,
    run: u32,
) -> Result<SendResult> {
    let Load {
        body,
        pid,
        per_request,
    } = *load;
    let n = clients.len();
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
    })
}

/// Consumers receive and ack until `expected` distinct messages are acknowledged.
async fn receive_case(args: &GrpcArgs, target: &str, expected: u64) -> Result<ReceiveResult> {
    let seen = Arc::new(parking_lot::Mutex::new(HashSet::<String>::new()));
    let duplicates = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut tasks = tokio::task::JoinSet::new();
    let pid = std::process::id();
    for i in 0..args.consumers {
        let mut client = connect(target).await?;
        let client_id = format!("bench-consumer@{pid}#{i}");
        let seen = seen.clone();
        let duplicates = duplicates.clone();
        let batch = args.batch;
        tasks.spawn(async move {
            let mut receive_hist = histogram()?;
            let mut ack_hist = histogram()?;
            let mut errors = 0u64;
            let _ = client
                .heartbeat(request(
                    &client_id,
                    pb::HeartbeatRequest {
                        group: resource(GROUP),
                        client_type: pb::ClientType::SimpleConsumer as i32,
                    },
                ))
                .await;
            while (seen.lock().len() as u64) < expected && Instant::now() < deadline {
                let t = Instant::now();
                let req = pb::ReceiveMessageRequest {
                    group: resource(GROUP),
                    message_queue: Some(pb::MessageQueue {
                        topic: resource(TOPIC),
                        ..Default::default()
                    }),
                    filter_expression: Some(pb::FilterExpression {
                        r#type: pb::FilterType::Tag as i32,
                        expression: "*".into(),
                    }),
                    batch_size: batch,
                    invisible_duration: Some(prost_types::Duration {
                        seconds: 60,
                        nanos: 0,
                    }),
                    long_polling_timeout: Some(prost_types::Duration {
                        seconds: 5,
                        nanos: 0,
                    }),
                    ..Default::default()
                };
                let mut r = request(&client_id, req);
                r.set_timeout(Duration::from_secs(30));
                let mut stream = match client.receive_message(r).await {
                    Ok(s) => s.into_inner(),
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                };
                let mut entries = Vec::new();
                loop {
                    match stream.message().await {
                        Ok(Some(frame)) => {
                            if let Some(pb::receive_message_response::Content::Message(m)) =
                                frame.content
                            {
                                let sp = m.system_properties.unwrap_or_default();
                                entries.push(pb::AckMessageEntry {
                                    message_id: sp.message_id,
                                    receipt_handle: sp.receipt_handle.unwrap_or_default(),
                                });
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                if entries.is_empty() {
                    continue;
                }
                receive_hist.record(
                    u64::try_from(t.elapsed().as_nanos())
                        .unwrap_or(u64::MAX)
                        .max(1),
                )?;
                let ids: Vec<String> = entries.iter().map(|e| e.message_id.clone()).collect();
                let t = Instant::now();
                let acked = client
                    .ack_message(request(
                        &client_id,
                        pb::AckMessageRequest {
                            group: resource(GROUP),
                            topic: resource(TOPIC),
                            entries,
                        },
                    ))
                    .await;
                match acked {
                    Ok(r) if ok(r.get_ref().status.as_ref()) => {
                        ack_hist.record(
                            u64::try_from(t.elapsed().as_nanos())
                                .unwrap_or(u64::MAX)
                                .max(1),
                        )?;
                        let mut s = seen.lock();
                        for id in ids {
                            if !s.insert(id) {
                                duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                    _ => errors += 1,
                }
            }
            Ok::<_, BenchError>((receive_hist, ack_hist, errors))
        });
    }
    let mut receive_hist = histogram()?;
    let mut ack_hist = histogram()?;
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (r, a, e) = joined??;
        receive_hist.add(&r)?;
        ack_hist.add(&a)?;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let acked = seen.lock().len() as u64;
    Ok(ReceiveResult {
        consumers: args.consumers,
        acked,
        duplicates: duplicates.load(std::sync::atomic::Ordering::Relaxed),
        errors,
        secs,
        msgs_per_sec: per_sec(acked, secs),
        receive_latency: Latency::from(&receive_hist),
        ack_latency: Latency::from(&ack_hist),
        complete: acked >= expected,
    })
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1e3)
}

fn print_table(r: &GrpcReport) {
    println!(
        "rocketgate bench grpc — server {}, {} B bodies, {} message(s) per SendMessage",
        r.server, r.body_bytes, r.per_request
    );
    println!();
    println!(
        "{:<10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "case",
        "clients",
        "target/s",
        "msgs/s",
        "MB/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "max ms"
    );
    for s in &r.sends {
        println!(
            "{:<10} {:>7} {:>10} {:>10.0} {:>7.1} {:>9} {:>8} {:>8} {:>8} {:>8}",
            s.case,
            s.clients,
            s.target_msgs_per_sec
                .map_or("-".into(), |t| format!("{t:.0}")),
            s.msgs_per_sec,
            s.mb_per_sec,
            s.errors,
            ms(s.latency.p50_us),
            ms(s.latency.p99_us),
            ms(s.latency.p999_us),
            ms(s.latency.max_us),
        );
    }
    if let Some(c) = &r.receive {
        println!();
        println!(
            "receive + ack: {} consumers, {} acked in {:.2} s = {:.0} msgs/s, {} duplicates, {} errors{}",
            c.consumers,
            c.acked,
            c.secs,
            c.msgs_per_sec,
            c.duplicates,
            c.errors,
            if c.complete { "" } else { " (INCOMPLETE)" }
        );
        println!(
            "  ReceiveMessage p50 {} ms p99 {} ms; AckMessage p50 {} ms p99 {} ms",
            ms(c.receive_latency.p50_us),
            ms(c.receive_latency.p99_us),
            ms(c.ack_latency.p50_us),
            ms(c.ack_latency.p99_us)
        );
    }
}
