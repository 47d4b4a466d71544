//! Fuzz entry point of the RocketMQ 5 Telemetry stream (issue 14): [`TelemetryFuzz::run`] reads
//! arbitrary bytes as what one client does during one Telemetry stream — the commands it sends
//! on it (the client's Settings, answers, garbage), and the Heartbeat and
//! NotifyClientTermination calls it makes meanwhile — and plays them against the real server
//! stack of the gateway without the network: the HTTP request of the stream goes through the
//! wire checks (`decode_limits`' `Guarded` wrapper), tonic's gRPC framing and prost decoding to
//! the real [`MessagingService`] on a real broker, and the response stream is read back and
//! decoded as a client would.
//!
//! Input: records of `[kind: u8][length: u16 LE][payload]` (a length past the end takes the
//! rest; at most [`MAX_RECORDS`]). Kinds (modulo 4): 0 a `TelemetryCommand` sent on the stream
//! (the payload as its protobuf encoding, in one gRPC message), 1 a Heartbeat and 2 a
//! NotifyClientTermination of the same client id (the payload as the request), 3 the client
//! half-closes the stream (the rest is ignored). The stream is half-closed after the last
//! record.
//!
//! Checked beyond "never panics" (a violation panics, naming it):
//! - every Settings the server reads is answered once, before the next command is read, within
//!   10 s: `OK` with the effective settings when it has `pub_sub`, `BAD_REQUEST` without; the
//!   answer is at most [`MAX_SETTINGS_GROWTH`] bytes bigger than the Settings (the server adds
//!   its policy, it does not multiply the client's input);
//! - nothing else is answered on the stream, except the server's own pushes (transaction
//!   check-backs);
//! - a message the wire checks or prost refuse ends the server's reading side, and the stream
//!   then ends;
//! - the stream ends within 10 s of the client's half-close, with `grpc-status: 0`;
//! - every Heartbeat and NotifyClientTermination answer carries a status of the protocol's
//!   list, never an internal error.
//!
//! Used only by the cargo-fuzz target `grpc_telemetry` (`fuzz/`) and the short run in the
//! `tests` crate. Concurrency: a two-thread runtime owned by the harness; per input, the
//! server's tasks (the stream's reader) and one task reading the response, driven from the
//! caller's thread.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http_body::{Body as _, Frame};
use prost::Message as _;
use rocketgate_core::Broker;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_server::{
    MessagingService as _, MessagingServiceServer,
};
use rocketgate_proto::apache::rocketmq::v2::telemetry_command::Command;
use tokio::sync::mpsc;
use tonic::codegen::{http, Service as _};

use super::{request, FuzzError, GROUP};
use crate::decode_limits::{DecodeLimits, Guarded};
use crate::{MessagingConfig, MessagingService};

/// Most records of one input.
pub const MAX_RECORDS: usize = 32;
/// How much bigger than the client's Settings the server's answer may be.
pub const MAX_SETTINGS_GROWTH: usize = 4096;
/// Longest wait for an answer or the end of the stream.
const WAIT: Duration = Duration::from_secs(10);
/// The gRPC path of the stream.
const PATH: &str = "/apache.rocketmq.v2.MessagingService/Telemetry";

/// What the response reader reports.
#[derive(Debug)]
enum Event {
    /// A command of the server, with its encoded size.
    Command(Box<pb::TelemetryCommand>, usize),
    /// The end of the response: its `grpc-status`, if any.
    End(Option<String>),
    /// The response could not be read as a client reads it.
    Broken(String),
}

/// The client's half of the request body: each chunk is one gRPC message.
struct Inbound(mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for Inbound {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// The real gRPC server stack of the `MessagingService` on a real broker, fed Telemetry
/// sessions.
pub struct TelemetryFuzz {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    service: MessagingService,
    server: Guarded<MessagingServiceServer<MessagingService>>,
    limits: DecodeLimits,
}

impl std::fmt::Debug for TelemetryFuzz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryFuzz").finish_non_exhaustive()
    }
}

