//! rocketgate-nameserver: the route registry, independent of the core.
//!
//! A NameServer keeps, in memory, which broker instances are alive, where they listen and which
//! topics' queues they serve. Brokers register with every NameServer (they are independent and
//! share nothing) and heartbeat; an instance silent for `broker_expiry_ms` (120 s) is dropped.
//! Clients ask any NameServer for a topic's route or for the cluster layout. The protocol is the
//! gRPC service `rocketgate.cluster.v1.NameServer` from `rocketgate-proto`, described in
//! `docs/nameserver.md`.
//!
//! # Layout
//!
//! - [`model`]: validated names, identities, endpoints, topic configs, routes, cluster info.
//! - [`route`]: the typed tables ([`TopicRoutes`], [`BrokerTable`], [`LiveBrokers`]) inside
//!   [`RouteTables`], and the rules between them. Pure.
//! - `convert`: wire ↔ domain, where every size and count from the wire is checked.
//! - [`service`]: the tonic service ([`NameServerService`]) and the expiry scan.
//! - [`client`]: [`NameServerClient`] (route / cluster info queries with failover),
//!   [`Registration`] (a broker's registration with every NameServer, kept alive in the
//!   background) and [`RouteCache`] (the last good route of each topic, refreshed in the
//!   background and kept while every NameServer is down: what producers, gateways and tools
//!   route with).
//! - [`secret`]: [`ClusterSecret`] (brokers sign RegisterBroker / Heartbeat / UnregisterBroker
//!   with it; a NameServer with one refuses anything else) and [`RegistrationId`] (binds a live
//!   instance to its registrant, so nobody else can take it over or evict it — except the same
//!   broker restarted after a crash, [`Registrant`]).
//! - [`replay`]: [`replay::ReplayGuard`], the signatures accepted within the skew window, so a
//!   captured signed request is refused the second time.
//! - [`listener`]: connection limits of a gRPC listener ([`ConnectionLimits`]: a cap, an HTTP/2
//!   handshake timeout, an idle timeout for connections with no call, keepalive), used by
//!   [`serve`] and by the broker's gRPC gateway.
//! - [`controller`]: the failover controller (a Raft group of 1 or 3 members keeping each
//!   broker group's master, epoch and in-sync set, and electing a new master when one stops
//!   heartbeating), [`controller::Controller`] and [`controller::ControllerClient`].
//! - [`config`]: [`Config`] (expiry, scan interval, limits, cluster secret, connections). The listen address
//!   belongs to the server binary.
//!
//! Dependencies: `rocketgate-proto`, tonic and tokio; never `rocketgate-core` or a gateway.
//!
//! # Example
//!
//! ```
//! use rocketgate_nameserver::{
//!     serve, BrokerId, BrokerIdentity, BrokerRegistration, ClientConfig, Config, Endpoint,
//!     NameServerClient, RouteCache, RouteCacheConfig, TopicConfig, TopicName,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?.to_string();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, Config::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let client = NameServerClient::new(&ClientConfig::new([address]))?;
//! let registration = client
//!     .register(BrokerRegistration {
//!         identity: BrokerIdentity {
//!             cluster: "DefaultCluster".parse()?,
//!             broker_name: "broker-a".parse()?,
//!             broker_id: BrokerId::MASTER,
//!         },
//!         endpoints: vec![Endpoint::new("grpc", "127.0.0.1:8081")?],
//!         topics: vec![TopicConfig::new(TopicName::new("orders")?, 8)],
//!     })
//!     .await?;
//!
//! let route = client.route("orders").await?;
//! assert_eq!(route.queues[0].write_queues, 8);
//! assert_eq!(route.brokers[0].master_endpoint("grpc"), Some("127.0.0.1:8081"));
//!
//! // Producers and gateways route through a cache: hits make no call, and the last good route
//! // stays while every NameServer is down.
//! let cache = RouteCache::start(client.clone(), &RouteCacheConfig::default())?;
//! let cached = cache.route("orders").await?;
//! assert_eq!(*cached, route);
//! cache.stop().await;
//!
//! registration.unregister().await;
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

use std::future::Future;

use thiserror::Error;
use tonic::transport::Server;

pub mod client;
pub mod config;
pub mod controller;
mod convert;
pub mod fuzz;
pub mod listener;
pub mod model;
pub mod replay;
pub mod route;
pub mod secret;
pub mod service;

pub use client::{
    ClientConfig, ClientError, ClientTls, NameServerClient, RefreshReport, Registration,
    RouteCache, RouteCacheConfig,
};
pub use config::{Config, ConfigError, Limits};
pub use listener::{ConnectionLimits, ConnectionStats};
pub use model::{
    BrokerData, BrokerId, BrokerIdentity, BrokerInfo, BrokerName, BrokerRegistration, ClusterEntry,
    ClusterInfo, ClusterName, Endpoint, InvalidInput, MessageType, Permission, Protocol, QueueData,
    Role, TopicConfig, TopicName, TopicRoute,
};
pub use route::{
    BrokerTable, LiveBrokers, Origin, Registrant, RouteError, RouteTables, Timestamp, TopicRoutes,
};
pub use secret::{ClusterSecret, RegistrationId, SignatureError};
pub use service::NameServerService;

/// Why [`serve`] stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work.
    #[error("invalid NameServer config: {0}")]
    Config(#[from] ConfigError),
    /// The gRPC server failed.
    #[error("NameServer transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the NameServer on `listener` until `shutdown` completes, running the expiry scan
/// alongside; then stops accepting, lets in-flight calls finish, and returns. Connections are
/// held to `config.connections` ([`listener`]: a cap, handshake and idle timeouts, keepalive).
///
/// The tables start empty: brokers learn that this NameServer does not know them from their next
/// heartbeat and register again.
///
/// # Errors
/// [`Error::Config`] when `config` does not validate (nothing is served);
/// [`Error::Transport`] when the gRPC server fails.
///
/// # Panics
/// Never.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve_tls(listener, config, None, shutdown).await
}

/// [`serve`], over TLS with `tls` when given (handshakes on their own tasks, within the cap
/// and the handshake timeout: [`listener`]).
///
/// # Errors
/// As [`serve`].
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Config,
    tls: Option<std::sync::Arc<dyn listener::ServerTls>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    serve_ready(listener, config, tls, shutdown, || {}).await
}

/// [`serve_tls`], calling `ready` once the configuration is checked and the server is about
/// to accept (nothing left before its accept loop): when a binary may say `ready`.
///
/// # Errors
/// As [`serve`] (`ready` is not called on [`Error::Config`]).
pub async fn serve_ready(
    listener: tokio::net::TcpListener,
    config: Config,
    tls: Option<std::sync::Arc<dyn listener::ServerTls>>,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce() + Send,
) -> Result<(), Error> {
    let service = NameServerService::new(config)?;
    if let Ok(addr) = listener.local_addr() {
        // The binary logs one `listening` line per endpoint; embedders see this at debug.
        tracing::debug!(%addr, "NameServer listening");
    }
    let limits = service.config().connections.clone();
    let incoming = listener::Incoming::new(listener, "nameserver", limits.clone()).with_tls(tls);
    let server = Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval()))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout()))
        .layer(listener::TrackCallsLayer)
        .add_service(service.clone().into_server())
        .serve_with_incoming_shutdown(incoming, shutdown);
    let scan = service.run_expiry();
    ready();
    tokio::select! {
        result = server => result?,
        () = scan => {}
    }
    tracing::info!("NameServer stopped");
    Ok(())
}
