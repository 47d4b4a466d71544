//! What consumer groups have consumed: committed offsets of pull consumers and the pop state of
//! simple consumers, with their persistence.
//!
//! Owns: [`ConsumerState`], its records in the KV store — namespace `core.offsets` (one record
//! per committed offset), `core.pops` (one per queue with pop state) and `core.consumer` (the
//! journal position the records cover) — and the ack journal, the internal topic
//! [`ACK_JOURNAL_TOPIC`] in the CommitLog. Every `consumer.offset_persist_interval_ms` and at
//! shutdown the records that changed since the last persist are written in one KV batch (one
//! fsync), the journal position last. Record keys are `group\ttopic\tqueue_id` (names never
//! contain tabs: they are validated); offsets are decimal text, pop state JSON.
//!
//! Upgrade: the snapshot file of earlier versions (`<data_dir>/config/consumer_offsets.json`)
//! is imported once, when the namespaces are empty, and removed after the import is durable.
//!
//! # What survives a crash
//!
//! - **Committed offsets** (pull consumers) are persisted by the periodic write only. After a crash an
//!   offset can regress by at most the commits of one persist interval (5 s by default), so
//!   those messages are delivered again; it never moves forward past what was committed.
//! - **Acks of popped messages** are journaled in the CommitLog before `ack` returns, with the
//!   store's flush mode: under `SYNC_FLUSH` an acknowledged ack survives any crash, under
//!   `ASYNC_FLUSH` a `kill -9` (the page cache survives) and an OS crash up to one flush interval.
//!   On start the records are loaded and the journal replayed from the position recorded with
//!   them. A crash in the middle of a persist leaves some records new and the position old:
//!   replaying more of the journal than needed is harmless.
//! - **In-flight pops** are not journaled: after a restart every message that was popped but not
//!   acknowledged is delivered again at once, with its attempt count as of the last persist.
//!
//! Concurrency: offsets behind one mutex; pop state behind one mutex per (group, topic), found
//! through an `RwLock`ed map. A persist takes the journal offset *before* copying the state;
//! acks change the state *before* journaling, so replay from that offset never misses an ack
//! (replaying one twice is harmless).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::meta_file::{self, meta_err};
use super::pop::{QueuePop, QueuePopSnapshot};
use crate::error::Result;
use crate::kv::{Change, KvStore};

/// KV namespace of committed offsets.
const NS_OFFSETS: &str = "core.offsets";
/// KV namespace of pop state, one record per (group, topic, queue).
const NS_POPS: &str = "core.pops";
/// KV namespace of the journal position.
const NS_CONSUMER: &str = "core.consumer";
const KEY_JOURNAL: &[u8] = b"journal_offset";

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

/// The snapshot file of earlier versions (imported once).
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
    kv: Arc<KvStore>,
    offsets: Mutex<BTreeMap<(String, String, u32), u64>>,
    pops: RwLock<HashMap<PopKey, Arc<Mutex<TopicPop>>>>,
    seq: AtomicU64,
    journal_offset: u64,
    /// What the KV store holds, to write only the changes; its lock serialises persists.
    persisted: Mutex<Persisted>,
}

/// The records last written (key → value) and the journal position.
#[derive(Debug, Default)]
struct Persisted {
    offsets: HashMap<Vec<u8>, Bytes>,
    pops: HashMap<Vec<u8>, Bytes>,
    journal: Option<u64>,
}

fn row_key(group: &str, topic: &str, queue_id: u32) -> Vec<u8> {
    format!("{group}\t{topic}\t{queue_id}").into_bytes()
}

fn parse_key(ns: &str, key: &[u8]) -> Result<(String, String, u32)> {
    let bad = || {
        meta_err(
            Path::new(ns),
            format!("bad record key `{}`", key.escape_ascii()),
        )
    };
    let s = std::str::from_utf8(key).map_err(|_| bad())?;
    let mut p = s.split('\t');
    match (p.next(), p.next(), p.next(), p.next()) {
        (Some(g), Some(t), Some(q), None) => {
            Ok((g.to_owned(), t.to_owned(), q.parse().map_err(|_| bad())?))
        }
        _ => Err(bad()),
    }
}

fn parse_u64(ns: &str, value: &[u8]) -> Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            meta_err(
                Path::new(ns),
                format!("bad number `{}`", value.escape_ascii()),
            )
        })
}

fn encode_pop(state: &QueuePopSnapshot) -> Result<Bytes> {
    serde_json::to_vec(state)
        .map(Bytes::from)
        .map_err(|e| meta_err(Path::new(NS_POPS), e))
}

/// Imports the snapshot file of earlier versions into empty namespaces, then removes it.
fn import_legacy(kv: &KvStore, dir: &Path) -> Result<()> {
    let path = dir.join("consumer_offsets.json");
    let Some(snap) = meta_file::load::<Snapshot>(&path)? else {
        return Ok(());
    };
    if kv.len(NS_OFFSETS) + kv.len(NS_POPS) + kv.len(NS_CONSUMER) == 0 {
        let mut rows: Vec<(&str, Vec<u8>, Bytes)> = Vec::new();
        for r in &snap.offsets {
            let v = Bytes::from(r.offset.to_string());
            rows.push((NS_OFFSETS, row_key(&r.group, &r.topic, r.queue_id), v));
        }
        for r in &snap.pops {
            let v = encode_pop(&r.state)?;
            rows.push((NS_POPS, row_key(&r.group, &r.topic, r.queue_id), v));
        }
        rows.push((
            NS_CONSUMER,
            KEY_JOURNAL.to_vec(),
            Bytes::from(snap.journal_offset.to_string()),
        ));
        let changes: Vec<Change<'_>> = rows
            .iter()
            .map(|(ns, k, v)| Change {
                ns,
                key: k,
                value: Some(v.clone()),
            })
            .collect();
        kv.write_batch(&changes)?;
        tracing::info!(file = %path.display(), records = changes.len(), "imported into the KV store");
    }
    std::fs::remove_file(&path).map_err(|e| meta_err(&path, e))
}

