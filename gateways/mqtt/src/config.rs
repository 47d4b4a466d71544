//! Configuration of the MQTT gateway: the `[mqtt]` section of the server's TOML file.
//!
//! Owns: limits, timeouts, authentication and the topic-mapping knobs. Every field has a
//! default; unknown keys are rejected. Passwords are redacted in `Debug`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// MQTT gateway settings (`[mqtt]`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Largest packet accepted, in bytes, checked from the remaining-length header before any
    /// buffer is sized by it (1 MiB). Advertised to v5 clients as Maximum Packet Size.
    pub max_packet_size: usize,
    /// Receive Maximum the server grants each client: QoS 1/2 publishes a client may have
    /// unacknowledged at once (128). A v5 client exceeding it is disconnected (0x93); a
    /// v3.1.1 client is simply not read from while the window is full.
    pub receive_maximum: u16,
    /// QoS 1/2 messages the server has in flight to one client at most, further capped by the
    /// client's own v5 Receive Maximum (64).
    pub max_inflight: u16,
    /// Messages queued for one session beyond those in flight (1,000): a slow subscriber is
    /// bounded, the core keeps the rest (the session stops popping while its queue is full).
    pub max_queued_messages: usize,
    /// A connection that sends no CONNECT within this many ms is closed (10,000).
    pub connect_timeout_ms: u64,
    /// If set, overrides the client's keep-alive (seconds; v5 Server Keep Alive). `0` disables
    /// keep-alive checks.
    pub server_keep_alive: Option<u16>,
    /// Longest session expiry interval granted to v5 clients, in seconds (7 days). v3.1.1
    /// persistent sessions (clean session = 0) never expire.
    pub max_session_expiry_secs: u32,
    /// Clients without username/password. Unset (the default): allowed while the core's
    /// authentication (`auth.enabled`) is off, refused while it is on. With `auth.enabled` on,
    /// `true` is a configuration error (the core refuses anonymous clients: one identity
    /// model); `false` without `auth.enabled` makes the gateway's own `users` the only way in.
    pub allow_anonymous: Option<bool>,
    /// Username → password, checked by the gateway itself, only while the core's
    /// authentication is off. With `auth.enabled` on, MQTT clients are the core's users and
    /// a non-empty `users` is a configuration error (see [`MqttConfig::check`]).
    pub users: BTreeMap<String, String>,
    /// Browser pages (`Origin`s, `scheme://host[:port]`) besides the listener's own host that
    /// may open MQTT over WebSocket. An upgrade whose `Origin` is neither the request's own
    /// `Host` nor listed is refused with 403; one without `Origin` (not a browser) is served.
    pub ws_allowed_origins: Vec<String>,

    /// Queues of a RocketMQ topic created on first use by an MQTT publish or subscribe (4).
    pub auto_create_queue_count: u32,
    /// Create missing RocketMQ topics on first use (default `true`); when off, publishing or
    /// subscribing to a topic whose first level is not an existing topic is refused.
    pub auto_create_topics: bool,
    /// How long a message handed to an MQTT client stays invisible to the core's redelivery
    /// (s, 3600): the session retransmits it itself with DUP; the core redelivers it after a
    /// restart at once, or after this time if the session never acknowledges it.
    pub delivery_invisible_secs: u64,
    /// Topic Alias Maximum granted to v5 clients for their publishes (64; 0 disables).
    pub topic_alias_maximum: u16,
    /// Most retained messages kept (100,000); a new retained topic beyond it is not retained.
    pub max_retained: usize,
    /// Most concurrent connections (10,000); more are closed right after accept.
    pub max_connections: usize,
    /// Deprecated and ignored (accepted so older configuration files keep working; a warning
    /// is logged at start): retained messages and sessions live in the core's KV store now,
    /// which CommitLog retention never deletes, so nothing rewrites them.
    pub record_refresh_age_ms: Option<u64>,
    /// Deprecated and ignored, as `record_refresh_age_ms`.
    pub record_refresh_interval_ms: Option<u64>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1 << 20,
            receive_maximum: 128,
            max_inflight: 64,
            max_queued_messages: 1000,
            connect_timeout_ms: 10_000,
            server_keep_alive: None,
            max_session_expiry_secs: 7 * 24 * 3600,
            allow_anonymous: None,
            users: BTreeMap::new(),
            ws_allowed_origins: Vec::new(),
            auto_create_queue_count: 4,
            auto_create_topics: true,
            delivery_invisible_secs: 3600,
            topic_alias_maximum: 64,
            max_retained: 100_000,
            max_connections: 10_000,
            record_refresh_age_ms: None,
            record_refresh_interval_ms: None,
        }
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("max_packet_size", &self.max_packet_size)
            .field("receive_maximum", &self.receive_maximum)
            .field("max_inflight", &self.max_inflight)
            .field("max_queued_messages", &self.max_queued_messages)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("server_keep_alive", &self.server_keep_alive)
            .field("max_session_expiry_secs", &self.max_session_expiry_secs)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("ws_allowed_origins", &self.ws_allowed_origins)
            .field("auto_create_queue_count", &self.auto_create_queue_count)
            .field("auto_create_topics", &self.auto_create_topics)
            .field("delivery_invisible_secs", &self.delivery_invisible_secs)
            .field("topic_alias_maximum", &self.topic_alias_maximum)
            .field("max_retained", &self.max_retained)
            .field("max_connections", &self.max_connections)
            .field("record_refresh_age_ms", &self.record_refresh_age_ms)
            .field(
                "record_refresh_interval_ms",
                &self.record_refresh_interval_ms,
            )
            .finish()
    }
}

