//! Configuration of the core: the store and the broker's limits. No listen addresses here
//! (gateways own those).
//!
//! Every field has a default (`#[serde(default)]`), unknown keys are rejected, and
//! [`Config::validate`] reports a bad value as a [`ConfigError`] instead of panicking.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// When an append counts as stored. Read in any case (`sync`, `SYNC_FLUSH`, ...), written
/// `SYNC` / `ASYNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlushMode {
    /// Acknowledge after an fsync covers the record (shared by concurrent producers).
    Sync,
    /// Acknowledge after the write to the mapping; flush in the background.
    #[default]
    Async,
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the store.
    pub data_dir: PathBuf,
    /// CommitLog segment size in bytes (1 GiB). A message whose record does not fit in one
    /// segment is refused, so keep it well above `limits.max_body_bytes`.
    pub segment_size: u64,
    /// Flush mode.
    pub flush_mode: FlushMode,
    /// ASYNC_FLUSH interval in ms (500).
    pub flush_interval_ms: u64,
    /// How often the checkpoint is written, in ms (1000).
    pub checkpoint_interval_ms: u64,
    /// Entries per ConsumeQueue file (300,000).
    pub consume_queue_entries_per_file: u64,
    /// Hash slots per index file.
    pub index_slots_per_file: u32,
    /// Entries per index file.
    pub index_entries_per_file: u32,
    /// CommitLog retention in hours (72).
    pub retention_hours: u64,
    /// How often retention and the disk watermark are checked, in ms (10,000).
    pub clean_interval_ms: u64,
    /// Refuse writes when the filesystem is fuller than this ratio (0.90).
    pub disk_max_used_ratio: f64,
    /// Refuse writes when the data directory would hold more than this many bytes (unlimited):
    /// CommitLog segments (whole), the disk blocks of ConsumeQueues and the index, and the
    /// KV store's files.
    pub disk_limit_bytes: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            segment_size: 1 << 30,
            flush_mode: FlushMode::Async,
            flush_interval_ms: 500,
            checkpoint_interval_ms: 1000,
            consume_queue_entries_per_file: 300_000,
            index_slots_per_file: 1_000_000,
            index_entries_per_file: 4_000_000,
            retention_hours: 72,
            clean_interval_ms: 10_000,
            disk_max_used_ratio: 0.90,
            disk_limit_bytes: None,
        }
    }
}

/// Broker limits on what producers may send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Maximum body size in bytes (4 MiB).
    pub max_body_bytes: usize,
    /// Maximum number of properties (128).
    pub max_properties: usize,
    /// Maximum total size of property keys and values (32 KiB).
    pub max_properties_bytes: usize,
    /// Maximum number of keys (32).
    pub max_keys: usize,
    /// Maximum length of a key, tag, message group or message id (1024 bytes).
    pub max_field_bytes: usize,
    /// Maximum queues per topic (1024).
    pub max_queues_per_topic: u32,
    /// Maximum user topics (10,000; retry, dead-letter and internal topics are not counted):
    /// creating one more, explicitly or on first use, is refused (`QuotaExceeded`).
    pub max_topics: usize,
    /// Maximum consumer groups (10,000): creating one more, explicitly or on first use, is
    /// refused (`QuotaExceeded`).
    pub max_groups: usize,
    /// Maximum messages returned by one pull or query (1024).
    pub max_batch: usize,
    /// Refuse a message whose type its topic does not accept (true; RocketMQ's
    /// `enableTopicMessageTypeCheck`): a plain message into a FIFO, DELAY or TRANSACTION
    /// topic, a message with a group, a delay or a half send into a topic of another type
    /// (MIXED takes all). `false` lets any message into any topic; what a type needs (a FIFO
    /// declaration's group, a DELAY declaration's time) is checked either way.
    pub topic_message_type_check: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_properties: 128,
            max_properties_bytes: 32 << 10,
            max_keys: 32,
            max_field_bytes: 1024,
            max_queues_per_topic: 1024,
            max_topics: 10_000,
            max_groups: 10_000,
            max_batch: 1024,
            topic_message_type_check: true,
        }
    }
}

