//! [`TrackCallsLayer`]: counts the calls open on each [`super::Connection`] (from the request
//! until its response body is finished or dropped), which is what the idle timeout measures,
//! and copies the connection's `TcpConnectInfo` into every request for tonic's `remote_addr`.
//!
//! A tower layer for `tonic::transport::Server::layer`; no task or lock of its own (the count
//! lives in the connection's shared `CallCount`). Requests that did not come through a
//! [`super::Incoming`] pass through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{CallGuard, ConnectionInfo};

/// The layer: wrap the services of a tonic server with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackCallsLayer;

impl<S> tower_layer::Layer<S> for TrackCallsLayer {
    type Service = TrackCalls<S>;

    fn layer(&self, inner: S) -> TrackCalls<S> {
        TrackCalls { inner }
    }
}

/// The service [`TrackCallsLayer`] makes.
#[derive(Debug, Clone)]
pub struct TrackCalls<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for TrackCalls<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let info = request.extensions().get::<ConnectionInfo>().cloned();
        let guard = info.map(|info| {
            request.extensions_mut().insert(info.tcp.clone());
            info.calls.start()
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match guard {
                None => response,
                Some(guard) => response.map(|body| {
                    tonic::body::Body::new(Tracked {
                        body,
                        _guard: guard,
                    })
                }),
            })
        })
    }
}

/// A response body that keeps its call counted until it is finished or dropped.
struct Tracked {
    body: tonic::body::Body,
    _guard: CallGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
