//! Shared harness of the MessagingService tests: a real server on 127.0.0.1:0 over a broker
//! in a temp dir (topics of every type, short long-poll cap and check-back times), a raw
//! tonic client, and request/assertion helpers. Every wait is bounded by [`bounded`].

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use std::future::Future;
pub use std::sync::Arc;
pub use std::time::{Duration, Instant};

pub use rocketgate_core::{Broker, Config, MessageType, TopicConfig};
pub use rocketgate_gateway_grpc::{serve_with, MessagingConfig, NodeInfo};
pub use rocketgate_proto::apache::rocketmq::v2 as pb;
pub use rocketgate_proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
pub use rocketgate_proto::apache::rocketmq::v2::receive_message_response::Content;
pub use rocketgate_proto::apache::rocketmq::v2::Code;
pub use tokio::sync::{mpsc, oneshot};
pub use tokio::task::JoinHandle;
pub use tokio_stream::StreamExt;
pub use tonic::transport::{Channel, Endpoint};
pub use tonic::Request;

/// Upper bound for any one call, connect or shutdown.
pub const WAIT: Duration = Duration::from_secs(10);
/// The broker's body limit in these tests.
pub const MAX_BODY: usize = 64 << 10;
/// The long-poll cap of these tests (20 s in production).
pub const POLL_CAP_MS: u64 = 1500;
/// The client id of [`req`].
pub const CLIENT: &str = "tester@1#0";

/// The raw generated client.
pub type Client = MessagingServiceClient<Channel>;

/// A running server and a client connected to it.
pub struct Running {
    pub client: Client,
    pub broker: Broker,
    pub port: u16,
    pub stop: oneshot::Sender<()>,
    pub join: JoinHandle<Result<(), rocketgate_gateway_grpc::Error>>,
    pub _dir: tempfile::TempDir,
}

pub async fn start() -> Running {
    start_with(|_| {}).await
}

/// [`start`] with the test's changes to the gateway configuration.
pub async fn start_with(adjust: impl FnOnce(&mut MessagingConfig)) -> Running {
    start_configured(|_| {}, adjust).await
}

/// [`start_with`] with the test's changes to the broker configuration too.
pub async fn start_configured(
    core: impl FnOnce(&mut Config),
    adjust: impl FnOnce(&mut MessagingConfig),
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 4 << 20;
    config.limits.max_body_bytes = MAX_BODY;
    config.consumer.min_invisible_ms = 100;
    config.consumer.retry_backoff = "0s".into();
    config.timer.max_delay_ms = 3_600_000;
    config.transaction.check_first_ms = 300;
    config.transaction.check_interval_ms = 500;
    core(&mut config);
    let broker = Broker::open(config).unwrap();
    for (name, queues, t) in [
        ("normal", 4, MessageType::Normal),
        ("single", 1, MessageType::Normal),
        ("fifo", 4, MessageType::Fifo),
        ("delay", 2, MessageType::Delay),
        ("tx", 2, MessageType::Transaction),
        ("mixed", 2, MessageType::Mixed),
    ] {
        broker
            .topics()
            .create(TopicConfig::new(name, queues).with_type(t))
            .unwrap();
    }
    let node = NodeInfo {
        cluster: "c1".into(),
        broker_name: "broker-a".into(),
        broker_id: 0,
        endpoints: Vec::new(),
        nameservers: Vec::new(),
        registered_nameservers: Arc::new(|| 0),
        started_at_ms: 0,
        routes: None,
    };
    let mut messaging = MessagingConfig {
        max_long_polling_ms: POLL_CAP_MS,
        min_long_polling_ms: 100,
        ..MessagingConfig::default()
    };
    adjust(&mut messaging);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let join = tokio::spawn(serve_with(
        listener,
        broker.clone(),
        node,
        messaging,
        async {
            let _ = stopped.await;
        },
    ));
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .unwrap();
    Running {
        client: MessagingServiceClient::new(channel),
        broker,
        port,
        stop,
        join,
        _dir: dir,
    }
}

impl Running {
    pub async fn stop(self) {
        drop(self.client);
        let _ = self.stop.send(());
        bounded(self.join).await.unwrap().unwrap();
        self.broker.shutdown().unwrap();
    }
}

pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("a bounded wait timed out after {WAIT:?}"))
}

pub fn req<T>(msg: T) -> Request<T> {
    req_as(CLIENT, msg)
}

pub fn req_as<T>(client_id: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("x-mq-client-id", client_id.parse().unwrap());
    r.metadata_mut()
        .insert("x-mq-language", "RUST".parse().unwrap());
    r
}

