//! Retention and disk safety: deleting expired segments and what pointed into them, and the
//! disk-use watermark that refuses writes while reads keep working.
//!
//! Owns: the cleaner's round, the `disk_limit_bytes` accounting (CommitLog segments, the disk
//! blocks of ConsumeQueues and the index, the KV store's files) and the check made before a
//! new segment is created. Runs on the cleaner thread, on the append path (`check_limit`, two
//! atomic loads and a read lock, only with a limit set) and under the CommitLog's writer lock
//! (for `check_roll`).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::commit_log::RollGuard;
use super::error::{Error, Result};
use super::Inner;

impl Inner {
    pub(super) fn retain_after_open(&self) -> Result<()> {
        let min = self.log.min_offset();
        for q in self.queues.read().values().flatten().flatten() {
            q.delete_below_phy(min)?;
        }
        Ok(())
    }

    /// Bytes counted against `disk_limit_bytes` now (see [`super::Store::used_bytes`]).
    pub(super) fn used_bytes(&self) -> u64 {
        (self.log.segment_count() as u64)
            .saturating_mul(self.config.segment_size)
            .saturating_add(self.derived_usage.bytes())
            .saturating_add(self.kv_bytes.load(Ordering::Acquire))
    }

    /// Measures the KV store's files again (a handful of `stat`s).
    fn measure_kv(&self) {
        use std::os::unix::fs::MetadataExt;
        let dir = self.dir.join("kv");
        let bytes = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|m| m.blocks().saturating_mul(512))
                    .sum()
            })
            .unwrap_or(0);
        self.kv_bytes.store(bytes, Ordering::Release);
    }

    /// Refuses a write when the data directory holds more than `disk_limit_bytes`, or would
    /// with `extra` more bytes.
    pub(super) fn check_limit(&self, extra: u64) -> Result<()> {
        let Some(limit) = self.config.disk_limit_bytes else {
            return Ok(());
        };
        let after = self.used_bytes().saturating_add(extra);
        if after > limit {
            return Err(Error::DiskFull(format!(
                "the data directory would hold {after} bytes (commit log, consume queues, \
                 index and KV), over the limit of {limit}"
            )));
        }
        Ok(())
    }

    /// One round of retention and the disk-use check.
    pub(super) fn clean(&self) -> Result<()> {
        let _round = self.cleaning.lock();
        self.measure_kv();
        self.check_disk();
        let retention = Duration::from_secs(self.config.retention_hours.saturating_mul(3600));
        let now = SystemTime::now();
        let safe = self
            .dispatched
            .load(Ordering::Acquire)
            .min(self.retention_floor.load(Ordering::Acquire));
        let before = self.log.min_offset();
        let min = self.log.delete_oldest(safe, |seg| {
            std::fs::metadata(seg.file().path())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > retention)
        })?;
        if min > before {
            for q in self.queues.read().values().flatten().flatten() {
                q.delete_below_phy(min)?;
            }
            self.index.delete_below(min)?;
            self.check_disk();
        }
        Ok(())
    }

    fn check_disk(&self) {
        let verdict = disk_verdict(&self.dir, self.config.disk_max_used_ratio);
        let mut full = self.disk_full.lock();
        match (&*full, verdict) {
            (None, Some(reason)) => {
                tracing::warn!(reason = %reason, "disk watermark reached: refusing writes");
                *full = Some(reason);
            }
            (Some(_), None) => {
                tracing::info!("disk usage below the watermark again: accepting writes");
                *full = None;
            }
            (_, v) => *full = v.or(full.take()),
        }
        self.disk_full_flag.store(full.is_some(), Ordering::Release);
    }
}

/// `Some(reason)` if the filesystem holding `dir` is fuller than `max_ratio`.
fn disk_verdict(dir: &Path, max_ratio: f64) -> Option<String> {
    let st = rustix::fs::statvfs(dir).ok()?;
    if st.f_blocks == 0 {
        return None;
    }
    let used = 1.0 - (st.f_bavail as f64 / st.f_blocks as f64);
    (used > max_ratio).then(|| {
        format!(
            "filesystem of {} is {:.1}% full (limit {:.1}%)",
            dir.display(),
            used * 100.0,
            max_ratio * 100.0
        )
    })
}

impl RollGuard for Inner {
    fn check_roll(&self, live_segments: usize, size: u64) -> Result<()> {
        if self.config.disk_limit_bytes.is_some() {
            self.measure_kv();
            let _ = live_segments; // counted by `used_bytes`
            self.check_limit(size)?;
        }
        if let Some(reason) = disk_verdict(&self.dir, self.config.disk_max_used_ratio) {
            *self.disk_full.lock() = Some(reason.clone());
            self.disk_full_flag.store(true, Ordering::Release);
            return Err(Error::DiskFull(reason));
        }
        Ok(())
    }
}
