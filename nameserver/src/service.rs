//! The `rocketgate.cluster.v1.NameServer` gRPC service: decodes requests, applies them to the
//! [`RouteTables`], encodes replies, and runs the expiry scan.
//!
//! Invariants: every request is fully checked by `convert.rs` (counts first, then names,
//! endpoints and enum values) before the tables change, so a refused request changes nothing.
//! Refusals map to gRPC codes: [`InvalidInput`] → INVALID_ARGUMENT (the message names the field),
//! [`RouteError::TopicNotFound`] → NOT_FOUND, [`RouteError::ClusterConflict`] →
//! FAILED_PRECONDITION, [`RouteError::TooManyBrokers`] → RESOURCE_EXHAUSTED. Requests larger than
//! `limits.max_request_bytes` are refused by tonic with OUT_OF_RANGE before decoding.
//!
//! Concurrency: one `parking_lot::Mutex` around the tables, taken for the pure table operation
//! only and never across an `.await`; tonic runs handlers on its own tasks. The expiry scan is
//! the future returned by [`NameServerService::run_expiry`], driven by whoever serves (see
//! [`crate::serve`]). Depends on `rocketgate-proto` and tonic only, never on `rocketgate-core`.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_server::{NameServer, NameServerServer};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::config::{Config, ConfigError};
use crate::convert;
use crate::model::{BrokerIdentity, InvalidInput, TopicName};
use crate::route::{RouteError, RouteTables, Timestamp};

/// The NameServer service: cheap to clone (all clones share one set of tables).
#[derive(Debug, Clone)]
pub struct NameServerService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    tables: Mutex<RouteTables>,
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
    }
}

impl NameServerService {
    /// A service with empty tables.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` does not validate.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let tables = Mutex::new(RouteTables::new(config.limits.max_brokers));
        Ok(Self {
            shared: Arc::new(Shared { config, tables }),
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
        let registration =
            convert::registration_from_proto(request.into_inner(), &self.shared.config.limits)
                .map_err(invalid)?;
        let identity = registration.identity.clone();
        let topics = registration.topics.len();
        let outcome = self
            .shared
            .tables
            .lock()
            .register(registration, Timestamp::now())
            .map_err(route_status)?;
        if outcome.new {
            info!(broker = %identity, topics, routes_updated = outcome.routes_updated, "broker registered");
        } else {
            debug!(broker = %identity, topics, routes_updated = outcome.routes_updated, "broker re-registered");
        }
        for id in &outcome.displaced {
            info!(broker = %identity, replaced_id = %id, "broker changed role; old entry replaced");
        }
        Ok(Response::new(pb::RegisterBrokerResponse {
            broker_expiry_ms: self.shared.config.broker_expiry_ms,
        }))
    }

    async fn unregister_broker(
        &self,
        request: Request<pb::UnregisterBrokerRequest>,
    ) -> Result<Response<pb::UnregisterBrokerResponse>, Status> {
        let identity =
            convert::identity_from_proto(request.into_inner().broker).map_err(invalid)?;
        let removed = self.shared.tables.lock().unregister(&identity);
        info!(broker = %identity, removed, "broker unregistered");
        Ok(Response::new(pb::UnregisterBrokerResponse { removed }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let identity =
            convert::identity_from_proto(request.into_inner().broker).map_err(invalid)?;
        let known = self
            .shared
            .tables
            .lock()
            .heartbeat(&identity, Timestamp::now());
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
