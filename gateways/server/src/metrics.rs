//! The process's Prometheus recorder: every crate records through the `metrics` facade
//! (core: messages in/out, acks, send time; gateways: connections, requests); this module
//! installs the one recorder (`metrics-exporter-prometheus`) whose handle the HTTP gateway
//! renders at `GET /metrics`, and runs its upkeep (histogram windows) while the node runs.
//!
//! Owns nothing else. Installing is once per process: a second node in the same process (tests)
//! gets no handle, and `/metrics` then answers without recorder data.

use std::time::Duration;

use rocketgate_gateway_http::PrometheusHandle;
use tokio::task::JoinSet;

/// How often the recorder drains its histograms.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the recorder (once per process) and spawns its upkeep into `servers` until `stop`.
pub fn prometheus(
    servers: &mut JoinSet<anyhow::Result<&'static str>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<PrometheusHandle> {
    let handle = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "no Prometheus recorder: /metrics shows no recorded metrics");
            return None;
        }
    };
    let upkeep = handle.clone();
    servers.spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.run_upkeep(),
                () = &mut stop => return Ok("metrics"),
            }
        }
    });
    Some(handle)
}
