//! Operations endpoints: liveness (`/healthz`), readiness (`/readyz`, and the older `/health`
//! with store offsets), Prometheus `/metrics`.
//!
//! `/metrics` renders the recorder the composition root installed (every `rocketgate_*` metric
//! recorded through the `metrics` facade) followed by gauges computed at scrape time from the
//! broker: lag and in-flight messages per group and topic, scheduled messages, pending
//! transactions. Scrape cost is bounded by the number of groups × their topics.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::model::Health;
use crate::state::AppState;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        reason: None,
    })
}

/// Readiness: `200` while the broker accepts writes and makes new messages readable, `503`
/// (`not_ready`) with the core's reason while the store refuses writes (disk full, read-only
/// after an I/O error) or its dispatcher is stalled (a full disk).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready", body = Health)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.broker.storage().not_ready() {
        None => Json(Health {
            status: "ok".into(),
            reason: None,
        })
        .into_response(),
        Some(reason) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason).into_response()
        }
    }
}

/// `GET /health`: readiness with the CommitLog offsets (kept for existing scripts).
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let health = state.broker.storage().health();
    let log = health.log;
    let body = |status: &str| {
        serde_json::json!({
            "status": status,
            "commit_log": {
                "min_offset": log.min,
                "durable_offset": log.durable,
                "end_offset": log.end,
            },
            "recovered_after_crash": health.recovery.after_crash,
        })
    };
    match health.write_refusal.clone() {
        None => (StatusCode::OK, Json(body("ok"))).into_response(),
        Some(reason) => {
            let mut v = body("refusing_writes");
            v["reason"] = serde_json::Value::String(reason);
            (StatusCode::SERVICE_UNAVAILABLE, Json(v)).into_response()
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The scrape-time gauges, in the Prometheus text format.
fn broker_gauges(state: &AppState) -> String {
    let b = &state.broker;
    let mut lag = String::new();
    let mut inflight = String::new();
    for g in b.groups().list() {
        let Ok(topics) = b.groups().topics(&g.name) else {
            continue;
        };
        for t in topics {
            let Ok(queues) = b.consumer().lag(&g.name, &t) else {
                continue;
            };
            let total: u64 = queues
                .iter()
                .map(|q| q.committed.map_or(q.pop_unacked, |_| q.pull_lag))
                .sum();
            let flying: u64 = queues.iter().map(|q| q.pop_inflight).sum();
            let labels = format!("group=\"{}\",topic=\"{}\"", escape(&g.name), escape(&t));
            let _ = writeln!(lag, "rocketgate_consumer_lag{{{labels}}} {total}");
            let _ = writeln!(
                inflight,
                "rocketgate_consumer_inflight{{{labels}}} {flying}"
            );
        }
    }
    let mut out = String::new();
    out.push_str("# HELP rocketgate_consumer_lag Messages left to consume per group and topic (pull lag where offsets are committed, unacknowledged otherwise).\n# TYPE rocketgate_consumer_lag gauge\n");
    out.push_str(&lag);
    out.push_str("# HELP rocketgate_consumer_inflight Messages received and not yet acknowledged per group and topic.\n# TYPE rocketgate_consumer_inflight gauge\n");
    out.push_str(&inflight);
    let _ = writeln!(
        out,
        "# HELP rocketgate_scheduled_pending Scheduled messages not yet delivered.\n# TYPE rocketgate_scheduled_pending gauge\nrocketgate_scheduled_pending {}",
        b.scheduler().pending()
    );
    let _ = writeln!(
        out,
        "# HELP rocketgate_transactions_pending Half messages waiting for a resolution.\n# TYPE rocketgate_transactions_pending gauge\nrocketgate_transactions_pending {}",
        b.transactions().pending()
    );
    out
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics().map(|h| h.render()).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&broker_gauges(&state));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
