//! Harness of the interop tests with the official RocketMQ 5 Rust SDK (`rocketmq` 5.0.0, "RC"
//! in `docs/grpc-v2.md`): a [`Broker`] on a tempdir served by
//! `rocketgate_gateway_grpc::serve` on `127.0.0.1:0`, and RC clients pointed at it.
//!
//! The scenarios live in `grpc_sdk_basic` (start, send, batch, receive/ack, the core view of
//! a gRPC message, bad input, shutdown, long polls), `grpc_sdk_ordering` (FIFO, delay,
//! invisibility expiry and dead letters), `grpc_sdk_transaction` (commit, rollback,
//! check-back over Telemetry) and `grpc_sdk_clients` (tag filters, a large message, an
//! access URL other than the advertised one, two producers and two consumers of a group). They judge by the
//! messages delivered, not by RC's exit codes or logs.
//!
//! Invariants of the harness:
//! - every test starts and stops its own server ([`GrpcServer::start`] / [`GrpcServer::stop`]);
//!   the broker has the topics `test_topic` (NORMAL), `fifo_test` (FIFO), `delay_test`
//!   (DELAY) and `transaction_test` (TRANSACTION), 4 queues each; consumer groups are
//!   auto-created (a group of a FIFO topic is consumed in FIFO order by the core);
//! - the route advertises exactly the access URL (`127.0.0.1:PORT`), so RC opens one session;
//! - every wait is bounded: RC calls by [`call`], receives by the long-polling time plus a
//!   slack ([`receive`]).
//!
//! RC keeps its defaults (3 s unary deadline; receives poll 40 s inside a 40 s deadline). The
//! gateway's long-poll cap is lowered to [`POLL`] (5 s, its minimum) through
//! `MessagingConfig::max_long_polling_ms`, so that an empty receive costs 5 s, not the
//! default 20 s; one test keeps the default cap.
//!
//! Concurrency: each test owns its runtime (multi-threaded, RC spawns background tasks), its
//! broker, its server task and its clients; nothing is shared between tests but RC's global
//! id generator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketgate_core::{Broker, Config, MessageType, TopicConfig};
use rocketgate_gateway_grpc::{MessagingConfig, NodeInfo};
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::error::ClientError;
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageView;
use rocketmq::model::transaction::TransactionChecker;
use rocketmq::{Producer, SimpleConsumer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support;

/// NORMAL topic.
pub const NORMAL_TOPIC: &str = "test_topic";
/// FIFO topic.
pub const FIFO_TOPIC: &str = "fifo_test";
/// DELAY topic.
pub const DELAY_TOPIC: &str = "delay_test";
/// TRANSACTION topic.
pub const TRANSACTION_TOPIC: &str = "transaction_test";
/// Queues per topic.
pub const QUEUES: u32 = 4;
/// The gateway's long-poll cap in these tests: how long an empty receive takes.
pub const POLL: Duration = Duration::from_secs(5);
/// Bound on one unary RC call (RC's own deadline is 3 s) or a start / shutdown.
pub const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Slack over the long-polling time for a receive to come back.
pub const RECEIVE_SLACK: Duration = Duration::from_secs(5);

/// A broker on a tempdir and the gRPC gateway serving it on `127.0.0.1:0`.
pub struct GrpcServer {
    /// The broker behind the gateway (to inspect what the clients did).
    pub broker: Broker,
    /// Where the gateway listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), rocketgate_gateway_grpc::Error>>>,
    _dir: tempfile::TempDir,
}

impl GrpcServer {
    /// A server with the harness configuration (see [`GrpcServer::start_with`]).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose broker configuration is [`support::consume_config`] (1 MiB segments,
    /// no retry backoff, so an expired message is visible again as soon as its invisible time
    /// passes) changed by `tweak`, with the four topics of the scenarios, and whose gateway
    /// caps long polls at [`POLL`].
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let messaging = MessagingConfig {
            max_long_polling_ms: POLL.as_millis() as u64,
            ..MessagingConfig::default()
        };
        Self::start_full(tweak, messaging).await
    }

    /// A server as [`GrpcServer::start_with`] makes, with the gateway configuration
    /// `messaging`.
    pub async fn start_full(tweak: impl FnOnce(&mut Config), messaging: MessagingConfig) -> Self {
        let dir = support::memory_tempdir();
        let mut config = support::consume_config(dir.path());
        tweak(&mut config);
        let broker = support::open(&config);
        for (name, t) in [
            (NORMAL_TOPIC, MessageType::Normal),
            (FIFO_TOPIC, MessageType::Fifo),
            (DELAY_TOPIC, MessageType::Delay),
            (TRANSACTION_TOPIC, MessageType::Transaction),
        ] {
            broker
                .topics()
                .create(TopicConfig::new(name, QUEUES).with_type(t))
                .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let node = NodeInfo {
            cluster: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            endpoints: vec![("grpc".into(), addr.to_string())],
            nameservers: Vec::new(),
            registered_nameservers: Arc::new(|| 0),
            started_at_ms: support::now_ms(),
            routes: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(rocketgate_gateway_grpc::serve_with(
            listener,
            broker.clone(),
            node,
            messaging,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            broker,
            addr,
            stop: Some(stop),
            join: Some(join),
            _dir: dir,
        }
    }

    /// The access URL RC is given: exactly the advertised `127.0.0.1:PORT`.
    pub fn access_url(&self) -> String {
        self.addr.to_string()
    }

    /// RC's client options for this server: access URL, no TLS, RC's defaults otherwise.
    pub fn client_option(&self) -> ClientOption {
        let mut o = ClientOption::default();
        o.set_access_url(self.access_url());
        o.set_enable_tls(false);
        o
    }

    /// A started producer that declared `topics`; fails the test if it does not start.
    pub async fn producer(&self, topics: &[&str]) -> Producer {
        self.producer_with(topics, self.client_option()).await
    }

    /// A started producer with the client options `client`.
    pub async fn producer_with(&self, topics: &[&str], client: ClientOption) -> Producer {
        let mut p = Producer::new(producer_option(topics), client)
            .unwrap_or_else(|e| panic!("Producer::new: {e}"));
        call("producer.start", p.start()).await.unwrap_or_else(|e| {
            panic!("producer start with topics {topics:?}: {e}");
        });
        p
    }

    /// A started transaction producer on `transaction_test` with `checker`.
    pub async fn transaction_producer(&self, checker: Box<TransactionChecker>) -> Producer {
        let mut p = Producer::new_transaction_producer(
            producer_option(&[TRANSACTION_TOPIC]),
            self.client_option(),
            checker,
        )
        .unwrap_or_else(|e| panic!("Producer::new_transaction_producer: {e}"));
        call("transaction producer.start", p.start())
            .await
            .unwrap_or_else(|e| panic!("transaction producer start: {e}"));
        p
    }

    /// A started simple consumer of `group` that declared `topics`.
    pub async fn consumer(&self, group: &str, topics: &[&str]) -> SimpleConsumer {
        self.consumer_with(group, topics, self.client_option())
            .await
    }

    /// A started simple consumer with the client options `client`.
    pub async fn consumer_with(
        &self,
        group: &str,
        topics: &[&str],
        client: ClientOption,
    ) -> SimpleConsumer {
        let mut o = SimpleConsumerOption::default();
        o.set_consumer_group(group);
        o.set_topics(topics.to_vec());
        let mut c = SimpleConsumer::new(o, client)
            .unwrap_or_else(|e| panic!("SimpleConsumer::new({group}): {e}"));
        call("consumer.start", c.start())
            .await
            .unwrap_or_else(|e| panic!("consumer {group} start: {e}"));
        c
    }

    /// Stops the gateway (it must stop within 10 s once the clients are gone) and closes the
    /// broker.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            match tokio::time::timeout(Duration::from_secs(10), join).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("gateway stopped with an error: {e}"),
                Ok(Err(e)) => panic!("gateway task failed: {e}"),
                Err(_) => panic!("gateway did not stop within 10 s of its shutdown signal"),
            }
        }
        self.broker
            .shutdown()
            .unwrap_or_else(|e| panic!("broker shutdown: {e}"));
    }
}