impl MqttConfig {
    /// Checks the settings against the core's authentication (`auth_enabled`: `auth.enabled`):
    /// one identity model, so with it on, the gateway's own `users` and an explicit
    /// `allow_anonymous = true` are refused.
    ///
    /// # Errors
    /// One line naming the key and what to do.
    pub fn check(&self, auth_enabled: bool) -> Result<(), String> {
        if auth_enabled && !self.users.is_empty() {
            return Err(
                "mqtt.users is not used when auth.enabled is on: MQTT clients log in as the \
                 core's users (username = access key, password = secret key or a token); create \
                 them with `rocketgate admin user create` and remove [mqtt.users]"
                    .into(),
            );
        }
        if auth_enabled && self.allow_anonymous == Some(true) {
            return Err(
                "mqtt.allow_anonymous = true contradicts auth.enabled: the core refuses \
                 anonymous clients; remove mqtt.allow_anonymous"
                    .into(),
            );
        }
        if self.max_packet_size < 64 {
            return Err("mqtt.max_packet_size must be at least 64".into());
        }
        if let Some(o) = self
            .ws_allowed_origins
            .iter()
            .find(|o| !crate::ws::is_origin(o))
        {
            return Err(format!(
                "mqtt.ws_allowed_origins: `{o}` is not an origin: write scheme://host[:port], \
                 e.g. https://app.example.com"
            ));
        }
        Ok(())
    }

    /// Whether anonymous clients are admitted (the core's authentication being `auth_enabled`).
    pub fn anonymous_allowed(&self, auth_enabled: bool) -> bool {
        !auth_enabled && self.allow_anonymous.unwrap_or(true)
    }

    /// Whether `username`/`password` may connect by the gateway's own `users` (used only while
    /// the core's authentication is off).
    pub fn authenticate_local(&self, login: Option<(&str, &str)>) -> bool {
        match login {
            None => self.anonymous_allowed(false),
            Some((user, password)) => self.users.get(user).is_some_and(|p| p == password),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_section_and_rejects_unknown_keys() {
        let c: MqttConfig =
            serde_json::from_str(r#"{"allow_anonymous": false, "users": {"u": "p"}}"#).unwrap();
        assert_eq!(c.allow_anonymous, Some(false));
        assert!(c.authenticate_local(Some(("u", "p"))));
        assert!(!c.authenticate_local(Some(("u", "x"))));
        assert!(!c.authenticate_local(None));
        assert!(MqttConfig::default().authenticate_local(None));
        assert!(!format!("{c:?}").contains("\"p\""));
        assert!(serde_json::from_str::<MqttConfig>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn with_the_core_s_authentication_on_the_gateway_s_own_users_are_refused() {
        let d = MqttConfig::default();
        assert!(d.check(true).is_ok() && d.check(false).is_ok());
        assert!(d.anonymous_allowed(false) && !d.anonymous_allowed(true));
        let users: MqttConfig = serde_json::from_str(r#"{"users": {"u": "p"}}"#).unwrap();
        assert!(users.check(false).is_ok());
        let err = users.check(true).unwrap_err();
        assert!(err.contains("mqtt.users") && !err.contains('\n'), "{err}");
        let anon: MqttConfig = serde_json::from_str(r#"{"allow_anonymous": true}"#).unwrap();
        assert!(anon.check(true).unwrap_err().contains("allow_anonymous"));
        let closed: MqttConfig = serde_json::from_str(r#"{"allow_anonymous": false}"#).unwrap();
        assert!(closed.check(true).is_ok());
    }

    #[test]
    fn allowed_origins_are_checked() {
        let ok: MqttConfig =
            serde_json::from_str(r#"{"ws_allowed_origins": ["https://app.example:8443"]}"#)
                .unwrap();
        assert!(ok.check(false).is_ok());
        for bad in ["app.example", "https://app.example/path", "*", ""] {
            let c = MqttConfig {
                ws_allowed_origins: vec![bad.into()],
                ..MqttConfig::default()
            };
            assert!(
                c.check(false).unwrap_err().contains("ws_allowed_origins"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_deprecated_record_refresh_keys_are_still_accepted() {
        let c: MqttConfig = serde_json::from_str(
            r#"{"record_refresh_age_ms": 500, "record_refresh_interval_ms": 100}"#,
        )
        .unwrap();
        assert_eq!(c.record_refresh_age_ms, Some(500));
        assert_eq!(MqttConfig::default().record_refresh_age_ms, None);
    }
}
