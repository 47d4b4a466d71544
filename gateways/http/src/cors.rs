//! CORS (`[http.cors]`): which browser pages of other origins may call the API and read its
//! answers. Off by default — no CORS header is ever sent — and on once `allowed_origins` lists
//! an origin.
//!
//! Invariants, with CORS on:
//! - a **preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   here, before authentication (browsers send preflights without credentials): `204` with
//!   `Access-Control-Allow-Origin` (the origin), `-Allow-Methods`, `-Allow-Headers` (the
//!   requested ones), `-Max-Age`, `-Allow-Credentials` when configured, and `Vary`, when the
//!   origin, the method and every requested header are allowed; otherwise `403`
//!   (`origin_not_allowed`, `cors_not_allowed`) with no CORS header, which the Fetch standard's
//!   CORS check treats as a refusal (the browser never sends the request);
//! - any other request whose `Origin` is allowed gets `Access-Control-Allow-Origin`,
//!   `-Expose-Headers` and `-Allow-Credentials` on its answer, whatever the status (so a page
//!   can read a `401` or `403` problem); one from another origin gets no CORS header;
//! - an allowed origin passes the Origin check of `origin.rs` too (WebSocket upgrades and
//!   writes): allowing a page to read is allowing it to act — it could anyway, with a preflight;
//! - `*` answers any origin and is refused with authentication on (the server would hand any
//!   page a user's ambient credentials' answers); credentials are never allowed with `*`.
//!
//! Header computation is tower-http's `CorsLayer`; this module decides admission (origin,
//! method, headers), the `204` and what is left alone. Who calls it: the router in `lib.rs`
//! (between the Host/Origin check and authentication) and `HttpConfig::validate_with_auth`. Owns no
//! state besides the immutable [`CorsPolicy`]; no locks, no I/O.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::CorsConfig;
use crate::error::ApiError;

/// Which origins are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    /// `*`.
    Any,
    /// These, canonical (see [`canonical_origin`]).
    List(Vec<String>),
}

/// A request header a preflight may ask for: a lower-case name, or a prefix (`rg-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeaderPattern {
    Exact(String),
    Prefix(String),
}

impl HeaderPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(n) => n == name,
            Self::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// The CORS rules of a running gateway, checked and built once from [`CorsConfig`].
#[derive(Debug, Clone)]
pub(crate) struct CorsPolicy {
    origins: Origins,
    methods: Vec<Method>,
    headers: Vec<HeaderPattern>,
    layer: CorsLayer,
}

/// `scheme://host[:port]` → its canonical form (lower case, no default port), as browsers
/// send it; `None` for anything else (a path, a user, a wildcard, `null`).
pub(crate) fn canonical_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let bad = |c: char| c.is_whitespace() || c.is_control() || "/?#@*\\,\"".contains(c);
    if !scheme_ok || authority.is_empty() || authority.contains(bad) {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (v6, tail) = rest.split_once(']')?;
            if v6.is_empty()
                || !v6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
            {
                return None;
            }
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.to_owned()),
                None if tail.is_empty() => None,
                None => return None,
            };
            (format!("[{v6}]"), port)
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
            None => (authority.clone(), None),
        },
    };
    let bracketed = host.starts_with('[');
    if host.is_empty() || (!bracketed && host.contains([':', '[', ']'])) {
        return None;
    }
    let default = match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    match port {
        None => Some(format!("{scheme}://{host}")),
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|_| p.chars().all(|c| c.is_ascii_digit()))?;
            if Some(n) == default {
                Some(format!("{scheme}://{host}"))
            } else {
                Some(format!("{scheme}://{host}:{n}"))
            }
        }
    }
}

