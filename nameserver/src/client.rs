//! The NameServer client: a broker registers with every NameServer and keeps the registrations
//! alive; brokers, gateways and tools query routes and cluster info with failover, directly or
//! through a [`RouteCache`].
//!
//! Invariants:
//! - registration goes to *every* configured NameServer (they share nothing); a NameServer that
//!   fails or answers `known = false` to a heartbeat is sent the full registration again, so a
//!   restarted NameServer relearns the broker within one heartbeat interval;
//! - registration rounds (the background heartbeat and [`Registration::update_topics`]) are
//!   serialized, so a NameServer never receives an older topic list after a newer one;
//! - queries try one NameServer at a time, starting with the last one that answered, and move
//!   on when one fails or does not know the topic (it may have restarted and not yet relearned
//!   it). [`NameServerClient`] caches nothing; [`RouteCache`] (in `route_cache.rs`) keeps the
//!   last good route of each topic it was asked for and refreshes it in the background, so
//!   callers keep working while every NameServer is down (DESIGN.md "Cluster").
//!
//! A client made [`NameServerClient::with_secret`] signs every RegisterBroker, Heartbeat and
//! UnregisterBroker with the cluster secret ([`crate::secret`]); a [`Registration`] keeps, per
//! NameServer, the registration id that NameServer returned and presents it on every later call.
//!
//! Every call is bounded by `rpc_timeout_ms` (connect included). Concurrency: one background
//! task per [`Registration`], which owns the heartbeat timer; each round calls the NameServers
//! concurrently (a `JoinSet`) while holding the round lock (a `tokio::sync::Mutex` around the
//! registration). Dropping a [`Registration`] stops its task without unregistering. One refresher
//! task per [`RouteCache`] (see its module docs), stopped when its last handle drops. Uses
//! `rocketgate-proto`; never `rocketgate-core`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_client::NameServerClient as RpcClient;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tracing::debug;

use crate::config::ConfigError;
use crate::convert;
use crate::model::{BrokerRegistration, ClusterInfo, InvalidInput, TopicName, TopicRoute};
use crate::secret::{ClusterSecret, Signable};
use crate::service::now_ms;

mod registration;
mod route_cache;

pub use registration::Registration;
pub use route_cache::{RefreshReport, RouteCache, RouteCacheConfig, REFRESH_CONCURRENCY};

/// Most NameServer addresses one client accepts.
pub const MAX_NAMESERVERS: usize = 64;

/// Largest reply accepted, in bytes: a full cluster (1,024 instances with 16 long endpoints
/// each) fits.
pub const MAX_REPLY_BYTES: usize = 32 << 20;

/// Client settings (part of a broker's or gateway's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Every NameServer, as `host:port` (or `http://host:port`).
    pub addresses: Vec<String>,
    /// How often a registered broker heartbeats, in ms (30,000).
    pub heartbeat_interval_ms: u64,
    /// Bound on each call, connection included, in ms (3,000).
    pub rpc_timeout_ms: u64,
    /// Call the NameServers over TLS (not from a file: the node fills it from `[tls]`).
    #[serde(skip)]
    pub tls: Option<ClientTls>,
}

