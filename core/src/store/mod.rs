//! The store: CommitLog, ConsumeQueues and index, with the threads that flush, dispatch and
//! clean them, and the recovery that puts them back together after a crash.
//!
//! Owns: everything under the data directory except `config/` (the broker's metadata).
//!
//! ```text
//! data/
//!   lock  abort  checkpoint
//!   commitlog/<20-digit start offset>         segments (commit_log.rs, record.rs)
//!   consumequeue/<topic>/<queue>/<20 digits>  derived (consume_queue.rs)
//!   index/<20-digit sequence>                 derived (index.rs)
//! ```
//!
//! Invariants:
//! - The CommitLog is the only truth. ConsumeQueues and the index are rebuilt from it on start,
//!   from the checkpointed dispatch position (or from the start if they are missing).
//! - Consumers see a record only once it is *confirmed*: flushed under `SYNC_FLUSH`, written
//!   under `ASYNC_FLUSH` (RocketMQ #8239). The dispatcher never passes the confirmed offset, so
//!   every ConsumeQueue entry points at a confirmed record.
//! - Under `SYNC_FLUSH` an append is acknowledged only after the flusher's msync covering it
//!   succeeded; a failed msync poisons the store and fails every waiting and later append.
//! - The checkpoint records offsets that were durable when it was written; the abort marker
//!   exists while the store is open.
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

mod threads;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::watch;

use self::checkpoint::{Checkpoint, DirLock};
pub use self::commit_log::Appended;
use self::commit_log::{CommitLog, RollGuard};
use self::consume_queue::{tag_hash, ConsumeQueue, CqEntry};
pub use self::error::{Error, Result};
use self::index::{IndexConfig, IndexStore};
use self::record::{RecordDraft, RecordView};
use crate::config::{FlushMode, StoreConfig};
use crate::message::StoredMessage;

/// Topics with this prefix are internal (journals): not indexed, not listed, not creatable by
/// users.
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";

/// Current wall-clock time in ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Index key under which a message id is stored (cannot collide with `topic#key`: topics never
/// start with `#`).
fn id_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + id.len());
    k.extend_from_slice(b"#id#");
    k.extend_from_slice(id.as_bytes());
    k
}

fn topic_key(topic: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 1 + key.len());
    k.extend_from_slice(topic.as_bytes());
    k.push(b'#');
    k.extend_from_slice(key.as_bytes());
    k
}

/// What recovery did at open (for logs, metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous run did not shut down cleanly.
    pub after_crash: bool,
    /// A damaged or torn tail was cut from the CommitLog.
    pub cut_tail: bool,
    /// CommitLog end after recovery.
    pub log_end: u64,
    /// Where ConsumeQueue/index replay started.
    pub replayed_from: u64,
    /// Records replayed into ConsumeQueues and the index.
    pub replayed_records: u64,
}

/// Durability progress published to waiting producers.
#[derive(Debug, Clone, Copy, Default)]
struct FlushState {
    flushed: u64,
    poisoned: bool,
}

/// A wake-up flag with a condition variable.
///
/// `notify` is called on every append, so it is cheap unless the waiter actually sleeps: the
/// waiter announces itself in `sleeping` (SeqCst) before it re-checks for work and waits, and a
/// notifier that published work first (SeqCst) and then sees `sleeping == false` knows the
/// waiter will see that work without a wake-up.
#[derive(Default)]
struct Signal {
    pending: Mutex<bool>,
    cv: Condvar,
    sleeping: AtomicBool,
}

impl Signal {
    fn notify(&self) {
        // Orders the caller's publication of work (a Release store) before reading
        // `sleeping`: without it the store could still sit in the store buffer while the waiter
        // checks for work and goes to sleep (a lost wake-up).
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.sleeping.load(Ordering::SeqCst) {
            return;
        }
        let mut p = self.pending.lock();
        if !*p {
            *p = true;
            self.cv.notify_one();
        }
    }

