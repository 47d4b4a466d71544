//! Fuzz entry points of the gRPC gateway (issue 14), one per decoder fed from the network:
//!
//! - [`GrpcFuzz::messaging`] (this file) decodes arbitrary bytes as the protobuf request of one
//!   `MessagingService` RPC (the first byte picks which) and calls the real
//!   [`MessagingService`] with it, on a real broker, without the network: the wire checks
//!   before decoding (`decode_limits`), protobuf decoding, the request checks and conversions
//!   of the RPC's module, the core's rules and the response, exactly as a call from tonic would
//!   run them. Every unary RPC of the service is reachable, and the streaming responses of
//!   ReceiveMessage and PullMessage are drained. Waits are short (`max_long_polling_ms = 20`)
//!   so an input cannot hang the run.
//! - [`telemetry::TelemetryFuzz`]: one client's Telemetry stream (its Settings and other
//!   commands, with Heartbeats and terminations between them) through the service's real
//!   server stack (wire checks, gRPC framing, decoding), the answers read back as a client
//!   reads them.
//! - [`admin::AdminFuzz`]: one `BrokerAdmin` or `AccessAdmin` request, signed as a super user,
//!   a normal user, nobody or a forger, on a broker with authentication on; checks the
//!   statuses, the size of the answers, and that a principal that may not change the broker
//!   changes nothing.
//!
//! Used only by the cargo-fuzz targets of `fuzz/` (`grpc_messaging`, `grpc_telemetry`,
//! `grpc_admin`, `grpc_access`) and the short runs in the `tests` crate; they call the
//! services' public traits (and the tonic server of the `MessagingService`) and reach into no
//! module.
//!
//! Concurrency: each harness owns a two-thread tokio runtime (the broker's and the service's
//! tasks); each input is driven on it from the caller's thread.
#![doc(hidden)]

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use rocketgate_core::{
    Broker, Config, FlushMode, GroupConfig, Message, MessageType, QueueSelector, SendRequest,
    TopicConfig,
};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_server::MessagingService as _;
use tokio_stream::StreamExt as _;

use crate::{MessagingConfig, MessagingService, NodeInfo};

pub mod admin;
pub mod admin_seeds;
pub mod telemetry;

/// The `x-mq-client-id` of every request of the harnesses.
const CLIENT_ID: &str = "fuzz-client";

/// The normal topic, its FIFO, DELAY and TRANSACTION siblings.
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
    /// The runtime could not start.
    #[error("fuzz harness: {0}")]
    Io(#[from] std::io::Error),
}

/// The RPCs an input may pick with its first byte, in this order.
pub const RPCS: [&str; 14] = [
    "QueryRoute",
    "Heartbeat",
    "SendMessage",
    "QueryAssignment",
    "ReceiveMessage",
    "AckMessage",
    "ForwardMessageToDeadLetterQueue",
    "PullMessage",
    "UpdateOffset",
    "GetOffset",
    "QueryOffset",
    "EndTransaction",
    "NotifyClientTermination",
    "ChangeInvisibleDuration",
];

/// The runtime every harness of this module runs its broker on.
fn runtime() -> Result<tokio::runtime::Runtime, FuzzError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A broker configuration in `dir` every harness starts from: asynchronous flush, 4 MiB
/// segments, a CommitLog bounded to 256 MiB.
fn config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.store.data_dir = dir.into();
    config.store.segment_size = 4 << 20;
    config.store.flush_mode = FlushMode::Async;
    config.store.disk_limit_bytes = Some(256 << 20);
    config
}

/// Creates the seed topics ([`TOPICS`]) and the group ([`GROUP`]).
fn create_seeds(broker: &Broker) -> Result<(), FuzzError> {
    for (name, kind) in TOPICS {
        broker
            .topics()
            .create(TopicConfig::new(name, 4).with_type(kind))?;
    }
    broker.groups().create(GroupConfig::new(GROUP))?;
    Ok(())
}

