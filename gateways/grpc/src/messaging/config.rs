//! [`MessagingConfig`]: the settings of the messaging service (the server's `[grpc]` config
//! section), with their defaults and [`MessagingConfig::validate`].
//!
//! Plain data; no state.

use serde::{Deserialize, Serialize};

/// Configuration of the messaging service (the server's `[grpc]` section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// Longest long poll of a ReceiveMessage, in ms (20,000): RC polls 40 s inside a 40 s
    /// deadline, so the server must answer well before. Also reported to consumers.
    pub max_long_polling_ms: u64,
    /// Shortest long poll, in ms (5,000); a caller's deadline leaving less is
    /// ILLEGAL_POLLING_TIME.
    pub min_long_polling_ms: u64,
    /// Time kept free before the caller's `grpc-timeout`, in ms (200).
    pub deadline_reserve_ms: u64,
    /// Invisible duration of a receive that names none or asks for `auto_renew` (push
    /// consumers), in ms (60,000); also what each automatic renewal grants.
    pub default_invisible_ms: u64,
    /// How often messages received with `auto_renew` are renewed, in ms (5,000): each one
    /// due to become visible within two intervals is renewed.
    pub auto_renew_interval_ms: u64,
    /// Longest a message is kept invisible by automatic renewal, in ms (1 h); then it is
    /// redelivered.
    pub auto_renew_max_ms: u64,
    /// Most messages renewed at once (100,000); beyond that a message is only invisible for
    /// `default_invisible_ms`.
    pub auto_renew_max_handles: usize,
    /// Most ReceiveMessage and PullMessage calls waiting at once (4,096); one more is
    /// answered TOO_MANY_REQUESTS, which the SDKs retry with backoff.
    pub max_long_polls: usize,
    /// Receive batch size reported to consumers in the Settings reply (32).
    pub receive_batch_size: i32,
    /// Largest request the server decodes, in bytes (32 MiB); always raised to at least the
    /// broker's `limits.max_body_bytes` plus 1 MiB, so big bodies get MESSAGE_BODY_TOO_LARGE in
    /// the body instead of a gRPC RESOURCE_EXHAUSTED.
    pub max_request_bytes: usize,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            max_long_polling_ms: 20_000,
            min_long_polling_ms: 5_000,
            deadline_reserve_ms: 200,
            default_invisible_ms: 60_000,
            auto_renew_interval_ms: 5_000,
            auto_renew_max_ms: 3_600_000,
            auto_renew_max_handles: 100_000,
            max_long_polls: 4096,
            receive_batch_size: 32,
            max_request_bytes: 32 << 20,
        }
    }
}

/// A [`MessagingConfig`] value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
pub struct ConfigError {
    /// The field, as named in the config file.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl MessagingConfig {
    /// Checks the values against their ranges.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.into(),
            })
        };
        if self.max_long_polling_ms == 0 || self.max_long_polling_ms > 60_000 {
            return err(
                "max_long_polling_ms",
                "must be in 1..=60000 (RC waits 40 s at most)",
            );
        }
        if self.min_long_polling_ms > self.max_long_polling_ms {
            return err("min_long_polling_ms", "must not exceed max_long_polling_ms");
        }
        if self.deadline_reserve_ms >= self.max_long_polling_ms {
            return err("deadline_reserve_ms", "must be below max_long_polling_ms");
        }
        if self.default_invisible_ms == 0 {
            return err("default_invisible_ms", "must be positive");
        }
        if self.auto_renew_interval_ms == 0
            || self.auto_renew_interval_ms.saturating_mul(2) >= self.default_invisible_ms
        {
            return err(
                "auto_renew_interval_ms",
                "must be positive and below half of default_invisible_ms",
            );
        }
        if self.max_long_polls == 0 {
            return err("max_long_polls", "must be positive");
        }
        if !(1..=1024).contains(&self.receive_batch_size) {
            return err("receive_batch_size", "must be in 1..=1024");
        }
        if self.max_request_bytes < 4 << 20 {
            return err("max_request_bytes", "must be at least 4 MiB");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ranges_are_checked() {
        assert_eq!(MessagingConfig::default().validate(), Ok(()));
        let bad = MessagingConfig {
            min_long_polling_ms: 30_000,
            ..MessagingConfig::default()
        };
        assert_eq!(
            bad.validate().map_err(|e| e.field),
            Err("min_long_polling_ms")
        );
        let bad = MessagingConfig {
            receive_batch_size: 0,
            ..MessagingConfig::default()
        };
        assert_eq!(
            bad.validate().map_err(|e| e.field),
            Err("receive_batch_size")
        );
    }
}