impl CorsPolicy {
    /// The policy of `cfg`; `None` when CORS is off (no origin listed).
    ///
    /// # Errors
    /// `"<key>: <reason>"`: an origin that is not `scheme://host[:port]` (or `*` alone), `*`
    /// with `auth_enabled` or with `allow_credentials`, an unknown method, a header name that
    /// is not one.
    pub(crate) fn new(cfg: &CorsConfig, auth_enabled: bool) -> Result<Option<Self>, String> {
        let origins = if cfg.allowed_origins.iter().any(|o| o.trim() == "*") {
            if cfg.allowed_origins.len() > 1 {
                return Err("allowed_origins: `*` must be the only entry".into());
            }
            if cfg.allow_credentials {
                return Err("allow_credentials: not with allowed_origins = [\"*\"]".into());
            }
            if auth_enabled {
                return Err(
                    "allowed_origins: `*` (any web page) is refused with authentication \
                     on; list the origins of your pages"
                        .into(),
                );
            }
            Origins::Any
        } else {
            let mut list = Vec::with_capacity(cfg.allowed_origins.len());
            for o in &cfg.allowed_origins {
                let canonical = canonical_origin(o.trim()).ok_or_else(|| {
                    format!(
                        "allowed_origins: `{o}` is not an origin; write it as browsers send \
                         it, scheme://host[:port] with no path, e.g. https://app.example"
                    )
                })?;
                list.push(canonical);
            }
            Origins::List(list)
        };
        let mut methods = Vec::with_capacity(cfg.allowed_methods.len());
        for m in &cfg.allowed_methods {
            let method = match m.to_ascii_uppercase().as_str() {
                "GET" => Method::GET,
                "HEAD" => Method::HEAD,
                "POST" => Method::POST,
                "PUT" => Method::PUT,
                "PATCH" => Method::PATCH,
                "DELETE" => Method::DELETE,
                _ => {
                    return Err(format!(
                        "allowed_methods: `{m}` is not one of GET, HEAD, POST, PUT, PATCH, DELETE"
                    ))
                }
            };
            methods.push(method);
        }
        let mut headers = Vec::with_capacity(cfg.allowed_headers.len());
        for h in &cfg.allowed_headers {
            let lower = h.trim().to_ascii_lowercase();
            let (name, pattern) = match lower.strip_suffix('*') {
                Some(prefix) => (prefix.to_owned(), HeaderPattern::Prefix(prefix.to_owned())),
                None => (lower.clone(), HeaderPattern::Exact(lower.clone())),
            };
            if name.is_empty() || HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("allowed_headers: `{h}` is not a header name"));
            }
            headers.push(pattern);
        }
        let mut exposed = Vec::with_capacity(cfg.exposed_headers.len());
        for h in &cfg.exposed_headers {
            let name = HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("exposed_headers: `{h}` is not a header name"))?;
            exposed.push(name);
        }
        if origins == Origins::List(Vec::new()) {
            return Ok(None);
        }
        Ok(Some(Self::build(origins, methods, headers, exposed, cfg)))
    }

    fn build(
        origins: Origins,
        methods: Vec<Method>,
        headers: Vec<HeaderPattern>,
        exposed: Vec<HeaderName>,
        cfg: &CorsConfig,
    ) -> Self {
        // Admission is decided in `handle`; the layer only writes the headers.
        let allow_origin = match origins {
            Origins::Any => AllowOrigin::any(),
            Origins::List(_) => AllowOrigin::mirror_request(),
        };
        let layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(AllowMethods::list(methods.iter().cloned()))
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list(exposed))
            .max_age(Duration::from_secs(cfg.max_age_secs))
            .allow_credentials(cfg.allow_credentials && origins != Origins::Any);
        Self {
            origins,
            methods,
            headers,
            layer,
        }
    }

    /// Whether a page of `origin` (an `Origin` header) may call the API.
    pub(crate) fn allows_origin(&self, origin: &str) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::List(list) => canonical_origin(origin).is_some_and(|o| list.contains(&o)),
        }
    }

    /// Why a preflight asking for `method` and `headers` (its
    /// `Access-Control-Request-Headers`) is refused, if it is.
    fn refusal(&self, method: &str, headers: &str) -> Option<String> {
        if !self.methods.iter().any(|m| m.as_str() == method) {
            return Some(format!(
                "method `{method}` is not allowed across origins (http.cors.allowed_methods)"
            ));
        }
        for name in headers.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let name = name.to_ascii_lowercase();
            if !self.headers.iter().any(|p| p.matches(&name)) {
                return Some(format!(
                    "header `{name}` is not allowed across origins (http.cors.allowed_headers)"
                ));
            }
        }
        None
    }
}

