//! rocketgate-gateway-grpc: the broker's gRPC endpoint, translated to the core [`Broker`] API.
//!
//! Owns: the `rocketgate.cluster.v1.BrokerAdmin` service ([`AdminService`], what
//! `rocketgate admin` calls: topics, groups and lag, offset resets, message queries, dead
//! letters, send / pull; see `proto/rocketgate/cluster/v1/admin.proto`), the RocketMQ 5
//! `apache.rocketmq.v2.MessagingService` ([`MessagingService`], what the official SDKs speak,
//! with its Telemetry streams and transaction check-back; see [`messaging`]), the mapping of
//! core errors to gRPC statuses ([`status`]), and [`serve`] / [`serve_with`], the tonic server
//! on the broker's gRPC port.
//!
//! # Layout
//!
//! - [`admin`]: [`AdminService`] and [`NodeInfo`]; `admin/convert.rs` holds the wire ↔ core
//!   conversions and the checks of wire fields.
//! - [`messaging`]: [`MessagingService`] and [`MessagingConfig`], one module per RPC family.
//! - [`status`]: [`RequestError`] and the `ErrorKind` → `tonic::Code` table.
//! - [`decode_limits`]: the bounds checked on a messaging request's wire bytes before prost
//!   decodes it (entry counts, decoded size), and the tower wrapper running them.
//! - `incoming.rs`: accepted sockets within the listener's connection limits (a cap, handshake
//!   and idle timeouts, shared with the NameServer's listener) and their metrics.
//! - `gateway.rs`: [`GrpcGateway`], this endpoint as a `rocketgate-gateway-kit` `Gateway` for
//!   the composition root (wraps [`serve_with`]).
//!
//! Depends on `rocketgate-core`, `rocketgate-proto`, the route cache of
//! `rocketgate-nameserver` and `rocketgate-gateway-kit` (the `Gateway` trait), never on another
//! gateway. Services hold a cheap-`Clone` [`Broker`] and no state of their own; tonic runs every
//! call on its own task.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use rocketgate_core::{Broker, Config};
//! use rocketgate_gateway_grpc::{serve, NodeInfo};
//! use rocketgate_proto::cluster::v1::broker_admin_client::BrokerAdminClient;
//! use rocketgate_proto::cluster::v1::GetBrokerInfoRequest;
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::default();
//! config.store.data_dir = dir.path().into();
//! config.store.segment_size = 8 << 20;
//! let broker = Broker::open(config)?;
//! let node = NodeInfo {
//!     cluster: "DefaultCluster".into(),
//!     broker_name: "broker-a".into(),
//!     broker_id: 0,
//!     endpoints: Vec::new(),
//!     nameservers: Vec::new(),
//!     registered_nameservers: Arc::new(|| 0),
//!     started_at_ms: 0,
//!     routes: None,
//! };
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, broker, node, async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut client = BrokerAdminClient::connect(format!("http://{addr}")).await?;
//! let info = client.get_broker_info(GetBrokerInfoRequest {}).await?.into_inner();
//! assert_eq!(info.broker.map(|b| b.broker_name).as_deref(), Some("broker-a"));
//!
//! drop(client);
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

use std::future::Future;

use rocketgate_core::Broker;
use rocketgate_nameserver::listener::TrackCallsLayer;
use rocketgate_nameserver::ConnectionLimits;
use tonic::transport::Server;

pub mod access_admin;
pub mod admin;
pub mod auth;
pub mod decode_limits;
pub mod fuzz;
mod gateway;
mod incoming;
pub mod messaging;
pub mod status;

pub use admin::{AdminService, NodeInfo};
pub use gateway::GrpcGateway;
pub use messaging::{ConfigError, MessagingConfig, MessagingService};
pub use status::RequestError;

/// Concurrent calls (HTTP/2 streams) per connection; more wait for the client's flow control.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The gRPC server failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The [`MessagingConfig`] is out of range (nothing was served).
    #[error("gRPC gateway configuration: {0}")]
    Config(#[from] messaging::ConfigError),
    /// The [`ConnectionLimits`] are out of range (nothing was served).
    #[error("gRPC gateway configuration: {0}")]
    Connections(#[from] rocketgate_nameserver::ConfigError),
}

/// Serves the broker's gRPC endpoint on `listener` (the [`AdminService`] and the RocketMQ 5
/// [`MessagingService`] with its default [`MessagingConfig`]) until `shutdown` completes; see
/// [`serve_with`].
///
/// # Errors
/// [`Error::Transport`] when the gRPC server fails.
///
/// # Panics
/// Never.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Broker,
    node: NodeInfo,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_with(listener, broker, node, MessagingConfig::default(), shutdown).await
}

