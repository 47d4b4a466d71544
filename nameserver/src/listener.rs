//! Connection limits of a gRPC listener (the NameServer's, and the broker's gRPC gateway reuses
//! it): a cap on open connections, an HTTP/2 handshake timeout, an idle timeout for
//! connections with no call open, and the keepalive PINGs.
//!
//! Owns: [`ConnectionLimits`] (the settings), [`Incoming`] (the accept stream handed to tonic's
//! `serve_with_incoming_shutdown`, plain or TLS: `listener/tls.rs`), [`Connection`] (an accepted socket with its deadlines) and
//! [`TrackCallsLayer`] (a tower layer counting the calls open on each connection).
//!
//! Invariants:
//! - at most `max_connections` accepted sockets are open; one more is accepted and closed at
//!   once (the peer sees the connection closed), counted in [`ConnectionStats::refused`] and
//!   logged (a warning at most every 10 s, with the count since);
//! - a connection that has not sent the 24-byte HTTP/2 connection preface within
//!   `handshake_timeout_ms` is closed (its next read fails with `TimedOut`, and hyper drops it);
//! - a connection with no call open for `idle_timeout_ms` (since it was accepted or since its
//!   last call ended) is closed the same way; PINGs and SETTINGS do not keep it open;
//! - the layer puts tonic's `TcpConnectInfo` in every request, so `Request::remote_addr` keeps
//!   working behind [`Connection`]'s own connect info.
//!
//! Concurrency: [`Incoming`] is polled by tonic's accept loop only. Each connection's deadlines
//! live in its socket wrapper, polled by the task hyper serves it on; the calls it has open are
//! counted in an `Arc` shared with the layer (an atomic, plus a `parking_lot::Mutex` around the
//! last-idle instant and the reader's waker, held only to copy or replace them). Depends on
//! tokio, tonic, hyper's `http`/`http-body` types and tower; never on `rocketgate-core`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::ConfigError;

/// Length of the HTTP/2 client connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
pub const PREFACE_LEN: usize = 24;
/// How long accepting pauses after a failure that is not about one connection (`EMFILE`).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Shortest pause between two warnings about refused connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Limits on the connections of one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Most connections open at once (10,000); one more is closed at once.
    pub max_connections: usize,
    /// A connection must send the HTTP/2 preface within this, in ms (10,000).
    pub handshake_timeout_ms: u64,
    /// A connection with no call open for this long is closed, in ms (300,000).
    pub idle_timeout_ms: u64,
    /// HTTP/2 PING interval, in ms (30,000).
    pub keepalive_interval_ms: u64,
    /// A PING unanswered this long closes the connection, in ms (10,000).
    pub keepalive_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
        }
    }
}

impl ConnectionLimits {
    /// Checks that every value can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first zero value (`connections.<key>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "connections.max_connections",
                u64::try_from(self.max_connections).unwrap_or(u64::MAX),
            ),
            (
                "connections.handshake_timeout_ms",
                self.handshake_timeout_ms,
            ),
            ("connections.idle_timeout_ms", self.idle_timeout_ms),
            (
                "connections.keepalive_interval_ms",
                self.keepalive_interval_ms,
            ),
            (
                "connections.keepalive_timeout_ms",
                self.keepalive_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError {
                    key,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        Ok(())
    }

    /// The keepalive PING interval.
    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }

    /// How long a PING may go unanswered.
    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }
}

/// Counts of one listener, shared with whoever wants to report them.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    refused: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections refused at the cap so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }
}

/// The accepted connections of a listener, within its [`ConnectionLimits`].
#[derive(Debug)]
pub struct Incoming {
    listener: TcpListener,
    name: &'static str,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    backoff: Option<Pin<Box<Sleep>>>,
    last_warning: Option<(Instant, u64)>,
    /// TLS, when the listener serves it, and the handshakes in flight.
    tls: Option<Arc<dyn ServerTls>>,
    handshakes: JoinSet<io::Result<tokio_rustls::server::TlsStream<Connection>>>,
}

impl std::fmt::Debug for dyn ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl Incoming {
    /// Accepts on `listener` (named `name` in logs) within `limits`.
    pub fn new(listener: TcpListener, name: &'static str, limits: ConnectionLimits) -> Self {
        Self {
            listener,
            name,
            limits,
            stats: Arc::new(ConnectionStats::default()),
            backoff: None,
            last_warning: None,
            tls: None,
            handshakes: JoinSet::new(),
        }
    }

