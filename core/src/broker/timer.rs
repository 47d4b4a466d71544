//! Delayed and timed delivery: delay levels and any delivery time up to `timer.max_delay_ms`.
//!
//! Owns: the internal topic [`TIMER_TOPIC`], the in-memory schedule and the delivery thread
//! (`rg-timer`), and `<data_dir>/config/timer.json` (delivery progress and cancellations).
//!
//! How it works. A scheduled message is appended — durably, under the store's flush mode,
//! before `send` returns — to the internal topic with its target topic and queue in reserved
//! properties; its ConsumeQueue entry carries the delivery time in the tag-hash slot
//! (`FLAG_QUEUE_KEY`), so the schedule can be rebuilt from ConsumeQueue entries alone, without
//! reading bodies. In memory the schedule keeps 32 bytes per pending message (time, queue
//! offset, CommitLog offset, size) in a binary heap: millions of pending messages cost tens of
//! MiB, never their bodies. When a message is due the thread copies it to its target queue
//! (same id, keys, tag, properties and body) and it becomes visible to consumers.
//!
//! Invariants and recovery:
//! - The progress file holds a watermark `W` and a loaded offset `L`: every scheduled entry
//!   below `L` with a delivery time `<= W` has been delivered. At start the schedule is rebuilt
//!   from the internal queue: entries with a time `> W` or at offsets `>= L`. So a message due
//!   while the broker was down is delivered right after start, and nothing scheduled is lost; a
//!   crash between a delivery and the next progress write (every `timer.persist_interval_ms`)
//!   can deliver a message twice (at-least-once).
//! - Retention never deletes a CommitLog segment holding a pending scheduled message: the
//!   thread publishes the smallest pending CommitLog offset as the store's retention floor.
//! - A cancelled message (by id, before it is due) is never delivered; cancellations are
//!   persisted before `cancel` returns.
//!
//! Concurrency: one mutex around the schedule, held briefly by `send` (nothing: the thread loads
//! new entries itself), `cancel`, and the thread; the thread appends with the mutex released.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{meta_file, Inner};
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use crate::store::Store;

/// Internal topic holding scheduled messages until they are due.
pub const TIMER_TOPIC: &str = "rmq_sys_timer";
/// Reserved property: the target topic of a scheduled message.
pub const PROP_REAL_TOPIC: &str = "REAL_TOPIC";
/// Reserved property: the target queue of a scheduled message.
pub const PROP_REAL_QID: &str = "REAL_QID";
/// Reserved property: the delivery time of a scheduled message (ms since the epoch).
pub const PROP_DELIVER_AT: &str = "TIMER_DELIVER_MS";

/// Entries loaded or delivered per round.
pub(super) const BATCH: usize = 4096;
/// Longest sleep between checks for newly scheduled messages.
pub(super) const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pending {
    pub(super) deliver_at: i64,
    pub(super) offset: u64,
    pub(super) phy: u64,
    pub(super) size: u32,
}

#[derive(Serialize, Deserialize, Default)]
pub(super) struct Progress {
    pub(super) watermark_ms: i64,
    pub(super) loaded: u64,
    #[serde(default)]
    pub(super) cancelled: Vec<u64>,
}

#[derive(Default)]
pub(super) struct Schedule {
    pub(super) heap: BinaryHeap<Reverse<Pending>>,
    pub(super) loaded: u64,
    pub(super) watermark: i64,
    pub(super) cancelled: BTreeSet<u64>,
    pub(super) delivered: u64,
}