/// Appends `Vary: Origin`: the answer depends on the `Origin` (a cache must not serve it to
/// a page of another origin).
fn vary_origin(mut response: Response) -> Response {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// The middleware (see the module doc). `policy` is `None` with CORS off: nothing changes.
pub(crate) async fn handle(
    State(policy): State<Option<Arc<CorsPolicy>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(policy) = policy else {
        return next.run(req).await;
    };
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("").to_owned())
    else {
        return vary_origin(next.run(req).await);
    };
    let allowed = policy.allows_origin(&origin);
    let requested = req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD);
    let preflight = req.method() == Method::OPTIONS;
    if preflight {
        let Some(requested) = requested else {
            // Not a preflight: an ordinary OPTIONS, answered by the router, no CORS header.
            return vary_origin(next.run(req).await);
        };
        if !allowed {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "cross-origin requests from this Origin are refused (http.cors.allowed_origins)",
            )
            .into_response();
        }
        let method = requested.to_str().unwrap_or("");
        let headers = req
            .headers()
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect::<Vec<_>>()
            .join(",");
        if let Some(reason) = policy.refusal(method, &headers) {
            return ApiError::new(StatusCode::FORBIDDEN, "cors_not_allowed", reason)
                .into_response();
        }
    } else if !allowed {
        return vary_origin(next.run(req).await);
    }
    let mut service = policy.layer.layer(next);
    let answered = match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
        Ok(()) => service.call(req).await,
        Err(never) => match never {},
    };
    let mut response = match answered {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if preflight {
        // The layer answers a preflight itself, with 200; ours is 204 (no content).
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(origins: &[&str]) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..CorsConfig::default()
        }
    }

    #[test]
    fn origins_are_compared_in_their_canonical_form() {
        for (given, canonical) in [
            ("https://app.example", "https://app.example"),
            ("HTTPS://App.Example:443", "https://app.example"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("chrome-extension://abcdef", "chrome-extension://abcdef"),
        ] {
            assert_eq!(
                canonical_origin(given).as_deref(),
                Some(canonical),
                "{given}"
            );
        }
        for bad in [
            "null",
            "app.example",
            "https://app.example/",
            "https://app.example/x",
            "https://*.example",
            "https://user@app.example",
            "https://app.example:99999",
            "https://app.example:+1",
            "https://",
            "https://[zz]:1",
            "http://[::1]x",
            "1http://a",
        ] {
            assert_eq!(canonical_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_section_is_checked() {
        assert!(CorsPolicy::new(&CorsConfig::default(), true)
            .unwrap()
            .is_none());
        let p = CorsPolicy::new(&cfg(&["https://App.example:443"]), true)
            .unwrap()
            .unwrap();
        assert!(p.allows_origin("https://app.example"));
        assert!(!p.allows_origin("http://app.example"));
        assert!(!p.allows_origin("https://app.example.evil"));
        assert!(!p.allows_origin("null"));
        assert!(CorsPolicy::new(&cfg(&["*"]), false).unwrap().is_some());
        let err = CorsPolicy::new(&cfg(&["*"]), true).unwrap_err();
        assert!(err.contains("authentication"), "{err}");
        assert!(CorsPolicy::new(&cfg(&["*", "https://a.example"]), false).is_err());
        let credentials = CorsConfig {
            allow_credentials: true,
            ..cfg(&["*"])
        };
        assert!(CorsPolicy::new(&credentials, false).is_err());
        assert!(CorsPolicy::new(&cfg(&["https://a.example/"]), false)
            .unwrap_err()
            .starts_with("allowed_origins"));
        let methods = CorsConfig {
            allowed_methods: vec!["TRACE".into()],
            ..cfg(&["https://a.example"])
        };
        assert!(CorsPolicy::new(&methods, false)
            .unwrap_err()
            .starts_with("allowed_methods"));
        let headers = CorsConfig {
            allowed_headers: vec!["bad header".into()],
            ..cfg(&["https://a.example"])
        };
        assert!(CorsPolicy::new(&headers, false)
            .unwrap_err()
            .starts_with("allowed_headers"));
    }

    #[test]
    fn preflight_methods_and_headers_are_checked() {
        let p = CorsPolicy::new(&cfg(&["https://a.example"]), false)
            .unwrap()
            .unwrap();
        assert_eq!(p.refusal("POST", "Authorization, content-type"), None);
        assert_eq!(p.refusal("DELETE", "rg-tag,rg-property-color"), None);
        assert_eq!(p.refusal("GET", ""), None);
        assert!(p.refusal("TRACE", "").is_some());
        assert!(p.refusal("POST", "x-other").is_some());
        assert!(p.refusal("POST", "authorization, cookie").is_some());
    }
}
