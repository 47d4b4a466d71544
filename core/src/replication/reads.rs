//! Reads from a slave: what a read-only `Broker` over a slave's copy keeps beyond the tables
//! it loads from the replicated KV store — the consumer offsets committed on the slave, held
//! (and kept in a node-local file) until the master has them.
//!
//! A slave's KV store is its master's, byte for byte, so an offset committed on the slave
//! cannot go there: it is an entry here, overlaid on the offsets loaded from the KV store,
//! written to `<data_dir>/config/slave-offsets.json` (node-local, like the receipt-handle key),
//! and forwarded to the master with the slave's replication reports. Once forwarded, an entry
//! is dropped when the replicated KV store shows the same offset (the master persisted it), or
//! [`FORGET_FORWARDED_MS`] after it was forwarded (the master's consumers moved on). A slave
//! promoted before forwarding them commits the file's entries as the new master
//! ([`take_pending`]).
//!
//! Owns the overlay and its file; must not touch the KV store or the CommitLog.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::broker::meta_file;
use crate::error::{Error, Result};

/// The file under `<data_dir>/config/`.
pub(crate) const FILE: &str = "slave-offsets.json";
/// A forwarded entry is dropped at the latest this long after it was forwarded.
pub(crate) const FORGET_FORWARDED_MS: i64 = 30_000;
/// At most this many (group, topic, queue) offsets are held on a slave.
pub(crate) const MAX_ENTRIES: usize = 65_536;

/// An offset committed on a slave, on its way to the master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedOffset {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The queue.
    pub queue_id: u32,
    /// The next offset to consume.
    pub offset: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OffsetsFile {
    offsets: Vec<ForwardedOffset>,
}

type Key = (String, String, u32);

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    /// When it was last forwarded (the broker's clock), if it was.
    forwarded_at: Option<i64>,
}

/// The offsets committed on a slave and not yet known to be on the master.
#[derive(Debug)]
pub(crate) struct SlaveCommits {
    path: PathBuf,
    entries: Mutex<BTreeMap<Key, Entry>>,
}

impl SlaveCommits {
    /// Loads the file under `config_dir` (its entries are forwarded again: a commit is
    /// idempotent).
    ///
    /// # Errors
    /// An unreadable file.
    pub(crate) fn open(config_dir: &Path) -> Result<Self> {
        let path = config_dir.join(FILE);
        let file: OffsetsFile = meta_file::load(&path)?.unwrap_or_default();
        let entries = file
            .offsets
            .into_iter()
            .map(|o| {
                let entry = Entry {
                    offset: o.offset,
                    forwarded_at: None,
                };
                ((o.group, o.topic, o.queue_id), entry)
            })
            .collect();
        Ok(Self {
            path,
            entries: Mutex::new(entries),
        })
    }

    /// Notes a commit (durably, before it returns).
    ///
    /// # Errors
    /// [`Error::LimitReached`] past [`MAX_ENTRIES`]; the file cannot be written.
    pub(crate) fn note(&self, group: &str, topic: &str, queue_id: u32, offset: u64) -> Result<()> {
        let mut entries = self.entries.lock();
        let key = (group.to_owned(), topic.to_owned(), queue_id);
        if !entries.contains_key(&key) && entries.len() >= MAX_ENTRIES {
            return Err(Error::LimitReached {
                what: "offsets committed on a slave and not yet on the master",
                key: "(fixed)",
                limit: MAX_ENTRIES,
            });
        }
        entries.insert(
            key,
            Entry {
                offset,
                forwarded_at: None,
            },
        );
        self.persist(&entries)
    }

    /// Every entry held, as (group, topic, queue) → offset: what overlays the KV's offsets.
    pub(crate) fn overlay(&self) -> Vec<(Key, u64)> {
        self.entries
            .lock()
            .iter()
            .map(|(k, e)| (k.clone(), e.offset))
            .collect()
    }

    /// Up to `max` entries not forwarded yet (or forwarded more than a second ago: a report
    /// may have been lost), oldest keys first.
    pub(crate) fn to_forward(&self, max: usize, now_ms: i64) -> Vec<ForwardedOffset> {
        self.entries
            .lock()
            .iter()
            .filter(|(_, e)| e.forwarded_at.is_none_or(|at| now_ms - at >= 1_000))
            .take(max)
            .map(|((group, topic, queue_id), e)| ForwardedOffset {
                group: group.clone(),
                topic: topic.clone(),
                queue_id: *queue_id,
                offset: e.offset,
            })
            .collect()
    }