/// The node the harnesses' services advertise.
fn node() -> NodeInfo {
    NodeInfo {
        cluster: "fuzz".into(),
        broker_name: "fuzz-broker".into(),
        broker_id: 0,
        endpoints: vec![("grpc".into(), "127.0.0.1:8081".into())],
        nameservers: Vec::new(),
        registered_nameservers: Arc::new(|| 0),
        started_at_ms: 0,
        routes: None,
    }
}

/// A real `MessagingService` on a real broker, fed fuzz inputs.
pub struct GrpcFuzz {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    service: MessagingService,
}

impl std::fmt::Debug for GrpcFuzz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcFuzz").finish_non_exhaustive()
    }
}

impl GrpcFuzz {
    /// Opens a broker in `dir` (asynchronous flush, a CommitLog bounded to 256 MiB) with the
    /// seed topics, the group and a few messages, and the service on it.
    ///
    /// # Errors
    /// [`FuzzError`] when the runtime or the broker cannot start.
    pub fn start(dir: &Path) -> Result<Self, FuzzError> {
        let runtime = runtime()?;
        let mut config = config(dir);
        config.consumer.max_wait_ms = 100;
        let guard = runtime.enter();
        let broker = Broker::open(config)?;
        create_seeds(&broker)?;
        runtime.block_on(send_seed_messages(&broker))?;
        let node = node();
        let messaging = MessagingConfig {
            max_long_polling_ms: 20,
            min_long_polling_ms: 0,
            deadline_reserve_ms: 5,
            ..MessagingConfig::default()
        };
        let service = MessagingService::new(broker.clone(), node, messaging, None);
        drop(guard);
        Ok(Self {
            runtime,
            broker,
            service,
        })
    }

    /// The broker behind the service.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// One RPC: the first byte picks it ([`RPCS`], modulo their number), the rest is its
    /// protobuf request. A request the server's [`decode_limits`](crate::decode_limits)
    /// refuse, or bytes that do not decode, end the input (the decoder was fuzzed).
    pub fn messaging(&mut self, data: &[u8]) {
        let Some((&pick, body)) = data.split_first() else {
            return;
        };
        let pick = usize::from(pick) % RPCS.len();
        if let Some(schema) = crate::decode_limits::schema(RPCS[pick]) {
            let limits = crate::decode_limits::DecodeLimits::new(&self.broker.config().limits);
            if crate::decode_limits::check(schema, body, &limits).is_err() {
                return;
            }
        }
        let service = &self.service;
        self.runtime.block_on(async move {
            macro_rules! unary {
                ($ty:ident, $method:ident) => {{
                    if let Ok(req) = pb::$ty::decode(body) {
                        let _ = service.$method(request(req)).await;
                    }
                }};
            }
            macro_rules! streaming {
                ($ty:ident, $method:ident) => {{
                    if let Ok(req) = pb::$ty::decode(body) {
                        if let Ok(resp) = service.$method(request(req)).await {
                            let mut frames = resp.into_inner();
                            while frames.next().await.is_some() {}
                        }
                    }
                }};
            }
            match pick {
                0 => unary!(QueryRouteRequest, query_route),
                1 => unary!(HeartbeatRequest, heartbeat),
                2 => unary!(SendMessageRequest, send_message),
                3 => unary!(QueryAssignmentRequest, query_assignment),
                4 => streaming!(ReceiveMessageRequest, receive_message),
                5 => unary!(AckMessageRequest, ack_message),
                6 => unary!(
                    ForwardMessageToDeadLetterQueueRequest,
                    forward_message_to_dead_letter_queue
                ),
                7 => streaming!(PullMessageRequest, pull_message),
                8 => unary!(UpdateOffsetRequest, update_offset),
                9 => unary!(GetOffsetRequest, get_offset),
                10 => unary!(QueryOffsetRequest, query_offset),
                11 => unary!(EndTransactionRequest, end_transaction),
                12 => unary!(NotifyClientTerminationRequest, notify_client_termination),
                _ => unary!(ChangeInvisibleDurationRequest, change_invisible_duration),
            }
        });
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

/// Sends the 8 seed messages to the topic `fuzz`.
async fn send_seed_messages(broker: &Broker) -> Result<(), rocketgate_core::Error> {
    for i in 0..8 {
        let m = Message::new("fuzz", format!("seed {i}").into_bytes());
        broker
            .producer()
            .send(SendRequest::new(m, QueueSelector::Auto))
            .await?;
    }
    Ok(())
}

/// A request as tonic hands it over: with the client id every SDK sends.
fn request<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert(
        "x-mq-client-id",
        tonic::metadata::MetadataValue::from_static(CLIENT_ID),
    );
    req
}

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

fn queue(topic: &str, id: i32) -> Option<pb::MessageQueue> {
    Some(pb::MessageQueue {
        topic: resource(topic),
        id,
        ..Default::default()
    })
}

fn duration(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos })
}

