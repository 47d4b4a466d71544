//! Opening the derived data at start: the index and the ConsumeQueues, each checked against
//! the recovered CommitLog and thrown away to be rebuilt when it does not match.
//!
//! Owns: the decision where replay starts. Called only by [`super::Store::open`], before any
//! thread of the store runs.
//!
//! Invariant: the checkpoint never vouches for derived files that are gone. Before the first
//! derived file is thrown away, the checkpoint's dispatch points are lowered to 0 durably, so a
//! crash during the rebuild (whose files are not durable yet) replays from the start again
//! instead of trusting the old dispatch point for queues that no longer hold those entries
//! (found by the power-loss tests, T1c and T2b: a crash during recovery left queues that began
//! with a hole, and their first messages were never served).

use std::path::Path;
use std::sync::Arc;

use super::checkpoint::Checkpoint;
use super::commit_log::CommitLog;
use super::consume_queue::ConsumeQueue;
use super::error::{Error, Result};
use super::index::{IndexConfig, IndexStore};
use super::{record, DiskUsage, QueueTable};
use crate::config::StoreConfig;

/// Withdraws the checkpoint's claim on the derived files before the first of them is removed.
struct Vouch<'a> {
    dir: &'a Path,
    checkpoint: Option<Checkpoint>,
}

impl Vouch<'_> {
    fn withdraw(&mut self) -> Result<()> {
        if let Some(cp) = self.checkpoint.take() {
            if cp.consume_queue > 0 || cp.index > 0 {
                let lowered = Checkpoint {
                    consume_queue: 0,
                    index: 0,
                    ..cp
                };
                lowered.store(self.dir)?;
            }
        }
        Ok(())
    }
}

/// Opens the index and the ConsumeQueues, rebuilding what is unreadable or does not match the
/// log, and returns where the dispatcher must replay from. `checkpoint` is the one recovery
/// started from (lowered on disk before any derived file is removed).
pub(super) fn open_derived(
    dir: &Path,
    config: &StoreConfig,
    log: &CommitLog,
    log_end: u64,
    dispatch_point: u64,
    checkpoint: Option<Checkpoint>,
    usage: &DiskUsage,
) -> Result<(IndexStore, QueueTable, u64)> {
    let mut vouch = Vouch { dir, checkpoint };
    let index_config = IndexConfig {
        slots_per_file: config.index_slots_per_file,
        entries_per_file: config.index_entries_per_file,
    };
    let index_dir = dir.join("index");
    let index = match IndexStore::open_counted(&index_dir, index_config, dispatch_point, usage) {
        Ok(i) => i,
        Err(e) => {
            // Derived data: throw it away and rebuild it from the CommitLog.
            tracing::warn!(error = %e, "index unreadable; rebuilding it from the commit log");
            vouch.withdraw()?;
            remove_dir(&index_dir)?;
            IndexStore::open_counted(&index_dir, index_config, dispatch_point, usage)?
        }
    };
    let cq_dir = dir.join("consumequeue");
    let mut queues = match open_queues(&cq_dir, config.consume_queue_entries_per_file, usage) {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(error = %e, "consume queues unreadable; rebuilding them from the commit log");
            vouch.withdraw()?;
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
            if structural.is_err() || !queue_matches_log(log, q, topic, qid as u32, log_end) {
                tracing::warn!(topic = %topic, queue = qid, "consume queue does not match the commit log; rebuilding it");
                vouch.withdraw()?;
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
    Ok((index, queues, replay_from))
}

pub(super) fn remove_dir(dir: &Path) -> Result<()> {
    match super::disk::remove_dir_all(dir) {
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

fn open_queues(root: &Path, per_file: u64, usage: &DiskUsage) -> Result<QueueTable> {
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
            let cq = ConsumeQueue::open_counted(&q.path(), per_file, usage)?;
            let v = table.entry(topic.clone()).or_default();
            if v.len() <= qid as usize {
                v.resize(qid as usize + 1, None);
            }
            v[qid as usize] = Some(Arc::new(cq));
        }
    }
    Ok(table)
}
