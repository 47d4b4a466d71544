//! Test harness: NameServers on 127.0.0.1:0 run in-process, brokers built from the real client,
//! and polling with a deadline (no bare sleeps, no fixed ports).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rocketgate_nameserver::{
    serve, BrokerId, BrokerIdentity, BrokerRegistration, ClientConfig, Config, Endpoint,
    NameServerClient, Registration, TopicConfig, TopicName,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);

/// A NameServer serving in this process.
pub struct RunningNameServer {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), rocketgate_nameserver::Error>>,
}

impl RunningNameServer {
    /// Binds 127.0.0.1:0 and serves.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::serve_on(listener, config))
    }

    /// Serves on a listener bound earlier.
    pub fn serve_on(listener: TcpListener, config: Config) -> Self {
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(serve(listener, config, async {
            let _ = stopped.await;
        }));
        Self { addr, stop, join }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Stops it and waits for `serve` to return.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.join)
            .await
            .context("NameServer did not stop in time")???;
        Ok(())
    }
}

/// Short expiry for tests: 500 ms, scanned every 50 ms (brokers heartbeat every 50 ms, so a
/// pause of 450 ms would be needed to drop a live one).
pub fn fast_config() -> Config {
    Config {
        broker_expiry_ms: 500,
        scan_interval_ms: 50,
        ..Config::default()
    }
}

/// A client of `servers` heartbeating every `heartbeat_ms` with a 500 ms call timeout.
pub fn client(servers: &[&str], heartbeat_ms: u64) -> NameServerClient {
    let config = ClientConfig {
        addresses: servers.iter().map(|s| (*s).to_owned()).collect(),
        heartbeat_interval_ms: heartbeat_ms,
        rpc_timeout_ms: 500,
        tls: None,
    };
    NameServerClient::new(&config).unwrap()
}

pub fn identity(cluster: &str, name: &str, id: u64) -> BrokerIdentity {
    BrokerIdentity {
        cluster: cluster.parse().unwrap(),
        broker_name: name.parse().unwrap(),
        broker_id: BrokerId(id),
    }
}

/// A registration with a gRPC endpoint on `port` and `topics` as (name, queues).
pub fn registration(
    cluster: &str,
    name: &str,
    id: u64,
    port: u16,
    topics: &[(&str, u32)],
) -> BrokerRegistration {
    BrokerRegistration {
        identity: identity(cluster, name, id),
        endpoints: vec![Endpoint::new("grpc", format!("127.0.0.1:{port}")).unwrap()],
        topics: topics
            .iter()
            .map(|(t, q)| TopicConfig::new(TopicName::new(*t).unwrap(), *q))
            .collect(),
    }
}

/// Registers a broker through the real client.
pub async fn broker(
    client: &NameServerClient,
    registration: BrokerRegistration,
) -> anyhow::Result<Registration> {
    Ok(client.register(registration).await?)
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The broker names in `topic`'s route, asked through `client`; empty when not found.
pub async fn routed_brokers(client: &NameServerClient, topic: &str) -> Vec<String> {
    match client.route(topic).await {
        Ok(route) => route
            .queues
            .iter()
            .map(|q| q.broker_name.to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// [`client`] signing broker requests with the cluster secret `secret`.
pub fn secured_client(servers: &[&str], heartbeat_ms: u64, secret: &str) -> NameServerClient {
    let config = ClientConfig {
        addresses: servers.iter().map(|s| (*s).to_owned()).collect(),
        heartbeat_interval_ms: heartbeat_ms,
        rpc_timeout_ms: 500,
        tls: None,
    };
    let secret = rocketgate_nameserver::ClusterSecret::new(secret).unwrap();
    NameServerClient::with_secret(&config, Some(secret)).unwrap()
}
