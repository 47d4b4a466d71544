//! The storage side of the `Broker` API that operators and tools see: health (does the store
//! take writes, where its CommitLog stands, what recovery did), the offset of a queue at a point
//! in time, running retention now, and the fault-injection hook of the crash tests.
//!
//! Who calls it: gateways (health and readiness endpoints, `GetBrokerInfo`, QueryOffset by
//! time), the server (the ready line), benchmarks and tests. Reads the store's public state
//! only; nothing here writes a record.

use super::Broker;
use crate::api::{Health, LogOffsets, RecoveryReport};
use crate::error::{Error, Result};

impl Broker {
    /// The store's health now: write refusal, CommitLog positions and the recovery report.
    pub fn health(&self) -> Health {
        Health {
            write_refusal: self.write_refusal(),
            log: self.log_offsets(),
            recovery: self.recovery_report(),
        }
    }

    /// Why writes are refused (disk full, read-only after a failed flush), or `None` while the
    /// store takes writes.
    pub fn write_refusal(&self) -> Option<String> {
        self.inner.store.write_refusal()
    }

    /// CommitLog positions now.
    pub fn log_offsets(&self) -> LogOffsets {
        let (min, durable, end) = self.inner.store.log_offsets();
        let dispatched = self.inner.store.dispatched_offset();
        LogOffsets {
            min,
            durable,
            end,
            dispatched,
        }
    }

    /// What recovery did when this broker opened its store.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.store.recovery_report()
    }

    /// The first offset of a queue whose message was stored at or after `timestamp_ms` (the
    /// queue's max offset if none): where a consumer starting "from a time" begins.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], store errors for a damaged record.
    pub async fn queue_offset_for_time(
        &self,
        topic: &str,
        queue_id: u32,
        timestamp_ms: i64,
    ) -> Result<u64> {
        let t = self.topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        let reads = self.inner.store.visible().await?;
        Ok(reads.queue_offset_for_time(topic, queue_id, timestamp_ms)?)
    }

    /// Runs retention and the disk-use check now instead of at the next interval.
    pub fn run_retention_now(&self) {
        self.inner.store.run_cleaner_now();
    }

    /// Makes the `n`-th next CommitLog flush fail (fault injection for the crash tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_flush_failure(&self, n: u64) {
        self.inner.store.inject_flush_failure(n);
    }
}
