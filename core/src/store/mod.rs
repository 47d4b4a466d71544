//! The store: CommitLog, ConsumeQueues and index, with the threads that flush, dispatch and
//! clean them, and the recovery that puts them back together after a crash.
//!
//! Owns: everything under the data directory except `config/` (the broker's metadata).
//!
//! ```text
//! data/
//!   lock  abort  checkpoint  epoch                (epoch: epochs.rs, replication)
//!   commitlog/<20-digit start offset>         segments (commit_log.rs, record.rs)
//!   consumequeue/<topic>/<queue>/<20 digits>  derived (consume_queue.rs)
//!   index/<20-digit sequence>                 derived (index.rs)
//! ```
//!
//! Submodules besides the file formats: `recovery.rs` (derived data at open, replay point),
//! `dispatch.rs` (CommitLog → queues and index), `retention.rs` (age, disk watermark),
//! `threads.rs` (flusher, dispatcher, checkpointer, cleaner), `disk.rs` (every filesystem call
//! that decides what a power cut leaves). In core's unit tests `power_loss.rs` records those
//! calls and builds crash images from them (T1c).
//!
//! Invariants:
//! - The CommitLog is the only truth. ConsumeQueues and the index are rebuilt from it on start,
//!   from the checkpointed dispatch position (or from the start if they are missing).
//! - Consumers see a record only once it is *confirmed*: flushed under `SYNC_FLUSH`, written
//!   under `ASYNC_FLUSH` (RocketMQ #8239). The dispatcher never passes the confirmed offset, so
//!   every ConsumeQueue entry points at a confirmed record.
//! - Under `SYNC_FLUSH` an append is acknowledged only after the flusher's msync covering it
//!   succeeded; a failed msync poisons the store and fails every waiting and later append.
//! - The checkpoint records offsets that were durable when it was written, and never vouches
//!   for derived files that recovery threw away; the abort marker exists while the store is
//!   open.
//! - Durability follows POSIX, not one filesystem's journal ordering: a name is durable after
//!   its directory's fsync, a file's size and bytes after its own fsync or msync (`disk.rs`).
//!
//! Who calls it: [`crate::broker`] only. `store` never imports `broker`.
//!
//! Concurrency: appends take the CommitLog's writer mutex briefly (an encode and a memcpy).
//! Four OS threads per store: the *flusher* (msync, group commit), the *dispatcher*
//! (CommitLog → ConsumeQueues + index), the *checkpointer*, the *cleaner* (retention, disk
//! watermark); see `threads.rs`. Async producers wait for durability on a
//! `tokio::sync::watch`.

pub mod checkpoint;
pub mod commit_log;
pub mod consume_queue;
pub mod error;
pub mod index;
pub mod mapped_file;
pub mod record;

mod disk;
mod dispatch;
pub(crate) mod epochs;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod power_loss;
mod reads;
mod recovery;
mod replicated;
mod retention;
mod store_ops;
mod threads;

pub(crate) use self::commit_log::{Chunk, ReplAppended, ReplError};
pub use self::reads::Reads;
pub(crate) use self::replicated::{discard_files, truncate_to, ReadBound};
use self::threads::Signal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use self::checkpoint::{Checkpoint, DirLock};
pub use self::commit_log::Appended;
use self::commit_log::CommitLog;
use self::consume_queue::ConsumeQueue;
pub use self::error::{Error, Result};
use self::index::IndexStore;
pub use self::mapped_file::DiskUsage;
use self::record::RecordDraft;
use crate::config::{FlushMode, StoreConfig};

/// Topics with this prefix are internal (journals): not indexed, not listed, not creatable by
/// users.
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";

#[cfg(test)]
pub use crate::clock::now_ms;

pub use crate::api::RecoveryReport;

/// Durability progress published to waiting producers.
#[derive(Debug, Clone, Copy, Default)]
struct FlushState {
    flushed: u64,
    poisoned: bool,
}

type QueueTable = HashMap<String, Vec<Option<Arc<ConsumeQueue>>>>;