fn seed(rpc: u8, message: &impl prost::Message) -> Vec<u8> {
    let mut out = vec![rpc];
    out.extend(message.encode_to_vec());
    out
}

/// Valid requests of every RPC and a few edge cases: the seed corpus of the target, with the
/// name of each (written to `fuzz/corpus/grpc_messaging/` by the `tests` crate).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let sys = |kind: pb::MessageType| pb::SystemProperties {
        tag: Some("t".into()),
        keys: vec!["k1".into()],
        message_id: "01FUZZ".into(),
        message_type: kind as i32,
        born_host: "127.0.0.1".into(),
        ..Default::default()
    };
    let message = |topic: &str, sys: pb::SystemProperties| pb::Message {
        topic: resource(topic),
        user_properties: [("color".to_owned(), "red".to_owned())].into(),
        system_properties: Some(sys),
        body: b"hello".to_vec(),
    };
    let fifo = pb::SystemProperties {
        message_group: Some("g1".into()),
        ..sys(pb::MessageType::Fifo)
    };
    let delay = pb::SystemProperties {
        delivery_timestamp: Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: -1,
        }),
        ..sys(pb::MessageType::Delay)
    };
    let tx = pb::SystemProperties {
        orphaned_transaction_recovery_duration: duration(i64::MAX, 999_999_999),
        ..sys(pb::MessageType::Transaction)
    };
    let tag = Some(pb::FilterExpression {
        r#type: pb::FilterType::Tag as i32,
        expression: "t || u".into(),
    });
    let sql = Some(pb::FilterExpression {
        r#type: pb::FilterType::Sql as i32,
        expression: "a > 1 AND b IN ('x', 'y')".into(),
    });
    let ack = |handle: &str| pb::AckMessageEntry {
        message_id: "01FUZZ".into(),
        receipt_handle: handle.into(),
    };
    let mut seeds = vec![
        (
            "query_route",
            seed(
                0,
                &pb::QueryRouteRequest {
                    topic: resource("fuzz"),
                    endpoints: None,
                },
            ),
        ),
        (
            "heartbeat",
            seed(
                1,
                &pb::HeartbeatRequest {
                    group: resource(GROUP),
                    client_type: 3,
                },
            ),
        ),
        (
            "send",
            seed(
                2,
                &pb::SendMessageRequest {
                    messages: vec![message("fuzz", sys(pb::MessageType::Normal))],
                },
            ),
        ),
        (
            "send_fifo",
            seed(
                2,
                &pb::SendMessageRequest {
                    messages: vec![message("fuzz-fifo", fifo)],
                },
            ),
        ),
        (
            "send_delay_far",
            seed(
                2,
                &pb::SendMessageRequest {
                    messages: vec![message("fuzz-delay", delay)],
                },
            ),
        ),
        (
            "send_tx_max_recovery",
            seed(
                2,
                &pb::SendMessageRequest {
                    messages: vec![message("fuzz-tx", tx)],
                },
            ),
        ),
        (
            "send_mixed_topics",
            seed(
                2,
                &pb::SendMessageRequest {
                    messages: vec![
                        message("fuzz", sys(pb::MessageType::Normal)),
                        message("other", sys(pb::MessageType::Normal)),
                    ],
                },
            ),
        ),
        (
            "send_no_sys",
            seed(
                2,
                &pb::SendMessageRequest {
                    messages: vec![pb::Message {
                        topic: resource("fuzz"),
                        ..Default::default()
                    }],
                },
            ),
        ),
        (
            "query_assignment",
            seed(
                3,
                &pb::QueryAssignmentRequest {
                    topic: resource("fuzz"),
                    group: resource(GROUP),
                    endpoints: None,
                },
            ),
        ),
        (
            "receive_tag",
            seed(
                4,
                &pb::ReceiveMessageRequest {
                    group: resource(GROUP),
                    message_queue: queue("fuzz", -1),
                    filter_expression: tag.clone(),
                    batch_size: 4,
                    invisible_duration: duration(30, 0),
                    auto_renew: false,
                    long_polling_timeout: duration(0, 10_000_000),
                    attempt_id: None,
                },
            ),
        ),
        (
            "receive_sql_renew",
            seed(
                4,
                &pb::ReceiveMessageRequest {
                    group: resource(GROUP),
                    message_queue: queue("fuzz", 0),
                    filter_expression: sql.clone(),
                    batch_size: i32::MAX,
                    invisible_duration: duration(-1, -1),
                    auto_renew: true,
                    long_polling_timeout: duration(i64::MAX, 0),
                    attempt_id: Some("a".into()),
                },
            ),
        ),
        (
            "ack",
            seed(
                5,
                &pb::AckMessageRequest {
                    group: resource(GROUP),
                    topic: resource("fuzz"),
                    entries: vec![ack("handle"), ack("")],
                },
            ),
        ),
        (
            "forward_dlq",
            seed(
                6,
                &pb::ForwardMessageToDeadLetterQueueRequest {
                    group: resource(GROUP),
                    topic: resource("fuzz"),
                    receipt_handle: "handle".into(),
                    message_id: "01FUZZ".into(),
                    delivery_attempt: i32::MAX,
                    max_delivery_attempts: -1,
                },
            ),
        ),
        (
            "pull",
            seed(
                7,
                &pb::PullMessageRequest {
                    group: resource(GROUP),
                    message_queue: queue("fuzz", 0),
                    offset: 0,
                    batch_size: 8,
                    filter_expression: tag,
                    long_polling_timeout: duration(0, 1_000_000),
                },
            ),
        ),
        (
            "pull_edges",
            seed(
                7,
                &pb::PullMessageRequest {
                    group: resource(GROUP),
                    message_queue: queue("fuzz", i32::MIN),
                    offset: i64::MIN,
                    batch_size: -1,
                    filter_expression: sql,
                    long_polling_timeout: None,
                },
            ),
        ),
        (
            "update_offset",
            seed(
                8,
                &pb::UpdateOffsetRequest {
                    group: resource(GROUP),
                    message_queue: queue("fuzz", 1),
                    offset: 3,
                },
            ),
        ),
        (
            "get_offset",
            seed(
                9,
                &pb::GetOffsetRequest {
                    group: resource(GROUP),
                    message_queue: queue("fuzz", 1),
                },
            ),
        ),
        (
            "query_offset",
            seed(
                10,
                &pb::QueryOffsetRequest {
                    message_queue: queue("fuzz", 2),
                    query_offset_policy: 2,
                    timestamp: Some(prost_types::Timestamp {
                        seconds: i64::MIN,
                        nanos: 0,
                    }),
                },
            ),
        ),
        (
            "end_transaction",
            seed(
                11,
                &pb::EndTransactionRequest {
                    topic: resource("fuzz-tx"),
                    message_id: "01FUZZ".into(),
                    transaction_id: "tx".into(),
                    resolution: 1,
                    source: 1,
                    trace_context: String::new(),
                },
            ),
        ),
        (
            "notify_termination",
            seed(
                12,
                &pb::NotifyClientTerminationRequest {
                    group: resource(GROUP),
                },
            ),
        ),
        (
            "change_invisible",
            seed(
                13,
                &pb::ChangeInvisibleDurationRequest {
                    group: resource(GROUP),
                    topic: resource("fuzz"),
                    receipt_handle: "handle".into(),
                    invisible_duration: duration(i64::MAX, i32::MAX),
                    message_id: "01FUZZ".into(),
                },
            ),
        ),
    ];
    seeds.push(("truncated_send", {
        let mut s = seeds[2].1.clone();
        s.truncate(s.len() / 2);
        s
    }));
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}
