//! The process's Prometheus recorder: every crate records through the `metrics` facade
//! (core: messages in/out, acks, send time; gateways: connections, requests); this module
//! installs the one recorder (`metrics-exporter-prometheus`) whose handle the HTTP gateway
//! renders at `GET /metrics`, and runs its upkeep (histogram windows) while the node runs.
//!
//! Owns nothing else. Installing is once per process: a later call (a node changing roles, a
//! slave's read gateways) gets the same handle; if another recorder was installed first, none. Called by `node` only;
//! the upkeep is one task of the node's `JoinSet`, stopped by the node's `Shutdown`.

use std::time::Duration;

use rocketgate_gateway_http::PrometheusHandle;
use rocketgate_gateway_kit::Shutdown;

/// How often the recorder drains its histograms.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the recorder (once per process; later calls get the same handle); `None`, with a
/// warning, when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "no Prometheus recorder: /metrics shows no recorded metrics");
                    None
                }
            }
        })
        .clone()
}

/// Runs the recorder's upkeep until `shutdown`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(UPKEEP);
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = &mut stopped => return,
        }
    }
}