struct Inner {
    config: StoreConfig,
    /// Stamps records (store time) and checkpoints: the broker's clock.
    clock: Arc<dyn crate::clock::Clock>,
    dir: PathBuf,
    log: CommitLog,
    index: IndexStore,
    queues: RwLock<QueueTable>,
    dispatched: AtomicU64,
    /// Topic deletions the dispatcher has not reached; held by the dispatcher per batch and by
    /// `delete_queues` (see `store_ops.rs`).
    pending_deletes: Mutex<store_ops::PendingDeletes>,
    dispatched_tx: watch::Sender<u64>,
    /// Why the dispatcher cannot follow the CommitLog now (cleared when it can again).
    dispatch_failure: Mutex<Option<String>>,
    /// Set while the dispatcher is stalled by a full disk (`ENOSPC` growing a ConsumeQueue or
    /// the index): writes are refused then, so no more acknowledged records pile up that
    /// nobody can read until space returns.
    dispatch_disk_full: AtomicBool,
    flush_tx: watch::Sender<FlushState>,
    /// The CommitLog's write end, published while a replication streamer waits for more.
    wrote_tx: watch::Sender<u64>,
    flush_signal: Signal,
    dispatch_signal: Signal,
    clean_signal: Signal,
    /// Held by a retention round (`retention.rs`): the cleaner thread's and
    /// `Store::run_cleaner_now`'s never interleave, so a round that returns has seen the
    /// ConsumeQueues and the index follow the segments it (or the other) deleted.
    cleaning: Mutex<()>,
    checkpoint_signal: Signal,
    shutdown: AtomicBool,
    disk_full: Mutex<Option<String>>,
    arrivals: Mutex<HashMap<String, watch::Sender<u64>>>,
    retention_floor: AtomicU64,
    /// Records appended since open (group-commit sizing).
    appends: AtomicU64,
    /// Mirrors `disk_full.is_some()` so the append path checks it without a lock.
    disk_full_flag: AtomicBool,
    /// Disk blocks of the ConsumeQueues and the index (growing files).
    derived_usage: DiskUsage,
    /// Bytes of the KV store's files, as last measured (cleaner rounds and segment rolls).
    kv_bytes: AtomicU64,
    fail_flush_countdown: AtomicU64,
    /// Held from open until a clean shutdown completes.
    lock: Mutex<Option<DirLock>>,
    /// Set on a slave's copy: local appends are refused ([`Error::Follower`]); replicated
    /// chunks are not.
    following: AtomicBool,
}

/// The store handle. Dropping it shuts the store down cleanly.
pub struct Store {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    report: RecoveryReport,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `config.data_dir`, recovering from a crash if needed, and starts its
    /// threads.
    ///
    /// # Errors
    /// I/O errors, a locked directory, or corruption that recovery cannot repair.
    #[cfg(test)]
    pub fn open(config: StoreConfig) -> Result<Self> {
        Self::open_with_clock(config, Arc::new(crate::clock::SystemClock))
    }

    /// [`Store::open`] with the clock that stamps records (the broker's clock).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_clock(
        config: StoreConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Self> {
        let dir = config.data_dir.clone();
        disk::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock = DirLock::acquire(&dir)?;
        let checkpoint = Checkpoint::load(&dir)?;
        let had_marker = checkpoint::mark_open(&dir)?;
        let clean = !had_marker && checkpoint.is_some();

        let (log, recovered) = CommitLog::open(
            &dir.join("commitlog"),
            config.segment_size,
            config.flush_mode == FlushMode::Sync,
            checkpoint.map(|c| c.commit_log),
            clean,
        )?;
        let log_end = recovered.end;
        // A store without a checkpoint but with segments lost it (or crashed before writing
        // one): recover as after a crash. A brand-new store is not "after a crash".
        let after_crash = had_marker || (checkpoint.is_none() && log.segment_count() > 0);
        let dispatch_point = checkpoint
            .map_or(0, |c| c.consume_queue.min(c.index))
            .min(log_end);
        let derived_usage = DiskUsage::default();
        let (index, queues, replay_from) = recovery::open_derived(
            &dir,
            &config,
            &log,
            log_end,
            dispatch_point,
            checkpoint,
            &derived_usage,
        )?;
        let (flush_tx, _) = watch::channel(FlushState {
            flushed: log_end,
            poisoned: false,
        });
        let (dispatched_tx, _) = watch::channel(replay_from);
        let inner = Arc::new(Inner {
            config,
            clock,
            dir,
            log,
            index,
            queues: RwLock::new(queues),
            dispatched: AtomicU64::new(replay_from),
            pending_deletes: Mutex::new(store_ops::PendingDeletes::new()),
            dispatched_tx,
            dispatch_failure: Mutex::new(None),
            dispatch_disk_full: AtomicBool::new(false),
            flush_tx,
            wrote_tx: watch::channel(log_end).0,
            flush_signal: Signal::default(),
            dispatch_signal: Signal::default(),
            clean_signal: Signal::default(),
            cleaning: Mutex::new(()),
            checkpoint_signal: Signal::default(),
            shutdown: AtomicBool::new(false),
            disk_full: Mutex::new(None),
            arrivals: Mutex::new(HashMap::new()),
            retention_floor: AtomicU64::new(u64::MAX),
            appends: AtomicU64::new(0),
            disk_full_flag: AtomicBool::new(false),
            derived_usage,
            kv_bytes: AtomicU64::new(0),
            fail_flush_countdown: AtomicU64::new(0),
            lock: Mutex::new(Some(lock)),
            following: AtomicBool::new(false),
        });
        // Queue offsets continue from what the ConsumeQueues hold; replay raises them further.
        for (topic, qs) in inner.queues.read().iter() {
            for (qid, q) in qs.iter().enumerate() {
                if let Some(q) = q {
                    inner
                        .log
                        .seed_queue_offset(topic, qid as u32, q.max_offset());
                }
            }
        }
        let replayed_records = inner.dispatch_until(log_end, true)?;
        inner.retain_after_open()?;
        let report = RecoveryReport {
            after_crash,
            cut_tail: recovered.cut_tail,
            log_end,
            replayed_from: replay_from,
            replayed_records,
        };
        if after_crash || replayed_records > 0 {
            tracing::info!(?report, "store recovered");
        }
        // Make the recovered state the new safe point before accepting writes.
        inner.checkpoint()?;
        let store = Self {
            threads: Mutex::new(threads::spawn(&inner)?),
            inner,
            report,
        };
        Ok(store)
    }

