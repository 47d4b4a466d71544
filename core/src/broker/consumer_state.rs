//! What consumer groups have consumed: committed offsets of pull consumers and the pop state of
//! simple consumers, with their persistence.
//!
//! Owns: [`ConsumerState`] and the file `<data_dir>/config/consumer_offsets.json` (a snapshot,
//! replaced atomically every `consumer.offset_persist_interval_ms` and at shutdown) plus the
//! ack journal, the internal topic [`ACK_JOURNAL_TOPIC`] in the CommitLog.
//!
//! # What survives a crash
//!
//! - **Committed offsets** (pull consumers) are persisted by the snapshot only. After a crash an
//!   offset can regress by at most the commits of one persist interval (5 s by default), so
//!   those messages are delivered again; it never moves forward past what was committed.
//! - **Acks of popped messages** are journaled in the CommitLog before `ack` returns, with the
//!   store's flush mode: under `SYNC_FLUSH` an acknowledged ack survives any crash, under
//!   `ASYNC_FLUSH` a `kill -9` (the page cache survives) and an OS crash up to one flush interval.
//!   On start the snapshot is loaded and the journal replayed from the offset recorded in it.
//! - **In-flight pops** are not journaled: after a restart every message that was popped but not
//!   acknowledged is delivered again at once, with its attempt count as of the last snapshot.
//!
//! Concurrency: offsets behind one mutex; pop state behind one mutex per (group, topic), found
//! through an `RwLock`ed map. The snapshot takes the journal offset *before* copying the state;
//! acks change the state *before* journaling, so replay from that offset never misses an ack
//! (replaying one twice is harmless).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::meta_file;
use super::pop::{QueuePop, QueuePopSnapshot};
use crate::error::Result;

/// Internal topic journaling pop acks.
pub const ACK_JOURNAL_TOPIC: &str = "rmq_sys_pop_ack";

/// The pop state of one group on one topic.
#[derive(Debug)]
pub struct TopicPop {
    /// Per queue id.
    pub queues: Vec<QueuePop>,
    /// Round-robin start for fairness across queues.
    pub rotation: usize,
    /// Bumped when an ack or visibility change may let a waiting pop deliver something
    /// (a FIFO group freed, a deadline moved earlier).
    pub changes: tokio::sync::watch::Sender<u64>,
}

