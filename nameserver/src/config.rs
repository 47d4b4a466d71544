//! Configuration of a NameServer: broker expiry, the expiry scan, the limits on what a
//! request may carry, and the cluster secret brokers must sign with. No listen address here (the
//! server binary's config owns it).
//!
//! Every field has a default (`#[serde(default)]`), unknown keys are rejected, and
//! [`Config::validate`] reports a bad value as a [`ConfigError`] instead of panicking.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::listener::ConnectionLimits;
use crate::secret::ClusterSecret;

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The key, e.g. `broker_expiry_ms`.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

/// NameServer settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A broker instance silent for longer than this is dropped, in ms (120,000).
    pub broker_expiry_ms: u64,
    /// How often silent instances are looked for, in ms (5,000). An instance leaves the routes
    /// between `broker_expiry_ms` and `broker_expiry_ms + scan_interval_ms` after it was last
    /// heard from.
    pub scan_interval_ms: u64,
    /// Bounds on requests and state.
    pub limits: Limits,
    /// The secret brokers sign RegisterBroker / Heartbeat / UnregisterBroker with (none: those
    /// are accepted unsigned). Never serialized; `Debug` redacts it.
    #[serde(skip_serializing)]
    pub cluster_secret: Option<ClusterSecret>,
    /// How far a signed request's timestamp may be from this NameServer's clock, in ms (300,000).
    pub max_clock_skew_ms: u64,
    /// Connection cap, handshake and idle timeouts, keepalive of the listener (`[connections]`).
    pub connections: ConnectionLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            broker_expiry_ms: 120_000,
            scan_interval_ms: 5_000,
            limits: Limits::default(),
            cluster_secret: None,
            max_clock_skew_ms: 300_000,
            connections: ConnectionLimits::default(),
        }
    }
}

/// Bounds on what one request may carry and on what a NameServer tracks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Topics in one registration (4,096).
    pub max_topics_per_registration: usize,
    /// Read or write queues of one topic (65,536).
    pub max_queues_per_topic: u32,
    /// Broker instances tracked at once (1,024); more registrations get RESOURCE_EXHAUSTED.
    pub max_brokers: usize,
    /// Largest encoded request, in bytes (4 MiB).
    pub max_request_bytes: usize,
    /// Signatures of accepted broker requests remembered to refuse replays (65,536, a few
    /// MiB at most); each is kept until it is stale (`max_clock_skew_ms`). Past the count the
    /// oldest is forgotten, and requests signed no later than it are refused.
    pub max_remembered_signatures: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_topics_per_registration: 4_096,
            max_queues_per_topic: 65_536,
            max_brokers: 1_024,
            max_request_bytes: 4 << 20,
            max_remembered_signatures: 65_536,
        }
    }
}

impl Config {
    /// [`Self::broker_expiry_ms`] as a duration.
    pub fn broker_expiry(&self) -> Duration {
        Duration::from_millis(self.broker_expiry_ms)
    }

    /// [`Self::scan_interval_ms`] as a duration.
    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms)
    }

    /// Checks that every value can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad key: a zero interval or limit, or a request limit
    /// under 64 KiB.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &'static str, value: u64| {
            if value == 0 {
                Err(ConfigError {
                    key,
                    reason: "must be greater than 0".into(),
                })
            } else {
                Ok(())
            }
        };
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        positive("broker_expiry_ms", self.broker_expiry_ms)?;
        positive("scan_interval_ms", self.scan_interval_ms)?;
        positive("max_clock_skew_ms", self.max_clock_skew_ms)?;
        self.connections.validate()?;
        let l = &self.limits;
        positive(
            "limits.max_topics_per_registration",
            count(l.max_topics_per_registration),
        )?;
        positive(
            "limits.max_queues_per_topic",
            u64::from(l.max_queues_per_topic),
        )?;
        positive("limits.max_brokers", count(l.max_brokers))?;
        positive(
            "limits.max_remembered_signatures",
            count(l.max_remembered_signatures),
        )?;
        if l.max_request_bytes < 64 << 10 {
            return Err(ConfigError {
                key: "limits.max_request_bytes",
                reason: "must be at least 65536 (64 KiB)".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let empty: Config = toml::from_str("").unwrap();
        assert_eq!(empty, Config::default());
        assert_eq!(empty.broker_expiry(), Duration::from_secs(120));
        assert_eq!(empty.scan_interval(), Duration::from_secs(5));
        empty.validate().unwrap();

        let text = toml::to_string(&Config::default()).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), Config::default());
    }

    #[test]
    fn bad_values_name_their_key() {
        let c: Config = toml::from_str("broker_expiry_ms = 300\nscan_interval_ms = 50").unwrap();
        c.validate().unwrap();
        let c: Config = toml::from_str("scan_interval_ms = 0").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "scan_interval_ms");
        let c: Config = toml::from_str("[limits]\nmax_brokers = 0").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "limits.max_brokers");
        let c: Config = toml::from_str("[limits]\nmax_request_bytes = 10").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "limits.max_request_bytes");
        assert!(toml::from_str::<Config>("expiry = 1").is_err());
        let c: Config = toml::from_str("[connections]\nidle_timeout_ms = 0").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "connections.idle_timeout_ms");
        let c: Config = toml::from_str("max_clock_skew_ms = 0").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "max_clock_skew_ms");
    }

    #[test]
    fn the_cluster_secret_is_long_enough_and_never_shown() {
        let c: Config = toml::from_str("cluster_secret = \"0123456789abcdef\"").unwrap();
        assert!(c.cluster_secret.is_some());
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert!(!toml::to_string(&c).unwrap().contains("cluster_secret"));
        for short in ["", "short"] {
            let err = toml::from_str::<Config>(&format!("cluster_secret = \"{short}\""))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("cluster_secret: must be 16..=1024 bytes"),
                "{err}"
            );
        }
    }
}
