//! `rocketgate bench mqtt`: MQTT 3.1.1 publish throughput (QoS 0 and QoS 1) with N clients
//! and publish → subscriber latency at a fixed rate, against a rocketgate MQTT listener and,
//! in the same run, against Debian's Mosquitto when `/usr/sbin/mosquitto` exists.
//!
//! Owns: the flags, a minimal raw MQTT 3.1.1 client (CONNECT, PUBLISH, PUBACK, SUBSCRIBE,
//! PINGREQ: the frames any device sends, without a client library's own queueing), and the
//! Mosquitto process it starts (in-memory, `persistence false`, on an ephemeral port reserved
//! by binding :0 and releasing it, then polled until it accepts).
//!
//! Invariants:
//! - Every client has its own TCP connection. QoS 0 throughput counts the publishes a client
//!   wrote before its closing PINGREQ was answered (the broker read them all); QoS 1 counts
//!   PUBACKs, with at most `--inflight` unacknowledged publishes per client.
//! - Latency is measured from each message's scheduled send time (carried in its payload) to
//!   its arrival at one subscriber, so a stalled broker shows up (no coordinated omission).
//! - Figures are printed, never asserted.
//!
//! Who calls it: [`super::run`]. The rocketgate target is `--target` (a running server's MQTT
//! listener), or else a broker (ASYNC flush, in a fresh directory) with the MQTT gateway on
//! 127.0.0.1:0 started in this process on its own runtime. Concurrency: one multi-thread
//! runtime for the clients, one task per client; the in-process server has its own.
//!
//! Owns `bench mqtt`; it reaches a broker only through MQTT (in process through
//! `rocketgate_gateway_mqtt::serve`), and must not touch a Mosquitto it did not start.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Context;
use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::report::{histogram, Latency};
use super::units::{parse_duration, parse_size, per_sec};
use crate::error::{bail, ensure, BenchError, Result};

/// Flags of `rocketgate bench mqtt`.
#[derive(clap::Args, Debug)]
pub struct MqttArgs {
    /// A running rocketgate MQTT listener (host:port); without it, a broker and its MQTT
    /// gateway are started in this process.
    #[arg(long)]
    target: Option<String>,
    /// Directory of the in-process broker (created if missing). Default: ./data/bench-PID.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the directory for inspection.
    #[arg(long)]
    keep: bool,
    /// The Mosquitto binary to compare with (skipped when missing).
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// Do not run the Mosquitto comparison.
    #[arg(long)]
    no_mosquitto: bool,
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
    /// Messages per second of the latency case (all publishers together).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// QoS of the latency case (0 or 1).
    #[arg(long, default_value_t = 1)]
    latency_qos: u8,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// One case against one broker.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Broker name.
    pub broker: String,
    /// Case name.
    pub case: String,
    /// Publisher connections.
    pub clients: usize,
    /// Messages counted.
    pub messages: u64,
    /// Seconds measured.
    pub secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Publish → subscriber latency (latency case only).
    pub latency: Option<Latency>,
    /// Errors (connection failures, lost messages in the latency case).
    pub errors: u64,
}

/// Runs the benchmark.
///
/// # Errors
/// Bad flags, a target that does not accept MQTT connections.
pub fn run(args: MqttArgs) -> Result<()> {
    ensure!(usage: args.clients > 0, "--clients must be at least 1");
    ensure!(usage: args.size >= 16, "--size must be at least 16");
    ensure!(usage: args.latency_qos <= 1, "--latency-qos must be 0 or 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-mqtt")
        .build()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-bench-server")
        .build()?;
    let (server, target, dir) = match &args.target {
        Some(t) => (None, t.clone(), None),
        None => {
            let dir = super::dirs::BenchDir::new(args.dir.clone(), args.keep)?;
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
            let target = server.address.clone();
            (Some(server), target, Some(dir))
        }
    };
    let report = rt.block_on(async {
        let mut results = measure(&args, "rocketgate", &target).await?;
        if !args.no_mosquitto {
            if args.mosquitto.exists() {
                let m = Mosquitto::start(&args.mosquitto).await?;
                let r = measure(&args, "mosquitto", &m.address).await;
                m.stop().await;
                results.extend(r?);
            } else {
                eprintln!(
                    "{} not found: no Mosquitto comparison",
                    args.mosquitto.display()
                );
            }
        }
        Ok::<_, BenchError>(results)
    });
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
    Ok(())
}

async fn measure(args: &MqttArgs, name: &str, addr: &str) -> Result<Vec<CaseResult>> {
    drop(
        connect(addr, "rg-bench-probe")
            .await
            .with_context(|| format!("no MQTT broker at {addr}"))?,
    );
    eprintln!("{name}: QoS 0 throughput...");
    let q0 = throughput(args, name, addr, 0).await;
    eprintln!("{name}: QoS 1 throughput...");
    let q1 = throughput(args, name, addr, 1).await;
    eprintln!("{name}: latency at {} msgs/s...", args.rate);
    let lat = latency(args, name, addr).await?;
    Ok(vec![q0, q1, lat])
}

