//! The store's replication primitives: what a master's streamer reads, what a follower
//! appends, and the durable cut of a divergent tail.
//!
//! Owns: [`Store::read_chunk`], [`Store::wait_for_more`], [`Store::append_replicated`] and
//! [`truncate_to`]. The bytes and their checks are the CommitLog's (`commit_log/replica.rs`);
//! epochs, handshakes and transports live in `crate::replication`, never here.
//!
//! Invariants:
//! - A follower's appended records go through the same flusher and dispatcher as local
//!   appends: ConsumeQueues and the index are built by the dispatcher from the same bytes, so
//!   they hold the same entries as the master's. Under `SYNC_FLUSH` an append returns only
//!   after the msync covering it.
//! - [`truncate_to`] runs on a closed store: it cuts the CommitLog durably (the recovery's
//!   torn-tail cut) and lowers the checkpoint below the cut before returning, so the next open
//!   rebuilds ConsumeQueue and index entries from there: no derived entry past the cut
//!   survives.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::checkpoint::{Checkpoint, DirLock};
use super::commit_log::{Chunk, CommitLog, ReplAppended, ReplError};
use super::error::{Error, Result};
use super::{Store, StoreConfig};
use crate::config::FlushMode;

/// Which end of the master's log a follower may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadBound {
    /// Everything written (ASYNC replication: a follower may hold records its master loses
    /// in a power cut; the epoch handshake then truncates them if it rejoins a new master).
    Written,
    /// Only what is durable on the master's disk (phase 2: SYNC replication's choice).
    #[cfg_attr(not(test), allow(dead_code))]
    Flushed,
}

impl Store {
    /// The CommitLog segment size (a follower's must equal its master's).
    pub(crate) fn segment_size(&self) -> u64 {
        self.inner.log.segment_size()
    }

    /// The end of the CommitLog for `bound`.
    pub(crate) fn log_bound(&self, bound: ReadBound) -> u64 {
        match bound {
            ReadBound::Written => self.inner.log.wrote(),
            ReadBound::Flushed => self.inner.log.flushed(),
        }
    }

    /// Whole records from `from` (a record start) below `bound`, at most `max_bytes` (but at
    /// least one record when one is there), from one segment.
    ///
    /// # Errors
    /// [`ReplError::BelowRetained`] when retention deleted `from` (the follower must start at
    /// the returned `min` with an empty log), [`ReplError::BeyondEnd`],
    /// [`ReplError::NotRecordStart`], corruption.
    pub(crate) fn read_chunk(
        &self,
        from: u64,
        max_bytes: usize,
        bound: ReadBound,
    ) -> std::result::Result<Chunk, ReplError> {
        self.inner
            .log
            .read_chunk(from, max_bytes, self.log_bound(bound))
    }

