//! `rocketgate bench http`: the REST and WebSocket gateway end to end — REST publish throughput
//! and latency with N keep-alive connections (one message per request, then batches), and
//! WebSocket delivery latency (REST publish at a fixed rate → a WebSocket subscriber).
//!
//! Owns: the flags, the runs (`--runs`, each with a fresh in-process server: a `Broker` in a
//! fresh directory, ASYNC flush, served by `rocketgate_gateway_http::serve_with` on
//! 127.0.0.1:0 on its own runtime) unless `--target` points at a running server, the cases,
//! and the server's CPU time per message ([`crate::cpu`]). The two minimal clients are in
//! `http/client.rs`, the tables, figures and goals in `http/report.rs`.
//!
//! Invariants:
//! - Every connection is its own TCP connection, kept alive for the whole case.
//! - Delivery latency is measured from each message's scheduled publish time (carried in the
//!   body), not from when the publisher got round to it (no coordinated omission); publisher
//!   and subscriber share this process's clock.
//! - Figures are printed, never asserted; errors are counted (failed requests, and published
//!   messages the WebSocket never delivered), and a bench with errors in any run exits non-zero
//!   after printing.
//!
//! Who calls it: [`super::run`]. Concurrency: separate multi-thread runtimes for the server
//! (when in process) and the clients.
//!
//! Owns `bench http`; it reaches a broker only through REST and WebSocket (in process through
//! `in_process.rs` and `rocketgate_gateway_http::serve_with`), never through the binary's
//! configuration or node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

mod client;
mod report;

use client::{now_us, Conn, Ws};

use super::cpu::{ServerCpu, CLIENT_THREADS};
use super::dirs::BenchDir;
use super::header::Header;
use super::output::{self, Output};
use super::report::{histogram, Latency};
use super::units::{mb_per_sec, parse_duration, parse_size, per_sec};
use crate::error::{ensure, BenchError, Result};

type Runtime = tokio::runtime::Runtime;

/// Topic the benchmark publishes to.
const TOPIC: &str = "bench_http";
/// Group of the WebSocket subscriber.
const GROUP: &str = "bench_http_ws";
/// Prefix of the delivery case's own topic (one per run: `bench_http_ws_<pid>_<run>`).
const WS_TOPIC: &str = "bench_http_ws";

/// Flags of `rocketgate bench http`.
#[derive(clap::Args, Debug)]
pub struct HttpArgs {
    /// A running server's HTTP address (host:port); without it, a broker is started here.
    #[arg(long)]
    target: Option<String>,
    /// Directory of the in-process broker (created if missing). Default: ./data/bench-PID.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the directory for inspection.
    #[arg(long)]
    keep: bool,
    /// Keep-alive connections of the publish cases.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long each case runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Body size in bytes (1024, 4KiB).
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    size: u64,
    /// Messages per request of the batch case (0 skips it).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Messages per second of the WebSocket delivery case (0 skips it).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Queues of the benchmark topic.
    #[arg(long, default_value_t = 8)]
    queues: u32,
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

/// One publish case.
#[derive(Debug, Clone, Serialize)]
pub struct PublishResult {
    /// What it was.
    pub case: String,
    /// Connections.
    pub connections: usize,
    /// Messages per request.
    pub per_request: usize,
    /// Messages stored (200 answers × messages per request).
    pub sent: u64,
    /// Failed requests.
    pub errors: u64,
    /// Seconds measured.
    pub secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Body MB per second.
    pub mb_per_sec: f64,
    /// Request latency.
    pub latency: Latency,
    /// The server's CPU time per message stored, µs.
    pub server_cpu_us_per_msg: Option<f64>,
}

/// The WebSocket delivery case.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryResult {
    /// Target publish rate.
    pub target_msgs_per_sec: f64,
    /// Messages published.
    pub published: u64,
    /// Messages delivered over the WebSocket.
    pub delivered: u64,
    /// Failed publishes.
    pub errors: u64,
    /// Messages published (200) but not delivered before the case ended.
    pub lost: u64,
    /// Scheduled publish time → frame received.
    pub latency: Latency,
}

/// Everything one run of `bench http` measured.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRun {
    /// Publish cases.
    pub publish: Vec<PublishResult>,
    /// WebSocket delivery.
    pub delivery: Option<DeliveryResult>,
}

/// Settings of `bench http`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    /// In process or the target.
    pub server: String,
    /// Body bytes.
    pub body_bytes: u64,
    /// Seconds of each case.
    pub duration_secs: f64,
    /// Whose CPU time is the server's.
    pub server_cpu: String,
}

