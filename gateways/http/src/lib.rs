//! rocketgate-gateway-http: curl and browsers as first-class clients of the core [`Broker`]:
//! REST (JSON under `/v1`), a credit-based WebSocket protocol at `/v1/ws`, an OpenAPI 3.1
//! document generated from the handlers, Prometheus `/metrics` and health checks.
//!
//! Every handler is a thin translation to the `Broker` API; every failure answers
//! `application/problem+json` with a stable `code` ([`error`]). The full reference (routes,
//! frames, error codes, configuration keys, metric names) is `docs/http.md`.
//!
//! # Layout
//!
//! - [`config`]: [`HttpConfig`], the `[http]` section.
//! - [`error`]: [`ApiError`] / [`Problem`] and the `ErrorKind` → status table.
//! - `extract.rs`: body and query extractors with problem+json rejections and size limits.
//! - [`model`]: the JSON shapes (utoipa `ToSchema`) and their core conversions.
//! - `rest/`: handlers, one module per family (`publish`, `consume`, `admin`, `query`, `ops`);
//!   `callback.rs`: transaction check-back over HTTP; `ws.rs`: the WebSocket protocol;
//!   `cluster.rs`: [`Cluster`], this broker's group and NameServers, for the topic route.
//! - `openapi.rs`: the generated document and the docs page (`/docs`); `server.rs`: the
//!   listener (connection limit), the hyper connection loop (request-head timeout and size),
//!   middleware (in-flight limit, request timeout, metrics), serve.
//! - Security (issue 14): `origin.rs` (Host and Origin checks, first), `cors.rs` (CORS
//!   preflights and headers, `[http.cors]`, off by default), `auth.rs` (credentials
//!   → the core's `Auth`, then the route's rule from `access.rs`), `rest/users.rs` (users,
//!   policies, tokens under `/v1/auth`), `callback/target.rs` (where callbacks may point).
//!   See `docs/security.md`.
//!
//! Routes outside `/v1`: `/healthz`, `/readyz`, `/health`, `/metrics`, `/openapi.json`, `/docs`,
//! `/ui` (the browser example of `examples/browser/`). With `auth.enabled`, all but `/healthz`,
//! `/readyz`, `/openapi.json`, `/docs` and `/ui` need credentials.
//!
//! # Wiring
//!
//! [`serve`] runs with [`HttpConfig::default`] and no Prometheus recorder; [`serve_with`] takes
//! the `[http]` section and the [`PrometheusHandle`] of the recorder the composition root
//! installed. [`router`] / [`router_with`] give the bare router (tests, embedding).
//! [`HttpGateway`] (`gateway.rs`) is [`serve_with`] as a `rocketgate-gateway-kit` `Gateway`,
//! what the composition root builds.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rocketgate_core::{Broker, Config};
//! use rocketgate_gateway_http::{serve_with, HttpConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::default();
//! config.store.data_dir = dir.path().into();
//! config.store.segment_size = 1 << 20;
//! let broker = Broker::open(config)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve_with(listener, broker, HttpConfig::default(), None, async {
//!     let _ = stopped.await;
//! }));
//! let _ = stop.send(());
//! server.await??;
//! # Ok(()) }
//! ```
//!
//! Depends on `rocketgate-core`, `rocketgate-gateway-kit` (the `Gateway` trait) and the
//! NameServer client of `rocketgate-nameserver` (`cluster.rs`: the topic route), never on
//! another gateway.

mod access;
mod auth;
pub mod callback;
mod cluster;
pub mod config;
mod cors;
pub mod error;
mod extract;
pub mod fuzz;
mod gateway;
pub mod model;
mod openapi;
mod origin;
mod rest;
mod rules;
mod server;
mod state;
mod ws;

use std::future::Future;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
pub use metrics_exporter_prometheus::PrometheusHandle;
use rocketgate_core::Broker;
use utoipa_axum::routes;

pub use cluster::Cluster;
pub use config::{ConfigError, CorsConfig, HttpConfig};
pub use error::{ApiError, Problem};
pub use gateway::HttpGateway;
use state::AppState;

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Accepting or serving connections failed.
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
    /// The `[http]` configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The browser example page (`examples/browser/index.html`), served at `/ui`.
const BROWSER_PAGE: &str = include_str!("../../../examples/browser/index.html");

fn build(state: AppState) -> Router {
    // Transaction callbacks registered before a restart (needs the runtime the checkers use).
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => callback::restore(&state, runtime),
        Err(_) => tracing::warn!("built outside a runtime: stored callbacks not registered"),
    }
    let (router, doc) = rest::routes()
        .routes(routes!(ws::upgrade))
        .split_for_parts();
    let doc = openapi::finish(doc, &state);
    let doc = serde_json::to_string(&doc).unwrap_or_default();
    let cors = match cors::CorsPolicy::new(&state.config.cors, state.broker.auth().enabled()) {
        Ok(policy) => policy.map(std::sync::Arc::new),
        Err(e) => {
            // `serve_with` refuses such a configuration; a bare router runs without CORS.
            tracing::error!(error = %e, "invalid [http.cors]; CORS is off");
            None
        }
    };
    let guard = origin::Guard {
        app: state.clone(),
        cors: cors.clone(),
    };
    router
        .route("/health", get(rest::ops::health))
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
        )
        .route("/docs", get(|| async { Html(openapi::DOCS_PAGE) }))
        .route("/ui", get(|| async { Html(BROWSER_PAGE) }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(cors, cors::handle))
        .layer(axum::middleware::from_fn_with_state(guard, origin::check))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            server::guard,
        ))
        .with_state(state)
}

/// The router with the default configuration and no metrics recorder.
pub fn router(broker: Broker) -> Router {
    router_with(broker, HttpConfig::default(), None)
}

/// The router with a configuration and the Prometheus handle `/metrics` renders.
pub fn router_with(
    broker: Broker,
    config: HttpConfig,
    metrics: Option<PrometheusHandle>,
) -> Router {
    build(AppState::new(broker, config, metrics, None, false))
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
    serve_with(listener, broker, HttpConfig::default(), None, shutdown).await
}

/// Serves the gateway with `config` until `shutdown` completes: stops accepting, closes
/// WebSocket connections with 1001, lets requests in flight finish (a long poll ends within
/// `http.max_wait_ms`).
///
/// # Errors
/// [`Error::Config`] for an invalid `config`, [`Error::Io`] when the server fails.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    broker: Broker,
    config: HttpConfig,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_ready(
        listener,
        broker,
        config,
        metrics,
        None,
        None,
        shutdown,
        || {},
    )
    .await
}

/// [`serve_with`], calling `ready` once the endpoint accepts connections (configuration
/// checked, router built): what the node's `ready` waits for ([`HttpGateway`]).
#[allow(clippy::too_many_arguments)] // the public entry points each pass a subset
pub(crate) async fn serve_ready(
    listener: tokio::net::TcpListener,
    broker: Broker,
    config: HttpConfig,
    metrics: Option<PrometheusHandle>,
    tls: Option<rocketgate_gateway_kit::TlsAcceptor>,
    cluster: Option<Cluster>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce() + Send,
) -> Result<(), Error> {
    config.validate()?;
    config.validate_with_auth(broker.auth().enabled())?;
    let state = AppState::new(broker, config, metrics, cluster, tls.is_some());
    let router = build(state.clone());
    ready();
    server::run(listener, state, router, shutdown, tls).await?;
    Ok(())
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no route for {}", uri.path()),
    )
    .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this route",
    )
    .into_response()
}
