//! Delayed and timed delivery: delay levels and any delivery time up to `timer.max_delay_ms`.
//!
//! Owns: the internal topic [`TIMER_TOPIC`], the in-memory schedule and the delivery thread
//! (`rg-timer`), and its records in the KV store: `core.timer` / `progress` (delivery progress)
//! and `core.timer.cancelled` (one record per cancelled message, keyed by its CommitLog offset
//! as 20 digits, valued with its timer-queue offset). The file `config/timer.json` of earlier
//! versions is imported once and removed.
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
//! - The progress record holds a watermark `W` and a loaded offset `L`: every scheduled entry
//!   below `L` with a delivery time `<= W` has been delivered. At start the schedule is rebuilt
//!   from the internal queue: entries with a time `> W` or at offsets `>= L`. So a message due
//!   while the broker was down is delivered right after start, and nothing scheduled is lost; a
//!   crash between a delivery and the next progress write (every `timer.persist_interval_ms`)
//!   can deliver a message twice (at-least-once).
//! - Retention never deletes a CommitLog segment holding a pending scheduled message: the
//!   thread publishes the smallest pending CommitLog offset as the store's retention floor.
//! - A cancelled message (by id, before it is due) is never delivered; cancellations are
//!   persisted before `cancel` returns. Its record is deleted once no rebuild can see the
//!   message again: when a progress write moves `W` past its delivery time and `L` past its
//!   queue offset (in the same KV batch, after the progress record), or when retention has
//!   removed its queue entry.
//!
//! Concurrency: one mutex around the schedule, held briefly by `send` (nothing: the thread loads
//! new entries itself), `cancel`, and the thread; the thread appends with the mutex released.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::meta_file::{self, meta_err};
use super::Inner;
use crate::error::{Error, Result};
use crate::kv::{Change, KvStore};
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

/// KV namespace of the progress record.
const NS_TIMER: &str = "core.timer";
const KEY_PROGRESS: &[u8] = b"progress";
/// KV namespace of cancellations.
const NS_CANCELLED: &str = "core.timer.cancelled";

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

/// The progress record (and, with `cancelled`, the file of earlier versions).
#[derive(Serialize, Deserialize, Default)]
pub(super) struct Progress {
    pub(super) watermark_ms: i64,
    pub(super) loaded: u64,
    #[serde(default, skip_serializing)]
    pub(super) cancelled: Vec<u64>,
}

/// What is known of a cancelled message: its timer-queue offset and delivery time once the
/// schedule has seen its entry.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cancelled {
    pub(super) offset: Option<u64>,
    pub(super) deliver_at: Option<i64>,
}

#[derive(Default)]
pub(super) struct Schedule {
    pub(super) heap: BinaryHeap<Reverse<Pending>>,
    pub(super) loaded: u64,
    pub(super) watermark: i64,
    /// CommitLog offset → what is known of it.
    pub(super) cancelled: BTreeMap<u64, Cancelled>,
    pub(super) delivered: u64,
}

impl Schedule {
    /// Whether the entry at queue offset `offset` is cancelled; learns its offset and time.
    pub(super) fn skip_cancelled(&mut self, offset: u64, phy: u64, deliver_at: i64) -> bool {
        match self.cancelled.get_mut(&phy) {
            Some(c) => {
                c.offset = Some(offset);
                c.deliver_at = Some(deliver_at);
                true
            }
            None => false,
        }
    }
}

fn cancel_key(phy: u64) -> String {
    format!("{phy:020}")
}

