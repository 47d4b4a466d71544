//! Reads of the dispatched store: ConsumeQueue ranges and entries, and records by offset, id,
//! key and time.
//!
//! A [`Reads`] is obtained from [`super::Store::visible`] (read-your-writes: it waited until
//! every append confirmed before that call was dispatched) or [`super::Store::dispatched`]
//! (what is dispatched now, for background workers). There is no other way to read, so no read
//! can forget to catch up, and every call site says which of the two it needs.
//!
//! Invariant: only confirmed records are served (the CommitLog read is bounded by the
//! confirmed offset), and every record is CRC-verified before it is returned.
//!
//! Concurrency: lock-free reads of the mapped files, a read lock on the queue table.

use super::consume_queue::CqEntry;
use super::dispatch::{id_key, topic_key};
use super::error::{Error, Result};
use super::Inner;
use crate::message::StoredMessage;

/// Reads of the store (see the module doc for the two ways to get one).
#[derive(Clone, Copy)]
pub struct Reads<'a> {
    pub(super) inner: &'a Inner,
}

impl std::fmt::Debug for Reads<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").finish_non_exhaustive()
    }
}

impl Reads<'_> {
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

    /// The store time of the message at logical `offset` of a queue, read from its record
    /// header without copying the message; `None` if the queue has no confirmed message there.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record or an entry pointing at another queue's record.
    pub fn queue_store_time(&self, topic: &str, queue_id: u32, offset: u64) -> Result<Option<i64>> {
        let Some(e) = self
            .inner
            .queue(topic, queue_id)
            .and_then(|q| q.get(offset))
        else {
            return Ok(None);
        };
        let limit = self.inner.confirmed();
        let read = self
            .inner
            .log
            .read(e.physical_offset, Some(e.size), limit, |v| {
                let f = &v.fields;
                (v.topic == topic && f.queue_id == queue_id && f.queue_offset == offset)
                    .then_some(f.store_timestamp)
            })?;
        match read {
            Some(Some(ts)) => Ok(Some(ts)),
            Some(None) => Err(Error::Corrupted {
                path: self.inner.dir.join("consumequeue").join(topic),
                offset,
                reason: "queue entry points at another queue's record",
            }),
            None => Ok(None),
        }
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
}
