//! The `[http]` configuration section: limits and timeouts of the REST and WebSocket gateway.
//!
//! Invariants: every size or count the wire can ask for is bounded by one of these fields;
//! [`HttpConfig::validate`] checks that they are coherent (a long poll ends before the request
//! timeout). Who calls it: the composition root (`rocketgate`), which deserializes it from TOML,
//! and [`crate::serve_with`]. No I/O, no locks.

use serde::Deserialize;

/// Configuration of the HTTP gateway (`[http]` in the TOML file). Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body, in bytes (8 MiB). Larger bodies answer `413`.
    pub max_body_bytes: usize,
    /// Most messages in one batch publish, ack or resend request (256).
    pub max_batch: usize,
    /// Longest `wait_ms` of a receive or pull long poll, in ms (20,000). Longer asks answer
    /// `400` (`wait_too_long`). Also capped by the core's `consumer.max_wait_ms`.
    pub max_wait_ms: u64,
    /// A request running longer than this answers `503` (`request_timeout`), in ms (30,000).
    /// Must exceed `max_wait_ms`.
    pub request_timeout_ms: u64,
    /// Requests served at once; more answer `429` (`too_many_requests`) (1,024).
    pub max_in_flight: usize,
    /// Open TCP connections; further ones wait in the accept backlog (10,000).
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed, in ms (60,000): clients that
    /// never send a request, silent WebSockets (a head trickling in is bounded by
    /// `header_timeout_ms`). Must exceed `request_timeout_ms` and two `ws_ping_interval_ms`.
    pub idle_timeout_ms: u64,
    /// Longest time to receive a whole request head (request line and headers), in ms
    /// (10,000), however slowly it trickles in; then the connection is closed. Also how long
    /// an idle keep-alive connection waits for its next request, and, on every connection
    /// (HTTP/2 too: preface, SETTINGS, HEADERS), how long its first request may take to arrive.
    pub header_timeout_ms: u64,
    /// Largest request head (request line and headers), in bytes (16 KiB; at least 8 KiB).
    /// Larger heads answer `431` and close the connection.
    pub max_header_bytes: usize,
    /// Largest WebSocket message (frame or reassembled message), in bytes (8 MiB). Larger ones
    /// close the connection with code 1009.
    pub ws_max_frame_bytes: usize,
    /// Most credits a WebSocket subscription may hold at once (1,024): what the server may
    /// have delivered and not yet been granted again.
    pub ws_max_credits: u32,
    /// Most subscriptions on one WebSocket connection (16).
    pub ws_max_subscriptions: usize,
    /// Frames queued for one WebSocket connection before producers of frames wait (64).
    pub ws_outbound_frames: usize,
    /// Bytes of frames queued for one WebSocket connection before producers of frames wait
    /// (4 MiB).
    pub ws_outbound_bytes: usize,
    /// A write to a WebSocket (a frame, a ping) that does not complete within this closes
    /// the connection, in ms (10,000): a client that stops reading is disconnected.
    pub ws_write_timeout_ms: u64,
    /// How often the server pings a WebSocket client, in ms (15,000); a client silent for two
    /// intervals is closed (code 1001).
    pub ws_ping_interval_ms: u64,
    /// Default invisible duration of messages delivered over WebSocket, in ms (30,000).
    pub ws_invisible_ms: u64,
    /// Browser origins besides the server's own allowed to open a WebSocket or send a
    /// `POST` / `PUT` / `PATCH` / `DELETE` (`Origin` header, e.g. `https://app.example`; `*`:
    /// any). Empty (the default): same-origin only. Requests without `Origin` always pass.
    pub allowed_origins: Vec<String>,
    /// Host names (the `Host` header) served besides `localhost`, loopback addresses and the
    /// address a client connected to: exact names or `*.suffix`; `*` allows any. Other hosts
    /// answer `421` (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Whether producer groups may register transaction check-back callback URLs (false: a
    /// callback is a request from the broker to a URL a client chose).
    pub allow_callbacks: bool,
    /// Callback hosts allowed although they are (or resolve to) loopback, private, link-local
    /// or reserved addresses: names or addresses, e.g. `["127.0.0.1", "hooks.internal"]`.
    /// Public addresses need no entry.
    pub callback_allowed_hosts: Vec<String>,
    /// Timeout of one transaction check-back callback request, in ms (1,000).
    pub callback_timeout_ms: u64,
    /// Further attempts after a failed callback request (transport error or 5xx) (2).
    pub callback_retries: u32,
    /// Pause between callback attempts, in ms (100).
    pub callback_retry_backoff_ms: u64,
    /// Cross-origin reads by browser pages (`[http.cors]`); off by default.
    pub cors: CorsConfig,
}