impl Default for TopicPop {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            rotation: 0,
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl TopicPop {
    /// Wakes pops waiting on this group and topic.
    pub fn notify_change(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl TopicPop {
    /// The state of `queue_id`, growing the table if needed.
    pub fn queue(&mut self, queue_id: u32) -> &mut QueuePop {
        let i = queue_id as usize;
        if self.queues.len() <= i {
            self.queues.resize_with(i + 1, QueuePop::default);
        }
        &mut self.queues[i]
    }
}

type PopKey = (String, String);

#[derive(Serialize, Deserialize, Default)]
struct Snapshot {
    journal_offset: u64,
    offsets: Vec<OffsetRow>,
    pops: Vec<PopRow>,
}

#[derive(Serialize, Deserialize)]
struct OffsetRow {
    group: String,
    topic: String,
    queue_id: u32,
    offset: u64,
}

#[derive(Serialize, Deserialize)]
struct PopRow {
    group: String,
    topic: String,
    queue_id: u32,
    #[serde(flatten)]
    state: QueuePopSnapshot,
}

/// Offsets and pop state of every group.
#[derive(Debug)]
pub struct ConsumerState {
    path: PathBuf,
    offsets: Mutex<BTreeMap<(String, String, u32), u64>>,
    pops: RwLock<HashMap<PopKey, Arc<Mutex<TopicPop>>>>,
    seq: AtomicU64,
    journal_offset: u64,
    persist_lock: Mutex<()>,
}

impl ConsumerState {
    /// Loads the snapshot in `dir` (empty if absent).
    ///
    /// # Errors
    /// [`crate::Error::Metadata`] for an unreadable snapshot.
    pub fn load(dir: &Path, now_ms: i64) -> Result<Self> {
        let path = dir.join("consumer_offsets.json");
        let snap: Snapshot = meta_file::load(&path)?.unwrap_or_default();
        let offsets = snap
            .offsets
            .into_iter()
            .map(|r| ((r.group, r.topic, r.queue_id), r.offset))
            .collect();
        let mut pops: HashMap<PopKey, Arc<Mutex<TopicPop>>> = HashMap::new();
        for r in snap.pops {
            let tp = pops.entry((r.group, r.topic)).or_default();
            *tp.lock().queue(r.queue_id) = QueuePop::restore(&r.state);
        }
        Ok(Self {
            path,
            offsets: Mutex::new(offsets),
            pops: RwLock::new(pops),
            // Delivery seqs start above any issued before a restart (ms << 20 leaves room for
            // a million deliveries per ms of uptime before overlap).
            seq: AtomicU64::new((now_ms.max(0) as u64) << 20),
            journal_offset: snap.journal_offset,
            persist_lock: Mutex::new(()),
        })
    }

    /// The journal offset the loaded snapshot covers (replay starts here).
    pub fn journal_offset(&self) -> u64 {
        self.journal_offset
    }

    /// A fresh delivery seq.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The pop state of `group` on `topic`.
    pub fn topic_pop(&self, group: &str, topic: &str) -> Arc<Mutex<TopicPop>> {
        let key = (group.to_owned(), topic.to_owned());
        if let Some(p) = self.pops.read().get(&key) {
            return p.clone();
        }
        self.pops.write().entry(key).or_default().clone()
    }

    /// The pop state if it exists.
    pub fn existing_topic_pop(&self, group: &str, topic: &str) -> Option<Arc<Mutex<TopicPop>>> {
        self.pops
            .read()
            .get(&(group.to_owned(), topic.to_owned()))
            .cloned()
    }

    /// Every (group, topic) with pop state.
    pub fn pop_keys(&self) -> Vec<(String, String)> {
        self.pops.read().keys().cloned().collect()
    }

    /// Topics on which `group` has committed offsets or pop state, sorted.
    pub fn group_topics(&self, group: &str) -> std::collections::BTreeSet<String> {
        let mut topics: std::collections::BTreeSet<String> = self
            .offsets
            .lock()
            .keys()
            .filter(|(g, _, _)| g == group)
            .map(|(_, t, _)| t.clone())
            .collect();
        topics.extend(
            self.pops
                .read()
                .keys()
                .filter(|(g, _)| g == group)
                .map(|(_, t)| t.clone()),
        );
        topics
    }

    /// Commits an offset.
    pub fn commit(&self, group: &str, topic: &str, queue_id: u32, offset: u64) {
        self.offsets
            .lock()
            .insert((group.to_owned(), topic.to_owned(), queue_id), offset);
    }

    /// The committed offset, if any.
    pub fn committed(&self, group: &str, topic: &str, queue_id: u32) -> Option<u64> {
        self.offsets
            .lock()
            .get(&(group.to_owned(), topic.to_owned(), queue_id))
            .copied()
    }

    /// Forgets everything about a group (deletion).
    pub fn forget_group(&self, group: &str) {
        self.offsets.lock().retain(|(g, _, _), _| g != group);
        self.pops.write().retain(|(g, _), _| g != group);
    }

    /// Forgets everything about a topic (deletion).
    pub fn forget_topic(&self, topic: &str) {
        self.offsets.lock().retain(|(_, t, _), _| t != topic);
        self.pops.write().retain(|(_, t), _| t != topic);
    }

    /// Writes the snapshot. `journal_offset` must be read before this call.
    ///
    /// # Errors
    /// [`crate::Error::Metadata`] if it cannot be written.
    pub fn persist(&self, journal_offset: u64) -> Result<()> {
        let _one_at_a_time = self.persist_lock.lock();
        let offsets = self
            .offsets
            .lock()
            .iter()
            .map(|((g, t, q), o)| OffsetRow {
                group: g.clone(),
                topic: t.clone(),
                queue_id: *q,
                offset: *o,
            })
            .collect();
        let tables: Vec<(PopKey, Arc<Mutex<TopicPop>>)> = self
            .pops
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut pops = Vec::new();
        for ((group, topic), tp) in tables {
            let tp = tp.lock();
            for (q, state) in tp.queues.iter().enumerate() {
                pops.push(PopRow {
                    group: group.clone(),
                    topic: topic.clone(),
                    queue_id: q as u32,
                    state: state.snapshot(),
                });
            }
        }
        meta_file::store(
            &self.path,
            &Snapshot {
                journal_offset,
                offsets,
                pops,
            },
        )
    }
}

/// Encodes one journaled ack (names never contain tabs or newlines: they are validated).
pub fn journal_line(out: &mut String, group: &str, topic: &str, queue_id: u32, offset: u64) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{group}\t{topic}\t{queue_id}\t{offset}");
}

/// Decodes the acks of one journal record; malformed lines are skipped.
pub fn parse_journal(body: &[u8]) -> impl Iterator<Item = (&str, &str, u32, u64)> {
    std::str::from_utf8(body)
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            let mut p = l.split('\t');
            let g = p.next()?;
            let t = p.next()?;
            let q = p.next()?.parse().ok()?;
            let o = p.next()?.parse().ok()?;
            Some((g, t, q, o))
        })
}
