//! The server of the authorization scenarios: one broker with authentication on, served by the
//! gRPC (RocketMQ 5 `MessagingService` and `BrokerAdmin`), HTTP (REST and `/v1/ws`) and MQTT
//! gateways on `127.0.0.1:0`, and the users, policies, tokens, topics and group the table
//! ([`super`]) runs against.
//!
//! Invariants: the broker's clock is a [`SteppedClock`] — the system time plus a step moved
//! forward by hand — so a token expires by moving the clock, not by waiting, while the clock
//! stays within the signature skew window of the SDKs (which sign with the system time). The
//! limit of failed authentications per address is off (`auth.failure_burst = 0`): every
//! refused credential comes from 127.0.0.1, and the table's later rows must not be refused
//! for the earlier ones' failures.
//!
//! Used by `auth_scenarios` only; touches nothing but its tempdir and its listeners.
//! Concurrency: each gateway runs on its own task until [`Server::stop`]; the broker handle is
//! shared.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::auth::{Action, Decision, PolicyEntry, UserKind, UserStatus, UserUpdate};
use rocketgate_core::{Broker, Clock, GroupConfig, Message, TopicConfig};
use rocketgate_gateway_grpc::{MessagingConfig, NodeInfo};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::User;
use crate::support;

/// The topic the users' policies name.
pub const ORDERS: &str = "orders";
/// A topic no normal user may use.
pub const PAYMENTS: &str = "payments";
/// The consumer group that exists before the table runs.
pub const G1: &str = "g1";
/// How long the gRPC gateway holds an empty receive (its minimum).
pub const POLL: Duration = Duration::from_secs(5);
/// The lifetime of the token that is expired when the table runs.
const SHORT_TTL: Duration = Duration::from_secs(60);

/// The system's clock plus a step that only grows.
#[derive(Debug, Clone, Default)]
pub struct SteppedClock {
    step_ms: Arc<AtomicI64>,
}

impl SteppedClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.step_ms.fetch_add(ms, Ordering::AcqRel);
    }
}

impl Clock for SteppedClock {
    fn now_ms(&self) -> i64 {
        rocketgate_core::now_ms() + self.step_ms.load(Ordering::Acquire)
    }
}

/// The broker, its three gateways and the tokens of the table.
pub struct Server {
    /// The broker behind every gateway.
    pub broker: Broker,
    /// The gRPC listener (MessagingService and BrokerAdmin).
    pub grpc: SocketAddr,
    /// The HTTP listener (REST and `/v1/ws`).
    pub http: SocketAddr,
    /// The MQTT listener (TCP).
    pub mqtt: SocketAddr,
    /// A bearer token of [`User::Pub`], valid.
    pub token: String,
    /// A bearer token of [`User::Pub`] whose lifetime has passed.
    pub expired_token: String,
    stops: Vec<oneshot::Sender<()>>,
    grpc_join: JoinHandle<Result<(), rocketgate_gateway_grpc::Error>>,
    http_join: JoinHandle<Result<(), rocketgate_gateway_http::Error>>,
    mqtt_join: JoinHandle<Result<(), rocketgate_gateway_mqtt::Error>>,
    _dir: tempfile::TempDir,
}

fn allow(resources: &[&str], action: Action) -> PolicyEntry {
    PolicyEntry {
        resources: resources.iter().map(|r| r.parse().unwrap()).collect(),
        actions: vec![action],
        decision: Decision::Allow,
        sources: Vec::new(),
    }
}