    /// Waits up to `timeout` for a notification unless `has_work` (checked after announcing
    /// the wait) says there is something to do already.
    fn wait_unless(&self, timeout: Duration, has_work: impl Fn() -> bool) {
        self.sleeping.store(true, Ordering::SeqCst);
        let mut p = self.pending.lock();
        if !*p && !has_work() {
            self.cv.wait_for(&mut p, timeout);
        }
        *p = false;
        drop(p);
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Waits up to `timeout` for a notification; consumes it.
    fn wait(&self, timeout: Duration) {
        self.wait_unless(timeout, || false);
    }

    /// Wakes the waiter whether or not it announced itself (shutdown, explicit requests).
    fn notify_always(&self) {
        let mut p = self.pending.lock();
        *p = true;
        self.cv.notify_one();
    }
}

type QueueTable = HashMap<String, Vec<Option<Arc<ConsumeQueue>>>>;

struct Inner {
    config: StoreConfig,
    dir: PathBuf,
    log: CommitLog,
    index: IndexStore,
    queues: RwLock<QueueTable>,
    dispatched: AtomicU64,
    dispatched_tx: watch::Sender<u64>,
    flush_tx: watch::Sender<FlushState>,
    flush_signal: Signal,
    dispatch_signal: Signal,
    clean_signal: Signal,
    checkpoint_signal: Signal,
    shutdown: AtomicBool,
    disk_full: Mutex<Option<String>>,
    arrivals: Mutex<HashMap<String, watch::Sender<u64>>>,
    retention_floor: AtomicU64,
    fail_flush_countdown: AtomicU64,
    /// Held from open until a clean shutdown completes.
    lock: Mutex<Option<DirLock>>,
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
    pub fn open(config: StoreConfig) -> Result<Self> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
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
        let index_config = IndexConfig {
            slots_per_file: config.index_slots_per_file,
            entries_per_file: config.index_entries_per_file,
        };
        let index_dir = dir.join("index");
        let index = match IndexStore::open(&index_dir, index_config, dispatch_point) {
            Ok(i) => i,
            Err(e) => {
                // Derived data: throw it away and rebuild it from the CommitLog.
                tracing::warn!(error = %e, "index unreadable; rebuilding it from the commit log");
                remove_dir(&index_dir)?;
                IndexStore::open(&index_dir, index_config, dispatch_point)?
            }
        };
        let cq_dir = dir.join("consumequeue");
        let mut queues = match open_queues(&cq_dir, config.consume_queue_entries_per_file) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "consume queues unreadable; rebuilding them from the commit log");
                remove_dir(&cq_dir)?;
                QueueTable::new()
            }
        };
        // A queue whose first or last entry does not point at its own record is rebuilt.
        let mut damaged_queue = false;
        for (topic, qs) in queues.iter_mut() {
            for (qid, slot) in qs.iter_mut().enumerate() {
                let Some(q) = slot else { continue };
                let structural = q.validate(log_end, record::MIN_RECORD_LEN as u32);
                if structural.is_err() || !queue_matches_log(&log, q, topic, qid as u32, log_end) {
                    tracing::warn!(topic = %topic, queue = qid, "consume queue does not match the commit log; rebuilding it");
                    q.destroy()?;
                    *slot = None;
                    damaged_queue = true;
                }
            }
        }

        // Where replay starts: the checkpointed dispatch point, unless the derived files are
        // missing or behind it (deleted by an operator, or never flushed).
        let cq_end = queues
            .values()
            .flatten()
            .flatten()
            .filter_map(|q| q.get(q.max_offset().checked_sub(1)?))
            .map(|e| e.physical_offset + u64::from(e.size))
            .max()
            .unwrap_or(0);
        let mut replay_from = dispatch_point.min(cq_end);
        if index.entry_count() == 0 || damaged_queue {
            replay_from = 0;
        }
        replay_from = replay_from.max(log.min_offset()).min(log_end);
        for q in queues.values().flatten().flatten() {
            q.truncate_from_phy(replay_from)?;
        }
        let (flush_tx, _) = watch::channel(FlushState {
            flushed: log_end,
            poisoned: false,
        });
        let (dispatched_tx, _) = watch::channel(replay_from);
        let inner = Arc::new(Inner {
            config,
            dir,
            log,
            index,
            queues: RwLock::new(queues),
            dispatched: AtomicU64::new(replay_from),
            dispatched_tx,
            flush_tx,
            flush_signal: Signal::default(),
            dispatch_signal: Signal::default(),
            clean_signal: Signal::default(),
            checkpoint_signal: Signal::default(),
            shutdown: AtomicBool::new(false),
            disk_full: Mutex::new(None),
            arrivals: Mutex::new(HashMap::new()),
            retention_floor: AtomicU64::new(u64::MAX),
            fail_flush_countdown: AtomicU64::new(0),
            lock: Mutex::new(Some(lock)),
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

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
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
        if let Some(reason) = inner.disk_full.lock().as_ref() {
            return Err(Error::DiskFull(reason.clone()));
        }
        let appended = inner
            .log
            .append(draft, queue_id, now_ms(), inner.as_ref())?;
        match inner.config.flush_mode {
            FlushMode::Sync => inner.flush_signal.notify(),
            FlushMode::Async => inner.dispatch_signal.notify(),
        }
        Ok(appended)
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

    /// The offset below which records are visible to consumers.
    pub fn confirmed_offset(&self) -> u64 {
        self.inner.confirmed()
    }

    /// The offset below which records have been dispatched into ConsumeQueues.
    pub fn dispatched_offset(&self) -> u64 {
        self.inner.dispatched.load(Ordering::Acquire)
    }

    /// Waits (up to one second) until everything confirmed at the time of the call has been
    /// dispatched, so that a read after a returned `append` sees it (read-your-writes for
    /// queries and pulls).
    pub async fn catch_up(&self) {
        let target = self.inner.confirmed();
        if self.dispatched_offset() >= target {
            return;
        }
        self.inner.dispatch_signal.notify_always();
        let mut rx = self.inner.dispatched_tx.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|d| *d >= target)).await;
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

    /// The first offset of a queue whose message was stored at or after `timestamp_ms` (the
    /// queue's max offset if none).
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record.
    pub fn queue_offset_for_time(
        &self,
        topic: &str,
        queue_id: u32,
        timestamp_ms: i64,
    ) -> Result<u64> {
        let Some(q) = self.inner.queue(topic, queue_id) else {
            return Ok(0);
        };
        let limit = self.inner.confirmed();
        let (mut lo, mut hi) = (q.min_offset(), q.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let ts = match q.get(mid) {
                Some(e) => self
                    .inner
                    .log
                    .read(e.physical_offset, Some(e.size), limit, |v| {
                        v.fields.store_timestamp
                    })?,
                None => None,
            };
            match ts {
                Some(ts) if ts < timestamp_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// A receiver that changes whenever the dispatcher publishes new queue entries.
    pub fn subscribe_dispatched(&self) -> watch::Receiver<u64> {
        self.inner.dispatched_tx.subscribe()
    }

    /// CommitLog write position, flushed position, and minimum offset.
    pub fn log_offsets(&self) -> (u64, u64, u64) {
        let l = &self.inner.log;
        (l.min_offset(), l.flushed(), l.wrote())
    }

    /// Whether writes are refused (poisoned or disk full), with the reason.
    pub fn write_refusal(&self) -> Option<String> {
        if self.inner.log.is_poisoned() {
            return Some("poisoned by a failed flush".into());
        }
        self.inner.disk_full.lock().clone()
    }

    /// `(min, max)` logical offsets of a queue; `(0, 0)` if it has no entries yet.
    pub fn queue_range(&self, topic: &str, queue_id: u32) -> (u64, u64) {
        self.inner
            .queue(topic, queue_id)
            .map_or((0, 0), |q| (q.min_offset(), q.max_offset()))
    }

    /// Up to `max` messages of a queue from logical offset `from`.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if a record fails verification (it is never served).
    pub fn read_queue(
        &self,
        topic: &str,
        queue_id: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        let Some(q) = self.inner.queue(topic, queue_id) else {
            return Ok(Vec::new());
        };
        let limit = self.inner.confirmed();
        let mut out = Vec::new();
        for (offset, e) in q.read(from, max) {
            let read = self
                .inner
                .log
                .read(e.physical_offset, Some(e.size), limit, |v| {
                    let f = &v.fields;
                    (v.topic == topic && f.queue_id == queue_id && f.queue_offset == offset)
                        .then(|| StoredMessage::from(&v))
                })?;
            match read {
                Some(Some(m)) => out.push(m),
                Some(None) => {
                    return Err(Error::Corrupted {
                        path: self.inner.dir.join("consumequeue").join(topic),
                        offset,
                        reason: "queue entry points at another queue's record",
                    })
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Raw ConsumeQueue entries of a queue (for filters that look at tag hashes first).
    pub fn queue_entries(
        &self,
        topic: &str,
        queue_id: u32,
        from: u64,
        max: usize,
    ) -> Vec<(u64, CqEntry)> {
        self.inner
            .queue(topic, queue_id)
            .map_or_else(Vec::new, |q| q.read(from, max))
    }

    /// The message at CommitLog offset `phy`, if confirmed.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record.
    pub fn read_at(&self, phy: u64, size: Option<u32>) -> Result<Option<StoredMessage>> {
        let limit = self.inner.confirmed();
        self.inner
            .log
            .read(phy, size, limit, |v| StoredMessage::from(&v))
    }

    /// Finds a message by id.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record.
    pub fn find_by_id(&self, id: &str) -> Result<Option<StoredMessage>> {
        for phy in self.inner.index.query(&id_key(id), i64::MIN, i64::MAX, 16) {
            if let Some(m) = self.read_at(phy, None)? {
                if m.message_id == id {
                    return Ok(Some(m));
                }
            }
        }
        Ok(None)
    }

    /// The `prepared_offset` field of the record at `phy` (transactions: the half it commits).
    pub fn prepared_offset_at(&self, phy: u64) -> Option<u64> {
        let limit = self.inner.confirmed();
        self.inner
            .log
            .read(phy, None, limit, |v| v.prepared_offset)
            .ok()
            .flatten()
    }

    /// Every stored record with this id (a scheduled message and its delivered copy share it),
    /// newest first.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record.
    pub fn find_all_by_id(&self, id: &str) -> Result<Vec<StoredMessage>> {
        let mut out = Vec::new();
        for phy in self.inner.index.query(&id_key(id), i64::MIN, i64::MAX, 16) {
            if let Some(m) = self.read_at(phy, None)? {
                if m.message_id == id {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Messages of `topic` carrying `key`, stored in `[begin_ms, end_ms]`, newest first.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record.
    pub fn find_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        let mut out = Vec::new();
        // Ask for more candidates than needed: hash collisions are filtered here.
        for phy in self.inner.index.query(
            &topic_key(topic, key),
            begin_ms,
            end_ms,
            max.saturating_mul(4).max(32),
        ) {
            if out.len() >= max {
                break;
            }
            if let Some(m) = self.read_at(phy, None)? {
                if m.topic == topic
                    && m.keys.iter().any(|k| k == key)
                    && (begin_ms..=end_ms).contains(&m.store_timestamp_ms)
                {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Deletes the ConsumeQueues of a topic (its CommitLog records age out with retention).
    ///
    /// # Errors
    /// I/O errors.
    pub fn delete_queues(&self, topic: &str) -> Result<()> {
        let removed = self.inner.queues.write().remove(topic);
        self.inner.log.forget_topic(topic);
        for q in removed.into_iter().flatten().flatten() {
            q.destroy()?;
        }
        let dir = self.inner.dir.join("consumequeue").join(topic);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(dir, e)),
        }
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

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Whether the first and last entries of `q` point at records of this queue at those offsets.
fn queue_matches_log(
    log: &CommitLog,
    q: &ConsumeQueue,
    topic: &str,
    qid: u32,
    log_end: u64,
) -> bool {
    let (min, max) = (q.min_offset(), q.max_offset());
    if max <= min {
        return true;
    }
    [min, max - 1].into_iter().all(|offset| {
        let Some(e) = q.get(offset) else {
            return false;
        };
        // Entries pointing below the log's start were removed by retention: not checkable.
        if e.physical_offset < log.min_offset() {
            return true;
        }
        matches!(
            log.read(e.physical_offset, Some(e.size), log_end, |v| {
                v.topic == topic && v.fields.queue_id == qid && v.fields.queue_offset == offset
            }),
            Ok(Some(true))
        )
    })
}

fn open_queues(root: &Path, per_file: u64) -> Result<QueueTable> {
    let mut table = QueueTable::new();
    let topics = match std::fs::read_dir(root) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(table),
        Err(e) => return Err(Error::io(root, e)),
    };
    for t in topics {
        let t = t.map_err(|e| Error::io(root, e))?;
        let Some(topic) = t.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let queues = std::fs::read_dir(t.path()).map_err(|e| Error::io(t.path(), e))?;
        for q in queues {
            let q = q.map_err(|e| Error::io(t.path(), e))?;
            let Some(qid) = q.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let cq = ConsumeQueue::open(&q.path(), per_file)?;
            let v = table.entry(topic.clone()).or_default();
            if v.len() <= qid as usize {
                v.resize(qid as usize + 1, None);
            }
            v[qid as usize] = Some(Arc::new(cq));
        }
    }
    Ok(table)
}

impl Inner {
    fn confirmed(&self) -> u64 {
        match self.config.flush_mode {
            FlushMode::Sync => self.log.flushed(),
            FlushMode::Async => self.log.wrote(),
        }
    }

    fn queue(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .get(topic)?
            .get(queue_id as usize)?
            .clone()
    }

    fn queue_or_create(&self, topic: &str, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(q) = self.queue(topic, queue_id) {
            return Ok(q);
        }
        let mut table = self.queues.write();
        let v = table.entry(topic.to_owned()).or_default();
        if v.len() <= queue_id as usize {
            v.resize(queue_id as usize + 1, None);
        }
        if let Some(q) = &v[queue_id as usize] {
            return Ok(q.clone());
        }
        let dir = self
            .dir
            .join("consumequeue")
            .join(topic)
            .join(queue_id.to_string());
        let q = Arc::new(ConsumeQueue::open(
            &dir,
            self.config.consume_queue_entries_per_file,
        )?);
        v[queue_id as usize] = Some(q.clone());
        Ok(q)
    }

    /// Dispatches records from the current dispatch position up to `limit`. During recovery
    /// (`seed`) it also raises the queue offset counters. Returns the number of records.
    fn dispatch_until(&self, limit: u64, seed: bool) -> Result<u64> {
        let mut count = 0u64;
        loop {
            let from = self.dispatched.load(Ordering::Acquire);
            if from >= limit {
                return Ok(count);
            }
            let mut failure = None;
            let mut cache: Option<(String, u32, Arc<ConsumeQueue>)> = None;
            let mut touched: Vec<String> = Vec::new();
            let next = self.log.walk(from, limit, 4096, |v| {
                if failure.is_some() {
                    return;
                }
                if let Err(e) = self.dispatch_one(v, &mut cache, seed) {
                    failure = Some(e);
                }
                if touched.last().map(String::as_str) != Some(v.topic)
                    && !touched.iter().any(|t| t == v.topic)
                {
                    touched.push(v.topic.to_owned());
                }
                count += 1;
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if next == from {
                return Ok(count);
            }
            self.dispatched.store(next, Ordering::Release);
            self.dispatched_tx.send_replace(next);
            let arrivals = self.arrivals.lock();
            for t in &touched {
                if let Some(tx) = arrivals.get(t) {
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }

    fn dispatch_one(
        &self,
        v: &RecordView<'_>,
        cache: &mut Option<(String, u32, Arc<ConsumeQueue>)>,
        seed: bool,
    ) -> Result<()> {
        let qid = v.fields.queue_id;
        let q = match cache {
            Some((t, id, q)) if t == v.topic && *id == qid => q.clone(),
            _ => {
                let q = self.queue_or_create(v.topic, qid)?;
                *cache = Some((v.topic.to_owned(), qid, q.clone()));
                q
            }
        };
        q.put(
            v.fields.queue_offset,
            CqEntry {
                physical_offset: v.fields.physical_offset,
                size: v.total_len as u32,
                tag_hash: if v.flags & record::FLAG_QUEUE_KEY != 0 {
                    v.prepared_offset
                } else {
                    tag_hash(v.tag)
                },
            },
        )?;
        let phy = v.fields.physical_offset;
        let ts = v.fields.store_timestamp;
        if v.flags & record::FLAG_NO_INDEX != 0 {
            // Internal journals are read by queue, never looked up by id or key.
            if seed {
                self.log
                    .seed_queue_offset(v.topic, qid, v.fields.queue_offset + 1);
            }
            return Ok(());
        }
        self.index.put(&id_key(v.message_id), phy, ts)?;
        for key in v.keys() {
            self.index.put(&topic_key(v.topic, key), phy, ts)?;
        }
        if seed {
            self.log
                .seed_queue_offset(v.topic, qid, v.fields.queue_offset + 1);
        }
        Ok(())
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
            timestamp_ms: now_ms(),
        };
        cp.store(&self.dir)
    }

    fn retain_after_open(&self) -> Result<()> {
        let min = self.log.min_offset();
        for q in self.queues.read().values().flatten().flatten() {
            q.delete_below_phy(min)?;
        }
        Ok(())
    }

    /// One round of retention and the disk-use check.
    fn clean(&self) -> Result<()> {
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
            return Err(Error::DiskFull(reason));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