impl TelemetryFuzz {
    /// Opens a broker in `dir` (asynchronous flush, a CommitLog bounded to 256 MiB) with the
    /// seed topics and group, and the service on it, behind its wire checks.
    ///
    /// # Errors
    /// [`FuzzError`] when the runtime or the broker cannot start.
    pub fn start(dir: &Path) -> Result<Self, FuzzError> {
        let runtime = super::runtime()?;
        let mut config = super::config(dir);
        config.limits.max_groups = 64;
        let guard = runtime.enter();
        let broker = Broker::open(config)?;
        super::create_seeds(&broker)?;
        let node = super::node();
        let service = MessagingService::new(broker.clone(), node, MessagingConfig::default(), None);
        let server = service.clone().into_server();
        let limits = DecodeLimits::new(&broker.config().limits);
        drop(guard);
        Ok(Self {
            runtime,
            broker,
            service,
            server,
            limits,
        })
    }

    /// The broker behind the service.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// One Telemetry session (see the module doc for the input and the checks).
    ///
    /// # Panics
    /// When the server breaks one of the invariants of the module doc.
    pub fn run(&mut self, data: &[u8]) {
        let records = records(data);
        let mut server = self.server.clone();
        let (service, schema, limits) = (&self.service, &self.schema(), &self.limits);
        self.runtime.block_on(async move {
            let (inbound, body) = mpsc::unbounded_channel();
            let req = http::Request::builder()
                .method(http::Method::POST)
                .uri(PATH)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("x-mq-client-id", super::CLIENT_ID)
                .body(tonic::body::Body::new(Inbound(body)));
            let Ok(req) = req else {
                panic!("the Telemetry request cannot be built");
            };
            let Ok(resp) = tokio::time::timeout(WAIT, server.call(req)).await else {
                panic!("the Telemetry stream was not answered within {WAIT:?}");
            };
            let Ok(resp) = resp;
            assert_eq!(resp.status(), http::StatusCode::OK, "Telemetry: {resp:?}");
            let (events_tx, mut events) = mpsc::unbounded_channel();
            tokio::spawn(read_response(resp.into_body(), events_tx));
            for (kind, payload) in records {
                match kind % 4 {
                    0 => {
                        let accepted = crate::decode_limits::check(schema, payload, limits)
                            .ok()
                            .and_then(|()| pb::TelemetryCommand::decode(payload).ok());
                        let _ = inbound.send(frame(payload));
                        let Some(cmd) = accepted else {
                            // The server stops reading: nothing more is answered.
                            break;
                        };
                        if let Some(Command::Settings(settings)) = cmd.command {
                            let (reply, size) = next_answer(&mut events).await;
                            check_settings_answer(&settings, payload.len(), &reply, size);
                        }
                    }
                    1 => {
                        if let Ok(req) = pb::HeartbeatRequest::decode(payload) {
                            let resp = service.heartbeat(request(req)).await;
                            check_status("Heartbeat", resp.map(|r| r.into_inner().status));
                        }
                    }
                    2 => {
                        if let Ok(req) = pb::NotifyClientTerminationRequest::decode(payload) {
                            let resp = service.notify_client_termination(request(req)).await;
                            check_status(
                                "NotifyClientTermination",
                                resp.map(|r| r.into_inner().status),
                            );
                        }
                    }
                    _ => break,
                }
            }
            drop(inbound);
            loop {
                match tokio::time::timeout(WAIT, events.recv()).await {
                    Ok(Some(Event::Command(cmd, _))) if is_push(&cmd) => {}
                    Ok(Some(Event::Command(cmd, _))) => {
                        panic!("Telemetry: an answer nothing asked for: {cmd:?}")
                    }
                    Ok(Some(Event::End(status))) => {
                        assert_eq!(
                            status.as_deref(),
                            Some("0"),
                            "Telemetry: the stream ended with grpc-status {status:?}"
                        );
                        break;
                    }
                    Ok(Some(Event::Broken(why))) => panic!("Telemetry: {why}"),
                    Ok(None) => panic!("Telemetry: the response ended without trailers"),
                    Err(_) => panic!("Telemetry: the stream did not end within {WAIT:?}"),
                }
            }
        });
    }

    fn schema(&self) -> &'static crate::decode_limits::Schema {
        match crate::decode_limits::schema("Telemetry") {
            Some(schema) => schema,
            None => panic!("the Telemetry request has no wire checks"),
        }
    }

    /// Stops the service and closes the broker.
    ///
    /// # Errors
    /// The broker's error at shutdown.
    pub fn close(self) -> Result<(), FuzzError> {
        self.service.stop();
        self.runtime.block_on(self.broker.close())?;
        Ok(())
    }
}