impl ConsumerState {
    /// Loads the records from the KV store (importing the snapshot file of earlier versions
    /// from `legacy_dir` first).
    ///
    /// # Errors
    /// [`crate::Error::Metadata`] for a record or legacy file that does not parse; KV faults.
    pub fn load(kv: Arc<KvStore>, legacy_dir: &Path, now_ms: i64) -> Result<Self> {
        import_legacy(&kv, legacy_dir)?;
        let mut persisted = Persisted::default();
        let mut offsets = BTreeMap::new();
        for (k, v) in kv.scan(NS_OFFSETS, b"", None, usize::MAX) {
            offsets.insert(parse_key(NS_OFFSETS, &k)?, parse_u64(NS_OFFSETS, &v)?);
            persisted.offsets.insert(k.to_vec(), v);
        }
        let mut pops: HashMap<PopKey, Arc<Mutex<TopicPop>>> = HashMap::new();
        for (k, v) in kv.scan(NS_POPS, b"", None, usize::MAX) {
            let (group, topic, queue_id) = parse_key(NS_POPS, &k)?;
            let state: QueuePopSnapshot =
                serde_json::from_slice(&v).map_err(|e| meta_err(Path::new(NS_POPS), e))?;
            let tp = pops.entry((group, topic)).or_default();
            *tp.lock().queue(queue_id) = QueuePop::restore(&state);
            persisted.pops.insert(k.to_vec(), v);
        }
        let journal_offset = match kv.get(NS_CONSUMER, KEY_JOURNAL) {
            Some(v) => parse_u64(NS_CONSUMER, &v)?,
            None => 0,
        };
        persisted.journal = Some(journal_offset);
        Ok(Self {
            kv,
            offsets: Mutex::new(offsets),
            pops: RwLock::new(pops),
            // Delivery seqs start above any issued before a restart (ms << 20 leaves room for
            // a million deliveries per ms of uptime before overlap).
            seq: AtomicU64::new((now_ms.max(0) as u64) << 20),
            journal_offset,
            persisted: Mutex::new(persisted),
        })
    }

    /// The journal offset the loaded records cover (replay starts here).
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

    /// Replaces the committed offsets by what the KV store holds now (a slave's read-only
    /// broker, after replicated changes).
    ///
    /// # Errors
    /// [`crate::Error::Metadata`] for a record that does not parse.
    pub(crate) fn reload_offsets(&self) -> Result<()> {
        let mut offsets = BTreeMap::new();
        for (k, v) in self.kv.scan(NS_OFFSETS, b"", None, usize::MAX) {
            offsets.insert(parse_key(NS_OFFSETS, &k)?, parse_u64(NS_OFFSETS, &v)?);
        }
        *self.offsets.lock() = offsets;
        Ok(())
    }

    /// The offset the KV store holds for a queue (what was persisted, not what is committed
    /// in memory since).
    pub(crate) fn persisted_offset(&self, group: &str, topic: &str, queue_id: u32) -> Option<u64> {
        let key = row_key(group, topic, queue_id);
        let v = self.kv.get(NS_OFFSETS, &key)?;
        parse_u64(NS_OFFSETS, &v).ok()
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

    /// Writes what changed since the last persist, in one KV batch, the journal position
    /// last. `journal_offset` must be read before this call.
    ///
    /// # Errors
    /// KV refusals and faults (the next persist writes the changes again).
    pub fn persist(&self, journal_offset: u64) -> Result<()> {
        let mut persisted = self.persisted.lock();
        let offsets: HashMap<Vec<u8>, Bytes> = self
            .offsets
            .lock()
            .iter()
            .map(|((g, t, q), o)| (row_key(g, t, *q), Bytes::from(o.to_string())))
            .collect();
        let tables: Vec<(PopKey, Arc<Mutex<TopicPop>>)> = self
            .pops
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut pops = HashMap::new();
        for ((group, topic), tp) in tables {
            let states: Vec<QueuePopSnapshot> =
                tp.lock().queues.iter().map(QueuePop::snapshot).collect();
            for (q, state) in states.iter().enumerate() {
                pops.insert(row_key(&group, &topic, q as u32), encode_pop(state)?);
            }
        }
        let journal = Bytes::from(journal_offset.to_string());
        let mut changes = Vec::new();
        diff(NS_OFFSETS, &persisted.offsets, &offsets, &mut changes);
        diff(NS_POPS, &persisted.pops, &pops, &mut changes);
        if persisted.journal != Some(journal_offset) {
            changes.push(Change {
                ns: NS_CONSUMER,
                key: KEY_JOURNAL,
                value: Some(journal),
            });
        }
        self.kv.write_batch(&changes)?;
        drop(changes);
        persisted.offsets = offsets;
        persisted.pops = pops;
        persisted.journal = Some(journal_offset);
        Ok(())
    }
}

/// The changes that turn `old` into `new`.
fn diff<'a>(
    ns: &'a str,
    old: &'a HashMap<Vec<u8>, Bytes>,
    new: &'a HashMap<Vec<u8>, Bytes>,
    out: &mut Vec<Change<'a>>,
) {
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.push(Change {
                ns,
                key: k,
                value: Some(v.clone()),
            });
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(Change {
            ns,
            key: k,
            value: None,
        });
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