pub fn res(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

pub fn code(s: &Option<pb::Status>) -> Code {
    Code::try_from(s.as_ref().expect("status set").code).expect("known code")
}

pub fn now_ts(offset_ms: i64) -> prost_types::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + offset_ms;
    prost_types::Timestamp {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub fn message(topic: &str, id: &str, t: pb::MessageType) -> pb::Message {
    pb::Message {
        topic: res(topic),
        user_properties: [("k".to_owned(), "v".to_owned())].into(),
        system_properties: Some(pb::SystemProperties {
            tag: Some("tag".into()),
            keys: vec!["key".into()],
            message_id: id.into(),
            body_encoding: pb::Encoding::Identity as i32,
            message_type: t as i32,
            born_timestamp: Some(now_ts(0)),
            born_host: "host".into(),
            queue_id: 3,
            ..Default::default()
        }),
        body: format!("body-{id}").into_bytes(),
    }
}

pub fn fifo(id: &str, group: &str) -> pb::Message {
    let mut m = message("fifo", id, pb::MessageType::Fifo);
    m.system_properties.as_mut().unwrap().message_group = Some(group.into());
    m
}

pub async fn send(c: &mut Client, messages: Vec<pb::Message>) -> pb::SendMessageResponse {
    bounded(c.send_message(req(pb::SendMessageRequest { messages })))
        .await
        .unwrap()
        .into_inner()
}

pub async fn send_ok(c: &mut Client, messages: Vec<pb::Message>) -> Vec<pb::SendResultEntry> {
    let r = send(c, messages).await;
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    r.entries
}

pub fn dur(ms: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

pub fn receive_req(
    group: &str,
    topic: &str,
    batch: i32,
    invisible_ms: u64,
    poll_ms: u64,
) -> pb::ReceiveMessageRequest {
    pb::ReceiveMessageRequest {
        group: res(group),
        message_queue: Some(pb::MessageQueue {
            topic: res(topic),
            id: 0,
            ..Default::default()
        }),
        filter_expression: Some(pb::FilterExpression {
            r#type: pb::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        batch_size: batch,
        invisible_duration: dur(invisible_ms),
        auto_renew: false,
        long_polling_timeout: dur(poll_ms),
        attempt_id: None,
    }
}

/// Runs a receive and checks the stream shape; returns the first status and the messages.
pub async fn receive_with(
    c: &mut Client,
    r: Request<pb::ReceiveMessageRequest>,
) -> (Code, Vec<pb::Message>) {
    let mut stream = bounded(c.receive_message(r)).await.unwrap().into_inner();
    let mut frames = Vec::new();
    while let Some(f) = bounded(stream.next()).await {
        frames.push(f.unwrap().content.expect("content set"));
    }
    let Some(Content::Status(first)) = frames.first() else {
        panic!("first frame is not a status: {frames:?}");
    };
    let first = Code::try_from(first.code).unwrap();
    let messages: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            Content::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    if first == Code::Ok || first == Code::MessageNotFound {
        assert!(
            matches!(frames.last(), Some(Content::DeliveryTimestamp(_))),
            "{frames:?}"
        );
        assert_eq!(frames.len(), messages.len() + 2, "{frames:?}");
    }
    assert_eq!(first == Code::Ok, !messages.is_empty(), "{frames:?}");
    (first, messages)
}

pub async fn receive(
    c: &mut Client,
    group: &str,
    topic: &str,
    batch: i32,
    invisible_ms: u64,
    poll_ms: u64,
) -> Vec<pb::Message> {
    let (code, messages) = receive_with(
        c,
        req(receive_req(group, topic, batch, invisible_ms, poll_ms)),
    )
    .await;
    assert!(matches!(code, Code::Ok | Code::MessageNotFound), "{code:?}");
    messages
}

pub fn sys(m: &pb::Message) -> &pb::SystemProperties {
    m.system_properties.as_ref().expect("system_properties")
}

pub fn handle(m: &pb::Message) -> String {
    sys(m).receipt_handle.clone().expect("receipt handle")
}

pub async fn ack(
    c: &mut Client,
    group: &str,
    topic: &str,
    handles: &[String],
) -> pb::AckMessageResponse {
    let entries = handles
        .iter()
        .map(|h| pb::AckMessageEntry {
            message_id: "id".into(),
            receipt_handle: h.clone(),
        })
        .collect();
    let r = bounded(c.ack_message(req(pb::AckMessageRequest {
        group: res(group),
        topic: res(topic),
        entries,
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(r.entries.len(), handles.len());
    r
}

pub async fn end(
    c: &mut Client,
    id: &str,
    tx: &str,
    r: pb::TransactionResolution,
    src: pb::TransactionSource,
) -> Code {
    let resp = bounded(c.end_transaction(req(pb::EndTransactionRequest {
        topic: res("tx"),
        message_id: id.into(),
        transaction_id: tx.into(),
        resolution: r as i32,
        source: src as i32,
        trace_context: String::new(),
    })))
    .await
    .unwrap()
    .into_inner();
    code(&resp.status)
}

pub async fn telemetry(
    c: &mut Client,
    client_id: &str,
    settings: pb::Settings,
) -> (
    mpsc::Sender<pb::TelemetryCommand>,
    tonic::Streaming<pb::TelemetryCommand>,
) {
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(settings)),
    })
    .await
    .unwrap();
    let inbound = bounded(c.telemetry(req_as(
        client_id,
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
    .await
    .unwrap()
    .into_inner();
    (tx, inbound)
}

pub fn producer_settings(topics: &[&str]) -> pb::Settings {
    pb::Settings {
        client_type: Some(pb::ClientType::Producer as i32),
        request_timeout: dur(3000),
        pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
            topics: topics.iter().map(|t| res(t).unwrap()).collect(),
            max_body_size: 0,
            validate_message_type: true,
        })),
        ..Default::default()
    }
}

pub async fn next_command(s: &mut tonic::Streaming<pb::TelemetryCommand>) -> pb::TelemetryCommand {
    bounded(s.next()).await.expect("stream open").unwrap()
}