    /// What recovery did when this store was opened.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.report
    }

    /// Appends a record to queue `queue_id` and, under `SYNC_FLUSH`, waits until it is durable.
    ///
    /// # Errors
    /// [`Error::DiskFull`], [`Error::Poisoned`], [`Error::RecordTooLarge`], I/O errors.
    pub async fn append(&self, draft: &RecordDraft<'_>, queue_id: u32) -> Result<Appended> {
        let appended = self.append_nowait(draft, queue_id)?;
        if self.inner.config.flush_mode == FlushMode::Sync {
            self.wait_durable(appended.end).await?;
        }
        Ok(appended)
    }

    /// Appends without waiting for durability (the caller waits with [`Store::wait_durable`]).
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn append_nowait(&self, draft: &RecordDraft<'_>, queue_id: u32) -> Result<Appended> {
        let inner = &self.inner;
        if inner.following.load(Ordering::Acquire) {
            return Err(Error::Follower);
        }
        if inner.disk_full_flag.load(Ordering::Acquire) {
            if let Some(reason) = inner.disk_full.lock().as_ref() {
                return Err(Error::DiskFull(reason.clone()));
            }
        }
        if inner.dispatch_disk_full.load(Ordering::Acquire) {
            if let Some(reason) = inner.dispatch_failure.lock().as_ref() {
                return Err(Error::DiskFull(format!(
                    "the dispatcher cannot follow the CommitLog ({reason}); writes resume once it can"
                )));
            }
        }
        inner.check_limit(0)?;
        let appended = inner
            .log
            .append(draft, queue_id, inner.clock.now_ms(), inner.as_ref())?;
        inner.appends.fetch_add(1, Ordering::Release);
        inner.publish_wrote();
        match inner.config.flush_mode {
            FlushMode::Sync => inner.flush_signal.notify(),
            FlushMode::Async => inner.dispatch_signal.notify(),
        }
        Ok(appended)
    }

    /// Waits until records up to `end` count as stored under the flush mode: durable under
    /// `SYNC_FLUSH`, at once under `ASYNC_FLUSH` (what [`Store::append`] waits for).
    ///
    /// # Errors
    /// As [`Store::wait_durable`].
    pub async fn wait_stored(&self, end: u64) -> Result<()> {
        match self.inner.config.flush_mode {
            FlushMode::Sync => self.wait_durable(end).await,
            FlushMode::Async => Ok(()),
        }
    }

    /// Waits until the CommitLog is durable up to `end`.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a flush failed before covering `end`; [`Error::Closed`] if the
    /// store shut down first.
    pub async fn wait_durable(&self, end: u64) -> Result<()> {
        let mut rx = self.inner.flush_tx.subscribe();
        let state = rx
            .wait_for(|s| s.flushed >= end || s.poisoned)
            .await
            .map_err(|_| Error::Closed)?;
        if state.flushed >= end {
            Ok(())
        } else {
            Err(Error::Poisoned(
                "a flush failed before this record was durable".into(),
            ))
        }
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    /// The offset below which records have been dispatched into ConsumeQueues.
    pub fn dispatched_offset(&self) -> u64 {
        self.inner.dispatched.load(Ordering::Acquire)
    }

    /// Reads that see every append confirmed before this call (read-your-writes: what the
    /// request path uses). Waits until the dispatcher has put those records into their
    /// ConsumeQueues and the index; no timeout, because the dispatcher either progresses, fails
    /// or the store shuts down. While the dispatcher is stalled ([`Store::dispatch_failure`],
    /// e.g. a full disk) it does not wait: the reads serve what is dispatched, so consumers
    /// keep getting what was visible before (the newer records appear once dispatch recovers).
    ///
    /// # Errors
    /// [`Error::Closed`] if the store shuts down first.
    pub async fn visible(&self) -> Result<Reads<'_>> {
        let target = self.inner.confirmed();
        if self.inner.dispatch_failure.lock().is_some() {
            return Ok(Reads { inner: &self.inner });
        }
        if self.dispatched_offset() < target {
            self.inner.dispatch_signal.notify_always();
            let mut rx = self.inner.dispatched_tx.subscribe();
            let inner = &self.inner;
            let stop = |d: &u64| {
                *d >= target
                    || inner.shutdown.load(Ordering::Acquire)
                    || inner.dispatch_failure.lock().is_some()
            };
            rx.wait_for(stop).await.map_err(|_| Error::Closed)?;
            if self.dispatched_offset() < target && inner.dispatch_failure.lock().is_none() {
                return Err(Error::Closed);
            }
        }
        Ok(Reads { inner: &self.inner })
    }

    /// Reads of what is dispatched now, without waiting: for background workers that follow
    /// arrivals themselves (timers, revival, journals) and for recovery.
    pub fn dispatched(&self) -> Reads<'_> {
        Reads { inner: &self.inner }
    }

    /// Retention never deletes a segment reaching past `phy` (records still needed, such as
    /// pending scheduled messages). `u64::MAX` lifts the floor.
    pub fn set_retention_floor(&self, phy: u64) {
        self.inner.retention_floor.store(phy, Ordering::Release);
    }

    /// A receiver that changes whenever new entries of `topic` are dispatched (long polling).
    pub fn subscribe_topic(&self, topic: &str) -> watch::Receiver<u64> {
        let mut arrivals = self.inner.arrivals.lock();
        match arrivals.get(topic) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                arrivals.insert(topic.to_owned(), tx);
                rx
            }
        }
    }

    /// CommitLog offsets as `(min, durable, end)`: the first byte still held (start of the
    /// oldest segment), the end of what is flushed to disk, and the end of what is written.
    pub fn log_offsets(&self) -> (u64, u64, u64) {
        let l = &self.inner.log;
        (l.min_offset(), l.flushed(), l.wrote())
    }

    /// CommitLog flushes so far that made something durable (appends per flush = the group
    /// commit's effect).
    pub fn flush_rounds(&self) -> u64 {
        self.inner.log.flush_rounds()
    }

    /// Bytes the data directory holds as counted against `disk_limit_bytes`: CommitLog
    /// segments (whole), the disk blocks of ConsumeQueues and the index, and the KV store's
    /// files (as measured by the last cleaner round).
    pub fn used_bytes(&self) -> u64 {
        self.inner.used_bytes()
    }

    /// One past the last offset of a queue that any append so far was given (dispatched or
    /// not): the highest offset a consumer may have seen or may commit.
    pub fn queue_end(&self, topic: &str, queue_id: u32) -> u64 {
        let dispatched = self.dispatched().queue_range(topic, queue_id).1;
        self.inner
            .log
            .next_queue_offset(topic, queue_id)
            .max(dispatched)
    }

    /// Why the dispatcher cannot follow the CommitLog now (new records stay invisible until it
    /// recovers), or `None`.
    pub fn dispatch_failure(&self) -> Option<String> {
        self.inner.dispatch_failure.lock().clone()
    }

    /// Whether writes are refused (poisoned, disk full, or the dispatcher stalled by a full
    /// disk), with the reason.
    pub fn write_refusal(&self) -> Option<String> {
        if self.inner.log.is_poisoned() {
            return Some("poisoned by a failed flush".into());
        }
        if let Some(full) = self.inner.disk_full.lock().clone() {
            return Some(full);
        }
        if self.inner.dispatch_disk_full.load(Ordering::Acquire) {
            return self.inner.dispatch_failure.lock().clone();
        }
        None
    }

    /// Marks this store as a slave's copy (`true`): local appends are refused with
    /// [`Error::Follower`] from now on, whoever holds the handle; replicated chunks go on.
    pub(crate) fn set_following(&self, following: bool) {
        self.inner.following.store(following, Ordering::Release);
    }

    /// Deletes the ConsumeQueues of a topic and starts its queue offsets again from 0 (its
    /// CommitLog records age out with retention).
    ///
    /// The deletion is a record in the CommitLog (`store_ops.rs`): the dispatcher, a replay
    /// after a crash and a replication follower all apply it at that place in the log, so
    /// records of the topic before it never come back and records after it start at queue
    /// offset 0 everywhere. The ConsumeQueues are also removed at once, so reads after this
    /// call see an empty topic. It returns without waiting for the marker to be durable (like
    /// an `ASYNC_FLUSH` append): a power cut within the flush interval may lose it together
    /// with everything written after it, and the topic's records after the last checkpoint
    /// are then dispatched again at the next start.
    ///
    /// # Errors
    /// [`Error::Follower`] on a slave's copy (it deletes when the master's marker arrives),
    /// [`Error::Poisoned`], [`Error::DiskFull`] when the marker cannot be written (nothing is
    /// deleted then), I/O errors.
    pub fn delete_queues(&self, topic: &str) -> Result<()> {
        let inner = &self.inner;
        if inner.following.load(Ordering::Acquire) {
            return Err(Error::Follower);
        }
        let mut pending = inner.pending_deletes.lock();
        let draft = store_ops::delete_queues_draft(topic, inner.clock.now_ms());
        let appended =
            inner
                .log
                .append_resetting(&draft, topic, inner.clock.now_ms(), inner.as_ref())?;
        pending.insert(topic.to_owned(), appended.physical_offset);
        inner.remove_queues(topic)?;
        drop(pending);
        inner.appends.fetch_add(1, Ordering::Release);
        inner.publish_wrote();
        match inner.config.flush_mode {
            FlushMode::Sync => inner.flush_signal.notify(),
            FlushMode::Async => inner.dispatch_signal.notify(),
        }
        Ok(())
    }

    /// Tests only: reserving disk blocks under the data directory fails with `ENOSPC` (as on a
    /// full disk) while `on`.
    #[cfg(test)]
    pub(crate) fn inject_enospc(&self, on: bool) {
        disk::inject_enospc(&self.inner.dir, on);
    }

    /// Makes a failure of the `n`-th next flush happen (fault injection for tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_flush_failure(&self, n: u64) {
        self.inner.fail_flush_countdown.store(n, Ordering::SeqCst);
    }

    /// Runs retention and the disk check now instead of at the next interval.
    pub fn run_cleaner_now(&self) {
        self.inner.clean_signal.notify_always();
        let _ = self.inner.clean();
    }

    /// Flushes, dispatches and checkpoints everything, stops the threads and marks the store
    /// clean. Idempotent.
    ///
    /// # Errors
    /// I/O errors of the final flush (the abort marker then stays, forcing recovery).
    pub fn shutdown(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.shutdown.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Readers waiting in `visible` see the shutdown (and fail) instead of waiting.
        inner.dispatched_tx.send_modify(|_| {});
        inner.flush_signal.notify_always();
        inner.dispatch_signal.notify_always();
        inner.clean_signal.notify_always();
        inner.checkpoint_signal.notify_always();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        inner.log.flush(false)?;
        inner.publish_flushed();
        inner.dispatch_until(inner.confirmed(), false)?;
        inner.checkpoint()?;
        checkpoint::mark_clean(&inner.dir)?;
        // The directory may be opened again (by this or another process) from here on.
        inner.lock.lock().take();
        tracing::info!(dir = %inner.dir.display(), "store shut down cleanly");
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "store shutdown failed; the next start will recover");
        }
    }
}

impl Inner {
    fn confirmed(&self) -> u64 {
        match self.config.flush_mode {
            FlushMode::Sync => self.log.flushed(),
            FlushMode::Async => self.log.wrote(),
        }
    }

    fn publish_flushed(&self) {
        self.flush_tx.send_replace(FlushState {
            flushed: self.log.flushed(),
            poisoned: self.log.is_poisoned(),
        });
    }

    /// Flushes the derived files and writes a checkpoint of what is now durable.
    fn checkpoint(&self) -> Result<()> {
        let dispatched = self.dispatched.load(Ordering::Acquire);
        let queues: Vec<Arc<ConsumeQueue>> = self
            .queues
            .read()
            .values()
            .flatten()
            .flatten()
            .cloned()
            .collect();
        for q in queues {
            q.flush()?;
        }
        self.index.flush()?;
        let cp = Checkpoint {
            commit_log: self.log.flushed(),
            consume_queue: dispatched,
            index: dispatched,
            timestamp_ms: self.clock.now_ms(),
        };
        cp.store(&self.dir)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
