//! Fuzz entry points of the HTTP gateway (issue 14): [`HttpFuzz`] feeds arbitrary bytes to a
//! real gateway on `127.0.0.1` as REST requests ([`HttpFuzz::rest`]: route, path parameter or
//! query string, headers and body) and as WebSocket text frames of `/v1/ws`
//! ([`HttpFuzz::ws`]), so every input goes through the real code: hyper's parser, the
//! extractors (size limits, JSON, query strings), the request models and their conversion to
//! core requests, the core's rules, and the answer.
//!
//! Invariants: an input never makes the server drop a request or a WebSocket without an
//! answer (a response, an error frame, or a close frame): the harness panics when it does, or
//! when no answer comes within [`ANSWER_TIMEOUT`], so a panic inside the gateway (which tokio
//! would otherwise swallow with its task) is a finding. Inputs never reach the callback routes
//! (the broker would call URLs chosen by the input) and delete nothing.
//!
//! Used only by the cargo-fuzz targets (`fuzz/`) and the short runs in the `tests` crate; it
//! drives the gateway from the outside as a client would and must not reach into its modules.
//!
//! Concurrency: the harness owns a two-thread tokio runtime that runs the server; each input is
//! one request (or one frame and a synchronising frame) awaited on it from the caller's thread.
#![doc(hidden)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rocketgate_core::{Broker, Config, FlushMode, GroupConfig, MessageType, TopicConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::HttpConfig;

/// How long one input may take to be answered before the harness calls it a hang.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// WebSocket inputs per connection before the harness opens a fresh one.
const WS_INPUTS_PER_CONNECTION: u32 = 200;
/// The normal topic, its FIFO, DELAY and TRANSACTION siblings, and the group of the seeds.
pub const TOPICS: [(&str, MessageType); 4] = [
    ("fuzz", MessageType::Normal),
    ("fuzz-fifo", MessageType::Fifo),
    ("fuzz-delay", MessageType::Delay),
    ("fuzz-tx", MessageType::Transaction),
];
/// The consumer group of the seeds.
pub const GROUP: &str = "fuzz-group";

/// Why the harness could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FuzzError {
    /// The broker refused to open or to create the seed topics.
    #[error(transparent)]
    Core(#[from] rocketgate_core::Error),
    /// The runtime, the listener or the gateway failed.
    #[error("fuzz harness: {0}")]
    Io(#[from] std::io::Error),
}

/// The broker configuration of a fuzz run in `dir`: asynchronous flush, a CommitLog bounded to
/// 256 MiB (a long run fills it and sends are refused, another code path), short long polls.
pub fn broker_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.store.data_dir = dir.into();
    config.store.segment_size = 4 << 20;
    config.store.flush_mode = FlushMode::Async;
    config.store.disk_limit_bytes = Some(256 << 20);
    config.consumer.max_wait_ms = 100;
    config
}

/// Opens a broker in `dir` with the seed topics and group, and a few messages on `fuzz`.
///
/// # Errors
/// [`FuzzError::Core`] when the broker does not open.
pub fn open_broker(dir: &Path) -> Result<Broker, FuzzError> {
    let broker = Broker::open(broker_config(dir))?;
    for (name, kind) in TOPICS {
        broker
            .topics()
            .create(TopicConfig::new(name, 4).with_type(kind))?;
    }
    broker.groups().create(GroupConfig::new(GROUP))?;
    Ok(broker)
}

/// How a route takes the input's first line and the rest.
#[derive(Clone, Copy)]
enum Kind {
    /// `{}` is the first line (percent-encoded), the rest a JSON body.
    Json,
    /// `{}` is the first line; the rest is `name: value` header lines, an empty line, and a
    /// raw body (`text/plain`).
    Raw,
    /// The first line is the query string; the rest is ignored.
    Query,
    /// `{}` is the first line; no body.
    Empty,
}

