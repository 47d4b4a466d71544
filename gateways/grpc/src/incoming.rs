//! The accepted connections of the gRPC listener: `TCP_NODELAY` on every socket, a pause
//! after an accept failure such as `EMFILE` so the accept loop does not spin, and the
//! `rocketgate_connections_active{gateway="grpc"}` gauge (plus `rocketgate_connections_total`), kept
//! by a guard that lives as long as the socket.
//!
//! A `Stream` over a [`TcpListenerStream`], polled by tonic's accept loop only; no task or lock
//! of its own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::Stream;

/// How long accepting pauses after a failure that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepted connections, configured for gRPC.
#[derive(Debug)]
pub(crate) struct Incoming {
    listener: TcpListenerStream,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub(crate) fn new(listener: TcpListener) -> Self {
        Self {
            listener: TcpListenerStream::new(listener),
            backoff: None,
        }
    }
}

/// An accepted socket, counted in the connection gauge while it lives.
#[derive(Debug)]
pub(crate) struct Counted {
    inner: TcpStream,
}

impl Counted {
    fn new(inner: TcpStream) -> Self {
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
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;

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
        if let Some(sleep) = self.backoff.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            self.backoff = None;
        }
        match ready!(Pin::new(&mut self.listener).poll_next(cx)) {
            Some(Ok(stream)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "could not set TCP_NODELAY");
                }
                Poll::Ready(Some(Ok(Counted::new(stream))))
            }
            Some(Err(e)) => {
                // One connection failing (reset before accept) is no reason to wait; running out
                // of descriptors or memory is.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }
}
