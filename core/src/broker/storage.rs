//! The `Storage` service of the `Broker`: the store's health as operators and tools see it —
//! whether it takes writes (and why not), whether new messages become readable (the
//! dispatcher; readiness is both), where its CommitLog stands (min, durable, written,
//! dispatched), what recovery did at open — running retention now, and the fault-injection hook
//! of the crash tests (`testing` feature).
//!
//! Who calls it: gateways (health and readiness endpoints, `GetBrokerInfo`), the server (the
//! ready line), benchmarks and tests. Reads the store's state only; writes nothing.

use super::*;
use crate::api::*;

/// The store's health: write refusal, CommitLog positions, the recovery report, retention on demand.
#[derive(Clone, Copy)]
pub struct Storage<'a> {
    pub(super) broker: &'a Broker,
}

impl Storage<'_> {
    /// The store's health now: write refusal, CommitLog positions and the recovery report.
    pub fn health(self) -> Health {
        Health {
            write_refusal: self.broker.storage().write_refusal(),
            dispatch_failure: self.broker.inner.store.dispatch_failure(),
            log: self.broker.storage().log_offsets(),
            recovery: self.broker.storage().recovery_report(),
        }
    }

    /// Why the broker is not ready, or `None`: writes are refused (disk full, read-only after
    /// a failed flush), or the dispatcher cannot make new messages readable (a full disk; it
    /// retries and recovers by itself when space returns). What readiness endpoints report.
    pub fn not_ready(self) -> Option<String> {
        if let Some(stalled) = self.broker.inner.store.dispatch_failure() {
            return Some(format!(
                "new messages are not readable: dispatch stalled: {stalled}"
            ));
        }
        let reason = self.write_refusal()?;
        Some(format!("refusing writes: {reason}"))
    }

    /// Why writes are refused (disk full — including a dispatcher stalled by a full disk —,
    /// read-only after a failed flush), or `None` while the store takes writes.
    pub fn write_refusal(self) -> Option<String> {
        self.broker.inner.store.write_refusal()
    }

    /// CommitLog flushes so far that made something durable: appends divided by this is the
    /// group commit's batching (benchmarks report it).
    pub fn flush_rounds(self) -> u64 {
        self.broker.inner.store.flush_rounds()
    }

    /// CommitLog positions now.
    pub fn log_offsets(self) -> LogOffsets {
        let (min, durable, end) = self.broker.inner.store.log_offsets();
        let dispatched = self.broker.inner.store.dispatched_offset();
        LogOffsets {
            min,
            durable,
            end,
            dispatched,
        }
    }

    /// Bytes the data directory holds as counted against `store.disk_limit_bytes`: CommitLog
    /// segments, the disk blocks of ConsumeQueues and the index, the KV store's files.
    pub fn used_bytes(self) -> u64 {
        self.broker.inner.store.used_bytes()
    }

    /// What recovery did when this broker opened its store.
    pub fn recovery_report(self) -> RecoveryReport {
        self.broker.inner.store.recovery_report()
    }

    /// Runs retention and the disk-use check now instead of at the next interval.
    pub fn run_retention_now(self) {
        // A slave's copy follows its master's retention.
        if self.broker.is_read_only() {
            return;
        }
        self.broker.inner.store.run_cleaner_now();
    }

    /// Makes the `n`-th next CommitLog flush fail (fault injection for the crash tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_flush_failure(self, n: u64) {
        self.broker.inner.store.inject_flush_failure(n);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::message::Message;

    #[tokio::test]
    async fn a_stalled_dispatcher_makes_the_broker_not_ready_until_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default();
        config.store.data_dir = dir.path().to_path_buf();
        config.store.segment_size = 1 << 20;
        // Only the injected fault makes the disk full here, not the machine's real use.
        config.store.disk_max_used_ratio = 1.0;
        let b = Broker::open(config).unwrap();
        for t in ["old", "new"] {
            b.topics().create(TopicConfig::new(t, 1)).unwrap();
        }
        b.producer()
            .send(Message::new("old", "a").into())
            .await
            .unwrap();
        assert_eq!(b.storage().not_ready(), None);
        let r = b.consumer().pull("old", 0, 0, 10).await.unwrap();
        assert_eq!(r.messages.len(), 1, "dispatched before the disk fills");
        b.inner.store.inject_enospc(true);
        b.producer()
            .send(Message::new("new", "b").into())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let reason = loop {
            if let Some(r) = b.storage().not_ready() {
                break r;
            }
            assert!(Instant::now() < deadline, "never reported not ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(reason.contains("dispatch stalled"), "{reason}");
        assert!(b.storage().health().dispatch_failure.is_some());
        // Writes are refused while the disk is too full to make them readable.
        assert!(b.storage().write_refusal().is_some());
        let refused = b
            .producer()
            .send(Message::new("old", "c").into())
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), crate::ErrorKind::Unavailable, "{refused}");
        // What was readable stays readable: a pull does not fail.
        let r = b.consumer().pull("old", 0, 0, 10).await.unwrap();
        assert_eq!(r.messages.len(), 1);
        b.inner.store.inject_enospc(false);
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.storage().not_ready().is_some() {
            assert!(Instant::now() < deadline, "never ready again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = b.consumer().pull("new", 0, 0, 10).await.unwrap();
        assert_eq!(r.messages.len(), 1);
        assert_eq!(b.storage().write_refusal(), None);
        b.producer()
            .send(Message::new("old", "d").into())
            .await
            .unwrap();
    }
}
