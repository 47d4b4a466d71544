//! `rocketgate bench http`: the REST and WebSocket gateway end to end — REST publish throughput
//! and latency with N keep-alive connections (one message per request, then batches), and
//! WebSocket delivery latency (REST publish at a fixed rate → a WebSocket subscriber).
//!
//! Owns: the flags, the in-process server (a `Broker` in a fresh directory, ASYNC flush, served
//! by `rocketgate_gateway_http::serve_with` on 127.0.0.1:0 on its own runtime) unless
//! `--target` points at a running server, and two deliberately minimal clients: HTTP/1.1 with
//! keep-alive over one `TcpStream` per connection (`Content-Length` bodies only, which is what
//! the gateway answers) and a WebSocket client (masked text frames out, unmasked frames in).
//! They keep the client side cheap so the figures are the server's.
//!
//! Invariants:
//! - Every connection is its own TCP connection, kept alive for the whole case.
//! - Delivery latency is measured from each message's scheduled publish time (carried in the
//!   body), not from when the publisher got round to it (no coordinated omission); publisher
//!   and subscriber share this process's clock.
//! - Figures are printed, never asserted; errors are counted, and a run with errors exits
//!   non-zero after printing.
//!
//! Who calls it: [`super::run`]. Concurrency: separate multi-thread runtimes for the server
//! (when in process) and the clients.
//!
//! Owns `bench http`; it reaches a broker only through REST and WebSocket (in process through
//! `in_process.rs` and `rocketgate_gateway_http::serve_with`), never through the binary's
//! configuration or node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Context;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::dirs::BenchDir;
use super::report::{histogram, Latency};
use super::units::{mb_per_sec, parse_duration, parse_size, per_sec};
use crate::error::{bail, ensure, BenchError, Result};

/// Topic the benchmark publishes to.
const TOPIC: &str = "bench_http";
/// Group of the WebSocket subscriber.
const GROUP: &str = "bench_http_ws";
/// Prefix of the delivery case's own topic (one per run: `bench_http_ws_<pid>`).
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
    /// Scheduled publish time → frame received.
    pub latency: Latency,
}

/// Everything `bench http` measured.
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    /// In process or the target.
    pub server: String,
    /// Body bytes.
    pub body_bytes: u64,
    /// Publish cases.
    pub publish: Vec<PublishResult>,
    /// WebSocket delivery.
    pub delivery: Option<DeliveryResult>,
}

/// Runs `bench http`.
///
/// # Errors
/// Bad flags, a server that cannot start or be reached, failed requests.
pub fn run(args: HttpArgs) -> Result<()> {
    ensure!(usage: args.connections > 0, "--connections must be positive");
    ensure!(usage: args.batch <= 256, "--batch must be at most 256");
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-server")
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-client")
        .build()?;
    let mut in_process = None;
    let target = match &args.target {
        Some(t) => t.clone(),
        None => {
            let dir = BenchDir::new(args.dir.clone(), args.keep)?;
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
            in_process = Some((server, dir));
            target
        }
    };
    let report = client_rt.block_on(measure(&args, &target, in_process.is_some()));
    if let Some((server, dir)) = in_process {
        server_rt.block_on(server.stop())?;
        drop(dir);
    }
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let errors = report.publish.iter().map(|p| p.errors).sum::<u64>()
        + report.delivery.as_ref().map_or(0, |d| d.errors);
    ensure!(errors == 0, "{errors} requests failed (see the table)");
    Ok(())
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    io: BufReader<TcpStream>,
    host: String,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(target: &str) -> Result<Self> {
        let stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("cannot connect to {target}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::new(stream),
            host: target.to_owned(),
            buf: Vec::new(),
        })
    }

    /// Sends one request; answers the status and body.
    async fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.io.get_mut().write_all(&req).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            ensure!(self.io.read_line(&mut line).await? > 0, "connection closed");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().context("bad Content-Length")?;
                }
            }
        }
        ensure!(length <= 64 << 20, "answer too large");
        self.buf.resize(length, 0);
        self.io.read_exact(&mut self.buf).await?;
        Ok((status, std::mem::take(&mut self.buf)))
    }
}

fn json_body(size: u64) -> String {
    let body = "x".repeat(usize::try_from(size).unwrap_or(1024));
    serde_json::json!({ "body": body }).to_string()
}

