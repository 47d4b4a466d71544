//! rocketgate-gateway-http: HTTP access to the core `Broker`.
//!
//! Owns now: the axum server on the broker's HTTP endpoint and its health check,
//! `GET /health`, for load balancers, orchestrators and scripts: `200` with
//! `{"status":"ok", ...}` while the broker accepts writes, `503` with
//! `{"status":"refusing_writes","reason":...}` while the store refuses them (disk full, read-only
//! after an I/O error). Other paths answer `404` with an `application/problem+json` body.
//!
//! Will own (HTTP/WebSocket issue): REST (JSON under `/v1`), problem+json errors for every
//! route, the OpenAPI document, `/metrics`, and the credit-based WebSocket protocol.
//!
//! Depends on `rocketgate-core` only, never on another gateway. Every handler is stateless
//! beyond a `Broker` handle (cheap `Clone`).

use std::future::Future;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rocketgate_core::Broker;

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Accepting or serving connections failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// The router: `GET /health` and a problem+json `404` for everything else.
pub fn router(broker: Broker) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(broker)
}

/// Serves [`router`] on `listener` until `shutdown` completes; then stops accepting and lets
/// requests in flight finish.
///
/// # Errors
/// [`Error::Io`] when the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Broker,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    axum::serve(listener, router(broker))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn health(State(broker): State<Broker>) -> Response {
    let store = broker.store();
    let (min, durable, end) = store.log_offsets();
    let body = |status: &str| {
        serde_json::json!({
            "status": status,
            "commit_log": { "min_offset": min, "durable_offset": durable, "end_offset": end },
            "recovered_after_crash": store.recovery_report().after_crash,
        })
    };
    match store.write_refusal() {
        None => (StatusCode::OK, Json(body("ok"))).into_response(),
        Some(reason) => {
            let mut v = body("refusing_writes");
            v["reason"] = serde_json::Value::String(reason);
            (StatusCode::SERVICE_UNAVAILABLE, Json(v)).into_response()
        }
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": format!("no route for {}", uri.path()),
    });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}