/// The timer: schedule, progress record and delivery thread.
pub struct Timer {
    pub(super) kv: Arc<KvStore>,
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
    /// Loads the progress (importing the file of earlier versions from `legacy_dir` first)
    /// and rebuilds the schedule from the internal queue.
    ///
    /// # Errors
    /// Invalid delay levels, an unreadable record or legacy file, KV faults.
    pub fn open(
        kv: Arc<KvStore>,
        legacy_dir: &Path,
        config: &crate::config::TimerConfig,
        store: &Store,
    ) -> Result<Self> {
        import_legacy(&kv, legacy_dir)?;
        let progress: Progress = match kv.get(NS_TIMER, KEY_PROGRESS) {
            Some(v) => serde_json::from_slice(&v).map_err(|e| meta_err(Path::new(NS_TIMER), e))?,
            None => Progress::default(),
        };
        let mut cancelled = BTreeMap::new();
        for (k, v) in kv.scan(NS_CANCELLED, b"", None, usize::MAX) {
            let bad = || {
                meta_err(
                    Path::new(NS_CANCELLED),
                    format!("bad record `{}`", k.escape_ascii()),
                )
            };
            let phy: u64 = std::str::from_utf8(&k)
                .ok()
                .and_then(|k| k.parse().ok())
                .ok_or_else(bad)?;
            let offset = std::str::from_utf8(&v).ok().and_then(|v| v.parse().ok());
            cancelled.insert(
                phy,
                Cancelled {
                    offset,
                    deliver_at: None,
                },
            );
        }
        let mut s = Schedule {
            loaded: progress.loaded,
            watermark: progress.watermark_ms,
            cancelled,
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
                    && !s.skip_cancelled(offset, e.physical_offset, deliver_at)
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
        // Cancellations whose queue entry retention removed can never be rebuilt.
        let retired: Vec<u64> = s
            .cancelled
            .iter()
            .filter(|(_, c)| c.offset.is_some_and(|o| o < min))
            .map(|(phy, _)| *phy)
            .collect();
        if !retired.is_empty() {
            let keys: Vec<String> = retired.iter().map(|p| cancel_key(*p)).collect();
            let changes: Vec<Change<'_>> = keys
                .iter()
                .map(|k| Change {
                    ns: NS_CANCELLED,
                    key: k.as_bytes(),
                    value: None,
                })
                .collect();
            match kv.write_batch(&changes) {
                Ok(_) => {}
                // A slave's copy (read-only): its master removes them.
                Err(Error::NotMaster { .. }) => {}
                Err(e) => return Err(e),
            }
            for p in retired {
                s.cancelled.remove(&p);
            }
        }
        Ok(Self {
            kv,
            levels_ms: config.levels_ms()?,
            max_delay_ms: config.max_delay_ms,
            persist_every: Duration::from_millis(config.persist_interval_ms),
            schedule: Mutex::new(s),
            housekeeping: Mutex::new((Instant::now(), None)),
            worker: super::worker::Worker::default(),
        })
    }

    /// Whether the message at CommitLog offset `phy` was cancelled.
    pub(super) fn is_cancelled(&self, phy: u64) -> bool {
        self.schedule.lock().cancelled.contains_key(&phy)
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
    /// KV refusals and faults if the cancellation cannot be persisted (it is then not
    /// cancelled).
    pub fn cancel(&self, phy: u64, queue_offset: u64) -> Result<bool> {
        let mut s = self.schedule.lock();
        // Pending: in the schedule, or scheduled but not loaded by the thread yet.
        let in_heap = s
            .heap
            .iter()
            .find(|Reverse(p)| p.phy == phy)
            .map(|Reverse(p)| p.deliver_at);
        let pending =
            (queue_offset >= s.loaded || in_heap.is_some()) && !s.cancelled.contains_key(&phy);
        if !pending {
            return Ok(false);
        }
        // Remembered (and persisted first) so that a reload from the queue skips it too.
        self.kv.put(
            NS_CANCELLED,
            cancel_key(phy).as_bytes(),
            Bytes::from(queue_offset.to_string()),
        )?;
        if in_heap.is_some() {
            s.heap.retain(|Reverse(p)| p.phy != phy);
        }
        s.cancelled.insert(
            phy,
            Cancelled {
                offset: Some(queue_offset),
                deliver_at: in_heap,
            },
        );
        Ok(true)
    }

    /// Writes the progress now, then forgets the cancellations no rebuild can see again.
    ///
    /// # Errors
    /// KV refusals and faults.
    pub fn persist(&self) -> Result<()> {
        let mut s = self.schedule.lock();
        let progress = Progress {
            watermark_ms: s.watermark,
            loaded: s.loaded,
            cancelled: Vec::new(),
        };
        let bytes = serde_json::to_vec(&progress).map_err(|e| meta_err(Path::new(NS_TIMER), e))?;
        let (w, l) = (s.watermark, s.loaded);
        let done: Vec<u64> = s
            .cancelled
            .iter()
            .filter(|(_, c)| {
                c.deliver_at.is_some_and(|t| t <= w) && c.offset.is_some_and(|o| o < l)
            })
            .map(|(phy, _)| *phy)
            .collect();
        let keys: Vec<String> = done.iter().map(|p| cancel_key(*p)).collect();
        let mut changes = vec![Change {
            ns: NS_TIMER,
            key: KEY_PROGRESS,
            value: Some(Bytes::from(bytes)),
        }];
        changes.extend(keys.iter().map(|k| Change {
            ns: NS_CANCELLED,
            key: k.as_bytes(),
            value: None,
        }));
        self.kv.write_batch(&changes)?;
        for p in done {
            s.cancelled.remove(&p);
        }
        Ok(())
    }
}

/// Imports `timer.json` of earlier versions into an empty namespace, then removes it.
fn import_legacy(kv: &KvStore, dir: &Path) -> Result<()> {
    let path = dir.join("timer.json");
    let Some(progress) = meta_file::load::<Progress>(&path)? else {
        return Ok(());
    };
    if kv.len(NS_TIMER) + kv.len(NS_CANCELLED) == 0 {
        let bytes = serde_json::to_vec(&progress).map_err(|e| meta_err(&path, e))?;
        let keys: Vec<String> = progress.cancelled.iter().map(|p| cancel_key(*p)).collect();
        let mut changes: Vec<Change<'_>> = keys
            .iter()
            .map(|k| Change {
                ns: NS_CANCELLED,
                key: k.as_bytes(),
                value: Some(Bytes::new()),
            })
            .collect();
        changes.push(Change {
            ns: NS_TIMER,
            key: KEY_PROGRESS,
            value: Some(Bytes::from(bytes)),
        });
        kv.write_batch(&changes)?;
        tracing::info!(file = %path.display(), cancelled = keys.len(), "imported into the KV store");
    }
    std::fs::remove_file(&path).map_err(|e| meta_err(&path, e))
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
            if s.skip_cancelled(offset, e.physical_offset, e.tag_hash as i64) {
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
                    if !s.skip_cancelled(p.offset, p.phy, p.deliver_at) {
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