/// TLS of the calls to the NameServers.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA certificates (PEM) the NameServers' certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// A client certificate chain and key (PEM) to present (mTLS), if any.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            heartbeat_interval_ms: 30_000,
            rpc_timeout_ms: 3_000,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// A config for `addresses` with default timings.
    pub fn new(addresses: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            addresses: addresses.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Checks that every value can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad key: no address or more than [`MAX_NAMESERVERS`], or a
    /// zero interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.addresses.is_empty() || self.addresses.len() > MAX_NAMESERVERS {
            return Err(ConfigError {
                key: "addresses",
                reason: format!("1..={MAX_NAMESERVERS} NameServer addresses are needed"),
            });
        }
        for (key, value) in [
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("rpc_timeout_ms", self.rpc_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError {
                    key,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        Ok(())
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client configuration cannot work.
    #[error("invalid NameServer client config: {0}")]
    Config(#[from] ConfigError),
    /// The request breaks a rule before it is sent.
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidInput),
    /// Every NameServer that answered said no broker serves the topic.
    #[error("no live broker serves topic `{0}`")]
    TopicNotFound(TopicName),
    /// One NameServer failed the call.
    #[error("NameServer {address}: {code:?}: {message}")]
    Rpc {
        /// Which NameServer.
        address: String,
        /// The gRPC code (e.g. `InvalidArgument`, `Unavailable`, `DeadlineExceeded`).
        code: Code,
        /// Its message.
        message: String,
    },
    /// A NameServer's reply breaks the protocol.
    #[error("NameServer {address} sent an invalid reply: {source}")]
    BadReply {
        /// Which NameServer.
        address: String,
        /// What is wrong.
        source: InvalidInput,
    },
    /// No NameServer answered; `last` is the last failure.
    #[error("no NameServer answered ({tried} tried); last error: {last}")]
    Unavailable {
        /// How many were tried.
        tried: usize,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The gRPC code of a [`ClientError::Rpc`] (or of the last failure of
    /// [`ClientError::Unavailable`]).
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            Self::Unavailable { last, .. } => last.code(),
            _ => None,
        }
    }
}

/// One NameServer: its address and a lazily connected channel.
/// A status's message with its innermost cause (`tcp connect error: Connection refused (os
/// error 111)`), so a transport failure says what went wrong.
fn describe(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    let mut cause = std::error::Error::source(status);
    let mut innermost = None;
    while let Some(e) = cause {
        innermost = Some(e);
        cause = e.source();
    }
    if let Some(e) = innermost {
        let text = e.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
    }
    message
}

#[derive(Debug, Clone)]
struct Server {
    address: String,
    /// Replaced by a fresh connection after a registration timed out (see `register`).
    rpc: Arc<parking_lot::Mutex<RpcClient<Channel>>>,
    /// What a fresh connection needs: the call timeout and TLS.
    timeout: Duration,
    tls: Option<ClientTls>,
    secret: Option<ClusterSecret>,
}

impl Server {
    fn new(
        address: &str,
        timeout: Duration,
        tls: Option<ClientTls>,
        secret: Option<ClusterSecret>,
    ) -> Result<Self, ConfigError> {
        let rpc = RpcClient::new(channel(address, timeout, tls.as_ref())?)
            .max_decoding_message_size(MAX_REPLY_BYTES);
        Ok(Self {
            address: address.to_owned(),
            rpc: Arc::new(parking_lot::Mutex::new(rpc)),
            timeout,
            tls,
            secret,
        })
    }

    /// The client of the current connection.
    fn rpc(&self) -> RpcClient<Channel> {
        self.rpc.lock().clone()
    }

    /// Drops the current connection: the next call connects anew. For a connection that a
    /// NameServer accepted late (its backlog, before it served) and never answers on.
    fn reconnect(&self) {
        if let Ok(c) = channel(&self.address, self.timeout, self.tls.as_ref()) {
            *self.rpc.lock() = RpcClient::new(c).max_decoding_message_size(MAX_REPLY_BYTES);
        }
    }

    fn error(&self, status: &tonic::Status) -> ClientError {
        ClientError::Rpc {
            address: self.address.clone(),
            code: status.code(),
            message: describe(status),
        }
    }

    fn sign<R: Signable>(&self, request: &mut R) {
        if let Some(secret) = &self.secret {
            secret.sign(request, now_ms());
        }
    }

    /// Registers (renewing registration `id`, empty for none); returns the expiry and the
    /// registration id to present from now on.
    async fn register(
        &self,
        mut request: pb::RegisterBrokerRequest,
        id: String,
    ) -> Result<(u64, String), ClientError> {
        request.registration_id = id;
        self.sign(&mut request);
        let reply = self.rpc().register_broker(request).await;
        if let Err(status) = &reply {
            if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) {
                self.reconnect();
            }
        }
        let reply = reply.map_err(|s| self.error(&s))?.into_inner();
        Ok((reply.broker_expiry_ms, reply.registration_id))
    }

    async fn heartbeat(&self, broker: pb::BrokerIdentity, id: String) -> Result<bool, ClientError> {
        let mut request = pb::HeartbeatRequest {
            broker: Some(broker),
            registration_id: id,
            signature: None,
        };
        self.sign(&mut request);
        let reply = self.rpc().heartbeat(request).await;
        Ok(reply.map_err(|s| self.error(&s))?.into_inner().known)
    }

    async fn unregister(
        &self,
        broker: pb::BrokerIdentity,
        id: String,
    ) -> Result<bool, ClientError> {
        let mut request = pb::UnregisterBrokerRequest {
            broker: Some(broker),
            registration_id: id,
            signature: None,
        };
        self.sign(&mut request);
        let reply = self.rpc().unregister_broker(request).await;
        Ok(reply.map_err(|s| self.error(&s))?.into_inner().removed)
    }
}

/// A client of several NameServers; cheap to clone.
#[derive(Debug, Clone)]
pub struct NameServerClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    servers: Vec<Server>,
    heartbeat_interval: Duration,
    /// Index of the NameServer that last answered a query.
    preferred: AtomicUsize,
}

