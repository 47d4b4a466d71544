//! The `Storage` service of the `Broker`: the store's health as operators and tools see it —
//! whether it takes writes (and why not), where its CommitLog stands (min, durable, written,
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
            log: self.broker.storage().log_offsets(),
            recovery: self.broker.storage().recovery_report(),
        }
    }

    /// Why writes are refused (disk full, read-only after a failed flush), or `None` while the
    /// store takes writes.
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
        self.broker.inner.store.run_cleaner_now();
    }

    /// Makes the `n`-th next CommitLog flush fail (fault injection for the crash tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_flush_failure(self, n: u64) {
        self.broker.inner.store.inject_flush_failure(n);
    }
}