fn producer_option(topics: &[&str]) -> ProducerOption {
    let mut o = ProducerOption::default();
    o.set_topics(topics.to_vec());
    o
}

/// Awaits an RC call for at most [`CALL_LIMIT`], failing the test on timeout.
pub async fn call<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    support::within(CALL_LIMIT, what, fut).await
}

/// A TAG filter expression.
pub fn tag(expression: &str) -> FilterExpression {
    FilterExpression::new(FilterType::Tag, expression)
}

/// One `receive_with`, bounded by the gateway's long-poll cap [`POLL`] plus
/// [`RECEIVE_SLACK`]; fails the test on an error (an empty poll is `Ok(vec![])` for RC).
pub async fn receive(
    consumer: &SimpleConsumer,
    topic: &str,
    filter: &FilterExpression,
    batch: i32,
    invisible: Duration,
) -> Vec<MessageView> {
    try_receive(consumer, topic, filter, batch, invisible, POLL)
        .await
        .unwrap_or_else(|e| panic!("receive from {topic}: {e}"))
}

/// One `receive_with` from a gateway whose long-poll cap is `poll`, bounded by `poll` plus
/// [`RECEIVE_SLACK`].
pub async fn try_receive(
    consumer: &SimpleConsumer,
    topic: &str,
    filter: &FilterExpression,
    batch: i32,
    invisible: Duration,
    poll: Duration,
) -> Result<Vec<MessageView>, ClientError> {
    support::within(
        poll + RECEIVE_SLACK,
        &format!("receive from {topic}"),
        consumer.receive_with(topic, filter, batch, invisible),
    )
    .await
}