/// Consumer settings: groups, offsets, pop, long polling, client liveness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Create a consumer group on first use (RocketMQ's default) instead of refusing it.
    pub auto_create_groups: bool,
    /// How often committed offsets and pop state are snapshotted, in ms (5,000). Bounds how far
    /// a committed offset can regress after a crash.
    pub offset_persist_interval_ms: u64,
    /// A client without a heartbeat for this long leaves its group, in ms (120,000).
    pub client_expiry_ms: u64,
    /// Smallest invisible duration of a pop, in ms (1,000).
    pub min_invisible_ms: u64,
    /// Largest invisible duration of a pop, in ms (12 h).
    pub max_invisible_ms: u64,
    /// Longest long-polling wait, in ms (60,000).
    pub max_wait_ms: u64,
    /// Most messages one pop returns (256).
    pub max_pop_batch: usize,
    /// Most bytes one pop returns, counted in stored record sizes (16 MiB): bounds the memory
    /// of a receive whatever its batch size. A first message bigger than this is still
    /// returned, alone.
    pub max_pop_bytes: usize,
    /// Backoff before each retry, by attempt: space-separated durations; the last one repeats
    /// (`0s` retries at once).
    pub retry_backoff: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            auto_create_groups: true,
            offset_persist_interval_ms: 5000,
            client_expiry_ms: 120_000,
            min_invisible_ms: 1000,
            max_invisible_ms: 12 * 3600 * 1000,
            max_wait_ms: 60_000,
            max_pop_batch: 256,
            max_pop_bytes: 16 << 20,
            retry_backoff: "10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h".into(),
        }
    }
}

/// Delayed and timed delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerConfig {
    /// Delay levels, space-separated durations (`500ms`, `1s`, `2m`, `1h`, `1d`); level 1 is
    /// the first.
    pub delay_levels: String,
    /// Longest accepted delay of a timed message, in ms (40 days).
    pub max_delay_ms: u64,
    /// How often the delivery progress is persisted, in ms (1,000).
    pub persist_interval_ms: u64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            delay_levels: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h".into(),
            max_delay_ms: 40 * 24 * 3600 * 1000,
            persist_interval_ms: 1000,
        }
    }
}

/// Transaction check-back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionConfig {
    /// First check-back of an unresolved half, after it was stored, in ms (6,000).
    pub check_first_ms: u64,
    /// Later check-backs, in ms (60,000).
    pub check_interval_ms: u64,
    /// Check-backs before an unresolved half is discarded (15).
    pub max_checks: u32,
    /// How long one check-back may take, in ms (3,000).
    pub check_timeout_ms: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            check_first_ms: 6000,
            check_interval_ms: 60_000,
            max_checks: 15,
            check_timeout_ms: 3000,
        }
    }
}

/// The KV store of small durable state (`[kv]`): MQTT sessions and retained messages,
/// gateway settings. Its values may be up to `limits.max_body_bytes` + 64 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvConfig {
    /// Most bytes of namespaces, keys and values of all entries together (1 GiB); a write
    /// beyond it is refused (`QuotaExceeded`). The whole state is kept in memory.
    pub max_total_bytes: u64,
    /// The log is compacted into a snapshot once it is larger than this (64 MiB) and twice
    /// the last snapshot.
    pub compact_log_bytes: u64,
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            max_total_bytes: 1 << 30,
            compact_log_bytes: 64 << 20,
        }
    }
}