pub(crate) fn channel(
    address: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Channel, ConfigError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if address.contains("://") {
        address.to_owned()
    } else {
        format!("{scheme}://{address}")
    };
    let invalid = |e: &dyn std::fmt::Display| ConfigError {
        key: "addresses",
        reason: format!("`{address}` is not a valid address: {e}"),
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(|e| invalid(&e))?;
    if let Some(tls) = tls {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(config).map_err(|e| invalid(&e))?;
    }
    Ok(endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

impl NameServerClient {
    /// A client of the NameServers in `config`. Connections are made on first use, so this
    /// succeeds while they are down.
    ///
    /// # Errors
    /// [`ClientError::Config`] for an invalid config or address.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        Self::with_secret(config, None)
    }

    /// A client of the NameServers in `config` that signs broker registrations, heartbeats and
    /// unregistrations with `secret` (what a NameServer with a cluster secret requires; queries
    /// are never signed).
    ///
    /// # Errors
    /// [`ClientError::Config`] for an invalid config or address.
    pub fn with_secret(
        config: &ClientConfig,
        secret: Option<ClusterSecret>,
    ) -> Result<Self, ClientError> {
        config.validate()?;
        let timeout = Duration::from_millis(config.rpc_timeout_ms);
        let servers = config
            .addresses
            .iter()
            .map(|address| Server::new(address, timeout, config.tls.clone(), secret.clone()))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Self {
            inner: Arc::new(ClientInner {
                servers,
                heartbeat_interval: Duration::from_millis(config.heartbeat_interval_ms),
                preferred: AtomicUsize::new(0),
            }),
        })
    }

    /// The NameServer addresses, in configuration order.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.inner.servers.iter().map(|s| s.address.as_str())
    }

    /// The NameServers in query order: the preferred one first.
    fn query_order(&self) -> impl Iterator<Item = (usize, &Server)> {
        let n = self.inner.servers.len();
        let start = self.inner.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |k| {
            let i = (start + k) % n;
            (i, &self.inner.servers[i])
        })
    }

    /// The route of `topic`, from the first NameServer that knows it.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for an invalid topic name; [`ClientError::TopicNotFound`] when
    /// every NameServer that answered does not know the topic; [`ClientError::Unavailable`] when
    /// none answered; [`ClientError::BadReply`] for a reply that breaks the protocol.
    pub async fn route(&self, topic: &str) -> Result<TopicRoute, ClientError> {
        let topic = TopicName::new(topic)?;
        let mut not_found = false;
        let mut last = None;
        let mut tried = 0;
        for (i, server) in self.query_order() {
            tried += 1;
            let request = pb::QueryRouteRequest {
                topic: topic.to_string(),
            };
            match server.rpc().query_route(request).await {
                Ok(reply) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return convert::route_from_proto(reply.into_inner()).map_err(|source| {
                        ClientError::BadReply {
                            address: server.address.clone(),
                            source,
                        }
                    });
                }
                Err(s) if s.code() == Code::NotFound => not_found = true,
                Err(s) if s.code() == Code::InvalidArgument => return Err(server.error(&s)),
                Err(s) => {
                    debug!(nameserver = %server.address, code = ?s.code(), "route query failed; trying the next NameServer");
                    last = Some(server.error(&s));
                }
            }
        }
        if not_found {
            return Err(ClientError::TopicNotFound(topic));
        }
        Err(unavailable(tried, last))
    }

    /// Every live broker, from the first NameServer that answers.
    ///
    /// # Errors
    /// [`ClientError::Unavailable`] when none answered; [`ClientError::BadReply`] for a reply
    /// that breaks the protocol.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        let mut last = None;
        let mut tried = 0;
        for (i, server) in self.query_order() {
            tried += 1;
            match server.rpc().cluster_info(pb::ClusterInfoRequest {}).await {
                Ok(reply) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return convert::cluster_info_from_proto(reply.into_inner()).map_err(
                        |source| ClientError::BadReply {
                            address: server.address.clone(),
                            source,
                        },
                    );
                }
                Err(s) => last = Some(server.error(&s)),
            }
        }
        Err(unavailable(tried, last))
    }

    /// Registers a broker instance with every NameServer and starts heartbeating in a background
    /// task (every `heartbeat_interval_ms`), registering again wherever a NameServer failed or
    /// forgot it. NameServers that cannot be reached now are retried on every heartbeat, so this
    /// succeeds while they are down.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `InvalidArgument` when a NameServer refuses the registration
    /// itself, or `Unauthenticated` when it refuses its signature (a broker configuration error:
    /// no or another cluster secret, or a clock far off); nothing keeps running then. A
    /// NameServer that answers `FailedPrecondition` because the instance is still registered by
    /// someone else (this broker's previous run, crashed) is retried on every heartbeat until
    /// that registration expires.
    pub async fn register(
        &self,
        registration: BrokerRegistration,
    ) -> Result<Registration, ClientError> {
        registration::start(self.clone(), registration).await
    }
}

fn unavailable(tried: usize, last: Option<ClientError>) -> ClientError {
    ClientError::Unavailable {
        tried,
        last: Box::new(last.unwrap_or(ClientError::Rpc {
            address: String::new(),
            code: Code::Unavailable,
            message: "no NameServer configured".into(),
        })),
    }
}
