//! The state every handler shares: the broker handle, the configuration, the metrics handle,
//! the registered transaction callbacks, the in-flight limit and the shutdown signal.
//!
//! Concurrency: cheap `Clone` (one `Arc`); the callback table is behind a `parking_lot::Mutex`
//! held only to read or replace an entry; the shutdown signal is a `watch` channel that
//! WebSocket connections listen to (they would otherwise keep a graceful shutdown waiting).

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use rocketgate_core::Broker;
use tokio::sync::{watch, Semaphore};

use crate::callback::{Registered, Resolver};
use crate::config::HttpConfig;

/// Shared handler state.
#[derive(Clone)]
pub struct AppState {
    /// The broker.
    pub broker: Broker,
    /// Configuration.
    pub config: Arc<HttpConfig>,
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Option<PrometheusHandle>,
    /// This broker's group and NameServers (the composition root gives them).
    cluster: Option<crate::cluster::Cluster>,
    /// `https` when the listener serves TLS, else `http` (the scheme of advertised URLs).
    scheme: &'static str,
    callbacks: Mutex<BTreeMap<String, Registered>>,
    in_flight: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    http: reqwest::Client,
}

impl AppState {
    /// New state.
    pub fn new(
        broker: Broker,
        config: HttpConfig,
        metrics: Option<PrometheusHandle>,
        cluster: Option<crate::cluster::Cluster>,
        tls: bool,
    ) -> Self {
        let (stop, _) = watch::channel(false);
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(config.callback_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(Resolver {
                allowed: Arc::new(config.callback_allowed_hosts.clone()),
            }))
            .build()
            .unwrap_or_default();
        Self {
            broker,
            inner: Arc::new(Inner {
                metrics,
                cluster,
                scheme: if tls { "https" } else { "http" },
                callbacks: Mutex::new(BTreeMap::new()),
                in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
                stop,
                http,
            }),
            config: Arc::new(config),
        }
    }

    /// The scheme clients reach this gateway (and, as every node of a cluster shares one TLS
    /// setting, its peers) with: `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        self.inner.scheme
    }

    /// This broker's group and NameServers, when the node gave them.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.inner.cluster.as_ref()
    }

    /// The Prometheus handle, when the composition root installed the recorder.
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// The in-flight request limit.
    pub fn in_flight(&self) -> &Arc<Semaphore> {
        &self.inner.in_flight
    }

    /// The HTTP client of transaction callbacks.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Registered callbacks: producer group → URL and owner.
    pub fn callbacks(&self) -> &Mutex<BTreeMap<String, Registered>> {
        &self.inner.callbacks
    }

    /// A receiver that turns `true` when the server stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// Tells long-lived connections to close.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }
}
