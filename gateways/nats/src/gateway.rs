//! [`NatsGateway`]: the NATS listener as one [`Gateway`] of the composition root. It binds one
//! endpoint, `nats`, and, once served, runs [`crate::server::serve_ready`] on it.
//!
//! This file only adapts; it must not grow protocol logic.

use std::net::SocketAddr;

use rocketgate_core::Broker;
use rocketgate_gateway_kit::{
    BoundGateway, BoundListener, BoxFuture, Endpoint, Gateway, GatewayError, Ready, Shutdown,
    TlsAcceptor,
};

use crate::config::NatsConfig;

/// The NATS gateway, configured, not yet listening.
#[derive(Debug)]
pub struct NatsGateway {
    listen: SocketAddr,
    config: NatsConfig,
    tls: Option<TlsAcceptor>,
}

impl NatsGateway {
    /// A gateway to listen for NATS clients on `listen`, with `config`.
    pub fn new(listen: SocketAddr, config: NatsConfig) -> Self {
        Self {
            listen,
            config,
            tls: None,
        }
    }

    /// Serves NATS over TLS with `tls` (`None`: plain).
    #[must_use]
    pub fn with_tls(mut self, tls: Option<TlsAcceptor>) -> Self {
        self.tls = tls;
        self
    }
}

impl Gateway for NatsGateway {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn bind(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn BoundGateway>, GatewayError>> {
        Box::pin(async move {
            let listener = BoundListener::bind("nats", self.listen).await?;
            Ok(Box::new(BoundNats {
                listener,
                config: self.config,
                tls: self.tls,
            }) as Box<dyn BoundGateway>)
        })
    }
}

struct BoundNats {
    listener: BoundListener,
    config: NatsConfig,
    tls: Option<TlsAcceptor>,
}

impl BoundGateway for BoundNats {
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
            crate::server::serve_ready(
                self.listener.into_inner(),
                broker,
                self.config,
                self.tls,
                shutdown.wait(),
                || ready.accepting(),
            )
            .await
            .map_err(GatewayError::serve)
        })
    }
}
