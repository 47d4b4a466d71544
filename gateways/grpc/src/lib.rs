//! rocketgate-gateway-grpc: the broker's gRPC endpoint, translated to the core [`Broker`] API.
//!
//! Owns now: the `rocketgate.cluster.v1.BrokerAdmin` service ([`AdminService`], what
//! `rocketgate admin` calls: topics, groups and lag, offset resets, message queries, dead
//! letters, send / pull; see `proto/rocketgate/cluster/v1/admin.proto`), the mapping of core
//! errors to gRPC statuses ([`status`]), and [`serve`], the tonic server on the broker's gRPC
//! port. Comes next (issue 6): the RocketMQ 5 `apache.rocketmq.v2.MessagingService` on the same
//! server, so the official SDKs connect unchanged, with its Telemetry streams and transaction
//! check-back.
//!
//! # Layout
//!
//! - [`admin`]: [`AdminService`] and [`NodeInfo`]; `admin/convert.rs` holds the wire ↔ core
//!   conversions and the checks of wire fields.
//! - [`status`]: [`RequestError`] and the `ErrorKind` → `tonic::Code` table.
//! - `incoming.rs`: accepted sockets (`TCP_NODELAY`, a pause after accept failures).
//!
//! Depends on `rocketgate-core` and `rocketgate-proto`, never on another gateway. Services hold
//! a cheap-`Clone` [`Broker`] and no state of their own; tonic runs every call on its own task.
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
use std::time::Duration;

use rocketgate_core::Broker;
use tonic::transport::Server;

pub mod admin;
mod incoming;
pub mod status;

pub use admin::{AdminService, NodeInfo};
pub use status::RequestError;

/// HTTP/2 PING interval on idle connections, to find dead peers.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a PING may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent calls (HTTP/2 streams) per connection; more wait for the client's flow control.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The gRPC server failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the broker's gRPC endpoint on `listener` (the [`AdminService`] for now) until
/// `shutdown` completes; then stops accepting, lets in-flight calls finish, and returns. The
/// broker is not shut down: it belongs to the caller.
///
/// Connections get `TCP_NODELAY`, HTTP/2 keepalive PINGs (every 30 s, 10 s to answer) and at
/// most 256 concurrent calls each; every call runs in a `grpc` span naming its method.
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
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gRPC gateway listening");
    }
    Server::builder()
        .trace_fn(|req| tracing::info_span!("grpc", method = %req.uri().path()))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .add_service(AdminService::new(broker, node).into_server())
        .serve_with_incoming_shutdown(incoming::Incoming::new(listener), shutdown)
        .await?;
    tracing::info!("gRPC gateway stopped");
    Ok(())
}
