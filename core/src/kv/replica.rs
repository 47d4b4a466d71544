//! The KV store seen by replication: the master's "changes since sequence N" (log records, or
//! a snapshot when N is too old) and the follower's contiguous apply.
//!
//! Owns: [`KvStore::changes_since`], [`KvStore::snapshot`], [`KvStore::apply_replicated`] and
//! [`KvStore::install_snapshot`]. No transport, no epochs (`crate::replication` has those).
//!
//! Invariants:
//! - A follower's sequence numbers are its master's: `apply_replicated` accepts only the
//!   record right after its last one (no gap, no overlap) and makes it durable exactly like a
//!   local write (log append, fsync, then the in-memory state), so readers never see a change
//!   that could still be lost.
//! - Only durable records are served (sequence ≤ the master's last durable one).
//! - `install_snapshot` replaces the whole state: it first removes every snapshot and log
//!   (a crash then leaves an empty store that asks for the snapshot again), then writes the
//!   snapshot and a fresh log after it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{create_log, entry_size, log, seq_of, snapshot, sync_dir, Error, KvStore, Record};

/// What a follower at some sequence must receive next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvChanges {
    /// The records right after it, in order (empty: it is up to date).
    Records(Vec<Record>),
    /// Its sequence is older than the oldest log (compacted away) or newer than the master's
    /// last: it needs the whole state ([`KvStore::snapshot`]).
    SnapshotNeeded,
}

/// The whole state at a sequence.
pub(crate) type KvSnapshot = (u64, BTreeMap<(String, Bytes), Bytes>);

/// Why a follower refused replicated KV records.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KvApplyError {
    /// The records do not continue the local sequence.
    #[error("KV record {got} does not follow the local sequence {last}")]
    Sequence {
        /// Local last sequence.
        last: u64,
        /// Sequence received.
        got: u64,
    },
    /// A record out of bounds.
    #[error("KV record {seq} refused: {reason}")]
    Invalid {
        /// Its sequence.
        seq: u64,
        /// Why.
        reason: &'static str,
    },
    /// Local writes are in flight (a follower takes none).
    #[error("the KV store has local writes in flight")]
    Busy,
    /// A fault of the files.
    #[error(transparent)]
    Kv(#[from] Error),
}

/// Deletes a closed KV store's directory `dir` (a slave starting over: it installs its
/// master's snapshot next). Nothing there is fine.
///
/// # Errors
/// I/O errors.
pub(crate) fn discard_files(dir: &std::path::Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(dir, e)),
        _ => {}
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

