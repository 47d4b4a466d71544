//! [`HttpGateway`]: REST, WebSocket, `/metrics` and the docs as a [`Gateway`] of the
//! composition root. It binds the `http` endpoint and, once served, runs
//! [`crate::serve_with`] unchanged (through `serve_ready`, which also fires the gateway's
//! `Ready` when it accepts).
//!
//! The Prometheus handle `/metrics` renders belongs to the process (the composition root
//! installs the one recorder), so it is given to the constructor. The node's [`Cluster`] (its
//! group name and NameServers, for the topic route) is only known once every endpoint is
//! bound: [`HttpGateway::with_cluster`] takes the receiving half of a oneshot channel that
//! [`BoundGateway::serve`] waits for (a dropped sender: no cluster, routes are local). This
//! file only adapts; it must not grow routes or touch the server.

use std::net::SocketAddr;

use rocketgate_core::Broker;
use rocketgate_gateway_kit::{
    BoundGateway, BoundListener, BoxFuture, Endpoint, Gateway, GatewayError, Ready, Shutdown,
    TlsAcceptor,
};

use tokio::sync::oneshot;

use crate::{serve_ready, Cluster, HttpConfig, PrometheusHandle};

/// The HTTP gateway, configured, not yet listening.
pub struct HttpGateway {
    listen: SocketAddr,
    config: HttpConfig,
    metrics: Option<PrometheusHandle>,
    tls: Option<TlsAcceptor>,
    cluster: Option<oneshot::Receiver<Cluster>>,
}

impl HttpGateway {
    /// A gateway to listen on `listen` with `config`; `/metrics` renders `metrics` (none: no
    /// recorder data).
    pub fn new(listen: SocketAddr, config: HttpConfig, metrics: Option<PrometheusHandle>) -> Self {
        Self {
            listen,
            config,
            metrics,
            tls: None,
            cluster: None,
        }
    }

    /// Answers topic routes for the node `cluster` delivers once every endpoint is bound
    /// (without: this broker's queues only).
    #[must_use]
    pub fn with_cluster(mut self, cluster: oneshot::Receiver<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Serves HTTPS/WSS with `tls` (ALPN `http/1.1`; `h2` also works); `None` serves plain
    /// HTTP.
    #[must_use]
    pub fn with_tls(mut self, tls: Option<TlsAcceptor>) -> Self {
        self.tls = tls;
        self
    }
}

impl Gateway for HttpGateway {
    fn name(&self) -> &'static str {
        "http"
    }

    fn bind(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn BoundGateway>, GatewayError>> {
        Box::pin(async move {
            let listener = BoundListener::bind("http", self.listen).await?;
            Ok(Box::new(BoundHttp {
                listener,
                config: self.config,
                metrics: self.metrics,
                tls: self.tls,
                cluster: self.cluster,
            }) as Box<dyn BoundGateway>)
        })
    }
}

/// The bound HTTP gateway.
struct BoundHttp {
    listener: BoundListener,
    config: HttpConfig,
    metrics: Option<PrometheusHandle>,
    tls: Option<TlsAcceptor>,
    cluster: Option<oneshot::Receiver<Cluster>>,
}

impl BoundGateway for BoundHttp {
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
            let cluster = match self.cluster {
                Some(given) => given.await.ok(),
                None => None,
            };
            serve_ready(
                self.listener.into_inner(),
                broker,
                self.config,
                self.metrics,
                self.tls,
                cluster,
                shutdown.wait(),
                || ready.accepting(),
            )
            .await
            .map_err(GatewayError::serve)
        })
    }
}
