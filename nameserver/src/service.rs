//! The `rocketgate.cluster.v1.NameServer` gRPC service: decodes requests, applies them to the
//! [`RouteTables`], encodes replies, and runs the expiry scan.
//!
//! Invariants: with a cluster secret configured, RegisterBroker, Heartbeat and UnregisterBroker
//! are checked for a valid, fresh signature ([`crate::secret`]) never accepted before
//! ([`crate::replay`]) before anything else, and refused with UNAUTHENTICATED otherwise;
//! QueryRoute and ClusterInfo stay open (clients need them). A RegisterBroker carries what the
//! tables need to recognise a broker restarted after a crash ([`Registrant`]): whether it was
//! signed, the peer's IP address and the BLAKE3 of its verified client certificate (mTLS).
//! Every request is then fully checked by `convert.rs` (counts first, then names, endpoints and
//! enum values) before the tables change, so a refused request changes nothing. Refusals map to
//! gRPC codes: [`InvalidInput`] → INVALID_ARGUMENT (the message names the field),
//! [`RouteError::TopicNotFound`] → NOT_FOUND, [`RouteError::ClusterConflict`],
//! [`RouteError::Held`] and [`RouteError::EndpointHeld`] → FAILED_PRECONDITION,
//! [`RouteError::NotRegistrant`] → PERMISSION_DENIED, [`RouteError::TooManyBrokers`] →
//! RESOURCE_EXHAUSTED. Requests larger than `limits.max_request_bytes` are refused by tonic with
//! OUT_OF_RANGE before decoding. Refused signatures and registration ids are logged (with the
//! peer address) on the `audit` target, never the MAC or an id.
//!
//! Concurrency: one `parking_lot::Mutex` around the tables and one around the replay guard,
//! each taken for one pure operation only, never together and never across an `.await`; tonic
//! runs handlers on its own tasks. The expiry scan is
//! the future returned by [`NameServerService::run_expiry`], driven by whoever serves (see
//! [`crate::serve`]). Depends on `rocketgate-proto` and tonic only, never on `rocketgate-core`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_server::{NameServer, NameServerServer};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError};
use crate::convert;
use crate::listener::ConnectionInfo;
use crate::model::{BrokerIdentity, InvalidInput, TopicName};
use crate::replay::ReplayGuard;
use crate::route::{Origin, Registrant, RouteError, RouteTables, Timestamp};
use crate::secret::{RegistrationId, Signable, SignatureError};

/// The NameServer service: cheap to clone (all clones share one set of tables).
#[derive(Debug, Clone)]
pub struct NameServerService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    tables: Mutex<RouteTables>,
    replays: Mutex<ReplayGuard>,
}

fn invalid(err: InvalidInput) -> Status {
    debug!(field = %err.field, reason = %err.reason, "refused invalid request");
    Status::invalid_argument(err.to_string())
}

fn route_status(err: RouteError) -> Status {
    match &err {
        RouteError::TopicNotFound(_) => Status::not_found(err.to_string()),
        RouteError::ClusterConflict { .. } => {
            warn!(error = %err, "refused registration");
            Status::failed_precondition(err.to_string())
        }
        RouteError::TooManyBrokers { .. } => {
            warn!(error = %err, "refused registration");
            Status::resource_exhausted(err.to_string())
        }
        RouteError::Held(_) | RouteError::EndpointHeld { .. } => {
            warn!(target: "audit", error = %err, "refused a registration of a live broker");
            Status::failed_precondition(err.to_string())
        }
        RouteError::NotRegistrant(_) => {
            warn!(target: "audit", error = %err, "refused a request of a non-registrant");
            Status::permission_denied(err.to_string())
        }
    }
}

/// The wall clock in ms since the Unix epoch (what signatures are checked against).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The registration id a request presents: none when empty.
fn presented(text: &str) -> Result<Option<RegistrationId>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    RegistrationId::parse(text).map(Some).ok_or_else(|| {
        invalid(InvalidInput::new(
            "registration_id",
            "expected 32 hex digits (the id RegisterBroker returned)",
        ))
    })
}

impl NameServerService {
    /// A service with empty tables.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` does not validate.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let tables = Mutex::new(RouteTables::new(config.limits.max_brokers));
        let replays = Mutex::new(ReplayGuard::new(
            config.max_clock_skew_ms,
            config.limits.max_remembered_signatures,
        ));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                tables,
                replays,
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The tonic server for this service, with the request size limit applied; add it to a
    /// `tonic::transport::Server` (and drive [`Self::run_expiry`] beside it).
    pub fn into_server(self) -> NameServerServer<Self> {
        let max = self.shared.config.limits.max_request_bytes;
        NameServerServer::new(self).max_decoding_message_size(max)
    }