/// Receives until `want` messages came (more fail the test), or `limit` passed (fails the
/// test). Returns each message with the instant its receive returned. Does not ack.
pub async fn receive_n(
    consumer: &SimpleConsumer,
    topic: &str,
    filter: &FilterExpression,
    want: usize,
    invisible: Duration,
    limit: Duration,
) -> Vec<(Instant, MessageView)> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            start.elapsed() < limit,
            "{topic}: {} of {want} messages within {limit:?}",
            out.len()
        );
        let got = receive(consumer, topic, filter, 32, invisible).await;
        let at = Instant::now();
        out.extend(got.into_iter().map(|m| (at, m)));
    }
    assert_eq!(
        out.len(),
        want,
        "{topic}: more messages than expected: {:?}",
        ids(out.iter().map(|(_, m)| m))
    );
    out
}

/// Acknowledges, failing the test on error or timeout.
pub async fn ack(consumer: &SimpleConsumer, m: &MessageView) {
    call("ack", consumer.ack(m))
        .await
        .unwrap_or_else(|e| panic!("ack of {}: {e}", m.message_id()));
}

/// The message ids of some views.
pub fn ids<'a>(views: impl IntoIterator<Item = &'a MessageView>) -> Vec<String> {
    views
        .into_iter()
        .map(|m| m.message_id().to_owned())
        .collect()
}

/// Shuts a producer down; it must return Ok.
pub async fn shutdown_producer(p: Producer) {
    call("producer.shutdown", p.shutdown())
        .await
        .unwrap_or_else(|e| panic!("producer shutdown: {e}"));
}

/// Shuts a consumer down; it must return Ok.
pub async fn shutdown_consumer(c: SimpleConsumer) {
    call("consumer.shutdown", c.shutdown())
        .await
        .unwrap_or_else(|e| panic!("consumer shutdown: {e}"));
}

/// The wall clock in whole seconds since the epoch (RC's delivery timestamps).
pub fn now_secs() -> i64 {
    support::now_ms() / 1000
}
