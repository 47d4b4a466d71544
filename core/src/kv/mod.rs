//! The KV store: one durable home for the broker's small state — MQTT sessions and retained
//! messages, the settings maps of gateways, later users and ACLs — that CommitLog retention
//! never deletes. Namespaced keys and values, all kept in memory, every change durable before
//! it is acknowledged.
//!
//! # Files (`<data_dir>/kv/`)
//!
//! - `log-<first seq>.kv`: the append-only record log (layout in `log`); the last one is the
//!   active log.
//! - `snap-<seq>.kv`: the whole state at `seq` (layout in `snapshot`), written atomically.
//! - `*.tmp`: an unfinished snapshot of a crash, deleted on open.
//!
//! # Invariants
//!
//! - Every write gets the next sequence number (`u64`, from 1, contiguous, never reused) and
//!   is in the log, fsynced, before it returns; the in-memory state is changed only after that
//!   fsync, in sequence order, so a reader never sees a write that could still be lost.
//!   Concurrent writers share one fsync (group commit: the first waiter syncs everything
//!   written so far, the others wait for it on a condition variable).
//! - Open = the newest snapshot that passes its checks + every log record with a higher
//!   sequence, in order. Replay stops at the first torn or CRC-bad record; in the active log
//!   that tail is truncated (a crash mid-append loses only the write that was not
//!   acknowledged). A gap in the sequence numbers is corruption and refuses the open.
//! - Compaction, when the active log is larger than `kv.compact_log_bytes` and twice the last
//!   snapshot: (1) write `snap-S` for the last sequence S (temp, fsync, rename, dir fsync),
//!   (2) create `log-(S+1)` and fsync the directory, (3) delete older snapshots and logs. A
//!   crash after any step opens to the same state: an old log only holds records ≤ S, which
//!   replay skips.
//! - An fsync or write failure poisons the store: every later write is refused until a
//!   restart (never retry an fsync and call it durable). The write that failed may or may not
//!   reappear after the restart (its outcome is unknown, as for the CommitLog).
//! - Bounds: namespaces 1..=64 of `[a-z0-9._-]`, keys 1..=1024 bytes, values up to the
//!   configured maximum, and a total of namespace + key + value bytes of all entries up to
//!   `kv.max_total_bytes` ([`Error`]s of core: `InvalidArgument`, `QuotaExceeded`). While
//!   writes are in flight the total counts their values on top (conservative).
//!
//! # Replication
//!
//! [`KvStore::last_sequence`] is the sequence of the last durable write: a follower asks for
//! "the changes since sequence N" (the log records after N, or a snapshot when N is older than
//! the oldest log) and applies them with the same sequence numbers (`replica.rs`).
//!
//! # What lives here
//!
//! Every durable small state of the broker lives here: the topic and group tables
//! (`core.topics`, `core.groups`, see `broker/table.rs`), committed offsets and pop state
//! (`core.offsets`, `core.pops`, `core.consumer`, written as batches of the records that
//! changed), the timer's progress and cancellations (`core.timer`, `core.timer.cancelled`),
//! settings maps and the MQTT gateway's sessions and retained messages. Only the receipt-handle
//! key stays a 0600 file under `<data_dir>/config/`: it is a secret of this node and must not
//! replicate. Writes are not refused by the CommitLog's disk watermark (`kv.max_total_bytes`
//! bounds them instead).
//!
//! # Callers and concurrency
//!
//! Private to core: the `Broker`'s `Kv` and `Settings` services call it. No wire protocol, no
//! dependency on `store` or `broker`. Writes are blocking (the async service runs them on
//! `spawn_blocking`); reads take the state's `RwLock` shortly. Lock order: `writer` → `state`,
//! and `sync` is never held while taking another lock (the syncer drops it first).

mod log;
mod replica;
mod snapshot;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

pub(crate) use self::log::Record;
pub(crate) use self::replica::{discard_files, KvApplyError, KvChanges, KvSnapshot};

/// Longest namespace name.
pub const MAX_NAMESPACE: usize = 64;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;

/// Faults of the KV store's files (bad requests are core [`crate::Error`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a KV file.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file that fails its checks where no crash can explain it.
    #[error("corrupted KV data in {path} at byte {offset}: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// Byte offset in it.
        offset: u64,
        /// What check failed.
        reason: &'static str,
    },
    /// A write or fsync failed earlier; no more writes until a restart.
    #[error("the KV store is read-only after a failed write: {0}")]
    Poisoned(String),
}