/// The records of an input (module doc).
fn records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let [kind, rest @ ..] = data {
        if out.len() == MAX_RECORDS {
            break;
        }
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        out.push((*kind, payload));
        data = rest;
    }
    out
}

/// `payload` as one uncompressed gRPC message.
fn frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.extend_from_slice(&[0]);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Whether `cmd` is a command the server sends of its own accord.
fn is_push(cmd: &pb::TelemetryCommand) -> bool {
    matches!(
        cmd.command,
        Some(
            Command::RecoverOrphanedTransactionCommand(_)
                | Command::PrintThreadStackTraceCommand(_)
                | Command::VerifyMessageCommand(_)
        )
    )
}

/// The next answer on the stream (pushes skipped), within [`WAIT`].
async fn next_answer(events: &mut mpsc::UnboundedReceiver<Event>) -> (pb::TelemetryCommand, usize) {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(Event::Command(cmd, _))) if is_push(&cmd) => {}
            Ok(Some(Event::Command(cmd, size))) => return (*cmd, size),
            Ok(Some(Event::Broken(why))) => panic!("Telemetry: {why}"),
            Ok(Some(Event::End(status))) => {
                panic!("Telemetry: the stream ended (grpc-status {status:?}) before the answer to a Settings")
            }
            Ok(None) => panic!("Telemetry: the response ended before the answer to a Settings"),
            Err(_) => panic!("Telemetry: a Settings was not answered within {WAIT:?}"),
        }
    }
}

fn check_settings_answer(
    settings: &pb::Settings,
    request_size: usize,
    reply: &pb::TelemetryCommand,
    size: usize,
) {
    let code = reply.status.as_ref().map(|s| s.code);
    if settings.pub_sub.is_some() {
        assert!(
            code == Some(pb::Code::Ok as i32)
                && matches!(reply.command, Some(Command::Settings(_))),
            "Telemetry: Settings with pub_sub answered {reply:?}"
        );
    } else {
        assert!(
            code == Some(pb::Code::BadRequest as i32) && reply.command.is_none(),
            "Telemetry: Settings without pub_sub answered {reply:?}"
        );
    }
    assert!(
        size <= request_size.saturating_add(MAX_SETTINGS_GROWTH),
        "Telemetry: a {request_size}-byte Settings answered with {size} bytes"
    );
}

/// An answer's status: set, of the protocol's list, and no internal error.
fn check_status(rpc: &str, status: Result<Option<pb::Status>, tonic::Status>) {
    let status = match status {
        Ok(Some(s)) => s,
        other => panic!("{rpc}: answered {other:?}, not a status in the body"),
    };
    match pb::Code::try_from(status.code) {
        Ok(pb::Code::Unspecified | pb::Code::InternalServerError | pb::Code::InternalError)
        | Err(_) => panic!("{rpc}: answered {status:?}"),
        Ok(_) => {}
    }
}

/// Reads the response body as a client does: gRPC messages decoded as `TelemetryCommand`s,
/// then the trailers.
async fn read_response(mut body: tonic::body::Body, events: mpsc::UnboundedSender<Event>) {
    let mut buf = BytesMut::new();
    let mut status = None;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(e)) => {
                let _ = events.send(Event::Broken(format!("the response failed: {e}")));
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => buf.extend_from_slice(&data),
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        status = trailers
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                    }
                }
            },
        }
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 5 + len {
                break;
            }
            let compressed = buf[0] != 0;
            buf.advance(5);
            let message = buf.split_to(len);
            let event = match pb::TelemetryCommand::decode(&message[..]) {
                Ok(cmd) if !compressed => Event::Command(Box::new(cmd), len),
                Ok(_) => Event::Broken("a compressed message nobody asked for".into()),
                Err(e) => Event::Broken(format!("a message the client cannot decode: {e}")),
            };
            let _ = events.send(event);
        }
    }
    let event = if buf.is_empty() {
        Event::End(status)
    } else {
        Event::Broken(format!("{} bytes of a cut message", buf.len()))
    };
    let _ = events.send(event);
}

/// One record of an input: `[kind][u16 LE length][payload]`.
fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = vec![kind];
    out.extend(len.to_le_bytes());
    out.extend(payload);
    out
}

fn command(command: Command) -> Vec<u8> {
    pb::TelemetryCommand {
        status: None,
        command: Some(command),
    }
    .encode_to_vec()
}

