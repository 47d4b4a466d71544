//! The accepted connections of the gRPC listener: `TCP_NODELAY` on every socket, and a pause
//! after an accept failure such as `EMFILE` so the accept loop does not spin.
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

impl Stream for Incoming {
    type Item = io::Result<TcpStream>;

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
                Poll::Ready(Some(Ok(stream)))
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