    /// Waits until `bound` is past `from` (new records to stream) or `timeout` passes; returns
    /// whether it is.
    ///
    /// # Errors
    /// [`Error::Closed`] when the store shuts down.
    pub(crate) async fn wait_for_more(
        &self,
        from: u64,
        bound: ReadBound,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut wrote = self.inner.wrote_tx.subscribe();
        let mut flushed = self.inner.flush_tx.subscribe();
        loop {
            if self.inner.shutdown.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            if self.log_bound(bound) > from {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Appenders publish the write end only while someone listens: re-check at least
            // every 50 ms in case one published just before this receiver existed.
            let step = (deadline - now).min(Duration::from_millis(50));
            let changed = async {
                match bound {
                    ReadBound::Written => wrote.changed().await,
                    ReadBound::Flushed => flushed.changed().await,
                }
            };
            if let Ok(Err(_)) = tokio::time::timeout(step, changed).await {
                return Err(Error::Closed);
            }
        }
    }

    /// Appends a chunk read from the master at the same offsets (see
    /// `CommitLog::append_replicated`), then lets the dispatcher build ConsumeQueues and the
    /// index from it; under `SYNC_FLUSH` returns once it is durable.
    ///
    /// # Errors
    /// As `CommitLog::append_replicated`, plus a full disk.
    pub(crate) async fn append_replicated(
        &self,
        chunk: &Chunk,
    ) -> std::result::Result<ReplAppended, ReplError> {
        let inner = &self.inner;
        if inner.disk_full_flag.load(Ordering::Acquire) {
            if let Some(reason) = inner.disk_full.lock().as_ref() {
                return Err(Error::DiskFull(reason.clone()).into());
            }
        }
        inner.check_limit(0)?;
        let appended = inner.log.append_replicated(chunk, inner.as_ref())?;
        inner.appends.fetch_add(appended.records, Ordering::Release);
        inner.publish_wrote();
        match inner.config.flush_mode {
            FlushMode::Sync => {
                inner.flush_signal.notify();
                self.wait_durable(appended.end).await?;
            }
            FlushMode::Async => inner.dispatch_signal.notify(),
        }
        Ok(appended)
    }
}

/// Durably cuts the CommitLog in `config.data_dir` (a closed store) at `offset`, a record
/// start or the current end: every record from there on is gone, and the checkpoint is
/// lowered so that the next open rebuilds ConsumeQueue and index entries from below the cut.
/// Returns the log's end before the cut.
///
/// # Errors
/// [`Error::Corrupted`] when `offset` is not a record start (nothing is changed), a locked
/// directory (the store is open), I/O errors.
pub(crate) fn truncate_to(config: &StoreConfig, offset: u64) -> Result<u64> {
    let dir = config.data_dir.as_path();
    let _lock = DirLock::acquire(dir)?;
    let checkpoint = Checkpoint::load(dir)?;
    // Recover as after a crash (verifies every record of the last segment), then cut.
    let (log, recovered) = CommitLog::open(
        &dir.join("commitlog"),
        config.segment_size,
        config.flush_mode == FlushMode::Sync,
        checkpoint.map(|c| c.commit_log),
        false,
    )?;
    let end = recovered.end;
    if offset < end {
        check_record_start(&log, offset, end, dir)?;
        // Lower the checkpoint first: a crash after it and before the cut only replays more.
        let lowered = Checkpoint {
            commit_log: checkpoint.map_or(0, |c| c.commit_log).min(offset),
            consume_queue: checkpoint.map_or(0, |c| c.consume_queue).min(offset),
            index: checkpoint.map_or(0, |c| c.index).min(offset),
            timestamp_ms: checkpoint.map_or(0, |c| c.timestamp_ms),
        };
        lowered.store(dir)?;
        log.cut_at(offset)?;
        tracing::warn!(
            from = offset,
            to = end,
            "commit log: truncated a divergent tail"
        );
    }
    Ok(end)
}

/// Deletes everything a closed store in `config.data_dir` holds — the CommitLog, the
/// ConsumeQueues, the index, the checkpoint, the abort marker and the epoch file — so the
/// directory opens as an empty store (a slave starting over from its master's oldest
/// segment). The directory, its lock and anything else in it (`config/`, `kv/`) stay.
///
/// # Errors
/// A locked directory (the store is open), I/O errors.
pub(crate) fn discard_files(config: &StoreConfig) -> Result<()> {
    let dir = config.data_dir.as_path();
    let _lock = DirLock::acquire(dir)?;
    // The checkpoint first: a crash part way leaves a directory that recovers as empty or
    // rebuilds its derived files, never one that trusts a checkpoint past its log.
    for name in ["checkpoint", "abort", "epoch"] {
        let path = dir.join(name);
        match super::disk::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
            _ => {}
        }
    }
    for name in ["index", "consumequeue", "commitlog"] {
        let path = dir.join(name);
        match super::disk::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(path, e)),
            _ => {}
        }
    }
    super::disk::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    tracing::warn!(dir = %dir.display(), "store: discarded every record (starting over)");
    Ok(())
}

fn check_record_start(log: &CommitLog, offset: u64, end: u64, dir: &Path) -> Result<()> {
    let corrupt = || Error::Corrupted {
        path: dir.join("commitlog"),
        offset,
        reason: "truncation point is not a record start",
    };
    if offset < log.min_offset() {
        return Err(corrupt());
    }
    match log.read_chunk(offset, 1, end) {
        Ok(_) => Ok(()),
        Err(_) => Err(corrupt()),
    }
}

impl super::Inner {
    /// Publishes the write end to streamers waiting for more (only while one listens).
    pub(super) fn publish_wrote(&self) {
        if self.wrote_tx.receiver_count() > 0 {
            self.wrote_tx.send_replace(self.log.wrote());
        }
    }
}