async fn measure(args: &HttpArgs, target: &str, in_process: bool) -> Result<HttpReport> {
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
    let mut publish = vec![
        publish_case(
            "publish",
            args.connections,
            args,
            target,
            &path,
            one.clone().into_bytes(),
            1,
        )
        .await?,
    ];
    if args.batch > 0 {
        let message: serde_json::Value = serde_json::from_str(&one)?;
        let batch = serde_json::json!({ "messages": vec![message; args.batch] }).to_string();
        let path = format!("/v1/topics/{TOPIC}/messages/batch");
        let conns = args.connections.min(16);
        publish.push(
            publish_case(
                "batch",
                conns,
                args,
                target,
                &path,
                batch.into_bytes(),
                args.batch,
            )
            .await?,
        );
    }
    let delivery = if args.rate > 0.0 {
        Some(delivery_case(args, target).await?)
    } else {
        None
    };
    Ok(HttpReport {
        server: if in_process {
            "in process".into()
        } else {
            target.into()
        },
        body_bytes: args.size,
        publish,
        delivery,
    })
}

async fn publish_case(
    case: &str,
    connections: usize,
    args: &HttpArgs,
    target: &str,
    path: &str,
    body: Vec<u8>,
    per_request: usize,
) -> Result<PublishResult> {
    let body = std::sync::Arc::new(body);
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
        case: case.into(),
        connections,
        per_request,
        sent,
        errors,
        secs,
        msgs_per_sec: per_sec(sent, secs),
        mb_per_sec: mb_per_sec(sent * args.size, secs),
        latency: Latency::from(&hist),
    })
}

/// Microseconds since the epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A minimal WebSocket client: handshake, masked text frames out, frames in.
struct Ws {
    io: BufReader<TcpStream>,
}

impl Ws {
    async fn open(target: &str) -> Result<Self> {
        let mut conn = Conn::open(target).await?;
        let req = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.io.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        conn.io.read_line(&mut line).await?;
        ensure!(line.contains(" 101 "), "WebSocket upgrade refused: {line}");
        loop {
            line.clear();
            ensure!(
                conn.io.read_line(&mut line).await? > 0,
                "closed in the handshake"
            );
            if line.trim_end().is_empty() {
                break;
            }
        }
        Ok(Self { io: conn.io })
    }

    async fn send(&mut self, text: &str) -> Result<()> {
        let payload = text.as_bytes();
        let mut frame = vec![0x81_u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // A zero mask key: valid, and the payload goes out as is.
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        self.io.get_mut().write_all(&frame).await?;
        Ok(())
    }

    /// The next text frame (pings are answered, other control frames skipped).
    async fn recv(&mut self) -> Result<String> {
        loop {
            let mut head = [0u8; 2];
            self.io.read_exact(&mut head).await?;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                len = u64::from(self.io.read_u16().await?);
            } else if len == 127 {
                len = self.io.read_u64().await?;
            }
            ensure!(len <= 64 << 20, "frame too large");
            let mut payload = vec![0u8; usize::try_from(len)?];
            self.io.read_exact(&mut payload).await?;
            match head[0] & 0x0f {
                0x1 => return Ok(String::from_utf8(payload)?),
                0x8 => bail!("the server closed the WebSocket"),
                0x9 => {
                    let mut pong = vec![0x8a_u8, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.io.get_mut().write_all(&pong).await?;
                }
                _ => {}
            }
        }
    }
}

async fn delivery_case(args: &HttpArgs, target: &str) -> Result<DeliveryResult> {
    // A topic of its own, so the messages of the publish cases are not in the way.
    let topic = format!("{WS_TOPIC}_{}", std::process::id());
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
        latency: Latency::from(&hist),
    })
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn print_table(r: &HttpReport) {
    println!(
        "rocketgate bench http — server {}, {} B bodies",
        r.server, r.body_bytes
    );
    println!();
    println!(
        "{:<8} {:>5} {:>6} {:>10} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "case",
        "conns",
        "per rq",
        "msgs/s",
        "MB/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "max ms"
    );
    for p in &r.publish {
        println!(
            "{:<8} {:>5} {:>6} {:>10.0} {:>7.1} {:>7} {:>8} {:>8} {:>8} {:>8}",
            p.case,
            p.connections,
            p.per_request,
            p.msgs_per_sec,
            p.mb_per_sec,
            p.errors,
            ms(p.latency.p50_us),
            ms(p.latency.p99_us),
            ms(p.latency.p999_us),
            ms(p.latency.max_us),
        );
    }
    if let Some(d) = &r.delivery {
        println!();
        println!(
            "WebSocket delivery at {:.0} msgs/s: {} published, {} delivered, {} errors; \
             publish → frame p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
            d.target_msgs_per_sec,
            d.published,
            d.delivered,
            d.errors,
            ms(d.latency.p50_us),
            ms(d.latency.p99_us),
            ms(d.latency.p999_us),
            ms(d.latency.max_us),
        );
    }
}