/// The routes an input may pick with its first byte: every request body and query string of
/// the REST API except the callback routes (outbound requests) and the deletions.
const ROUTES: &[(&str, &str, &str, Kind)] = &[
    ("POST", "/v1/topics/{}/messages", "fuzz", Kind::Json),
    ("POST", "/v1/topics/{}/messages", "fuzz", Kind::Raw),
    ("POST", "/v1/topics/{}/messages/batch", "fuzz", Kind::Json),
    ("POST", "/v1/topics/{}/transactions", "fuzz-tx", Kind::Json),
    ("POST", "/v1/groups/{}/receive", GROUP, Kind::Json),
    ("POST", "/v1/groups/{}/ack", GROUP, Kind::Json),
    ("POST", "/v1/groups/{}/nack", GROUP, Kind::Json),
    ("POST", "/v1/groups/{}/invisibility", GROUP, Kind::Json),
    ("POST", "/v1/groups/{}/dead-letter", GROUP, Kind::Json),
    (
        "GET",
        "/v1/groups/fuzz-group/topics/fuzz/queues/0/messages",
        "",
        Kind::Query,
    ),
    (
        "PUT",
        "/v1/groups/{}/topics/fuzz/queues/0/offset",
        GROUP,
        Kind::Json,
    ),
    (
        "POST",
        "/v1/groups/{}/topics/fuzz/offsets/reset",
        GROUP,
        Kind::Json,
    ),
    ("POST", "/v1/topics", "", Kind::Json),
    ("PATCH", "/v1/topics/{}", "fuzz-scratch", Kind::Json),
    ("POST", "/v1/groups", "", Kind::Json),
    ("PUT", "/v1/groups/{}/retry-policy", GROUP, Kind::Json),
    ("POST", "/v1/groups/{}/dlq/resend", GROUP, Kind::Json),
    ("GET", "/v1/topics/fuzz/messages", "", Kind::Query),
    ("GET", "/v1/groups/fuzz-group/dlq", "", Kind::Query),
    ("GET", "/v1/scheduled", "", Kind::Query),
    ("GET", "/v1/messages/{}", "x", Kind::Empty),
    ("GET", "/v1/topics/{}/route", "fuzz", Kind::Empty),
    ("GET", "/v1/groups/{}/lag", GROUP, Kind::Empty),
    ("POST", "/v1/transactions/{}/commit", "x", Kind::Empty),
];

/// Percent-encodes `bytes`, keeping unreserved characters (and, in a query, `= & + %` so that
/// the input controls the structure and may hold bad escapes).
fn encode(bytes: &[u8], query: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (query && matches!(b, b'=' | b'&' | b'+' | b'%'));
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A real gateway and broker, and the clients that feed them fuzz inputs.
pub struct HttpFuzz {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    addr: SocketAddr,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), crate::Error>>>,
    ws: Option<WsClient>,
    ws_inputs: u32,
    sync: u64,
}

impl std::fmt::Debug for HttpFuzz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFuzz")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpFuzz {
    /// Opens a broker in `dir` ([`open_broker`]) and serves the gateway on `127.0.0.1:0` with
    /// long polls off (`max_wait_ms = 0`) and callbacks refused.
    ///
    /// # Errors
    /// [`FuzzError`] when the runtime, the broker or the listener cannot start.
    pub fn start(dir: &Path) -> Result<Self, FuzzError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let broker = {
            let _guard = runtime.enter();
            open_broker(dir)?
        };
        let config = HttpConfig {
            max_wait_ms: 0,
            allow_callbacks: false,
            ..HttpConfig::default()
        };
        let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(crate::serve_with(
            listener,
            broker.clone(),
            config,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::builder()
            .timeout(ANSWER_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            runtime,
            broker,
            addr,
            client,
            stop: Some(stop),
            server: Some(server),
            ws: None,
            ws_inputs: 0,
            sync: 0,
        })
    }

    /// The gateway's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker behind the gateway.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// One REST request: the first byte picks the route (`a` the first of the table, `b` the
    /// second...); up to the first `\n` is the path
    /// parameter (or the query string); the rest is the body (for the raw publish, header
    /// lines, an empty line, then the body).
    ///
    /// # Panics
    /// When the gateway answers nothing within [`ANSWER_TIMEOUT`] or drops the connection: a
    /// finding.
    pub fn rest(&mut self, data: &[u8]) {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        // `a` is the first route, `b` the second...: readable seeds.
        let index = match pick {
            b'a'..=b'z' => usize::from(pick - b'a'),
            _ => usize::from(pick),
        };
        let (method, template, default, kind) = ROUTES[index % ROUTES.len()];
        let (line, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let mut url = format!("http://{}", self.addr);
        match kind {
            Kind::Query => {
                url.push_str(template);
                url.push('?');
                url.push_str(&encode(line, true));
            }
            _ => {
                let param = if line.is_empty() {
                    default.to_owned()
                } else {
                    encode(line, false)
                };
                url.push_str(&template.replace("{}", &param));
            }
        }
        let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return;
        };
        let mut req = self.client.request(method, url);
        req = match kind {
            Kind::Json => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            Kind::Raw => {
                let (headers, raw) = split_headers(body);
                let mut req = req.header(reqwest::header::CONTENT_TYPE, "text/plain");
                for line in headers.split(|&b| b == b'\n').take(64) {
                    let Some(colon) = line.iter().position(|&b| b == b':') else {
                        continue;
                    };
                    let name = reqwest::header::HeaderName::from_bytes(&line[..colon]);
                    let value =
                        reqwest::header::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
                    if let (Ok(n), Ok(v)) = (name, value) {
                        req = req.header(n, v);
                    }
                }
                req.body(raw.to_vec())
            }
            Kind::Query | Kind::Empty => req,
        };
        let outcome = self.runtime.block_on(async move {
            let resp = req.send().await?;
            let status = resp.status();
            resp.bytes().await.map(|b| (status, b.len()))
        });
        if let Err(e) = outcome {
            panic!("the HTTP gateway gave no answer: {e:?}");
        }
    }

    /// One WebSocket text frame (the input, as text) on a connection to `/v1/ws`, followed by a
    /// synchronising `credit` frame whose answer (or the connection's close frame) ends the
    /// input. A connection is reused for [`WS_INPUTS_PER_CONNECTION`] inputs.
    ///
    /// # Panics
    /// When the gateway closes the connection without a close frame or answers nothing within
    /// [`ANSWER_TIMEOUT`]: a finding.
    pub fn ws(&mut self, data: &[u8]) {
        let text = String::from_utf8_lossy(data).into_owned();
        self.sync += 1;
        let marker = format!("rg-fuzz-sync-{}", self.sync);
        let sync = format!(
            r#"{{"type":"credit","subscription":"rg-fuzz-sync","credits":0,"request_id":"{marker}"}}"#
        );
        let addr = self.addr;
        let mut ws = self.ws.take();
        let outcome = self.runtime.block_on(async move {
            tokio::time::timeout(ANSWER_TIMEOUT, async move {
                let mut conn = match ws.take() {
                    Some(c) => c,
                    None => WsClient::connect(addr).await?,
                };
                conn.send_text(text.as_bytes()).await?;
                conn.send_text(sync.as_bytes()).await?;
                conn.until(&marker).await.map(|open| open.then_some(conn))
            })
            .await
        });
        match outcome {
            Ok(Ok(conn)) => self.ws = conn,
            Ok(Err(e)) => panic!("the WebSocket gateway failed: {e}"),
            Err(_) => panic!("the WebSocket gateway answered nothing within {ANSWER_TIMEOUT:?}"),
        }
        self.ws_inputs += 1;
        if self.ws_inputs.is_multiple_of(WS_INPUTS_PER_CONNECTION) {
            self.ws = None;
        }
    }

    /// Stops the gateway and closes the broker.
    ///
    /// # Errors
    /// The gateway's or the broker's error at shutdown.
    pub fn close(mut self) -> Result<(), FuzzError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), FuzzError> {
        self.ws = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.server.take();
        let broker = self.broker.clone();
        self.runtime.block_on(async move {
            if let Some(server) = server {
                match tokio::time::timeout(ANSWER_TIMEOUT, server).await {
                    Ok(Ok(Err(e))) => return Err(std::io::Error::other(e.to_string()).into()),
                    Ok(Err(e)) => return Err(std::io::Error::other(e).into()),
                    Err(_) => return Err(std::io::Error::other("gateway did not stop").into()),
                    Ok(Ok(Ok(()))) => {}
                }
            }
            broker.close().await.map_err(FuzzError::from)
        })
    }
}

