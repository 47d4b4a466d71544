//! The dispatcher's work: following the CommitLog into ConsumeQueues and the index.
//!
//! Owns: turning one verified record into its queue entry and index keys, and advancing the
//! dispatch position. A topic's deletion marker deletes its queues where it stands in the log
//! (`store_ops.rs`). Runs on the dispatcher thread (and at open, before any other thread, to
//! replay); readers are woken through the per-topic arrival channels.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::consume_queue::{tag_hash, ConsumeQueue, CqEntry};
use super::error::Result;
use super::record::{self, RecordView};
use super::store_ops::{self, PendingDeletes};
use super::Inner;

/// Index key under which a message id is stored (cannot collide with `topic#key`: topics never
/// start with `#`).
pub(super) fn id_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + id.len());
    k.extend_from_slice(b"#id#");
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn topic_key(topic: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 1 + key.len());
    k.extend_from_slice(topic.as_bytes());
    k.push(b'#');
    k.extend_from_slice(key.as_bytes());
    k
}

impl Inner {
    pub(super) fn queue(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
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
        let q = Arc::new(ConsumeQueue::open_counted(
            &dir,
            self.config.consume_queue_entries_per_file,
            &self.derived_usage,
        )?);
        v[queue_id as usize] = Some(q.clone());
        Ok(q)
    }

    /// Dispatches records from the current dispatch position up to `limit`. During recovery
    /// (`seed`) it also raises the queue offset counters. Returns the number of records.
    pub(super) fn dispatch_until(&self, limit: u64, seed: bool) -> Result<u64> {
        let mut count = 0u64;
        loop {
            let from = self.dispatched.load(Ordering::Acquire);
            if from >= limit {
                return Ok(count);
            }
            // Held for the batch: `delete_queues` never runs between a lookup and a put.
            let mut pending = self.pending_deletes.lock();
            let mut failure = None;
            let mut cache: Option<(String, u32, Arc<ConsumeQueue>)> = None;
            let mut touched: Vec<String> = Vec::new();
            let next = self.log.walk(from, limit, 4096, |v| {
                if failure.is_some() {
                    return;
                }
                if let Err(e) = self.dispatch_one(v, &mut cache, &mut pending, seed) {
                    failure = Some(e);
                }
                if touched.last().map(String::as_str) != Some(v.topic)
                    && !touched.iter().any(|t| t == v.topic)
                {
                    touched.push(v.topic.to_owned());
                }
                count += 1;
            })?;
            drop(pending);
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
        pending: &mut PendingDeletes,
        seed: bool,
    ) -> Result<()> {
        if store_ops::is_store_op(v) {
            if let Some(topic) = store_ops::deleted_topic(v) {
                if cache.as_ref().is_some_and(|(t, _, _)| t == topic) {
                    *cache = None;
                }
                self.dispatch_delete(pending, topic, v.fields.physical_offset, seed)?;
            }
            return Ok(());
        }
        if store_ops::deleted_later(pending, v) {
            return Ok(());
        }
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
}
