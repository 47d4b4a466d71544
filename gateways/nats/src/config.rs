//! Configuration of the NATS gateway: the `[nats]` section of the server's TOML file (the
//! server owns `enabled` and `listen` beside these keys).
//!
//! Owns: the protocol limits (control line, payload, header block, subscriptions, pending
//! bytes), the timeouts, and the topic-mapping knobs. Every field has a default; unknown keys
//! are rejected. [`NatsConfig::check`] says what is invalid; nothing here panics.

use serde::{Deserialize, Serialize};

/// NATS gateway settings (`[nats]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Largest message payload (headers included) a client may publish, in bytes (1 MiB);
    /// advertised as `max_payload` in INFO. Larger: `-ERR 'Maximum Payload Violation'` and the
    /// connection is closed, the payload never buffered.
    pub max_payload: usize,
    /// Longest control line (`PUB subject reply 12`, `CONNECT {...}`), in bytes (4096).
    /// Longer: `-ERR 'Maximum Control Line Exceeded'`, closed.
    pub max_control_line: usize,
    /// Largest header block of an HPUB, in bytes (64 KiB; also bounded by `max_payload`).
    pub max_header_bytes: usize,
    /// Subscriptions one connection may hold (1,000). More: `-ERR 'Maximum Subscriptions
    /// Exceeded'`, the subscription is not made, the connection stays open.
    pub max_subscriptions: usize,
    /// Bytes written for one connection and not yet taken by its socket (8 MiB). A subscriber
    /// that falls further behind is a slow consumer: `-ERR 'Slow Consumer'`, then closed.
    pub max_pending_bytes: usize,
    /// Most concurrent connections (10,000); more get `-ERR 'Maximum Connections Exceeded'`
    /// and are closed.
    pub max_connections: usize,
    /// A connection that sends no CONNECT within this many ms is closed (`-ERR 'Authentication
    /// Timeout'`, 10,000). Also the TLS handshake's bound, with `tls.handshake_timeout_ms`.
    pub connect_timeout_ms: u64,
    /// The server PINGs an idle client this often (ms, 120,000); a client that leaves
    /// `max_pings_out` PINGs unanswered is closed (`-ERR 'Stale Connection'`).
    pub ping_interval_ms: u64,
    /// Unanswered server PINGs before a connection is stale (2).
    pub max_pings_out: u32,
    /// Create missing RocketMQ topics on first use (true); off: a subject whose first token is
    /// not an existing topic is refused.
    pub auto_create_topics: bool,
    /// Queues of a topic created on first use (4).
    pub auto_create_queue_count: u32,
    /// How long a message handed to a NATS connection stays invisible to the core before it is
    /// acknowledged (s, 60): a queue-group message written to a connection that then dies is
    /// redelivered to another member after this time.
    pub delivery_invisible_secs: u64,
    /// Messages popped from the core for one connection and not yet written (256): the core
    /// keeps the rest.
    pub max_popped_messages: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            max_control_line: 4096,
            max_header_bytes: 64 << 10,
            max_subscriptions: 1000,
            max_pending_bytes: 8 << 20,
            max_connections: 10_000,
            connect_timeout_ms: 10_000,
            ping_interval_ms: 120_000,
            max_pings_out: 2,
            auto_create_topics: true,
            auto_create_queue_count: 4,
            delivery_invisible_secs: 60,
            max_popped_messages: 256,
        }
    }
}

/// An invalid `[nats]` setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nats.{key}: {reason}")]
pub struct ConfigError {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl NatsConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// The first invalid key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_payload", self.max_payload as u64),
            ("max_control_line", self.max_control_line as u64),
            ("max_subscriptions", self.max_subscriptions as u64),
            ("max_pending_bytes", self.max_pending_bytes as u64),
            ("max_connections", self.max_connections as u64),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("ping_interval_ms", self.ping_interval_ms),
            ("max_pings_out", u64::from(self.max_pings_out)),
            (
                "auto_create_queue_count",
                u64::from(self.auto_create_queue_count),
            ),
            ("delivery_invisible_secs", self.delivery_invisible_secs),
            ("max_popped_messages", self.max_popped_messages as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError {
                    key,
                    reason: "must be greater than 0",
                });
            }
        }
        if self.max_control_line < 128 {
            return Err(ConfigError {
                key: "max_control_line",
                reason: "must be at least 128",
            });
        }
        if self.max_payload > 64 << 20 {
            return Err(ConfigError {
                key: "max_payload",
                reason: "must be at most 64 MiB",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_limits_are_not() {
        NatsConfig::default().check().unwrap();
        let c = NatsConfig {
            max_subscriptions: 0,
            ..NatsConfig::default()
        };
        assert_eq!(c.check().unwrap_err().key, "max_subscriptions");
        let parsed: NatsConfig = serde_json::from_str(r#"{"max_payload": 10}"#).unwrap();
        assert_eq!(parsed.max_payload, 10);
        assert!(serde_json::from_str::<NatsConfig>(r#"{"nope": 1}"#).is_err());
    }
}