impl Error {
    pub(super) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One change of a batch: a put (`value` is `Some`) or a delete.
#[derive(Debug, Clone)]
pub(crate) struct Change<'a> {
    pub(crate) ns: &'a str,
    pub(crate) key: &'a [u8],
    pub(crate) value: Option<Bytes>,
}

/// The bounds of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest value, in bytes.
    pub(crate) max_value: usize,
    /// Most bytes of namespaces, keys and values of all entries together.
    pub(crate) max_total: u64,
    /// Smallest active log worth compacting.
    pub(crate) compact_log_bytes: u64,
}

/// The in-memory state: what every durable write made of it.
#[derive(Debug, Default)]
struct State {
    map: BTreeMap<(String, Bytes), Bytes>,
    /// Namespace + key + value bytes of every entry.
    total: u64,
    /// Entries per namespace.
    counts: HashMap<String, usize>,
    /// Sequence of the last applied write.
    last_seq: u64,
}

fn entry_size(ns: &str, key: &[u8], value: &[u8]) -> u64 {
    (ns.len() + key.len() + value.len()) as u64
}

impl State {
    fn apply(&mut self, r: Record) {
        let ns_key = (r.namespace, r.key);
        let old = match r.value {
            Some(v) => {
                self.total += entry_size(&ns_key.0, &ns_key.1, &v);
                let old = self.map.insert(ns_key.clone(), v);
                if old.is_none() {
                    *self.counts.entry(ns_key.0.clone()).or_default() += 1;
                }
                old
            }
            None => {
                let old = self.map.remove(&ns_key);
                if old.is_some() {
                    if let Some(n) = self.counts.get_mut(&ns_key.0) {
                        *n -= 1;
                        if *n == 0 {
                            self.counts.remove(&ns_key.0);
                        }
                    }
                }
                old
            }
        };
        if let Some(old) = old {
            self.total -= entry_size(&ns_key.0, &ns_key.1, &old);
        }
        self.last_seq = r.seq;
    }
}

/// The appending side: the active log and the writes not yet fsynced.
struct Writer {
    file: Arc<File>,
    path: PathBuf,
    /// Bytes in the active log.
    len: u64,
    next_seq: u64,
    /// Written, not yet fsynced and applied, in sequence order.
    pending: Vec<Record>,
    /// Value bytes of `pending` puts (for the quota).
    pending_bytes: u64,
    /// Size of the last snapshot (0 if none).
    snapshot_len: u64,
}

#[derive(Default)]
struct Sync {
    /// Every write up to this sequence is durable and applied.
    durable: u64,
    /// A thread is fsyncing.
    syncing: bool,
    poisoned: Option<String>,
}

/// The KV store (see the module doc).
pub(crate) struct KvStore {
    dir: PathBuf,
    limits: Limits,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    sync: Mutex<Sync>,
    synced: Condvar,
    /// Fsyncs of the log so far (group commit makes it fewer than the writes under load).
    fsyncs: std::sync::atomic::AtomicU64,
    /// Set on a slave's copy: local writes are refused (`Error::NotMaster`); replicated
    /// changes and snapshots are not.
    following: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("dir", &self.dir)
            .field("last_sequence", &self.last_sequence())
            .finish_non_exhaustive()
    }
}

fn log_name(first_seq: u64) -> String {
    format!("log-{first_seq:020}.kv")
}