/// Serves the broker's gRPC endpoint on `listener` (the [`AdminService`] and the
/// [`MessagingService`] configured by `messaging`) until `shutdown` completes; then ends the
/// Telemetry streams, stops accepting, lets in-flight calls finish, and returns. The broker
/// is not shut down: it belongs to the caller.
///
/// Routes advertise `node`'s `grpc` endpoint, or the listener's address when the node names
/// none (and it is not a wildcard address).
///
/// Connections are held to the default [`ConnectionLimits`] (see [`serve_with_connections`]),
/// get `TCP_NODELAY` and at most 256 concurrent calls each; every call runs in a `grpc` span
/// naming its method.
///
/// # Errors
/// [`Error::Config`] when `messaging` fails [`MessagingConfig::validate`] (before anything
/// is served), [`Error::Transport`] when the gRPC server fails.
///
/// # Panics
/// Never.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    broker: Broker,
    node: NodeInfo,
    messaging: MessagingConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let connections = ConnectionLimits::default();
    serve_ready(
        listener,
        broker,
        node,
        messaging,
        connections,
        None,
        shutdown,
        || {},
    )
    .await
}

/// [`serve_with`], with the listener's connections held to `connections`: at most
/// `max_connections` open (one more is closed at once, logged and counted in
/// `rocketgate_connections_refused_total{gateway="grpc"}`), the HTTP/2 preface within
/// `handshake_timeout_ms`, closed after `idle_timeout_ms` with no call open (a Telemetry stream
/// or a long poll is a call, so SDK clients are never idle), and keepalive PINGs every
/// `keepalive_interval_ms` that must be answered within `keepalive_timeout_ms`.
///
/// # Errors
/// [`Error::Config`] / [`Error::Connections`] for a configuration out of range (before
/// anything is served), [`Error::Transport`] when the gRPC server fails.
///
/// # Panics
/// Never.
pub async fn serve_with_connections(
    listener: tokio::net::TcpListener,
    broker: Broker,
    node: NodeInfo,
    messaging: MessagingConfig,
    connections: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_ready(
        listener,
        broker,
        node,
        messaging,
        connections,
        None,
        shutdown,
        || {},
    )
    .await
}

/// [`serve_with`], calling `ready` once the endpoint accepts connections (configuration
/// checked, services built, nothing left before the accept loop): what the node's `ready`
/// waits for ([`GrpcGateway`]).
#[allow(clippy::too_many_arguments)] // the public entry points each pass a subset
pub(crate) async fn serve_ready(
    listener: tokio::net::TcpListener,
    broker: Broker,
    node: NodeInfo,
    messaging: MessagingConfig,
    connections: ConnectionLimits,
    tls: Option<std::sync::Arc<dyn rocketgate_nameserver::listener::ServerTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce() + Send,
) -> Result<(), Error> {
    messaging.validate()?;
    connections.validate()?;
    let local = listener.local_addr().ok();
    if let Some(addr) = local {
        // The node logs one `listening` line per endpoint; embedders see this at debug.
        tracing::debug!(%addr, "gRPC gateway listening");
    }
    let service = MessagingService::new(broker.clone(), node.clone(), messaging, local);
    let stopper = service.clone();
    let shutdown = async move {
        shutdown.await;
        stopper.stop();
    };
    ready();
    Server::builder()
        .trace_fn(|req| tracing::debug_span!("grpc", method = %req.uri().path()))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(connections.keepalive_interval()))
        .http2_keepalive_timeout(Some(connections.keepalive_timeout()))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .layer(TrackCallsLayer)
        .add_service(access_admin::AccessAdminService::new(broker.clone()).into_server())
        .add_service(AdminService::new(broker, node).into_server())
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            incoming::Incoming::new(listener, connections, tls),
            shutdown,
        )
        .await?;
    tracing::info!("gRPC gateway stopped");
    Ok(())
}