/// Authentication and authorization (`[auth]`): one user store for every gateway (see
/// docs/security.md).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Check credentials and policies on every endpoint (default off: on 127.0.0.1 the broker
    /// just works; binding another address without it refuses to start).
    pub enabled: bool,
    /// A super user created (or reset to this secret) at start, so that a fresh broker can be
    /// administered; both or neither. Prefer the environment for the secret.
    pub bootstrap_access_key: Option<String>,
    /// The bootstrap user's secret key (8..=256 printable characters).
    pub bootstrap_secret_key: Option<String>,
    /// Lifetime of a bearer token when none is asked for (24 h).
    pub token_ttl_ms: u64,
    /// Longest lifetime a token may be issued with (30 days).
    pub max_token_ttl_ms: u64,
    /// Most live tokens of one user.
    pub max_tokens_per_user: usize,
    /// Most users.
    pub max_users: usize,
    /// How far the signed `x-mq-date-time` of a RocketMQ request may be from the broker's clock
    /// (15 min; compact times may also be off by a whole time-zone offset, see `auth/sign.rs`).
    pub max_clock_skew_ms: u64,
    /// Accept a compact `x-mq-date-time` (`yyyyMMdd'T'HHmmss'Z'`) that is off by a whole
    /// time-zone offset (on: the Python SDK writes local time with a literal `Z`). Off: every
    /// compact time must be UTC, so a captured signature is replayable only within
    /// `max_clock_skew_ms` instead of at each quarter-hour offset up to 14 h away.
    pub local_time_signatures: bool,
    /// Failed authentications one source IP may make in a burst (0: no limit); then its
    /// attempts are refused unchecked until the bucket refills.
    pub failure_burst: u32,
    /// One more failed authentication is allowed per source every this long (ms).
    pub failure_refill_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bootstrap_access_key: None,
            bootstrap_secret_key: None,
            token_ttl_ms: 24 * 3600 * 1000,
            max_token_ttl_ms: 30 * 24 * 3600 * 1000,
            max_tokens_per_user: 100,
            max_users: 10_000,
            max_clock_skew_ms: 15 * 60 * 1000,
            local_time_signatures: true,
            failure_burst: 10,
            failure_refill_ms: 6_000,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("bootstrap_access_key", &self.bootstrap_access_key)
            .field(
                "bootstrap_secret_key",
                &self.bootstrap_secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("token_ttl_ms", &self.token_ttl_ms)
            .field("max_token_ttl_ms", &self.max_token_ttl_ms)
            .field("max_tokens_per_user", &self.max_tokens_per_user)
            .field("max_users", &self.max_users)
            .field("max_clock_skew_ms", &self.max_clock_skew_ms)
            .field("local_time_signatures", &self.local_time_signatures)
            .field("failure_burst", &self.failure_burst)
            .field("failure_refill_ms", &self.failure_refill_ms)
            .finish()
    }
}

/// Parses a duration such as `500ms`, `10s`, `2m`, `1h`, `1d` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl ConsumerConfig {
    /// The retry backoff in ms, by attempt.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad entry.
    pub fn retry_backoff_ms(&self) -> Result<Vec<u64>, ConfigError> {
        let levels: Option<Vec<u64>> = self
            .retry_backoff
            .split_whitespace()
            .map(parse_duration_ms)
            .collect();
        match levels {
            Some(l) if !l.is_empty() => Ok(l),
            _ => Err(ConfigError {
                key: "consumer.retry_backoff",
                reason: format!(
                    "`{}` is not a list of durations like `10s 30s 1m`",
                    self.retry_backoff
                ),
            }),
        }
    }
}

impl TimerConfig {
    /// The delay levels in ms.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad entry.
    pub fn levels_ms(&self) -> Result<Vec<u64>, ConfigError> {
        let levels: Option<Vec<u64>> = self
            .delay_levels
            .split_whitespace()
            .map(parse_duration_ms)
            .collect();
        match levels {
            Some(l) if !l.is_empty() && l.iter().all(|ms| *ms > 0) => Ok(l),
            _ => Err(ConfigError {
                key: "timer.delay_levels",
                reason: format!(
                    "`{}` is not a list of durations like `1s 5s 2m`",
                    self.delay_levels
                ),
            }),
        }
    }
}

/// The core's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Store settings.
    pub store: StoreConfig,
    /// Producer limits.
    pub limits: LimitsConfig,
    /// Consumer settings.
    pub consumer: ConsumerConfig,
    /// Delayed and timed delivery.
    pub timer: TimerConfig,
    /// Transactions.
    pub transaction: TransactionConfig,
    /// The KV store of small durable state.
    pub kv: KvConfig,
    /// Authentication and authorization.
    pub auth: AuthConfig,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration `{key}`: {reason}")]
