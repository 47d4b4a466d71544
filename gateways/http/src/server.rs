//! The server: the accepting listener (connection count and limit, `TCP_NODELAY`), the
//! connection loop on hyper (HTTP/1 with upgrades, and HTTP/2), the request middleware
//! (in-flight limit → `429`, request timeout → `503`, per-route metrics) and `run`.
//!
//! Invariants: at most `http.max_connections` sockets are open (further connections wait in the
//! kernel backlog); a connection that sends nothing for `http.idle_timeout_ms` is closed; a
//! request head must arrive whole within `http.header_timeout_ms` from the moment the server
//! starts reading it — bytes trickling in do not extend it (slowloris) — and fit
//! `http.max_header_bytes` (larger: `431`); on every connection, HTTP/1 or HTTP/2, the first
//! request must have arrived whole (for HTTP/2: the preface, SETTINGS and a request's HEADERS)
//! within `http.header_timeout_ms` of the connection being ready (after TLS), or the connection
//! is closed — hyper's HTTP/2 server has no head timeout of its own, and an idle timeout that
//! each trickled byte resets does not bound it; at most `http.max_in_flight` requests run; every
//! request ends within `http.request_timeout_ms` (WebSocket upgrades are answered at once and
//! live on their own). Every request carries the peer's address (`ConnectInfo`, for
//! authorization) and the local address it came to (`origin::LocalAddr`, for the Host check).
//! Shutdown: stop accepting, tell WebSocket connections to close (1001), let requests in flight
//! finish (each connection is shut down gracefully; `run` returns when the last one ended).
//! Logging: one info line when a connection opens and one when it closes (with its request
//! count), none per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rocketgate_gateway_kit::MaybeTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::origin::LocalAddr;
use crate::state::AppState;

/// The smallest read buffer hyper accepts for a request head.
const MIN_HEAD_BUFFER: usize = 8192;

/// A listener that counts and bounds open connections.
pub(crate) struct CountingListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl CountingListener {
    pub(crate) fn new(inner: TcpListener, max: usize, idle: Duration) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            idle,
        }
    }
}

/// An accepted connection; frees its slot and lowers the gauge when dropped. Reading fails
/// with `TimedOut` once nothing arrived for the idle timeout (idle keep-alive connections,
/// clients that never send a request, slow headers), which makes the server drop it.
pub(crate) struct Counted {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Counted {
    /// The local address of the connection (the address the client connected to).
    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.local_addr().ok()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("rocketgate_connections_active", "gateway" => "http").decrement(1.0);
    }
}

impl axum::serve::Listener for CountingListener {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                // The semaphore is never closed; wait like a full server would.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    metrics::gauge!("rocketgate_connections_active", "gateway" => "http")
                        .increment(1.0);
                    metrics::counter!("rocketgate_connections_total", "gateway" => "http")
                        .increment(1);
                    return (
                        Counted {
                            stream,
                            _slot: slot,
                            idle: self.idle,
                            deadline: Box::pin(tokio::time::sleep(self.idle)),
                        },
                        addr,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    metrics::counter!("rocketgate_connections_idle_closed_total", "gateway" => "http")
                        .increment(1);
                    Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Per-request middleware: in-flight limit, timeout and metrics.
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = match state.in_flight().clone().try_acquire_owned() {
        Err(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many requests in flight; retry later",
        )
        .into_response(),
        Ok(_permit) => {
            let timeout = Duration::from_millis(state.config.request_timeout_ms);
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(r) => r,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request_timeout",
                    format!("the request took longer than {} ms", timeout.as_millis()),
                )
                .into_response(),
            }
        }
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "rocketgate_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!("rocketgate_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves `router` on `listener` until `shutdown`; see the module doc.
pub(crate) async fn run(
    listener: TcpListener,
    state: AppState,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tls: Option<rocketgate_gateway_kit::TlsAcceptor>,
) -> std::io::Result<()> {
    let cfg = &state.config;
    let mut listener = CountingListener::new(
        listener,
        cfg.max_connections,
        Duration::from_millis(cfg.idle_timeout_ms),
    );
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.header_timeout_ms))
        .max_buf_size(cfg.max_header_bytes.max(MIN_HEAD_BUFFER));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .enable_connect_protocol();
    let builder = Arc::new(builder);
    let head_timeout = Duration::from_millis(cfg.header_timeout_ms);
    // Every connection task holds a receiver; all are gone once the last connection ended.
    let (closed_tx, closed_rx) = watch::channel(());
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let builder = builder.clone();
        let mut drain = drain_rx.clone();
        let closed = closed_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let local = io.local_addr();
            // TLS: the handshake runs on the connection's own task (bounded by the acceptor's
            // handshake timeout), never in the accept loop.
            let io = match tls {
                None => MaybeTls::Plain(io),
                Some(acceptor) => match acceptor.accept(io).await {
                    Ok(stream) => MaybeTls::Tls(Box::new(stream)),
                    Err(e) => {
                        tracing::debug!(peer = %addr, error = %e, "tls handshake failed");
                        drop(closed);
                        return;
                    }
                },
            };
            let certificate = io.peer_subject().map(crate::auth::PeerCertificate);
            // Connections, not requests, are logged at info: a busy client's requests do not
            // flood the log (they are counted in the `closed` line and in the metrics).
            let opened = Instant::now();
            tracing::info!(peer = %addr, "HTTP connection opened");
            // Requests hyper handed over (the first one's head arrived whole).
            let requests = Arc::new(AtomicU64::new(0));
            let counted = requests.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                counted.fetch_add(1, Ordering::Relaxed);
                req.extensions_mut().insert(ConnectInfo(addr));
                if let Some(local) = local {
                    req.extensions_mut().insert(LocalAddr(local));
                }
                if let Some(c) = &certificate {
                    req.extensions_mut().insert(c.clone());
                }
                let mut router = router.clone();
                tower_service::Service::call(&mut router, req.map(axum::body::Body::new))
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            let mut draining = false;
            let head_deadline = tokio::time::sleep(head_timeout);
            let mut head_deadline = std::pin::pin!(head_deadline);
            let mut head_checked = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = head_deadline.as_mut(), if !head_checked => {
                        head_checked = true;
                        if requests.load(Ordering::Relaxed) == 0 {
                            // Dropping the connection closes the socket.
                            metrics::counter!("rocketgate_connections_head_timeout_total", "gateway" => "http")
                                .increment(1);
                            tracing::debug!(peer = %addr, "no request head within the header timeout; closing");
                            break;
                        }
                    }
                    changed = drain.changed(), if !draining => {
                        draining = true;
                        if changed.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            tracing::info!(
                peer = %addr,
                requests = requests.load(Ordering::Relaxed),
                duration_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
                "HTTP connection closed"
            );
            drop(closed);
        });
    }
    state.stop();
    drop(listener);
    drain_tx.send_replace(true);
    drop(closed_rx);
    closed_tx.closed().await;
    Ok(())
}
