//! Retention and disk safety: deleting expired segments and what pointed into them, and the
//! disk-use watermark that refuses writes while reads keep working.
//!
//! Owns: the cleaner's round and the check made before a new segment is created. Runs on the
//! cleaner thread and under the CommitLog's writer lock (for `check_roll`).

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

    /// One round of retention and the disk-use check.
    pub(super) fn clean(&self) -> Result<()> {
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
        if let Some(limit) = self.config.disk_limit_bytes {
            let after = (live_segments as u64 + 1).saturating_mul(size);
            if after > limit {
                return Err(Error::DiskFull(format!(
                    "commit log would grow to {after} bytes, over the limit of {limit}"
                )));
            }
        }
        if let Some(reason) = disk_verdict(&self.dir, self.config.disk_max_used_ratio) {
            *self.disk_full.lock() = Some(reason.clone());
            self.disk_full_flag.store(true, Ordering::Release);
            return Err(Error::DiskFull(reason));
        }
        Ok(())
    }
}