impl Server {
    /// Opens the broker (authentication on, [`User::Admin`] its bootstrap super user), makes
    /// the users, policies, topics, group and tokens, moves the clock past the short token's
    /// lifetime, and starts the gateways.
    pub async fn start() -> Self {
        let dir = support::memory_tempdir();
        let mut config = support::consume_config(dir.path());
        config.auth.enabled = true;
        config.auth.bootstrap_access_key = Some(User::Admin.access_key().into());
        config.auth.bootstrap_secret_key = Some(User::Admin.secret_key().into());
        config.auth.failure_burst = 0;
        let clock = SteppedClock::default();
        let broker = Broker::open_with_clock(config, Arc::new(clock.clone()))
            .unwrap_or_else(|e| panic!("Broker::open: {e}"));

        for (topic, queues) in [(ORDERS, 1), (PAYMENTS, 1)] {
            broker
                .topics()
                .create(TopicConfig::new(topic, queues))
                .unwrap();
        }
        broker.groups().create(GroupConfig::new(G1)).unwrap();
        let auth = broker.auth();
        for u in [User::Pub, User::Sub, User::Nobody, User::Disabled] {
            auth.create_user(u.access_key(), u.secret_key(), UserKind::Normal)
                .unwrap();
        }
        let pub_policy = vec![allow(&["Topic:orders"], Action::Pub)];
        auth.set_policy(User::Pub.access_key(), pub_policy.clone())
            .unwrap();
        auth.set_policy(User::Disabled.access_key(), pub_policy)
            .unwrap();
        auth.set_policy(
            User::Sub.access_key(),
            vec![allow(
                &["Topic:orders", "Group:g*", "Group:mqtt-sub-*"],
                Action::Sub,
            )],
        )
        .unwrap();
        let disable = UserUpdate {
            status: Some(UserStatus::Disabled),
            ..UserUpdate::default()
        };
        auth.update_user(User::Disabled.access_key(), disable)
            .unwrap();
        let expired_token = auth
            .issue_token(User::Pub.access_key(), Some(SHORT_TTL))
            .unwrap()
            .token;
        clock.advance(SHORT_TTL + Duration::from_secs(1));
        let token = auth
            .issue_token(User::Pub.access_key(), None)
            .unwrap()
            .token;

        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mqtt = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr, mqtt_addr) = (
            grpc.local_addr().unwrap(),
            http.local_addr().unwrap(),
            mqtt.local_addr().unwrap(),
        );
        let node = NodeInfo {
            cluster: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            endpoints: vec![("grpc".into(), grpc_addr.to_string())],
            nameservers: Vec::new(),
            registered_nameservers: Arc::new(|| 0),
            started_at_ms: support::now_ms(),
            routes: None,
        };
        let messaging = MessagingConfig {
            max_long_polling_ms: POLL.as_millis() as u64,
            ..MessagingConfig::default()
        };
        let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
        let (stop_http, http_stopped) = oneshot::channel::<()>();
        let (stop_mqtt, mqtt_stopped) = oneshot::channel::<()>();
        let grpc_join = tokio::spawn(rocketgate_gateway_grpc::serve_with(
            grpc,
            broker.clone(),
            node,
            messaging,
            async {
                let _ = grpc_stopped.await;
            },
        ));
        let http_join = tokio::spawn(rocketgate_gateway_http::serve_with(
            http,
            broker.clone(),
            rocketgate_gateway_http::HttpConfig::default(),
            None,
            async {
                let _ = http_stopped.await;
            },
        ));
        let mqtt_join = tokio::spawn(rocketgate_gateway_mqtt::serve(
            Some(mqtt),
            None,
            broker.clone(),
            rocketgate_gateway_mqtt::MqttConfig::default(),
            async {
                let _ = mqtt_stopped.await;
            },
        ));
        Self {
            broker,
            grpc: grpc_addr,
            http: http_addr,
            mqtt: mqtt_addr,
            token,
            expired_token,
            stops: vec![stop_grpc, stop_http, stop_mqtt],
            grpc_join,
            http_join,
            mqtt_join,
            _dir: dir,
        }
    }

    /// Stores one message in `orders` through the core (no gateway, no caller): what a
    /// receive cell may then receive.
    pub async fn put_order(&self) {
        let m = Message::new(ORDERS, b"an order".to_vec());
        support::within(
            Duration::from_secs(10),
            "send to orders",
            self.broker.producer().send(m.into()),
        )
        .await
        .unwrap_or_else(|e| panic!("core send to orders: {e}"));
    }

    /// Whether a consumer group exists.
    pub fn group_exists(&self, group: &str) -> bool {
        self.broker.groups().get(group).is_ok()
    }

    /// Stops the gateways (each within 10 s) and closes the broker.
    pub async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), self.grpc_join).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("gRPC gateway did not stop cleanly: {other:?}"),
        }
        match tokio::time::timeout(Duration::from_secs(10), self.http_join).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("HTTP gateway did not stop cleanly: {other:?}"),
        }
        match tokio::time::timeout(Duration::from_secs(10), self.mqtt_join).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("MQTT gateway did not stop cleanly: {other:?}"),
        }
        self.broker
            .shutdown()
            .unwrap_or_else(|e| panic!("broker shutdown: {e}"));
    }
}
