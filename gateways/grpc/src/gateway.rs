//! [`GrpcGateway`]: the broker's gRPC endpoint (`BrokerAdmin` and the RocketMQ 5
//! `MessagingService`) as a [`Gateway`] of the composition root. It binds the `grpc` endpoint
//! and, once served, runs [`crate::serve_with`] unchanged (through `serve_ready`, which also
//! fires the gateway's `Ready` when it accepts).
//!
//! The [`NodeInfo`] the services answer with names every endpoint of the node, so the node can
//! only build it once all gateways are bound: the constructor takes the receiving half of a
//! oneshot channel, and [`BoundGateway::serve`] waits for it (the node sends it before serving;
//! a node that drops the sender gets [`GatewayError::NotGiven`]). This file only adapts; it must
//! not grow protocol logic or touch the services.

use std::net::SocketAddr;
use std::sync::Arc;

use rocketgate_core::Broker;
use rocketgate_gateway_kit::{
    BoundGateway, BoundListener, BoxFuture, Endpoint, Gateway, GatewayError, Ready, Shutdown,
    TlsAcceptor,
};
use tokio::sync::oneshot;

use rocketgate_nameserver::listener::ServerTls;
use rocketgate_nameserver::ConnectionLimits;

use crate::{serve_ready, MessagingConfig, NodeInfo};

/// The gRPC gateway, configured, not yet listening.
#[derive(Debug)]
pub struct GrpcGateway {
    listen: SocketAddr,
    messaging: MessagingConfig,
    connections: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    node: oneshot::Receiver<NodeInfo>,
}

impl GrpcGateway {
    /// A gateway to listen on `listen` with the RocketMQ 5 protocol configured by `messaging`;
    /// `node` delivers the node's description once every endpoint is bound.
    pub fn new(
        listen: SocketAddr,
        messaging: MessagingConfig,
        node: oneshot::Receiver<NodeInfo>,
    ) -> Self {
        Self {
            listen,
            messaging,
            connections: ConnectionLimits::default(),
            tls: None,
            node,
        }
    }

    /// Serves TLS with `tls` (its ALPN must offer `h2`); `None` serves plain TCP.
    #[must_use]
    pub fn with_tls(mut self, tls: Option<TlsAcceptor>) -> Self {
        self.tls = tls;
        self
    }

    /// Holds the listener's connections to `connections` (default: [`ConnectionLimits`]'s).
    #[must_use]
    pub fn with_connection_limits(mut self, connections: ConnectionLimits) -> Self {
        self.connections = connections;
        self
    }
}

impl Gateway for GrpcGateway {
    fn name(&self) -> &'static str {
        "grpc"
    }

    fn bind(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn BoundGateway>, GatewayError>> {
        Box::pin(async move {
            let listener = BoundListener::bind("grpc", self.listen).await?;
            Ok(Box::new(BoundGrpc {
                listener,
                messaging: self.messaging,
                connections: self.connections,
                tls: self.tls,
                node: self.node,
            }) as Box<dyn BoundGateway>)
        })
    }
}

/// The bound gRPC gateway.
struct BoundGrpc {
    listener: BoundListener,
    messaging: MessagingConfig,
    connections: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    node: oneshot::Receiver<NodeInfo>,
}

impl BoundGateway for BoundGrpc {
    fn endpoints(&self) -> Vec<Endpoint> {
        vec![self.listener.endpoint()]
    }

    fn serve(
        self: Box<Self>,
        broker: Broker,
        shutdown: Shutdown,
        ready: Ready,
    ) -> BoxFuture<'static, Result<(), GatewayError>> {
        Box::pin(async move {
            let node = self.node.await.map_err(|_| GatewayError::NotGiven {
                gateway: "grpc",
                what: "the node's description",
            })?;
            serve_ready(
                self.listener.into_inner(),
                broker,
                node,
                self.messaging,
                self.connections,
                self.tls
                    .map(|t| Arc::new(crate::auth::KitTls(t)) as Arc<dyn ServerTls>),
                shutdown.wait(),
                || ready.accepting(),
            )
            .await
            .map_err(GatewayError::serve)
        })
    }
}
