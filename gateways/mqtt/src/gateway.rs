//! [`MqttGateway`]: MQTT over TCP and over WebSocket as one [`Gateway`] of the composition
//! root. It binds two endpoints, `mqtt` then `mqtt_ws`, and, once served, runs
//! [`crate::serve`] on both unchanged (through `server::serve_ready`, which fires the
//! gateway's `Ready` once both accept: after the retained messages and sessions are loaded).
//!
//! This file only adapts; it must not grow protocol logic or touch the server, the sessions or
//! the connections.

use std::net::SocketAddr;

use rocketgate_core::Broker;
use rocketgate_gateway_kit::{
    BoundGateway, BoundListener, BoxFuture, Endpoint, Gateway, GatewayError, Ready, Shutdown,
    TlsAcceptor,
};

use crate::config::MqttConfig;

/// The MQTT gateway, configured, not yet listening.
#[derive(Debug)]
pub struct MqttGateway {
    listen: SocketAddr,
    ws_listen: SocketAddr,
    config: MqttConfig,
    tls: crate::server::Tls,
}

impl MqttGateway {
    /// A gateway to listen for MQTT over TCP on `listen` and over WebSocket (path `/mqtt`) on
    /// `ws_listen`, with `config`.
    pub fn new(listen: SocketAddr, ws_listen: SocketAddr, config: MqttConfig) -> Self {
        Self {
            listen,
            ws_listen,
            config,
            tls: crate::server::Tls::default(),
        }
    }

    /// Serves MQTT over TLS on the TCP listener with `tcp` (ALPN `mqtt`) and secure WebSocket
    /// on the WebSocket listener with `ws` (ALPN `http/1.1`); `None` serves plain.
    #[must_use]
    pub fn with_tls(mut self, tcp: Option<TlsAcceptor>, ws: Option<TlsAcceptor>) -> Self {
        self.tls = crate::server::Tls { tcp, ws };
        self
    }
}

impl Gateway for MqttGateway {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn bind(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn BoundGateway>, GatewayError>> {
        Box::pin(async move {
            let tcp = BoundListener::bind("mqtt", self.listen).await?;
            let ws = BoundListener::bind("mqtt_ws", self.ws_listen).await?;
            Ok(Box::new(BoundMqtt {
                tcp,
                ws,
                config: self.config,
                tls: self.tls,
            }) as Box<dyn BoundGateway>)
        })
    }
}

/// The bound MQTT gateway.
struct BoundMqtt {
    tcp: BoundListener,
    ws: BoundListener,
    config: MqttConfig,
    tls: crate::server::Tls,
}

impl BoundGateway for BoundMqtt {
    fn endpoints(&self) -> Vec<Endpoint> {
        vec![self.tcp.endpoint(), self.ws.endpoint()]
    }

    fn serve(
        self: Box<Self>,
        broker: Broker,
        shutdown: Shutdown,
        ready: Ready,
    ) -> BoxFuture<'static, Result<(), GatewayError>> {
        Box::pin(async move {
            crate::server::serve_ready(
                Some(self.tcp.into_inner()),
                Some(self.ws.into_inner()),
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