/// The timer: schedule, progress file and delivery thread.
pub struct Timer {
    pub(super) path: PathBuf,
    pub(super) levels_ms: Vec<u64>,
    pub(super) max_delay_ms: u64,
    pub(super) persist_every: Duration,
    pub(super) schedule: Mutex<Schedule>,
    /// When the progress was last persisted and the retention floor last published.
    pub(super) housekeeping: Mutex<(Instant, Option<Instant>)>,
    /// The delivery worker (`rg-timer`).
    pub(super) worker: super::worker::Worker,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl Timer {
    /// Loads the progress and rebuilds the schedule from the internal queue.
    ///
    /// # Errors
    /// Invalid delay levels, an unreadable progress file.
    pub fn open(dir: &Path, config: &crate::config::TimerConfig, store: &Store) -> Result<Self> {
        let path = dir.join("timer.json");
        let progress: Progress = meta_file::load(&path)?.unwrap_or_default();
        let mut s = Schedule {
            loaded: progress.loaded,
            watermark: progress.watermark_ms,
            cancelled: progress.cancelled.into_iter().collect(),
            ..Schedule::default()
        };
        let (min, max) = store.dispatched().queue_range(TIMER_TOPIC, 0);
        let mut at = min;
        while at < max {
            let entries = store.dispatched().queue_entries(TIMER_TOPIC, 0, at, BATCH);
            let Some(last) = entries.last().map(|(o, _)| *o) else {
                break;
            };
            for (offset, e) in entries {
                let deliver_at = e.tag_hash as i64;
                if (deliver_at > s.watermark || offset >= s.loaded)
                    && !s.cancelled.contains(&e.physical_offset)
                {
                    s.heap.push(Reverse(Pending {
                        deliver_at,
                        offset,
                        phy: e.physical_offset,
                        size: e.size,
                    }));
                }
            }
            at = last + 1;
        }
        s.loaded = max;
        Ok(Self {
            path,
            levels_ms: config.levels_ms()?,
            max_delay_ms: config.max_delay_ms,
            persist_every: Duration::from_millis(config.persist_interval_ms),
            schedule: Mutex::new(s),
            housekeeping: Mutex::new((Instant::now(), None)),
            worker: super::worker::Worker::default(),
        })
    }

    /// Messages scheduled and not yet delivered.
    pub fn pending(&self) -> usize {
        self.schedule.lock().heap.len()
    }

    /// When a message with these settings is due, or `None` for "now".
    ///
    /// # Errors
    /// [`Error::IllegalDelayLevel`], [`Error::IllegalDeliveryTime`].
    pub fn due_time(&self, now: i64, level: Option<u32>, at: Option<i64>) -> Result<Option<i64>> {
        let t = match (level, at) {
            (Some(l), _) => {
                let max = self.levels_ms.len() as u32;
                if l == 0 || l > max {
                    return Err(Error::IllegalDelayLevel { got: l, max });
                }
                now + self.levels_ms[(l - 1) as usize] as i64
            }
            (None, Some(t)) => {
                if t > now.saturating_add(self.max_delay_ms as i64) {
                    return Err(Error::IllegalDeliveryTime {
                        deliver_at_ms: t,
                        max_delay_ms: self.max_delay_ms,
                    });
                }
                t
            }
            (None, None) => return Ok(None),
        };
        Ok((t > now).then_some(t))
    }

    /// Cancels the scheduled message at CommitLog offset `phy` (timer queue offset
    /// `queue_offset`). Returns false if it is not
    /// pending (already delivered or unknown).
    ///
    /// # Errors
    /// [`Error::Metadata`] if the cancellation cannot be persisted.
    pub fn cancel(&self, phy: u64, queue_offset: u64) -> Result<bool> {
        let mut s = self.schedule.lock();
        // Pending: in the schedule, or scheduled but not loaded by the thread yet.
        let in_heap = s.heap.iter().any(|Reverse(p)| p.phy == phy);
        let pending = (queue_offset >= s.loaded || in_heap) && !s.cancelled.contains(&phy);
        if !pending {
            return Ok(false);
        }
        if in_heap {
            s.heap.retain(|Reverse(p)| p.phy != phy);
        }
        // Remembered (and persisted) so that a reload from the queue skips it too.
        s.cancelled.insert(phy);
        self.persist_locked(&s)?;
        Ok(true)
    }

    fn persist_locked(&self, s: &Schedule) -> Result<()> {
        meta_file::store(
            &self.path,
            &Progress {
                watermark_ms: s.watermark,
                loaded: s.loaded,
                cancelled: s.cancelled.iter().copied().collect(),
            },
        )
    }

    /// Writes the progress now.
    ///
    /// # Errors
    /// [`Error::Metadata`].
    pub fn persist(&self) -> Result<()> {
        let s = self.schedule.lock();
        self.persist_locked(&s)
    }
}

/// Builds the copy of a due scheduled message for its target queue; `None` if the target is gone.
pub(super) fn delivery_target(
    m: &StoredMessage,
) -> Option<(String, u32, BTreeMap<String, String>)> {
    let topic = m.properties.get(PROP_REAL_TOPIC)?.clone();
    let qid = m.properties.get(PROP_REAL_QID)?.parse().ok()?;
    let mut props = m.properties.clone();
    for k in [PROP_REAL_TOPIC, PROP_REAL_QID, PROP_DELIVER_AT] {
        props.remove(k);
    }
    Some((topic, qid, props))
}

/// Presents a scheduled record as the message it will become (for queries by id).
pub fn present_scheduled(mut m: StoredMessage) -> StoredMessage {
    if let Some((topic, qid, props)) = delivery_target(&m) {
        m.topic = topic;
        m.queue_id = qid;
        m.properties = props;
    }
    m
}

/// One tick of the delivery worker (`rg-timer`): load newly scheduled entries, deliver due
/// ones, persist the progress and publish the retention floor when due. Returns how long to
/// sleep: until the next message is due, at most [`POLL`].
pub(super) async fn tick(inner: &Inner) -> Duration {
    if let Err(e) = round(inner).await {
        tracing::error!(error = %e, "timer delivery failed; retrying");
        return POLL;
    }
    let timer = &inner.timer;
    let floor_due = {
        let mut h = timer.housekeeping.lock();
        if h.0.elapsed() >= timer.persist_every {
            if let Err(e) = timer.persist() {
                tracing::error!(error = %e, "could not persist the timer progress");
            }
            h.0 = Instant::now();
        }
        let due = h.1.is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if due {
            h.1 = Some(Instant::now());
        }
        due
    };
    if floor_due {
        let floor = timer
            .schedule
            .lock()
            .heap
            .iter()
            .map(|Reverse(p)| p.phy)
            .min();
        inner.store.set_retention_floor(floor.unwrap_or(u64::MAX));
    }
    let s = timer.schedule.lock();
    match s.heap.peek() {
        Some(Reverse(p)) => {
            let ms = u64::try_from(p.deliver_at - inner.clock.now_ms()).unwrap_or(0);
            Duration::from_millis(ms).min(POLL)
        }
        None => POLL,
    }
}

/// Loads newly scheduled entries and delivers the due ones.
pub(super) async fn round(inner: &Inner) -> Result<()> {
    let store = &inner.store;
    let timer = &inner.timer;
    // A send that just scheduled a message woke this thread: let its entry be dispatched
    // first, or it would only be seen after the next poll.
    let reads = store.visible().await?;
    {
        let mut s = timer.schedule.lock();
        let from = s.loaded;
        let entries = reads.queue_entries(TIMER_TOPIC, 0, from, BATCH);
        for (offset, e) in entries {
            s.loaded = offset + 1;
            if s.cancelled.contains(&e.physical_offset) {
                continue;
            }
            s.heap.push(Reverse(Pending {
                deliver_at: e.tag_hash as i64,
                offset,
                phy: e.physical_offset,
                size: e.size,
            }));
            s.loaded = offset + 1;
        }
    }
    let now = inner.clock.now_ms();
    let due: Vec<Pending> = {
        let mut s = timer.schedule.lock();
        let mut due: Vec<Pending> = Vec::new();
        loop {
            // Never split one millisecond's messages across rounds: the watermark that is
            // persisted after a round must not fall inside a partly delivered millisecond.
            let full = due.len() >= BATCH;
            match s.heap.peek() {
                Some(Reverse(p))
                    if p.deliver_at <= now
                        && (!full || due.last().is_some_and(|l| l.deliver_at == p.deliver_at)) =>
                {
                    let p = *p;
                    s.heap.pop();
                    if !s.cancelled.remove(&p.phy) {
                        due.push(p);
                    }
                }
                _ => break,
            }
        }
        due
    };
    // Append every due copy, then wait once for durability (one group commit under SYNC).
    let mut end = 0u64;
    for (i, p) in due.iter().enumerate() {
        let delivered = deliver(inner, p).map(|e| end = end.max(e));
        if let Err(e) = delivered {
            // Put back what was not delivered; the watermark does not move.
            let mut s = timer.schedule.lock();
            for p in &due[i..] {
                s.heap.push(Reverse(*p));
            }
            s.delivered += i as u64;
            return Err(e);
        }
    }
    if end > 0 {
        // Progress (the watermark) only moves once the copies are stored (durable under SYNC).
        inner.store.wait_stored(end).await?;
    }
    let mut s = timer.schedule.lock();
    s.delivered += due.len() as u64;
    let next = s.heap.peek().map_or(i64::MAX, |Reverse(p)| p.deliver_at);
    s.watermark = s.watermark.max(now.min(next.saturating_sub(1)));
    Ok(())
}

/// Appends the copy of one due message to its target queue; returns where the copy ends (0 if
/// nothing was appended).
pub(super) fn deliver(inner: &Inner, p: &Pending) -> Result<u64> {
    let store = &inner.store;
    let Some(m) = store.dispatched().read_at(p.phy, Some(p.size))? else {
        tracing::warn!(phy = p.phy, "scheduled message no longer in the commit log");
        return Ok(0);
    };
    let Some((topic, qid, props)) = delivery_target(&m) else {
        tracing::warn!(id = %m.message_id, "scheduled message without a target; dropped");
        return Ok(0);
    };
    let Some(t) = inner.topics.get(&topic) else {
        tracing::warn!(id = %m.message_id, topic = %topic, "target topic of a scheduled message is gone; dropped");
        return Ok(0);
    };
    let qid = qid % t.config.queue_count.max(1);
    let draft = super::copy_draft(&m, &topic, &props, m.reconsume_times, 0);
    Ok(store.append_nowait(&draft, qid)?.end)
}