pub struct ConfigError {
    /// Dotted key of the bad value.
    pub key: &'static str,
    /// Why it is rejected.
    pub reason: String,
}

impl Config {
    /// Checks values that serde cannot.
    ///
    /// # Errors
    /// The first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.to_owned(),
            })
        };
        let s = &self.store;
        if s.segment_size < 4096 || s.segment_size > (1 << 40) {
            return bad("store.segment_size", "must be between 4096 bytes and 1 TiB");
        }
        if s.flush_interval_ms == 0 || s.checkpoint_interval_ms == 0 || s.clean_interval_ms == 0 {
            return bad("store.*_interval_ms", "intervals must be at least 1 ms");
        }
        if s.consume_queue_entries_per_file == 0
            || s.index_entries_per_file == 0
            || s.index_slots_per_file == 0
        {
            return bad("store.*_per_file", "must be at least 1");
        }
        if !(s.disk_max_used_ratio > 0.0 && s.disk_max_used_ratio <= 1.0) {
            return bad("store.disk_max_used_ratio", "must be in (0, 1]");
        }
        self.timer.levels_ms()?;
        self.consumer.retry_backoff_ms()?;
        let a = &self.auth;
        match (&a.bootstrap_access_key, &a.bootstrap_secret_key) {
            (None, None) => {}
            (Some(ak), Some(sk)) => {
                if crate::auth::check_access_key(ak).is_err() {
                    return bad(
                        "auth.bootstrap_access_key",
                        "1..=128 letters, digits and `_ - . @`",
                    );
                }
                if crate::auth::check_secret_key(sk).is_err() {
                    return bad(
                        "auth.bootstrap_secret_key",
                        "8..=256 printable ASCII characters without spaces",
                    );
                }
            }
            _ => {
                return bad(
                    "auth.bootstrap_access_key",
                    "set both bootstrap_access_key and bootstrap_secret_key, or neither",
                )
            }
        }
        if a.token_ttl_ms == 0 || a.token_ttl_ms > a.max_token_ttl_ms {
            return bad(
                "auth.token_ttl_ms",
                "must be between 1 and auth.max_token_ttl_ms",
            );
        }
        if a.max_users == 0 || a.max_tokens_per_user == 0 {
            return bad("auth.max_*", "must be at least 1");
        }
        if a.failure_burst > 0 && a.failure_refill_ms == 0 {
            return bad("auth.failure_refill_ms", "must be at least 1 ms");
        }
        if self.timer.persist_interval_ms == 0 {
            return bad("timer.persist_interval_ms", "must be at least 1 ms");
        }
        let c = &self.consumer;
        if c.offset_persist_interval_ms == 0 || c.client_expiry_ms == 0 {
            return bad("consumer.*_ms", "intervals must be at least 1 ms");
        }
        if c.min_invisible_ms == 0 || c.min_invisible_ms > c.max_invisible_ms {
            return bad(
                "consumer.min_invisible_ms",
                "must be at least 1 and at most max_invisible_ms",
            );
        }
        if c.max_pop_batch == 0 {
            return bad("consumer.max_pop_batch", "must be at least 1");
        }
        if self.limits.max_queues_per_topic == 0 || self.limits.max_batch == 0 {
            return bad("limits", "counts must be at least 1");
        }
        if self.kv.max_total_bytes < (1 << 20) {
            return bad("kv.max_total_bytes", "must be at least 1 MiB");
        }
        if self.kv.compact_log_bytes < 4096 {
            return bad("kv.compact_log_bytes", "must be at least 4096 bytes");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_unknown_keys_fail() {
        Config::default().validate().unwrap();
        let c: Config = serde_json::from_str(r#"{"store":{"flush_mode":"SYNC"}}"#).unwrap();
        assert_eq!(c.store.flush_mode, FlushMode::Sync);
        assert!(serde_json::from_str::<Config>(r#"{"store":{"nope":1}}"#).is_err());
        let mut c = Config::default();
        c.store.disk_max_used_ratio = 0.0;
        assert_eq!(c.validate().unwrap_err().key, "store.disk_max_used_ratio");
    }
}
