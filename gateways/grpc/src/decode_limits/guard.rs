//! [`Guarded`]: the `MessagingService` server behind a check of every request message on its
//! wire bytes ([`super::check`]) before tonic hands it to prost.
//!
//! The request body of a method whose request has repeated fields is wrapped in a [`Checked`]
//! body: it gathers each gRPC message (the 5-byte header, then the bytes it announces) and
//! passes it on whole once checked; a refused message ends the body with the check's
//! `Status`, which tonic answers as the call's status (unary calls) or yields to the service's
//! inbound stream (Telemetry). A message over the decoding limit is passed on as it comes so
//! that tonic refuses it with its own `OUT_OF_RANGE` without anything being gathered;
//! compressed messages (the service accepts none) are refused.
//!
//! Memory: one message is gathered at a time, at most the decoding limit, as tonic gathers it
//! anyway. Touches nothing but the request body; the service is called unchanged.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::Status;

use super::{check, schema, DecodeLimits, Schema};

/// Length of a gRPC message header: the compressed flag and the big-endian length.
const HEADER: usize = 5;

/// A gRPC service whose requests are checked against [`DecodeLimits`] before decoding.
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    limits: DecodeLimits,
    max_message: usize,
}

impl<S> Guarded<S> {
    /// `inner` (a `MessagingService` server decoding messages up to `max_message` bytes),
    /// checked against `limits`.
    pub fn new(inner: S, limits: DecodeLimits, max_message: usize) -> Self {
        Self {
            inner,
            limits,
            max_message,
        }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        match schema(method) {
            Some(schema) => {
                let (limits, max_message) = (self.limits, self.max_message);
                self.inner.call(req.map(|body| {
                    Body::new(Checked {
                        inner: body,
                        schema,
                        limits,
                        max_message,
                        buf: BytesMut::new(),
                        state: State::Gather,
                    })
                }))
            }
            None => self.inner.call(req),
        }
    }
}

/// What [`Checked`] does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Gathers each message and checks it.
    Gather,
    /// Passes the rest on unchanged (a message over the decoding limit: tonic refuses it).
    PassOn,
    /// Ended with an error.
    Failed,
    /// The request's body ended.
    Ended,
}

/// A request body whose messages are checked before they are passed on.
struct Checked {
    inner: Body,
    schema: &'static Schema,
    limits: DecodeLimits,
    max_message: usize,
    buf: BytesMut,
    state: State,
}

impl Checked {
    /// The next whole message of `buf`, checked; `None` when more bytes are needed.
    fn next_message(&mut self) -> Option<Result<Bytes, Status>> {
        if self.buf.len() < HEADER {
            return None;
        }
        let compressed = self.buf[0] != 0;
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[1..HEADER]);
        let len = u32::from_be_bytes(len) as usize;
        if compressed {
            return Some(Err(Status::unimplemented(
                "compressed messages are not accepted",
            )));
        }
        if len > self.max_message {
            self.state = State::PassOn;
            return Some(Ok(self.buf.split().freeze()));
        }
        if self.buf.len() < HEADER + len {
            self.buf.reserve(HEADER + len - self.buf.len());
            return None;
        }
        let message = self.buf.split_to(HEADER + len).freeze();
        Some(check(self.schema, &message[HEADER..], &self.limits).map(|()| message))
    }
}

/// Whether `data` is exactly one uncompressed message within `max_message`.
fn whole_message(data: &[u8], max_message: usize) -> bool {
    match data {
        [0, a, b, c, d, ..] => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            len <= max_message && data.len() == HEADER + len
        }
        _ => false,
    }
}

impl http_body::Body for Checked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Failed | State::Ended => return Poll::Ready(None),
                State::PassOn if !this.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                }
                State::PassOn => return Pin::new(&mut this.inner).poll_frame(cx),
                State::Gather => {}
            }
            match this.next_message() {
                Some(Ok(message)) => return Poll::Ready(Some(Ok(Frame::data(message)))),
                Some(Err(status)) => {
                    this.state = State::Failed;
                    this.buf.clear();
                    return Poll::Ready(Some(Err(status)));
                }
                None => {}
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    // The usual case, a whole message in one chunk: checked without a copy.
                    Ok(data) if this.buf.is_empty() && whole_message(&data, this.max_message) => {
                        return Poll::Ready(Some(
                            match check(this.schema, &data[HEADER..], &this.limits) {
                                Ok(()) => Ok(Frame::data(data)),
                                Err(status) => {
                                    this.state = State::Failed;
                                    Err(status)
                                }
                            },
                        ));
                    }
                    Ok(data) => this.buf.extend_from_slice(&data),
                    Err(trailers) if this.buf.is_empty() => return Poll::Ready(Some(Ok(trailers))),
                    // Trailers inside a message: not a request tonic would decode either.
                    Err(_) => {
                        this.state = State::Failed;
                        return Poll::Ready(Some(Err(Status::invalid_argument(
                            "trailers inside a request message",
                        ))));
                    }
                },
                Some(Err(status)) => {
                    this.state = State::Failed;
                    return Poll::Ready(Some(Err(status)));
                }
                // The end: what is left is an incomplete message, for tonic to refuse.
                None => {
                    this.state = State::Ended;
                    return Poll::Ready(if this.buf.is_empty() {
                        None
                    } else {
                        Some(Ok(Frame::data(this.buf.split().freeze())))
                    });
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.state {
            State::Failed | State::Ended => true,
            State::Gather | State::PassOn => self.buf.is_empty() && self.inner.is_end_stream(),
        }
    }
}
