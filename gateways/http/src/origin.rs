//! Browser defences, checked before anything else of a request: the `Host` it names (DNS
//! rebinding: a page of `evil.example` whose name now resolves to 127.0.0.1 sends
//! `Host: evil.example`) and the `Origin` of browser requests that can change something or open
//! a WebSocket (cross-site requests a page can send without a CORS preflight: a form, a
//! `text/plain` publish, a WebSocket upgrade).
//!
//! - **Host**: allowed when it is `localhost` (or `*.localhost`), a loopback address, the
//!   address the client connected to, or a name of `http.allowed_hosts` (exact, or `*.suffix`;
//!   `*` allows any). A request without `Host` (HTTP/1.0) passes: browsers always send it.
//!   Otherwise `421 host_not_allowed`.
//! - **Origin**: on a WebSocket upgrade and on `POST` / `PUT` / `PATCH` / `DELETE`, an `Origin`
//!   header must be the server's own origin (scheme-default port rules; same host and port as
//!   `Host`), one of `http.allowed_origins` (`*` allows any) or an origin CORS allows
//!   (`http.cors.allowed_origins`, see `cors.rs`: a page allowed to read answers is allowed to
//!   act); otherwise `403 origin_not_allowed`. Requests without `Origin` (curl, SDKs) pass.
//! - CORS headers are only sent for origins `http.cors` allows (`cors.rs`, after this check),
//!   so a page of any other origin cannot read an answer either.
//!
//! Owns no state; reads the configuration, the CORS policy and the connection's local address
//! ([`LocalAddr`], set by `server.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::cors::CorsPolicy;
use crate::error::ApiError;
use crate::state::AppState;

/// What the check reads: the shared state and the CORS policy (none: CORS off).
#[derive(Clone)]
pub(crate) struct Guard {
    pub app: AppState,
    pub cors: Option<Arc<CorsPolicy>>,
}

/// The local address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAddr(pub SocketAddr);

/// `host[:port]` or `[v6][:port]` → (lower-cased host without brackets, port).
fn split(authority: &str) -> (String, Option<u16>) {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_ascii_lowercase(), port);
        }
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_ascii_lowercase(), p.parse().ok()),
        _ => (a.to_ascii_lowercase(), None),
    }
}

fn host_allowed(host: &str, local: Option<IpAddr>, allowed: &[String]) -> bool {
    let (name, _) = split(host);
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        if ip.is_loopback() || Some(ip) == local {
            return true;
        }
    }
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "*"
            || a == name
            || a.strip_prefix("*.")
                .is_some_and(|suffix| name.ends_with(&format!(".{suffix}")))
    })
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a server reached as `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (oh, op) = split(authority);
    let (hh, hp) = split(host);
    oh == hh && op.unwrap_or(default) == hp.unwrap_or(default)
}

/// Whether a browser request from `origin` may go on (see the module doc).
pub(crate) fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    host.is_some_and(|h| same_origin(origin, h))
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

/// The middleware (see the module doc).
pub(crate) async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let state = &guard.app;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let local = req.extensions().get::<LocalAddr>().map(|l| l.0.ip());
    let cfg = &state.config;
    if let Some(h) = &host {
        if !host_allowed(h, local, &cfg.allowed_hosts) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "host_not_allowed",
                "this Host is not served here (http.allowed_hosts)",
            )
            .into_response();
        }
    }
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let unsafe_method = !matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if upgrade || unsafe_method {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let by_cors = guard.cors.as_ref().is_some_and(|c| c.allows_origin(origin));
            if !by_cors && !origin_allowed(origin, host.as_deref(), &cfg.allowed_origins) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "cross-origin requests from this Origin are refused (http.allowed_origins)",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let local: Option<IpAddr> = "10.1.2.3".parse().ok();
        let none: Vec<String> = Vec::new();
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "a.localhost",
            "127.0.0.1:1",
            "[::1]:80",
            "10.1.2.3:8080",
        ] {
            assert!(host_allowed(ok, local, &none), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "10.1.2.4",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(bad, local, &none), "{bad}");
        }
        let names = vec!["broker.example".to_owned(), "*.corp.example".to_owned()];
        assert!(host_allowed("broker.example:8080", None, &names));
        assert!(host_allowed("b1.corp.example", None, &names));
        assert!(!host_allowed("corp.example.evil", None, &names));
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://localhost", "localhost:80"));
        assert!(same_origin("https://b.example", "b.example"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:9999", "127.0.0.1:8080"));
        assert!(!same_origin("null", "127.0.0.1:8080"));
        let allowed = vec!["https://app.example".to_owned()];
        assert!(origin_allowed("https://app.example", Some("x:1"), &allowed));
        assert!(!origin_allowed(
            "https://other.example",
            Some("x:1"),
            &allowed
        ));
    }
}