/// Runs `bench http` `--runs` times and prints every run, the summary and the goals.
///
/// # Errors
/// Bad flags, a server that cannot start or be reached, failed requests or lost deliveries
/// (after printing).
pub fn run(args: HttpArgs) -> Result<()> {
    ensure!(usage: args.connections > 0, "--connections must be positive");
    ensure!(usage: args.batch <= 256, "--batch must be at most 256");
    ensure!(usage: args.runs > 0, "--runs must be at least 1");
    let header = Header::collect("http", args.runs);
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
        None => Some(BenchDir::new(args.dir.clone(), args.keep)?),
        Some(_) => None,
    };
    let rts = (&server_rt, &client_rt);
    let runs = output::repeat(args.runs, |i| one_run(&args, rts, root.as_ref(), cpu, i))?;
    drop(root);
    let settings = HttpSettings {
        server: args.target.clone().unwrap_or_else(|| "in process".into()),
        body_bytes: args.size,
        duration_secs: args.duration.as_secs_f64(),
        server_cpu: cpu.describe(),
    };
    let out = Output::new(header, settings, runs, report::metrics, |s| {
        report::specs(s, &args, cpu)
    });
    out.print(args.json, HttpSettings::lines, report::print_run)?;
    let (mut errors, mut lost) = (0, 0);
    for r in &out.runs {
        errors += r.result.publish.iter().map(|p| p.errors).sum::<u64>();
        if let Some(d) = &r.result.delivery {
            errors += d.errors;
            lost += d.lost;
        }
    }
    ensure!(errors == 0, "{errors} requests failed (see the tables)");
    ensure!(
        lost == 0,
        "{lost} published messages were not delivered over the WebSocket (see the tables)"
    );
    Ok(())
}

/// One run against a fresh in-process server, or the target.
fn one_run(
    args: &HttpArgs,
    (server_rt, client_rt): (&Runtime, &Runtime),
    root: Option<&BenchDir>,
    cpu: ServerCpu,
    run: usize,
) -> Result<HttpRun> {
    let Some(root) = root else {
        let target = args.target.clone().unwrap_or_default();
        return client_rt.block_on(measure(args, &target, cpu, run));
    };
    let dir = root.case(&format!("http-run{run}"), args.keep)?;
    let server = server_rt.block_on(super::in_process::InProcess::start(
        &dir.path,
        "HTTP",
        // A throwaway directory: let it run on a fuller disk than a real broker would.
        |c| c.store.disk_max_used_ratio = 0.98,
        |listener, broker, stopped| {
            rocketgate_gateway_http::serve_with(
                listener,
                broker,
                rocketgate_gateway_http::HttpConfig::default(),
                None,
                stopped,
            )
        },
    ))?;
    let target = server.address.clone();
    let measured = client_rt.block_on(measure(args, &target, cpu, run));
    server_rt.block_on(server.stop())?;
    drop(dir);
    measured
}

fn json_body(size: u64) -> String {
    let body = "x".repeat(usize::try_from(size).unwrap_or(1024));
    serde_json::json!({ "body": body }).to_string()
}

async fn measure(args: &HttpArgs, target: &str, cpu: ServerCpu, run: usize) -> Result<HttpRun> {
    let mut admin = Conn::open(target).await?;
    let create = serde_json::json!({"name": TOPIC, "queue_count": args.queues}).to_string();
    let (st, body) = admin.call("POST", "/v1/topics", create.as_bytes()).await?;
    ensure!(
        st == 201 || st == 409,
        "creating the topic answered {st}: {}",
        String::from_utf8_lossy(&body)
    );
    eprintln!(
        "bench http: {} connections, {} B bodies, {:?} per case",
        args.connections, args.size, args.duration
    );
    let one = json_body(args.size);
    let path = format!("/v1/topics/{TOPIC}/messages");
    let single = PublishCase {
        name: "publish",
        connections: args.connections,
        path: &path,
        body: one.clone().into_bytes(),
        per_request: 1,
    };
    let mut publish = vec![publish_case(args, target, cpu, single).await?];
    if args.batch > 0 {
        let message: serde_json::Value = serde_json::from_str(&one)?;
        let batch = serde_json::json!({ "messages": vec![message; args.batch] }).to_string();
        let path = format!("/v1/topics/{TOPIC}/messages/batch");
        let conns = args.connections.min(16);
        let case = PublishCase {
            name: "batch",
            connections: conns,
            path: &path,
            body: batch.into_bytes(),
            per_request: args.batch,
        };
        publish.push(publish_case(args, target, cpu, case).await?);
    }
    let delivery = if args.rate > 0.0 {
        Some(delivery_case(args, target, run).await?)
    } else {
        None
    };
    Ok(HttpRun { publish, delivery })
}

/// One publish case: `connections` keep-alive connections POSTing `body` to `path`.
struct PublishCase<'a> {
    name: &'static str,
    connections: usize,
    path: &'a str,
    body: Vec<u8>,
    per_request: usize,
}