/// The number in a file name `<prefix><20 digits>.kv`.
fn seq_of(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(".kv")
        .filter(|n| n.len() == 20)?
        .parse()
        .ok()
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Creates an empty log file (its magic fsynced, the directory too).
fn create_log(dir: &Path, first_seq: u64) -> Result<(File, PathBuf), Error> {
    let path = dir.join(log_name(first_seq));
    let io = |e| Error::io(&path, e);
    let mut f = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    f.write_all(log::FILE_MAGIC).map_err(io)?;
    f.sync_all().map_err(io)?;
    sync_dir(dir)?;
    Ok((f, path))
}

impl KvStore {
    /// Opens (or creates) the store in `dir`, recovering it as the module doc says.
    ///
    /// # Errors
    /// I/O errors, corruption that no crash explains (a sequence gap, a foreign file).
    pub(crate) fn open(dir: &Path, limits: Limits) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (mut snaps, mut logs) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                tracing::info!(file = %path.display(), "removing an unfinished KV snapshot");
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            } else if let Some(s) = seq_of(name, "snap-") {
                snaps.push((s, path));
            } else if let Some(s) = seq_of(name, "log-") {
                logs.push((s, path));
            }
        }
        snaps.sort();
        logs.sort();
        let mut state = State::default();
        let mut snapshot_len = 0;
        let mut loaded_newest = true;
        for (_, path) in snaps.iter().rev() {
            match snapshot::read(path) {
                Ok(s) => {
                    for ((ns, key), value) in &s.entries {
                        state.total += entry_size(ns, key, value);
                        *state.counts.entry(ns.clone()).or_default() += 1;
                    }
                    state.map = s.entries;
                    state.last_seq = s.seq;
                    snapshot_len = s.len;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable KV snapshot");
                    loaded_newest = false;
                }
            }
        }
        let snapshot_seq = state.last_seq;
        let mut active = None;
        for (i, (_, path)) in logs.iter().enumerate() {
            let last = i + 1 == logs.len();
            let replayed = log::replay(path, |r| {
                if r.seq <= state.last_seq {
                    return Ok(());
                }
                if r.seq != state.last_seq + 1 {
                    return Err(Error::Corrupted {
                        path: path.clone(),
                        offset: 0,
                        reason: "a gap in the KV sequence numbers",
                    });
                }
                state.apply(r);
                Ok(())
            })?;
            if let Some(why) = replayed.stopped {
                tracing::warn!(
                    file = %path.display(),
                    valid = replayed.valid_len,
                    len = replayed.file_len,
                    reason = why,
                    "KV log ends in a torn or bad record: cutting it there"
                );
            }
            if last {
                active = Some((path.clone(), replayed));
            }
        }
        let (file, path, len) = match active {
            Some((path, r)) if r.valid_len >= log::FILE_MAGIC.len() as u64 => {
                let f = File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                if r.valid_len < r.file_len {
                    f.set_len(r.valid_len)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| Error::io(&path, e))?;
                }
                (f, path, r.valid_len)
            }
            // No log, or one cut short while it was created: start one after the state.
            _ => {
                let (f, p) = create_log(dir, state.last_seq + 1)?;
                (f, p, log::FILE_MAGIC.len() as u64)
            }
        };
        let mut f = file;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::End(0))
            .map_err(|e| Error::io(&path, e))?;
        // Old files the loaded snapshot makes useless: older snapshots (when the newest one
        // loaded) and logs followed by one that starts right after the snapshot or earlier.
        let mut removed = false;
        if loaded_newest {
            for (s, p) in &snaps {
                if *s < snapshot_seq {
                    std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
                    removed = true;
                }
            }
            for pair in logs.windows(2) {
                if pair[1].0 <= snapshot_seq + 1 && pair[0].1 != path {
                    std::fs::remove_file(&pair[0].1).map_err(|e| Error::io(&pair[0].1, e))?;
                    removed = true;
                }
            }
        }
        if removed {
            sync_dir(dir)?;
        }
        let last_seq = state.last_seq;
        tracing::info!(
            entries = state.map.len(),
            bytes = state.total,
            last_sequence = last_seq,
            "KV store opened"
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            limits,
            state: RwLock::new(state),
            writer: Mutex::new(Writer {
                file: Arc::new(f),
                path,
                len,
                next_seq: last_seq + 1,
                pending: Vec::new(),
                pending_bytes: 0,
                snapshot_len,
            }),
            sync: Mutex::new(Sync {
                durable: last_seq,
                ..Sync::default()
            }),
            synced: Condvar::new(),
            fsyncs: std::sync::atomic::AtomicU64::new(0),
            following: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The sequence number of the last durable write (0 when nothing was ever written).
    /// Marks this store as a slave's copy (`true`): local writes are refused from now on.
    pub(crate) fn set_following(&self, following: bool) {
        self.following
            .store(following, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn last_sequence(&self) -> u64 {
        self.state.read().last_seq
    }

    /// The value of `key` in `ns`.
    pub(crate) fn get(&self, ns: &str, key: &[u8]) -> Option<Bytes> {
        // The map is keyed by owned values; build the probe once.
        let probe = (ns.to_owned(), Bytes::copy_from_slice(key));
        self.state.read().map.get(&probe).cloned()
    }

    /// Up to `limit` entries of `ns` whose key starts with `prefix` and is greater than
    /// `after` (if given), in key order.
    pub(crate) fn scan(
        &self,
        ns: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Bytes, Bytes)> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded((ns.to_owned(), Bytes::copy_from_slice(a))),
            _ => Bound::Included((ns.to_owned(), Bytes::copy_from_slice(prefix))),
        };
        self.state
            .read()
            .map
            .range((start, Bound::Unbounded))
            .take_while(|((n, k), _)| n == ns && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Entries in `ns`.
    pub(crate) fn len(&self, ns: &str) -> usize {
        self.state.read().counts.get(ns).copied().unwrap_or(0)
    }

    /// Fsyncs of the log since the store opened.
    #[cfg(test)]
    pub(crate) fn fsyncs(&self) -> u64 {
        self.fsyncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of all entries (namespace + key + value).
    pub(crate) fn total_bytes(&self) -> u64 {
        self.state.read().total
    }

    /// Stores `value` under `key` in `ns`, durably; returns its sequence number.
    ///
    /// # Errors
    /// Bounds and quota refusals; I/O errors (which poison the store).
    pub(crate) fn put(&self, ns: &str, key: &[u8], value: Bytes) -> crate::Result<u64> {
        self.write(ns, key, Some(value))
    }

    /// Removes `key` from `ns`, durably (a delete of a missing key is written too); returns its
    /// sequence number.
    ///
    /// # Errors
    /// Bounds refusals; I/O errors (which poison the store).
    pub(crate) fn delete(&self, ns: &str, key: &[u8]) -> crate::Result<u64> {
        self.write(ns, key, None)
    }

    fn check(&self, ns: &str, key: &[u8], value: Option<&Bytes>) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::InvalidArgument(m));
        if ns.is_empty()
            || ns.len() > MAX_NAMESPACE
            || !ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return bad(format!(
                "KV namespace `{ns}`: 1..={MAX_NAMESPACE} of [a-z0-9._-]"
            ));
        }
        if key.is_empty() || key.len() > MAX_KEY {
            return bad(format!("KV key of {} bytes: 1..={MAX_KEY}", key.len()));
        }
        if let Some(v) = value.filter(|v| v.len() > self.limits.max_value) {
            return bad(format!(
                "KV value of {} bytes exceeds the maximum of {}",
                v.len(),
                self.limits.max_value
            ));
        }
        Ok(())
    }

    fn poisoned(&self) -> Option<String> {
        self.sync.lock().poisoned.clone()
    }

    fn poison(&self, why: String) {
        tracing::error!(reason = %why, "KV store refuses writes until restarted");
        let mut s = self.sync.lock();
        s.poisoned.get_or_insert(why);
        self.synced.notify_all();
    }

    fn write(&self, ns: &str, key: &[u8], value: Option<Bytes>) -> crate::Result<u64> {
        self.write_batch(&[Change { ns, key, value }])
    }

    /// Writes every change in order with one fsync; returns the sequence of the last one (the
    /// store's last sequence for an empty batch).
    ///
    /// A batch is not atomic across a crash: a prefix of it may survive (each change is a
    /// record of its own). Callers write what must come last (e.g. a replay position) last.
    ///
    /// # Errors
    /// Bounds and quota refusals (nothing of the batch is written); I/O errors (which poison
    /// the store).
    pub(crate) fn write_batch(&self, changes: &[Change<'_>]) -> crate::Result<u64> {
        if self.following.load(std::sync::atomic::Ordering::Acquire) {
            return Err(crate::Error::NotMaster {
                what: "changing durable state",
            });
        }
        for c in changes {
            self.check(c.ns, c.key, c.value.as_ref())?;
        }
        let seq = {
            let mut w = self.writer.lock();
            if let Some(p) = self.poisoned() {
                return Err(Error::Poisoned(p).into());
            }
            if changes.is_empty() {
                return Ok(w.next_seq - 1);
            }
            {
                let st = self.state.read();
                let mut would = st.total + w.pending_bytes;
                let mut grows = false;
                for c in changes {
                    if let Some(v) = &c.value {
                        grows = true;
                        let old = st
                            .map
                            .get(&(c.ns.to_owned(), Bytes::copy_from_slice(c.key)))
                            .map_or(0, |o| entry_size(c.ns, c.key, o));
                        would = would.saturating_sub(old) + entry_size(c.ns, c.key, v);
                    }
                }
                if grows && would > self.limits.max_total {
                    return Err(crate::Error::QuotaExceeded {
                        what: "the KV store",
                        would,
                        limit: self.limits.max_total,
                    });
                }
            }
            let mut buf = Vec::with_capacity(
                changes
                    .iter()
                    .map(|c| log::encoded_len(c.ns, c.key, c.value.as_deref()))
                    .sum(),
            );
            let first = w.next_seq;
            for (i, c) in changes.iter().enumerate() {
                log::encode(first + i as u64, c.ns, c.key, c.value.as_deref(), &mut buf);
            }
            if let Err(e) = (&*w.file).write_all(&buf) {
                let e = Error::io(&w.path, e);
                self.poison(e.to_string());
                return Err(e.into());
            }
            w.len += buf.len() as u64;
            for c in changes {
                let seq = w.next_seq;
                w.next_seq += 1;
                if let Some(v) = &c.value {
                    w.pending_bytes += entry_size(c.ns, c.key, v);
                }
                w.pending.push(Record {
                    seq,
                    namespace: c.ns.to_owned(),
                    key: Bytes::copy_from_slice(c.key),
                    value: c.value.clone(),
                });
            }
            w.next_seq - 1
        };
        self.sync_until(seq)?;
        Ok(seq)
    }

    /// Waits until `seq` is durable, fsyncing everything written so far if no one else is.
    fn sync_until(&self, seq: u64) -> Result<(), Error> {
        let mut s = self.sync.lock();
        loop {
            if s.durable >= seq {
                return Ok(());
            }
            if let Some(p) = &s.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            if s.syncing {
                self.synced.wait(&mut s);
                continue;
            }
            s.syncing = true;
            drop(s);
            let result = self.sync_batch();
            s = self.sync.lock();
            s.syncing = false;
            match result {
                Ok(upto) => s.durable = s.durable.max(upto),
                Err(e) => {
                    tracing::error!(error = %e, "KV fsync failed: refusing writes until restarted");
                    s.poisoned.get_or_insert(e.to_string());
                }
            }
            self.synced.notify_all();
        }
    }

    /// Fsyncs the active log, then applies what it covers; compacts when due. Returns the
    /// last durable sequence.
    fn sync_batch(&self) -> Result<u64, Error> {
        let (file, path, batch, upto) = {
            let mut w = self.writer.lock();
            let batch = std::mem::take(&mut w.pending);
            (w.file.clone(), w.path.clone(), batch, w.next_seq - 1)
        };
        file.sync_data().map_err(|e| Error::io(&path, e))?;
        self.fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let applied: u64 = batch
            .iter()
            .filter_map(|r| Some(entry_size(&r.namespace, &r.key, r.value.as_ref()?)))
            .sum();
        {
            let mut st = self.state.write();
            for r in batch {
                st.apply(r);
            }
        }
        {
            let mut w = self.writer.lock();
            w.pending_bytes = w.pending_bytes.saturating_sub(applied);
        }
        if let Err(e) = self.maybe_compact(false) {
            tracing::warn!(error = %e, "KV compaction failed; the log keeps growing");
        }
        Ok(upto)
    }

    /// Compacts (module doc) when the active log is due, or always with `force`. Skipped while
    /// writes are in flight. Returns whether it compacted.
    pub(crate) fn maybe_compact(&self, force: bool) -> Result<bool, Error> {
        let mut w = self.writer.lock();
        let due = w.len > self.limits.compact_log_bytes && w.len > w.snapshot_len.saturating_mul(2);
        if !(due || force) || !w.pending.is_empty() {
            return Ok(false);
        }
        let (seq, (_, snapshot_len)) = {
            let st = self.state.read();
            (
                st.last_seq,
                snapshot::write(&self.dir, st.last_seq, &st.map)?,
            )
        };
        let (file, path) = create_log(&self.dir, seq + 1)?;
        let old_log = std::mem::replace(&mut w.path, path);
        w.file = Arc::new(file);
        w.len = log::FILE_MAGIC.len() as u64;
        w.snapshot_len = snapshot_len;
        drop(w);
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let p = entry.map_err(|e| Error::io(&self.dir, e))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let old_snap = seq_of(name, "snap-").is_some_and(|s| s < seq);
            let old_log = seq_of(name, "log-").is_some_and(|s| s <= seq) || p == old_log;
            if old_snap || old_log {
                removed.push(p);
            }
        }
        for p in &removed {
            std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
        }
        sync_dir(&self.dir)?;
        tracing::info!(sequence = seq, bytes = snapshot_len, "KV store compacted");
        Ok(true)
    }
}