    /// The master took `sent`: entries still at those offsets are marked forwarded.
    pub(crate) fn forwarded(&self, sent: &[ForwardedOffset], now_ms: i64) {
        let mut entries = self.entries.lock();
        for s in sent {
            let key = (s.group.clone(), s.topic.clone(), s.queue_id);
            if let Some(e) = entries.get_mut(&key) {
                if e.offset == s.offset {
                    e.forwarded_at = Some(now_ms);
                }
            }
        }
    }

    /// Drops the forwarded entries the master has persisted (`replicated` gives the offset the
    /// replicated KV store holds) or that were forwarded long ago.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn settle(
        &self,
        replicated: impl Fn(&str, &str, u32) -> Option<u64>,
        now_ms: i64,
    ) -> Result<()> {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|(g, t, q), e| match e.forwarded_at {
            None => true,
            Some(at) => replicated(g, t, *q) != Some(e.offset) && now_ms - at < FORGET_FORWARDED_MS,
        });
        if entries.len() != before {
            self.persist(&entries)?;
        }
        Ok(())
    }

    fn persist(&self, entries: &BTreeMap<Key, Entry>) -> Result<()> {
        if entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(meta_file::meta_err(&self.path, e)),
            };
        }
        let file = OffsetsFile {
            offsets: entries
                .iter()
                .map(|((group, topic, queue_id), e)| ForwardedOffset {
                    group: group.clone(),
                    topic: topic.clone(),
                    queue_id: *queue_id,
                    offset: e.offset,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| meta_file::meta_err(&self.path, e))?;
        meta_file::replace(&self.path, &bytes)
    }
}

/// The offsets a slave took and had not seen on its master when it stopped following: what a
/// promoted slave commits as the new master. The file is removed by [`clear_pending`] once
/// they are committed.
///
/// # Errors
/// An unreadable file.
pub(crate) fn take_pending(config_dir: &Path) -> Result<Vec<ForwardedOffset>> {
    let file: Option<OffsetsFile> = meta_file::load(&config_dir.join(FILE))?;
    Ok(file.map(|f| f.offsets).unwrap_or_default())
}

/// Removes the file of [`take_pending`].
///
/// # Errors
/// The file exists and cannot be removed.
pub(crate) fn clear_pending(config_dir: &Path) -> Result<()> {
    let path = config_dir.join(FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(meta_file::meta_err(&path, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_a_restart_and_settle_once_the_master_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = SlaveCommits::open(dir.path()).unwrap();
        c.note("g", "t", 0, 5).unwrap();
        c.note("g", "t", 1, 7).unwrap();
        let c = SlaveCommits::open(dir.path()).unwrap();
        assert_eq!(c.overlay().len(), 2);
        let sent = c.to_forward(10, 1_000);
        assert_eq!(sent.len(), 2);
        c.forwarded(&sent[..1], 1_000);
        // Forwarded less than a second ago: not sent again; the other one is.
        assert_eq!(c.to_forward(10, 1_500).len(), 1);
        // The master persisted queue 0 at 5: settled; queue 1 was never forwarded: kept.
        c.settle(|_, _, q| (q == 0).then_some(5), 2_000).unwrap();
        assert_eq!(c.overlay(), vec![(("g".into(), "t".into(), 1), 7)]);
        // A forwarded entry the KV never shows is dropped after FORGET_FORWARDED_MS.
        let sent = c.to_forward(10, 3_000);
        c.forwarded(&sent, 3_000);
        c.settle(|_, _, _| None, 3_000 + FORGET_FORWARDED_MS - 1)
            .unwrap();
        assert_eq!(c.overlay().len(), 1);
        c.settle(|_, _, _| None, 3_000 + FORGET_FORWARDED_MS)
            .unwrap();
        assert!(c.overlay().is_empty());
        assert!(take_pending(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_commit_made_after_forwarding_is_forwarded_again() {
        let dir = tempfile::tempdir().unwrap();
        let c = SlaveCommits::open(dir.path()).unwrap();
        c.note("g", "t", 0, 5).unwrap();
        let sent = c.to_forward(10, 0);
        c.note("g", "t", 0, 9).unwrap();
        c.forwarded(&sent, 0);
        assert_eq!(c.to_forward(10, 0)[0].offset, 9);
        assert_eq!(take_pending(dir.path()).unwrap()[0].offset, 9);
        clear_pending(dir.path()).unwrap();
        assert!(take_pending(dir.path()).unwrap().is_empty());
    }
}