/// Sessions of a producer, of simple and push consumers, Settings without `pub_sub`, the
/// client's answers and commands only a server sends, Heartbeats and terminations in between,
/// and a garbled message: the seed corpus of `grpc_telemetry`, with the name of each.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let resource = |name: &str| pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    };
    let endpoints = Some(pb::Endpoints {
        scheme: pb::AddressScheme::IPv4 as i32,
        addresses: vec![pb::Address {
            host: "127.0.0.1".into(),
            port: 8081,
        }],
    });
    let settings = |client_type: pb::ClientType, pub_sub| {
        command(Command::Settings(pb::Settings {
            client_type: Some(client_type as i32),
            access_point: endpoints.clone(),
            backoff_policy: None,
            request_timeout: Some(prost_types::Duration {
                seconds: 3,
                nanos: 0,
            }),
            pub_sub,
            user_agent: Some(pb::Ua {
                language: pb::Language::Rust as i32,
                version: "5.0.0".into(),
                platform: "linux".into(),
                hostname: "fuzz".into(),
            }),
            metric: None,
        }))
    };
    let producer = settings(
        pb::ClientType::Producer,
        Some(pb::settings::PubSub::Publishing(pb::Publishing {
            topics: vec![resource("fuzz"), resource("fuzz-tx"), resource("missing")],
            max_body_size: 0,
            validate_message_type: true,
        })),
    );
    let subscription = |kind, expression: &str, filter: pb::FilterType| {
        settings(
            kind,
            Some(pb::settings::PubSub::Subscription(pb::Subscription {
                group: Some(resource(GROUP)),
                subscriptions: vec![pb::SubscriptionEntry {
                    topic: Some(resource("fuzz")),
                    expression: Some(pb::FilterExpression {
                        r#type: filter as i32,
                        expression: expression.into(),
                    }),
                }],
                fifo: Some(true),
                receive_batch_size: Some(i32::MAX),
                long_polling_timeout: Some(prost_types::Duration {
                    seconds: i64::MAX,
                    nanos: -1,
                }),
            })),
        )
    };
    let simple = subscription(pb::ClientType::SimpleConsumer, "*", pb::FilterType::Tag);
    let push = subscription(pb::ClientType::PushConsumer, "a > 1", pb::FilterType::Sql);
    let bare = settings(pb::ClientType::Producer, None);
    let heartbeat = pb::HeartbeatRequest {
        group: Some(resource(GROUP)),
        client_type: pb::ClientType::SimpleConsumer as i32,
    }
    .encode_to_vec();
    let terminate = pb::NotifyClientTerminationRequest {
        group: Some(resource(GROUP)),
    }
    .encode_to_vec();
    let answers = [
        record(
            0,
            &command(Command::ThreadStackTrace(pb::ThreadStackTrace {
                nonce: "n".into(),
                thread_stack_trace: Some("main".into()),
            })),
        ),
        record(
            0,
            &command(Command::VerifyMessageResult(pb::VerifyMessageResult {
                nonce: "n".into(),
            })),
        ),
        record(
            0,
            &command(Command::RecoverOrphanedTransactionCommand(
                pb::RecoverOrphanedTransactionCommand {
                    message: None,
                    transaction_id: "tx".into(),
                },
            )),
        ),
        record(0, &[]),
    ]
    .concat();
    let seeds = vec![
        ("producer", record(0, &producer)),
        (
            "producer_twice_then_terminate",
            [
                record(0, &producer),
                record(0, &producer),
                record(2, &terminate),
                record(0, &producer),
            ]
            .concat(),
        ),
        (
            "simple_consumer",
            [
                record(0, &simple),
                record(1, &heartbeat),
                record(0, &simple),
            ]
            .concat(),
        ),
        ("push_consumer_sql", record(0, &push)),
        ("no_pub_sub", record(0, &bare)),
        ("answers", answers),
        (
            "garbled_then_settings",
            [record(0, b"\x12\xff\xff\xff\xff\x0f"), record(0, &producer)].concat(),
        ),
        (
            "half_close_early",
            [record(0, &simple), record(3, &[]), record(0, &producer)].concat(),
        ),
        (
            "heartbeat_producer",
            record(
                1,
                &pb::HeartbeatRequest {
                    group: None,
                    client_type: pb::ClientType::Producer as i32,
                }
                .encode_to_vec(),
            ),
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}
