//! The RocketMQ 5 `apache.rocketmq.v2.MessagingService` on the core [`Broker`]: what the
//! official SDKs (Rust `rocketmq` 5.0.0, Java, Python, Node) speak. The protocol brief
//! (`grpc-v2.md`) is the spec; every rule it marks MUST holds here.
//!
//! # Layout
//!
//! - this file: [`MessagingService`]; the trait impl only reads the request metadata and
//!   delegates to one module per RPC family. `config.rs`: [`MessagingConfig`].
//! - `code.rs`: core error → v2 `Code`, status builders; `metadata.rs`: `x-mq-client-id`,
//!   `grpc-timeout`; `convert.rs`: v2 ↔ core messages, timestamps, durations; `digest.rs`:
//!   the MD5 body digest of delivered messages.
//! - `clients.rs`: per-client state (settings, Telemetry senders, producer topics);
//!   `renew.rs`: invisibility renewed for `auto_renew` (push) consumers.
//! - `route.rs` (QueryRoute, QueryAssignment), `send.rs` (SendMessage), `receive.rs`
//!   (ReceiveMessage), `ack.rs` (AckMessage, ChangeInvisibleDuration, Forward to DLQ),
//!   `transaction.rs` (EndTransaction, check-back), `telemetry.rs` (Telemetry, Heartbeat,
//!   NotifyClientTermination), `pull.rs` (PullMessage and the offset RPCs).
//!
//! # Invariants
//!
//! Application errors travel in the body `Status` (gRPC status OK); a gRPC error status is
//! never used for an application problem. No response leaves with `status` unset, and only
//! the codes of the brief's §2.6 are sent.
//!
//! # Concurrency
//!
//! tonic runs every call on its own task; the service holds an `Arc` of a shared [`Context`]
//! (the `Broker` handle, configuration and the client table behind one mutex). Each Telemetry
//! stream has one task reading its inbound half; all of them end when the server stops.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use rocketgate_core::auth::Principal;
use rocketgate_core::{Broker, Caller, Gateway};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_server::{
    MessagingService as Service, MessagingServiceServer,
};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub use config::{ConfigError, MessagingConfig};

use crate::auth::{Authenticator, CoreAuthenticator};
use crate::decode_limits::{DecodeLimits, Guarded};
use crate::NodeInfo;

mod access;
mod ack;
mod clients;
mod code;
mod config;
mod convert;
mod digest;
mod metadata;
mod pull;
mod receive;
mod renew;
mod route;
mod send;
mod telemetry;
mod transaction;

/// What one RPC works with: the broker handle carrying its caller (the principal the request
/// authenticated as, its address, and this gateway's capability, so core's `Create` check
/// of auto-created groups and its reserved names see who asks), and — through `Deref` — what
/// every RPC shares.
#[derive(Clone)]
pub(crate) struct Context {
    broker: Broker,
    /// Who asks (anonymous while authentication is off) and from where: what a Telemetry
    /// stream's Settings are authorized as.
    who: Principal,
    source: Option<IpAddr>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for Context {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Context {
    /// The same shared state for a request of `who` from `source`.
    fn for_caller(&self, who: Principal, source: Option<IpAddr>) -> Context {
        Context {
            broker: self
                .broker
                .as_caller(Caller::client(Some(who.clone()), source).via(Gateway::Grpc)),
            who,
            source,
            shared: self.shared.clone(),
        }
    }
}

/// What every RPC of the service shares.
pub(crate) struct Shared {
    node: NodeInfo,
    config: MessagingConfig,
    clients: Arc<clients::Clients>,
    /// Messages kept invisible for `auto_renew` consumers.
    renewals: renew::Renewals,
    /// Permits of waiting ReceiveMessage / PullMessage calls (`max_long_polls`).
    polls: Arc<tokio::sync::Semaphore>,
    /// The advertised gRPC endpoint (`host`, `port`), if known.
    endpoint: Option<(String, u16)>,
    /// Becomes `true` when the server stops (ends Telemetry streams).
    stopping: watch::Receiver<bool>,
}

impl Shared {
    /// `host:port` of this broker, for `store_host`.
    fn store_host(&self) -> String {
        match &self.endpoint {
            Some((h, p)) => format!("{h}:{p}"),
            None => self.node.broker_name.clone(),
        }
    }
}

/// The advertised gRPC endpoint of `node` (its `grpc` endpoint), else `fallback` unless it is
/// a wildcard address.
fn advertised_endpoint(
    node: &NodeInfo,
    fallback: Option<std::net::SocketAddr>,
) -> Option<(String, u16)> {
    let from_node = node
        .endpoints
        .iter()
        .filter(|(protocol, _)| protocol.eq_ignore_ascii_case("grpc"))
        .find_map(|(_, address)| {
            let (host, port) = address.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port: u16 = port.parse().ok()?;
            let wildcard = host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified());
            (!host.is_empty() && port > 0 && !wildcard).then(|| (host.to_owned(), port))
        });
    from_node.or_else(|| {
        fallback
            .filter(|a| !a.ip().is_unspecified() && a.port() > 0)
            .map(|a| (a.ip().to_string(), a.port()))
    })
}

/// The `apache.rocketmq.v2.MessagingService` of one broker.
#[derive(Clone)]
pub struct MessagingService {
    ctx: Arc<Context>,
    stop: Arc<watch::Sender<bool>>,
    auth: Arc<dyn Authenticator>,
}

impl std::fmt::Debug for MessagingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingService")
            .field("node", &self.ctx.node)
            .field("config", &self.ctx.config)
            .finish_non_exhaustive()
    }
}