impl KvStore {
    /// The durable records after `since`, at most about `max_bytes` of them (at least one).
    ///
    /// # Errors
    /// I/O errors reading the logs.
    pub(crate) fn changes_since(&self, since: u64, max_bytes: usize) -> Result<KvChanges, Error> {
        // Compaction may delete a log between listing and reading it: try again then.
        for _ in 0..3 {
            match self.read_changes(since, max_bytes) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                other => return other,
            }
        }
        Ok(KvChanges::SnapshotNeeded)
    }

    fn read_changes(&self, since: u64, max_bytes: usize) -> Result<KvChanges, Error> {
        let last = self.last_sequence();
        if since == last {
            return Ok(KvChanges::Records(Vec::new()));
        }
        if since > last {
            return Ok(KvChanges::SnapshotNeeded);
        }
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let path = entry.map_err(|e| Error::io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(s) = seq_of(name, "log-") {
                logs.push((s, path));
            }
        }
        logs.sort();
        let Some(first) = logs.iter().rposition(|(s, _)| *s <= since + 1) else {
            return Ok(KvChanges::SnapshotNeeded);
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = since + 1;
        for (_, path) in &logs[first..] {
            log::replay(path, |r| {
                if r.seq < next || r.seq > last || (bytes >= max_bytes && !out.is_empty()) {
                    return Ok(());
                }
                if r.seq != next {
                    return Err(Error::Corrupted {
                        path: path.clone(),
                        offset: 0,
                        reason: "a gap in the KV sequence numbers",
                    });
                }
                bytes += log::encoded_len(&r.namespace, &r.key, r.value.as_deref());
                next += 1;
                out.push(r);
                Ok(())
            })?;
        }
        if out.is_empty() {
            return Ok(KvChanges::SnapshotNeeded);
        }
        Ok(KvChanges::Records(out))
    }

    /// The whole durable state and its sequence.
    pub(crate) fn snapshot(&self) -> KvSnapshot {
        let st = self.state.read();
        (st.last_seq, st.map.clone())
    }

    /// Appends records received from the master, durably, and applies them. Returns the new
    /// last sequence.
    ///
    /// # Errors
    /// [`KvApplyError::Sequence`] unless `records` continue the local sequence;
    /// [`KvApplyError::Invalid`]; I/O errors (which poison the store).
    pub(crate) fn apply_replicated(&self, records: &[Record]) -> Result<u64, KvApplyError> {
        let seq = {
            let mut w = self.writer.lock();
            if let Some(p) = self.poisoned() {
                return Err(Error::Poisoned(p).into());
            }
            if !w.pending.is_empty() {
                return Err(KvApplyError::Busy);
            }
            let mut expect = w.next_seq;
            let mut buf = Vec::new();
            for r in records {
                if r.seq != expect {
                    return Err(KvApplyError::Sequence {
                        last: expect - 1,
                        got: r.seq,
                    });
                }
                let ns_ok = (1..=super::MAX_NAMESPACE).contains(&r.namespace.len());
                let key_ok = (1..=super::MAX_KEY).contains(&r.key.len());
                if !ns_ok || !key_ok {
                    return Err(KvApplyError::Invalid {
                        seq: r.seq,
                        reason: "namespace or key length out of bounds",
                    });
                }
                if log::encoded_len(&r.namespace, &r.key, r.value.as_deref()) > log::MAX_RECORD {
                    return Err(KvApplyError::Invalid {
                        seq: r.seq,
                        reason: "record too large",
                    });
                }
                log::encode(r.seq, &r.namespace, &r.key, r.value.as_deref(), &mut buf);
                expect += 1;
            }
            if records.is_empty() {
                return Ok(w.next_seq - 1);
            }
            if let Err(e) = std::io::Write::write_all(&mut &*w.file, &buf) {
                let e = Error::io(&w.path, e);
                self.poison(e.to_string());
                return Err(e.into());
            }
            w.len += buf.len() as u64;
            for r in records {
                if let Some(v) = &r.value {
                    w.pending_bytes += entry_size(&r.namespace, &r.key, v);
                }
                w.pending.push(r.clone());
            }
            w.next_seq = expect;
            expect - 1
        };
        self.sync_until(seq)?;
        Ok(seq)
    }

    /// Replaces the whole state by the master's snapshot at `seq`.
    ///
    /// # Errors
    /// [`KvApplyError::Busy`] while local writes are in flight; I/O errors (which poison).
    pub(crate) fn install_snapshot(&self, snap: KvSnapshot) -> Result<(), KvApplyError> {
        let (seq, map) = snap;
        let mut w = self.writer.lock();
        if let Some(p) = self.poisoned() {
            return Err(Error::Poisoned(p).into());
        }
        if !w.pending.is_empty() {
            return Err(KvApplyError::Busy);
        }
        let result = (|| -> Result<(std::fs::File, std::path::PathBuf, u64), Error> {
            for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
                let p = entry.map_err(|e| Error::io(&self.dir, e))?.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if seq_of(name, "snap-").is_some() || seq_of(name, "log-").is_some() {
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
            sync_dir(&self.dir)?;
            let (_, len) = snapshot::write(&self.dir, seq, &map)?;
            let (file, path) = create_log(&self.dir, seq + 1)?;
            Ok((file, path, len))
        })();
        let (file, path, snapshot_len) = match result {
            Ok(r) => r,
            Err(e) => {
                self.poison(e.to_string());
                return Err(e.into());
            }
        };
        use std::io::Seek;
        let mut file = file;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| Error::io(&path, e))?;
        w.file = Arc::new(file);
        w.path = path;
        w.len = log::FILE_MAGIC.len() as u64;
        w.next_seq = seq + 1;
        w.snapshot_len = snapshot_len;
        w.pending_bytes = 0;
        {
            let mut st = self.state.write();
            st.total = 0;
            st.counts.clear();
            for ((ns, key), value) in &map {
                st.total += entry_size(ns, key, value);
                *st.counts.entry(ns.clone()).or_default() += 1;
            }
            st.map = map;
            st.last_seq = seq;
        }
        self.sync.lock().durable = seq;
        Ok(())
    }
}