impl Drop for HttpFuzz {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// Splits `name: value` header lines from the raw body at the first empty line.
fn split_headers(body: &[u8]) -> (&[u8], &[u8]) {
    match body.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&body[..i], &body[i + 2..]),
        None => (body, &[][..]),
    }
}

/// A minimal WebSocket client (RFC 6455) over a TCP stream: text frames out (masked), frames
/// in until a marker or a close frame.
struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: cm9ja2V0Z2F0ZS1mdXp6IQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 16 << 10 || stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::other("no WebSocket handshake answer"));
            }
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Err(std::io::Error::other(format!("upgrade refused: {head}")));
        }
        buf.drain(..end);
        Ok(Self { stream, buf })
    }

    async fn send_text(&mut self, payload: &[u8]) -> std::io::Result<()> {
        const MASK: [u8; 4] = [0x5a, 0x13, 0xc4, 0x7e];
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x81);
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        self.stream.write_all(&frame).await
    }

    /// Reads frames until a text frame holding `marker` (`Ok(true)`) or a close frame
    /// (`Ok(false)`); an end of stream before either is an error.
    async fn until(&mut self, marker: &str) -> std::io::Result<bool> {
        loop {
            let (opcode, payload) = self.frame().await?;
            match opcode {
                0x8 => return Ok(false),
                0x1 if String::from_utf8_lossy(&payload).contains(marker) => return Ok(true),
                _ => {}
            }
        }
    }

    async fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::other(
                    "the server ended the WebSocket without a close frame",
                ));
            }
        }
        Ok(())
    }

    async fn frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        self.fill(2).await?;
        let opcode = self.buf[0] & 0x0f;
        let (len, head) = match self.buf[1] & 0x7f {
            126 => {
                self.fill(4).await?;
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                self.fill(10).await?;
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                let len = usize::try_from(u64::from_be_bytes(n))
                    .ok()
                    .filter(|l| *l <= 64 << 20)
                    .ok_or_else(|| std::io::Error::other("frame over 64 MiB from the server"))?;
                (len, 10)
            }
            n => (usize::from(n), 2),
        };
        self.fill(head + len).await?;
        let payload = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        Ok((opcode, payload))
    }
}
