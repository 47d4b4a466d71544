//! The accepted connections of the gRPC listener: the connection limits of
//! `rocketgate_nameserver::listener` (a cap on open connections, an HTTP/2 handshake timeout, an
//! idle timeout for connections with no call, `TCP_NODELAY`, a pause after an accept failure
//! such as `EMFILE`), plus this gateway's metrics: the `rocketgate_connections_active{gateway="grpc"}`
//! gauge (kept by a guard that lives as long as the socket), `rocketgate_connections_total` and
//! `rocketgate_connections_refused_total` (connections closed at once at the cap).
//!
//! Plain or TLS (the listener's `ServerTls`, handshakes on their own tasks).
//!
//! A `Stream` polled by tonic's accept loop only; no task or lock of its own. The limits
//! themselves (and their tests on raw sockets) live in the nameserver crate, which both
//! listeners share; this file must not grow protocol logic.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rocketgate_nameserver::listener::{self, AcceptedStream, ConnectionInfo, ServerTls};
use rocketgate_nameserver::{ConnectionLimits, ConnectionStats};
use tokio::net::TcpListener;
use tokio_stream::Stream;

/// Accepted connections, within the listener's [`ConnectionLimits`].
#[derive(Debug)]
pub(crate) struct Incoming {
    inner: listener::Incoming,
    stats: Arc<ConnectionStats>,
    refused: u64,
}

impl Incoming {
    pub(crate) fn new(
        listener: TcpListener,
        limits: ConnectionLimits,
        tls: Option<Arc<dyn ServerTls>>,
    ) -> Self {
        let inner = listener::Incoming::new(listener, "grpc", limits).with_tls(tls);
        Self {
            stats: inner.stats(),
            inner,
            refused: 0,
        }
    }
}

/// An accepted socket, counted in the connection gauge while it lives.
#[derive(Debug)]
pub(crate) struct Counted {
    inner: AcceptedStream,
}

impl Counted {
    fn new(inner: AcceptedStream) -> Self {
        metrics::gauge!("rocketgate_connections_active", "gateway" => "grpc").increment(1.0);
        metrics::counter!("rocketgate_connections_total", "gateway" => "grpc").increment(1);
        Self { inner }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("rocketgate_connections_active", "gateway" => "grpc").decrement(1.0);
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
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

impl Stream for Incoming {
    type Item = io::Result<Counted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        let refused = self.stats.refused();
        if refused > self.refused {
            metrics::counter!("rocketgate_connections_refused_total", "gateway" => "grpc")
                .increment(refused - self.refused);
            self.refused = refused;
        }
        next.map(|item| item.map(|accepted| accepted.map(Counted::new)))
    }
}