async fn publish_case(
    args: &HttpArgs,
    target: &str,
    cpu: ServerCpu,
    case: PublishCase<'_>,
) -> Result<PublishResult> {
    let PublishCase {
        name,
        connections,
        path,
        body,
        per_request,
    } = case;
    let body = std::sync::Arc::new(body);
    let cpu = cpu.start();
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut conn = Conn::open(target).await?;
        let body = body.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram()?;
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match conn.call("POST", &path, &body).await {
                    Ok((200, _)) => ok += 1,
                    Ok((status, body)) => {
                        if errors == 0 {
                            eprintln!("bench http: {status} {}", String::from_utf8_lossy(&body));
                        }
                        errors += 1;
                    }
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(&conn.host).await?;
                    }
                }
                let _ = hist.record(
                    u64::try_from(t.elapsed().as_nanos())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
            }
            Ok::<_, BenchError>((hist, ok, errors))
        }));
    }
    let mut hist = histogram()?;
    let (mut ok, mut errors) = (0u64, 0u64);
    for t in tasks {
        let (h, o, e) = t.await??;
        hist.add(&h)?;
        ok += o;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let sent = ok * per_request as u64;
    Ok(PublishResult {
        case: name.into(),
        connections,
        per_request,
        sent,
        errors,
        secs,
        msgs_per_sec: per_sec(sent, secs),
        mb_per_sec: mb_per_sec(sent * args.size, secs),
        latency: Latency::from(&hist),
        server_cpu_us_per_msg: cpu.per_message_us(sent),
    })
}

async fn delivery_case(args: &HttpArgs, target: &str, run: usize) -> Result<DeliveryResult> {
    // A topic of its own, so the messages of the publish cases are not in the way.
    let topic = format!("{WS_TOPIC}_{}_{run}", std::process::id());
    let mut admin = Conn::open(target).await?;
    let create = serde_json::json!({"name": topic, "queue_count": args.queues}).to_string();
    let (st, body) = admin.call("POST", "/v1/topics", create.as_bytes()).await?;
    ensure!(
        st == 201,
        "creating {topic} answered {st}: {}",
        String::from_utf8_lossy(&body)
    );
    let mut ws = Ws::open(target).await?;
    let sub = serde_json::json!({"type": "subscribe", "subscription": "b", "group": GROUP,
        "topic": topic, "credits": 1024});
    ws.send(&sub.to_string()).await?;
    let first = ws.recv().await?;
    ensure!(first.contains("subscribed"), "subscribe failed: {first}");
    let publishers = 8usize;
    let per_publisher = args.rate / publishers as f64;
    let total = (args.rate * args.duration.as_secs_f64()) as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let mut conn = Conn::open(target).await?;
        let path = format!("/v1/topics/{topic}/messages");
        let n = total / publishers as u64;
        let interval = Duration::from_secs_f64(1.0 / per_publisher.max(1.0));
        let origin_us = now_us();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            for i in 0..n {
                let due = started + interval.mul_f64(i as f64 + p as f64 / publishers as f64);
                tokio::time::sleep_until(due.into()).await;
                let due_us = origin_us + u64::try_from((due - started).as_micros()).unwrap_or(0);
                let body = serde_json::json!({"body": format!("t={due_us}")}).to_string();
                match conn.call("POST", &path, body.as_bytes()).await {
                    Ok((200, _)) => ok += 1,
                    _ => errors += 1,
                }
            }
            (ok, errors)
        }));
    }
    let mut hist = histogram()?;
    let mut delivered = 0u64;
    let expected = total / publishers as u64 * publishers as u64;
    let mut since_credit = 0u32;
    let deadline = Instant::now() + args.duration + Duration::from_secs(10);
    while delivered < expected && Instant::now() < deadline {
        let Ok(frame) = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await else {
            break;
        };
        let v: serde_json::Value = serde_json::from_str(&frame?)?;
        if v["type"] != "message" {
            continue;
        }
        let Some(due) = v["body"]
            .as_str()
            .and_then(|b| b.strip_prefix("t="))
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        let _ = hist.record(now_us().saturating_sub(due).max(1) * 1000);
        delivered += 1;
        ws.send(&serde_json::json!({"type": "ack", "subscription": "b", "receipt_handle": v["receipt_handle"]}).to_string()).await?;
        since_credit += 1;
        if since_credit >= 256 {
            ws.send(&serde_json::json!({"type": "credit", "subscription": "b", "credits": since_credit}).to_string()).await?;
            since_credit = 0;
        }
    }
    let (mut published, mut errors) = (0u64, 0u64);
    for t in tasks {
        let (o, e) = t.await?;
        published += o;
        errors += e;
    }
    let (st, _) = admin
        .call("DELETE", &format!("/v1/topics/{topic}"), b"")
        .await?;
    if st != 204 {
        eprintln!("bench http: deleting {topic} answered {st}");
    }
    Ok(DeliveryResult {
        target_msgs_per_sec: args.rate,
        published,
        delivered,
        errors,
        lost: published.saturating_sub(delivered),
        latency: Latency::from(&hist),
    })
}