    /// With a cluster secret, checks `request`'s signature (UNAUTHENTICATED when it is missing,
    /// forged, stale or replayed) and returns `true`; without one, accepts anything (`false`).
    fn authenticate<R: Signable>(
        &self,
        request: &R,
        peer: Option<SocketAddr>,
    ) -> Result<bool, Status> {
        let config = &self.shared.config;
        let Some(secret) = &config.cluster_secret else {
            return Ok(false);
        };
        let now = now_ms();
        let checked = secret
            .verify(request, now, config.max_clock_skew_ms)
            .and_then(|()| {
                let signature = request.signature().ok_or(SignatureError::Missing)?;
                let mac = <[u8; 32]>::try_from(signature.mac.as_slice())
                    .map_err(|_| SignatureError::Invalid)?;
                self.shared
                    .replays
                    .lock()
                    .admit(signature.timestamp_ms, mac, now)
                    .map_err(|_| SignatureError::Replayed)
            });
        checked.map(|()| true).map_err(|err| {
            warn!(target: "audit", method = R::METHOD, peer = ?peer, error = %err, "refused an unauthenticated broker request");
            Status::unauthenticated(err.to_string())
        })
    }

    /// Runs `f` on the tables (for inspection, e.g. in tests).
    pub fn with_tables<T>(&self, f: impl FnOnce(&RouteTables) -> T) -> T {
        f(&self.shared.tables.lock())
    }

    /// Drops every instance silent for longer than `broker_expiry_ms` at `now`; returns them.
    pub fn expire(&self, now: Timestamp) -> Vec<BrokerIdentity> {
        let expiry = self.shared.config.broker_expiry();
        let removed = self.shared.tables.lock().expire(now, expiry);
        for broker in &removed {
            info!(broker = %broker, "broker expired");
        }
        removed
    }

    /// The expiry scan: calls [`Self::expire`] every `scan_interval_ms`. Never completes; drop
    /// it to stop.
    pub fn run_expiry(&self) -> impl Future<Output = ()> + Send + 'static {
        let service = self.clone();
        async move {
            let period = service.shared.config.scan_interval();
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                service.expire(Timestamp::now());
            }
        }
    }
}

#[tonic::async_trait]
impl NameServer for NameServerService {
    async fn register_broker(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerResponse>, Status> {
        let peer = request.remote_addr();
        let certificate = request
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(|info| {
                info.peer_certificates()?
                    .first()
                    .map(|leaf| *blake3::hash(leaf).as_bytes())
            });
        let request = request.into_inner();
        let signed = self.authenticate(&request, peer)?;
        let registrant = Registrant {
            presented: presented(&request.registration_id)?,
            origin: Origin {
                peer_ip: peer.map(|p| p.ip()),
                certificate,
            },
            signed,
        };
        let registration = convert::registration_from_proto(request, &self.shared.config.limits)
            .map_err(invalid)?;
        let identity = registration.identity.clone();
        let topics = registration.topics.len();
        let fresh = RegistrationId::random().map_err(|e| {
            warn!(error = %e, "no random registration id");
            Status::unavailable("the NameServer cannot make a registration id now")
        })?;
        let outcome = self
            .shared
            .tables
            .lock()
            .register(registration, registrant, fresh, Timestamp::now())
            .map_err(route_status)?;
        if outcome.restarted {
            info!(target: "audit", broker = %identity, peer = ?peer, topics, "broker restarted: its stale registration was replaced (same endpoints, address and secret)");
        } else if outcome.new {
            info!(broker = %identity, peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()), topics, routes_updated = outcome.routes_updated, "broker registered");
        } else {
            debug!(broker = %identity, topics, routes_updated = outcome.routes_updated, "broker re-registered");
        }
        for id in &outcome.displaced {
            info!(broker = %identity, replaced_id = %id, "broker changed role; old entry replaced");
        }
        Ok(Response::new(pb::RegisterBrokerResponse {
            broker_expiry_ms: self.shared.config.broker_expiry_ms,
            registration_id: outcome.registration_id.to_string(),
        }))
    }

    async fn unregister_broker(
        &self,
        request: Request<pb::UnregisterBrokerRequest>,
    ) -> Result<Response<pb::UnregisterBrokerResponse>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        self.authenticate(&request, peer)?;
        let registrant = presented(&request.registration_id)?;
        let identity = convert::identity_from_proto(request.broker).map_err(invalid)?;
        let removed = self
            .shared
            .tables
            .lock()
            .unregister(&identity, registrant)
            .map_err(route_status)?;
        info!(broker = %identity, peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()), removed, "broker unregistered");
        Ok(Response::new(pb::UnregisterBrokerResponse { removed }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        self.authenticate(&request, peer)?;
        let registrant = presented(&request.registration_id)?;
        let identity = convert::identity_from_proto(request.broker).map_err(invalid)?;
        let known = self
            .shared
            .tables
            .lock()
            .heartbeat(&identity, registrant, Timestamp::now())
            .map_err(route_status)?;
        if !known {
            debug!(broker = %identity, "heartbeat from an unknown broker");
        }
        Ok(Response::new(pb::HeartbeatResponse { known }))
    }

    async fn query_route(
        &self,
        request: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, Status> {
        let topic = TopicName::new(request.into_inner().topic).map_err(invalid)?;
        let route = self
            .shared
            .tables
            .lock()
            .route(&topic)
            .map_err(route_status)?;
        Ok(Response::new(convert::route_to_proto(&route)))
    }

    async fn cluster_info(
        &self,
        _request: Request<pb::ClusterInfoRequest>,
    ) -> Result<Response<pb::ClusterInfoResponse>, Status> {
        let info = self.shared.tables.lock().cluster_info();
        Ok(Response::new(convert::cluster_info_to_proto(&info)))
    }
}