/// CORS (`[http.cors]`): which browser pages of other origins may call the API and read its
/// answers. With no `allowed_origins` (the default) no CORS header is ever sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins whose pages may call the API, exactly as browsers send them
    /// (`scheme://host[:port]`, e.g. `https://app.example`, `http://localhost:5173`); `*`
    /// allows any page, only with authentication off. Empty (the default): CORS off. A listed
    /// origin may also open `/v1/ws` and send `POST` / `PUT` / `PATCH` / `DELETE`.
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`).
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for, case-insensitive; a trailing `*` matches a
    /// prefix (`authorization`, `content-type`, `rg-*`).
    pub allowed_headers: Vec<String>,
    /// Response headers a page may read besides the CORS-safelisted ones (`retry-after`,
    /// `www-authenticate`, `location`).
    pub exposed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds (600).
    pub max_age_secs: u64,
    /// Whether pages may send ambient credentials (`credentials: "include"`: a client
    /// certificate, a cached Basic login) and read the answers (false). Pages that send
    /// `Authorization` themselves do not need it. Not with `*`.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
            allowed_headers: ["authorization", "content-type", "rg-*"]
                .map(String::from)
                .to_vec(),
            exposed_headers: ["retry-after", "www-authenticate", "location"]
                .map(String::from)
                .to_vec(),
            max_age_secs: 600,
            allow_credentials: false,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_batch: 256,
            max_wait_ms: 20_000,
            request_timeout_ms: 30_000,
            max_in_flight: 1024,
            max_connections: 10_000,
            idle_timeout_ms: 60_000,
            header_timeout_ms: 10_000,
            max_header_bytes: 16 << 10,
            ws_max_frame_bytes: 8 << 20,
            ws_max_credits: 1024,
            ws_max_subscriptions: 16,
            ws_outbound_frames: 64,
            ws_outbound_bytes: 4 << 20,
            ws_write_timeout_ms: 10_000,
            ws_ping_interval_ms: 15_000,
            ws_invisible_ms: 30_000,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            allow_callbacks: false,
            callback_allowed_hosts: Vec::new(),
            callback_timeout_ms: 1000,
            callback_retries: 2,
            callback_retry_backoff_ms: 100,
            cors: CorsConfig::default(),
        }
    }
}

/// An incoherent [`HttpConfig`].
#[derive(Debug, thiserror::Error)]
#[error("invalid [http] configuration: {0}")]
pub struct ConfigError(pub String);

impl HttpConfig {
    /// Checks the fields against each other.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_batch", self.max_batch as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_in_flight", self.max_in_flight as u64),
            ("max_connections", self.max_connections as u64),
            ("header_timeout_ms", self.header_timeout_ms),
            ("ws_max_frame_bytes", self.ws_max_frame_bytes as u64),
            ("ws_max_credits", u64::from(self.ws_max_credits)),
            ("ws_max_subscriptions", self.ws_max_subscriptions as u64),
            ("ws_outbound_frames", self.ws_outbound_frames as u64),
            ("ws_outbound_bytes", self.ws_outbound_bytes as u64),
            ("ws_write_timeout_ms", self.ws_write_timeout_ms),
            ("ws_ping_interval_ms", self.ws_ping_interval_ms),
            ("callback_timeout_ms", self.callback_timeout_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("{name} must be positive")));
        }
        if self.max_wait_ms >= self.request_timeout_ms {
            return Err(ConfigError(
                "max_wait_ms must be below request_timeout_ms".into(),
            ));
        }
        if self.idle_timeout_ms <= self.request_timeout_ms
            || self.idle_timeout_ms <= self.ws_ping_interval_ms.saturating_mul(2)
        {
            return Err(ConfigError(
                "idle_timeout_ms must exceed request_timeout_ms and two ws_ping_interval_ms".into(),
            ));
        }
        if self.max_header_bytes < 8192 {
            return Err(ConfigError("max_header_bytes must be at least 8192".into()));
        }
        if self.callback_retries > 10 {
            return Err(ConfigError("callback_retries must be at most 10".into()));
        }
        self.validate_with_auth(false)
    }

    /// [`Self::validate`]'s CORS part and the rules that depend on whether authentication is
    /// on: CORS `allowed_origins = ["*"]` (any web page) is refused with it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending field.
    pub fn validate_with_auth(&self, auth_enabled: bool) -> Result<(), ConfigError> {
        crate::cors::CorsPolicy::new(&self.cors, auth_enabled)
            .map(|_| ())
            .map_err(|e| ConfigError(format!("cors.{e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_incoherent_values_are_refused() {
        assert!(HttpConfig::default().validate().is_ok());
        let c = HttpConfig {
            max_wait_ms: 40_000,
            ..HttpConfig::default()
        };
        assert!(c.validate().is_err());
        let c = HttpConfig {
            max_batch: 0,
            ..HttpConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