fn put_len(b: &mut BytesMut, mut n: usize) {
    loop {
        let mut x = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            x |= 0x80;
        }
        b.put_u8(x);
        if n == 0 {
            return;
        }
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len() as u16);
    b.put_slice(s.as_bytes());
}

fn publish(b: &mut BytesMut, topic: &str, qos: u8, pkid: u16, payload: &[u8]) {
    b.put_u8(0x30 | (qos << 1));
    put_len(
        b,
        2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload.len(),
    );
    put_str(b, topic);
    if qos > 0 {
        b.put_u16(pkid);
    }
    b.put_slice(payload);
}

async fn connect(addr: &str, id: &str) -> Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut b = BytesMut::new();
    let mut body = BytesMut::new();
    put_str(&mut body, "MQTT");
    body.put_u8(4);
    body.put_u8(0x02);
    body.put_u16(60);
    put_str(&mut body, id);
    b.put_u8(0x10);
    put_len(&mut b, body.len());
    b.put_slice(&body);
    s.write_all(&b).await?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack)).await??;
    ensure!(ack[0] == 0x20 && ack[3] == 0, "CONNACK refused: {ack:?}");
    Ok(s)
}

/// Reads one frame (type byte and body) from `buf`, refilling from `s`.
async fn frame(s: &mut TcpStream, buf: &mut BytesMut) -> Result<(u8, BytesMut)> {
    loop {
        if buf.len() >= 2 {
            let mut len = 0usize;
            let mut i = 1;
            let mut complete = false;
            while i < buf.len() && i <= 4 {
                len |= usize::from(buf[i] & 0x7f) << (7 * (i - 1));
                i += 1;
                if buf[i - 1] & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if complete && buf.len() >= i + len {
                let t = buf[0];
                buf.advance(i);
                return Ok((t, buf.split_to(len)));
            }
        }
        if s.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
    }
}

async fn throughput(args: &MqttArgs, name: &str, addr: &str, qos: u8) -> CaseResult {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let addr = addr.to_owned();
        let size = args.size as usize;
        let duration = args.duration;
        let inflight = args.inflight.max(1);
        tasks.push(tokio::spawn(async move {
            publisher(&addr, c, qos, size, duration, inflight).await
        }));
    }
    let (mut n, mut errors) = (0, 0);
    for t in tasks {
        match t.await {
            Ok(Ok(k)) => n += k,
            _ => errors += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    CaseResult {
        broker: name.into(),
        case: format!("publish QoS {qos}"),
        clients: args.clients,
        messages: n,
        secs,
        msgs_per_sec: per_sec(n, secs),
        latency: None,
        errors,
    }
}

async fn publisher(
    addr: &str,
    c: usize,
    qos: u8,
    size: usize,
    duration: Duration,
    inflight: usize,
) -> Result<u64> {
    let mut s = connect(addr, &format!("rg-bench-pub-{c}-{qos}")).await?;
    let topic = format!("bench/tp/{c}");
    let payload = vec![b'x'; size];
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut inb = BytesMut::with_capacity(64 * 1024);
    let end = Instant::now() + duration;
    let (mut sent, mut acked, mut pkid) = (0u64, 0u64, 0u16);
    while Instant::now() < end {
        if qos == 0 {
            for _ in 0..64 {
                publish(&mut out, &topic, 0, 0, &payload);
            }
            sent += 64;
            s.write_all(&out).await?;
            out.clear();
        } else {
            while sent - acked < inflight as u64 {
                pkid = pkid.checked_add(1).unwrap_or(1);
                publish(&mut out, &topic, 1, pkid, &payload);
                sent += 1;
            }
            s.write_all(&out).await?;
            out.clear();
            let (t, _) = frame(&mut s, &mut inb).await?;
            if t >> 4 == 4 {
                acked += 1;
            }
            while let Some(t) = inb.first().copied() {
                if inb.len() >= 4 && t >> 4 == 4 {
                    inb.advance(4);
                    acked += 1;
                } else {
                    break;
                }
            }
        }
    }
    // Drain: QoS 1 waits for every PUBACK; QoS 0 for the answer to a PINGREQ.
    if qos == 0 {
        s.write_all(&[0xc0, 0]).await?;
        loop {
            let (t, _) = frame(&mut s, &mut inb).await?;
            if t >> 4 == 13 {
                break;
            }
        }
        Ok(sent)
    } else {
        while acked < sent {
            let (t, _) = frame(&mut s, &mut inb).await?;
            if t >> 4 == 4 {
                acked += 1;
            }
        }
        Ok(acked)
    }
}

async fn latency(args: &MqttArgs, name: &str, addr: &str) -> Result<CaseResult> {
    let qos = args.latency_qos;
    let mut sub = connect(addr, &format!("rg-bench-sub-{qos}")).await?;
    let mut b = BytesMut::new();
    b.put_u8(0x82);
    put_len(&mut b, 2 + 2 + "bench/lat/#".len() + 1);
    b.put_u16(1);
    put_str(&mut b, "bench/lat/#");
    b.put_u8(qos);
    sub.write_all(&b).await?;
    let mut inb = BytesMut::new();
    let (t, _) = frame(&mut sub, &mut inb).await?;
    ensure!(t >> 4 == 9, "no SUBACK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = Instant::now();
    let total = (args.rate * args.duration.as_secs_f64()).max(1.0) as u64;
    let clients = args.clients as u64;
    let interval = Duration::from_secs_f64(clients as f64 / args.rate);
    let size = args.size as usize;
    let mut pubs = Vec::new();
    for c in 0..clients {
        let addr = addr.to_owned();
        let per = total / clients + u64::from(c < total % clients);
        pubs.push(tokio::spawn(async move {
            let s = connect(&addr, &format!("rg-bench-lpub-{c}")).await?;
            let (mut r, mut w) = s.into_split();
            // PUBACKs (and anything else) are read and dropped.
            let drain = tokio::spawn(async move {
                let mut b = [0u8; 8192];
                while matches!(r.read(&mut b).await, Ok(n) if n > 0) {}
            });
            let topic = format!("bench/lat/{c}");
            let mut payload = vec![b'x'; size];
            let mut out = BytesMut::new();
            let offset = interval.mul_f64(c as f64 / clients as f64);
            for i in 0..per {
                let at = offset + interval.mul_f64(i as f64);
                tokio::time::sleep_until((base + at).into()).await;
                payload[..16].copy_from_slice(&at.as_nanos().to_be_bytes());
                let pkid = (i % 65_535 + 1) as u16;
                publish(&mut out, &topic, qos, pkid, &payload);
                w.write_all(&out).await?;
                out.clear();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            drain.abort();
            Ok::<_, BenchError>(per)
        }));
    }
    let mut h = histogram()?;
    let mut got = 0u64;
    let deadline = Instant::now() + args.duration + Duration::from_secs(10);
    while got < total && Instant::now() < deadline {
        let r = tokio::time::timeout(Duration::from_secs(2), frame(&mut sub, &mut inb)).await;
        let Ok(Ok((t, mut body))) = r else { break };
        if t >> 4 != 3 {
            continue;
        }
        let now = base.elapsed().as_nanos();
        let tl = usize::from(u16::from_be_bytes([body[0], body[1]]));
        body.advance(2 + tl);
        if (t >> 1) & 3 > 0 {
            let pkid = body.get_u16();
            sub.write_all(&[0x40, 2, (pkid >> 8) as u8, pkid as u8])
                .await?;
        }
        if body.len() >= 16 {
            let mut ts = [0u8; 16];
            ts.copy_from_slice(&body[..16]);
            let sent = u128::from_be_bytes(ts);
            h.record(
                u64::try_from(now.saturating_sub(sent))
                    .unwrap_or(u64::MAX)
                    .max(1),
            )?;
        }
        got += 1;
    }
    let mut errors = 0;
    for p in pubs {
        if !matches!(p.await, Ok(Ok(_))) {
            errors += 1;
        }
    }
    errors += total.saturating_sub(got);
    let secs = args.duration.as_secs_f64();
    Ok(CaseResult {
        broker: name.into(),
        case: format!("latency QoS {qos} @ {:.0}/s", args.rate),
        clients: args.clients,
        messages: got,
        secs,
        msgs_per_sec: per_sec(got, secs),
        latency: Some(Latency::from(&h)),
        errors,
    })
}

fn print_table(results: &[CaseResult]) {
    let mut t = comfy_table::Table::new();
    t.set_header(vec![
        "broker", "case", "clients", "messages", "msgs/s", "p50 µs", "p99 µs", "max µs", "errors",
    ]);
    for r in results {
        let (p50, p99, max) =
            r.latency
                .map_or((String::new(), String::new(), String::new()), |l| {
                    (
                        format!("{:.0}", l.p50_us),
                        format!("{:.0}", l.p99_us),
                        format!("{:.0}", l.max_us),
                    )
                });
        t.add_row(vec![
            r.broker.clone(),
            r.case.clone(),
            r.clients.to_string(),
            r.messages.to_string(),
            format!("{:.0}", r.msgs_per_sec),
            p50,
            p99,
            max,
            r.errors.to_string(),
        ]);
    }
    println!("{t}");
}

struct Mosquitto {
    child: tokio::process::Child,
    address: String,
    _dir: PathBuf,
}

impl Mosquitto {
    async fn start(bin: &std::path::Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("rg-bench-mosquitto-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 0\nmax_queued_messages 0\nlog_dest none\n"
            ),
        )?;
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&address).await.is_err() {
            ensure!(Instant::now() < deadline, "mosquitto did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child,
            address,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}