impl MessagingService {
    /// A service for `broker`, advertising `node`'s `grpc` endpoint in routes (or
    /// `listen_addr` when the node names none and it is not a wildcard address).
    pub fn new(
        broker: Broker,
        node: NodeInfo,
        config: MessagingConfig,
        listen_addr: Option<std::net::SocketAddr>,
    ) -> Self {
        let (stop, stopping) = watch::channel(false);
        let endpoint = advertised_endpoint(&node, listen_addr);
        let broker_for_auth = broker.clone();
        Self {
            ctx: Arc::new(Context {
                // Sends carry the gateway's own `__RG_V2_*` properties (core reserves them).
                broker: broker.as_caller(Caller::client(None, None).via(Gateway::Grpc)),
                who: Principal::anonymous(),
                source: None,
                shared: Arc::new(Shared {
                    node,
                    clients: Arc::new(clients::Clients::default()),
                    renewals: renew::Renewals::default(),
                    polls: Arc::new(tokio::sync::Semaphore::new(config.max_long_polls.max(1))),
                    config,
                    endpoint,
                    stopping,
                }),
            }),
            stop: Arc::new(stop),
            auth: Arc::new(CoreAuthenticator::new(broker_for_auth)),
        }
    }

    /// Checks every request with `auth` before serving it (the default checks the core's users
    /// when `auth.enabled` is on).
    #[must_use]
    pub fn with_authenticator(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// An authenticated and authorized request: its client id, and the context whose broker
    /// handle carries who asks (the gateway's own handle while authentication is off: nothing
    /// then depends on the principal). UNAUTHORIZED when the authenticator refuses it,
    /// FORBIDDEN when core does not allow what it `needs`, CLIENT_ID_REQUIRED without
    /// `x-mq-client-id`.
    fn admit<T>(
        &self,
        request: &Request<T>,
        needs: &access::Needs,
    ) -> Result<(String, Context), pb::Status> {
        let metadata = request.metadata();
        let source = request.remote_addr().map(|a| a.ip());
        let who = crate::auth::authenticate_request(self.auth.as_ref(), request)
            .map_err(|e| access::unauthorized(e.to_string()))?;
        access::check(&self.ctx, &who, source, needs)?;
        let id = metadata::client_id(metadata)?;
        let ctx = if self.ctx.broker.auth().enabled() {
            self.ctx.for_caller(who, source)
        } else {
            Context::clone(&self.ctx)
        };
        Ok((id, ctx))
    }

    /// Ends every Telemetry stream (the server is stopping; graceful shutdown would otherwise
    /// wait for clients that never close them).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The tonic service, with the decoding limit raised above the broker's body limit, and
    /// every request checked on its wire bytes before it is decoded ([`DecodeLimits`] from
    /// the broker's `limits`; see [`crate::decode_limits`]).
    pub fn into_server(self) -> Guarded<MessagingServiceServer<Self>> {
        let limits = &self.ctx.broker.config().limits;
        let decode = self
            .ctx
            .config
            .max_request_bytes
            .max(limits.max_body_bytes.saturating_add(1 << 20));
        let limits = DecodeLimits::new(limits);
        Guarded::new(
            MessagingServiceServer::new(self).max_decoding_message_size(decode),
            limits,
            decode,
        )
    }
}

/// A boxed response stream.
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Answers a unary RPC: the request is authenticated and its client id checked first, then
/// `$call` runs with it.
macro_rules! with_client {
    ($svc:ident, $req:ident, $resp:ident, $needs:path, |$id:ident, $ctx:ident| $call:expr) => {{
        let answer = match $svc.admit(&$req, &$needs($req.get_ref())) {
            Ok(($id, $ctx)) => $call,
            #[allow(clippy::needless_update)] // Some responses have only `status`.
            Err(status) => pb::$resp {
                status: Some(status),
                ..Default::default()
            },
        };
        Ok(Response::new(answer))
    }};
}

#[tonic::async_trait]
impl Service for MessagingService {
    async fn query_route(
        &self,
        request: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, Status> {
        with_client!(
            self,
            request,
            QueryRouteResponse,
            access::query_route,
            |_id, ctx| route::query_route(&ctx, request.get_ref()).await
        )
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        with_client!(
            self,
            request,
            HeartbeatResponse,
            access::heartbeat,
            |id, ctx| { telemetry::heartbeat(&ctx, &id, request.get_ref()) }
        )
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let (id, ctx) = match self.admit(&request, &access::send(request.get_ref())) {
            Ok((id, ctx)) => (Ok(id), ctx),
            Err(s) => (Err(s), Context::clone(&self.ctx)),
        };
        let answer = send::send_message(&ctx, id, request.into_inner()).await;
        Ok(Response::new(answer))
    }

    async fn query_assignment(
        &self,
        request: Request<pb::QueryAssignmentRequest>,
    ) -> Result<Response<pb::QueryAssignmentResponse>, Status> {
        with_client!(
            self,
            request,
            QueryAssignmentResponse,
            access::query_assignment,
            |id, ctx| { route::query_assignment(&ctx, &id, request.get_ref()) }
        )
    }

    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        request: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        use pb::receive_message_response::Content;
        let remaining = metadata::remaining(request.metadata());
        let frames = match self.admit(&request, &access::receive(request.get_ref())) {
            Ok((id, ctx)) => {
                let mut stopping = self.ctx.stopping.clone();
                if request.get_ref().auto_renew {
                    renew::Renewals::ensure_task(&self.ctx);
                }
                let receive = receive::receive(&ctx, &id, remaining, request.into_inner());
                tokio::select! {
                    frames = receive => frames,
                    _ = stopping.wait_for(|s| *s) => vec![
                        pb::ReceiveMessageResponse {
                            content: Some(Content::Status(code::status(
                                pb::Code::MessageNotFound,
                                "server stopping",
                            ))),
                        },
                        pb::ReceiveMessageResponse {
                            content: Some(Content::DeliveryTimestamp(convert::now())),
                        },
                    ],
                }
            }
            Err(s) => vec![pb::ReceiveMessageResponse {
                content: Some(Content::Status(s)),
            }],
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(
            frames.into_iter().map(Ok),
        ))))
    }

    async fn ack_message(
        &self,
        request: Request<pb::AckMessageRequest>,
    ) -> Result<Response<pb::AckMessageResponse>, Status> {
        let answer = match self.admit(&request, &access::ack(request.get_ref())) {
            Ok((id, ctx)) => {
                ctx.renewals.seen(&id, ctx.broker.now_ms());
                ack::ack(&ctx, request.into_inner()).await
            }
            Err(s) => pb::AckMessageResponse {
                status: Some(s.clone()),
                entries: request
                    .get_ref()
                    .entries
                    .iter()
                    .map(|e| pb::AckMessageResultEntry {
                        message_id: e.message_id.clone(),
                        receipt_handle: e.receipt_handle.clone(),
                        status: Some(s.clone()),
                    })
                    .collect(),
            },
        };
        Ok(Response::new(answer))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<pb::ForwardMessageToDeadLetterQueueResponse>, Status> {
        with_client!(
            self,
            request,
            ForwardMessageToDeadLetterQueueResponse,
            access::forward_to_dlq,
            |_id, ctx| { ack::forward_to_dlq(&ctx, request.get_ref()).await }
        )
    }

    type PullMessageStream = BoxStream<pb::PullMessageResponse>;

    async fn pull_message(
        &self,
        request: Request<pb::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        let remaining = metadata::remaining(request.metadata());
        let frames = match self.admit(&request, &access::pull(request.get_ref())) {
            Ok((_, ctx)) => pull::pull(&ctx, remaining, request.into_inner()).await,
            Err(s) => vec![pb::PullMessageResponse {
                content: Some(pb::pull_message_response::Content::Status(s)),
            }],
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(
            frames.into_iter().map(Ok),
        ))))
    }

    async fn update_offset(
        &self,
        request: Request<pb::UpdateOffsetRequest>,
    ) -> Result<Response<pb::UpdateOffsetResponse>, Status> {
        with_client!(
            self,
            request,
            UpdateOffsetResponse,
            access::update_offset,
            |_id, ctx| { pull::update_offset(&ctx, request.get_ref()) }
        )
    }

    async fn get_offset(
        &self,
        request: Request<pb::GetOffsetRequest>,
    ) -> Result<Response<pb::GetOffsetResponse>, Status> {
        with_client!(
            self,
            request,
            GetOffsetResponse,
            access::get_offset,
            |_id, ctx| pull::get_offset(&ctx, request.get_ref())
        )
    }

    async fn query_offset(
        &self,
        request: Request<pb::QueryOffsetRequest>,
    ) -> Result<Response<pb::QueryOffsetResponse>, Status> {
        with_client!(
            self,
            request,
            QueryOffsetResponse,
            access::query_offset,
            |_id, ctx| { pull::query_offset(&ctx, request.get_ref()).await }
        )
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        with_client!(
            self,
            request,
            EndTransactionResponse,
            access::end_transaction,
            |_id, ctx| { transaction::end_transaction(&ctx, request.get_ref()).await }
        )
    }

    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn telemetry(
        &self,
        request: Request<tonic::Streaming<pb::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        match self.admit(&request, &Vec::new()) {
            Ok((id, ctx)) => {
                let peer = request.remote_addr();
                let stream = telemetry::open(ctx, id, peer, request.into_inner());
                Ok(Response::new(Box::pin(stream)))
            }
            // No client to attach the stream to: one status frame, then end.
            Err(s) => Ok(Response::new(Box::pin(tokio_stream::iter([Ok(
                pb::TelemetryCommand {
                    status: Some(s),
                    command: None,
                },
            )])))),
        }
    }

    async fn notify_client_termination(
        &self,
        request: Request<pb::NotifyClientTerminationRequest>,
    ) -> Result<Response<pb::NotifyClientTerminationResponse>, Status> {
        with_client!(
            self,
            request,
            NotifyClientTerminationResponse,
            access::notify_termination,
            |id, ctx| { telemetry::notify_termination(&ctx, &id, request.get_ref()) }
        )
    }

    async fn change_invisible_duration(
        &self,
        request: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, Status> {
        with_client!(
            self,
            request,
            ChangeInvisibleDurationResponse,
            access::change_invisible,
            |_id, ctx| { ack::change_invisible_duration(&ctx, request.get_ref()) }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(endpoints: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            cluster: "c".into(),
            broker_name: "b".into(),
            broker_id: 0,
            endpoints: endpoints
                .iter()
                .map(|(p, a)| ((*p).to_owned(), (*a).to_owned()))
                .collect(),
            nameservers: Vec::new(),
            registered_nameservers: Arc::new(|| 0),
            started_at_ms: 0,
            routes: None,
        }
    }

    #[test]
    fn advertised_endpoint_prefers_the_node_and_skips_wildcards() {
        let local: std::net::SocketAddr = ([127, 0, 0, 1], 9).into();
        let wildcard: std::net::SocketAddr = ([0, 0, 0, 0], 9).into();
        let n = node(&[("http", "h:1"), ("GRPC", "broker.local:8081")]);
        assert_eq!(
            advertised_endpoint(&n, Some(local)),
            Some(("broker.local".to_owned(), 8081))
        );
        let n = node(&[("grpc", "0.0.0.0:8081")]);
        assert_eq!(
            advertised_endpoint(&n, Some(local)),
            Some(("127.0.0.1".to_owned(), 9))
        );
        assert_eq!(advertised_endpoint(&n, Some(wildcard)), None);
        let n = node(&[("grpc", "[::1]:7")]);
        assert_eq!(advertised_endpoint(&n, None), Some(("::1".to_owned(), 7)));
    }
}