    /// Serves TLS: each accepted connection is handshaken (on its own task, within the
    /// handshake timeout) before it is handed over.
    #[must_use]
    pub fn with_tls(mut self, tls: Option<Arc<dyn ServerTls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Its counts.
    pub fn stats(&self) -> Arc<ConnectionStats> {
        self.stats.clone()
    }

    fn refuse(&mut self, stream: TcpStream) {
        drop(stream);
        let refused = self.stats.refused.fetch_add(1, Ordering::AcqRel) + 1;
        let now = Instant::now();
        let due = self
            .last_warning
            .is_none_or(|(at, _)| now.duration_since(at) >= WARN_EVERY);
        if due {
            let since = refused - self.last_warning.map_or(0, |(_, n)| n);
            tracing::warn!(
                listener = self.name,
                max_connections = self.limits.max_connections,
                refused_since_last_warning = since,
                refused_total = refused,
                "connection limit reached: new connections are closed at once"
            );
            self.last_warning = Some((now, refused));
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<tls::Stream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            // Completed handshakes first, until none is ready (which registers the waker for
            // the ones in flight); a failed one is the client's problem, not the listener's.
            loop {
                match self.handshakes.poll_join_next(cx) {
                    Poll::Ready(Some(Ok(Ok(stream)))) => {
                        return Poll::Ready(Some(Ok(tls::Stream::Tls(Box::new(stream)))));
                    }
                    Poll::Ready(Some(Ok(Err(e)))) => {
                        tracing::debug!(listener = self.name, error = %e, "tls handshake failed");
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::warn!(listener = self.name, error = %e, "tls handshake task failed");
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if let Some(sleep) = self.backoff.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.backoff = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((stream, _)) => {
                    if self.stats.open() >= self.limits.max_connections {
                        self.refuse(stream);
                        continue;
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    let conn = Connection::new(stream, &self.limits, self.stats.clone());
                    match self.tls.clone() {
                        None => return Poll::Ready(Some(Ok(tls::Stream::Plain(conn)))),
                        // Handshaken on its own task; polled (and so watched) at the loop's top.
                        Some(config) => {
                            self.handshakes.spawn(tls::handshake(config, conn));
                        }
                    }
                }
                Err(e) => {
                    // One connection failing (reset before accept) is no reason to wait;
                    // running out of descriptors or memory is.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) {
                        tracing::warn!(listener = self.name, error = %e, "accept failed; pausing before the next accept");
                        self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    }
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// What a connection shares with the calls on it.
#[derive(Debug)]
struct CallCount {
    open: AtomicUsize,
    /// When the last call ended (or the connection was accepted).
    idle_since: Mutex<Instant>,
    /// The task reading the connection, woken when its last call ends.
    reader: Mutex<Option<Waker>>,
}

impl CallCount {
    fn start(self: &Arc<Self>) -> CallGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }
}

/// One open call: counted until dropped (with its response body).
#[derive(Debug)]
struct CallGuard(Arc<CallCount>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock() = Instant::now();
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(waker) = self.0.reader.lock().take() {
                waker.wake();
            }
        }
    }
}

/// Decrements the open count when the connection goes.
#[derive(Debug)]
struct OpenGuard(Arc<ConnectionStats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted connection with its handshake and idle deadlines.
#[derive(Debug)]
pub struct Connection {
    inner: TcpStream,
    calls: Arc<CallCount>,
    /// Until the preface is in: the deadline and the bytes still missing.
    handshake: Option<(Pin<Box<Sleep>>, usize)>,
    idle_timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    _open: OpenGuard,
}

impl Connection {
    fn new(inner: TcpStream, limits: &ConnectionLimits, stats: Arc<ConnectionStats>) -> Self {
        stats.open.fetch_add(1, Ordering::AcqRel);
        let now = Instant::now();
        let handshake =
            tokio::time::sleep_until(now + Duration::from_millis(limits.handshake_timeout_ms));
        Self {
            inner,
            calls: Arc::new(CallCount {
                open: AtomicUsize::new(0),
                idle_since: Mutex::new(now),
                reader: Mutex::new(None),
            }),
            handshake: Some((Box::pin(handshake), PREFACE_LEN)),
            idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
            idle: None,
            _open: OpenGuard(stats),
        }
    }

    /// With nothing to read: fails once a deadline has passed, else arms it.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if let Some((deadline, _)) = self.handshake.as_mut() {
            ready!(deadline.as_mut().poll(cx));
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the handshake timeout",
            ));
        }
        *self.calls.reader.lock() = Some(cx.waker().clone());
        if self.calls.open.load(Ordering::Acquire) > 0 {
            self.idle = None;
            return Poll::Pending;
        }
        let deadline = *self.calls.idle_since.lock() + self.idle_timeout;
        let sleep = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "no call on the connection within the idle timeout",
        ))
    }
}

/// What tonic puts in each request's extensions for a [`Connection`]: its TCP addresses (the
/// layer copies them into the `TcpConnectInfo` tonic's `remote_addr` reads) and its call count.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    tcp: TcpConnectInfo,
    calls: Arc<CallCount>,
    /// The client's verified certificate chain (leaf first) on a TLS connection that
    /// presented one.
    peer_certificates: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
}

impl ConnectionInfo {
    /// The TCP addresses.
    pub fn tcp(&self) -> &TcpConnectInfo {
        &self.tcp
    }

    /// The client certificate chain the TLS handshake verified (mTLS), leaf first.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.peer_certificates.as_deref().map(Vec::as_slice)
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            tcp: self.inner.connect_info(),
            calls: self.calls.clone(),
            peer_certificates: None,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if let Some((_, missing)) = self.handshake.as_mut() {
                    *missing = missing.saturating_sub(read);
                    if *missing == 0 || read == 0 {
                        self.handshake = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_deadlines(cx).map(Err),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

mod calls;
mod tls;

pub use calls::{TrackCalls, TrackCallsLayer};
pub use tls::{ServerTls, Stream as AcceptedStream};
