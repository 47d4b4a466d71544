//! The `Queries` service of the `Broker`: messages by id, by key and by store-time range, the
//! trace of a message (every record stored under its id), and time positions of queues (the
//! offset for a time, the store time of a queue's last message).
//!
//! Invariants: queries see every send that returned before them (`Store::visible`), except the
//! gauge `last_store_time`; they are bounded: a time query reads at most one header per queue
//! plus `max + 1` messages, whatever the range.
//!
//! Who calls it: gateways (REST, gRPC administration). No lock of its own.

use super::timer::*;
use super::transaction::*;
use super::*;
use crate::api::*;
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Queries: messages by id, key and store time, the trace of a message, time positions of queues.
#[derive(Clone, Copy)]
pub struct Queries<'a> {
    pub(super) broker: &'a Broker,
}

impl Queries<'_> {
    /// Messages of every queue of `topic` stored within `[begin_ms, end_ms]`, oldest first (by
    /// store time, then queue id and offset), at most `max`; `truncated` is set when more
    /// matched. Scheduled messages appear once delivered, with their delivery as store time.
    ///
    /// Bounded: each queue is entered by a binary search on store time
    /// ([`crate::store::Store::queue_offset_for_time`]) and merged lazily, so at most one
    /// record header per queue and `max + 1` messages are read.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::InvalidArgument`] for `max` out of `1..=limits.max_batch`
    /// or `begin_ms > end_ms`, store errors.
    pub async fn by_time(
        self,
        topic: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<QueryResult> {
        let t = self.broker.topic(topic)?;
        let limit = self.broker.inner.config.limits.max_batch;
        if max == 0 || max > limit {
            return Err(Error::InvalidArgument(format!(
                "max must be between 1 and {limit}"
            )));
        }
        if begin_ms > end_ms {
            return Err(Error::InvalidArgument(format!(
                "begin_ms {begin_ms} is after end_ms {end_ms}"
            )));
        }
        let store = &self.broker.inner.store;
        let reads = store.visible().await?;
        // One head per queue: (store time, queue, offset) of its next message in range.
        let head = |queue_id: u32, from: u64| -> Result<Option<(i64, u32, u64)>> {
            let Some((offset, _)) = reads.queue_entries(topic, queue_id, from, 1).pop() else {
                return Ok(None);
            };
            Ok(reads
                .queue_store_time(topic, queue_id, offset)?
                .filter(|ts| *ts <= end_ms)
                .map(|ts| (ts, queue_id, offset)))
        };
        let mut heads = BinaryHeap::new();
        for q in 0..t.config.queue_count {
            let from = reads.queue_offset_for_time(topic, q, begin_ms)?;
            if let Some(h) = head(q, from)? {
                heads.push(Reverse(h));
            }
        }
        let mut result = QueryResult::default();
        while let Some(Reverse((_, q, offset))) = heads.pop() {
            if result.messages.len() == max {
                result.truncated = true;
                break;
            }
            if let Some(m) = reads
                .read_queue(topic, q, offset, 1)?
                .into_iter()
                .find(|m| m.queue_offset == offset)
            {
                result.messages.push(m);
            }
            if let Some(h) = head(q, offset + 1)? {
                heads.push(Reverse(h));
            }
        }
        Ok(result)
    }

    /// The store time of the last message of a queue, `None` when it has none (it is empty, or
    /// retention removed everything). A gauge: it reflects what the dispatcher has published,
    /// which may trail a send that just returned by the dispatch delay (reads that must see
    /// such a send, like [`Topics::describe`], wait for it).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], store errors.
    pub fn last_store_time(self, topic: &str, queue_id: u32) -> Result<Option<i64>> {
        let t = self.broker.topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        let store = &self.broker.inner.store;
        let (min, max) = store.dispatched().queue_range(topic, queue_id);
        if max <= min {
            return Ok(None);
        }
        Ok(store
            .dispatched()
            .queue_store_time(topic, queue_id, max - 1)?)
    }

    /// The first offset of a queue whose message was stored at or after `timestamp_ms` (the
    /// queue's max offset if none): where a consumer starting "from a time" begins.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], store errors for a damaged record.
    pub async fn offset_for_time(
        self,
        topic: &str,
        queue_id: u32,
        timestamp_ms: i64,
    ) -> Result<u64> {
        let t = self.broker.topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        let reads = self.broker.inner.store.visible().await?;
        Ok(reads.queue_offset_for_time(topic, queue_id, timestamp_ms)?)
    }

    /// The life of a message so far: every record stored under its id (sent, scheduled, half,
    /// delivered, retried, dead-lettered, resent), oldest first.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] if nothing is stored under the id, store errors.
    pub async fn trace(self, id: &str) -> Result<Vec<crate::api::TraceEvent>> {
        use crate::api::{TraceEvent, TraceKind};
        let reads = self.broker.inner.store.visible().await?;
        let mut records = reads.find_all_by_id(id)?;
        if records.is_empty() {
            return Err(Error::MessageNotFound(id.to_owned()));
        }
        records.sort_by_key(|m| m.physical_offset);
        Ok(records
            .into_iter()
            .map(|m| {
                let deliver_at_ms = m
                    .properties
                    .get(timer::PROP_DELIVER_AT)
                    .and_then(|t| t.parse().ok());
                let kind = if m.topic == TIMER_TOPIC {
                    TraceKind::Scheduled
                } else if m.topic == HALF_TOPIC {
                    TraceKind::Half
                } else if m.topic.starts_with(retry::RETRY_PREFIX) {
                    TraceKind::Retry
                } else if m.topic.starts_with(retry::DLQ_PREFIX) {
                    TraceKind::DeadLettered
                } else {
                    TraceKind::Stored
                };
                let topic = match kind {
                    TraceKind::Scheduled | TraceKind::Half => m
                        .properties
                        .get(timer::PROP_REAL_TOPIC)
                        .cloned()
                        .unwrap_or(m.topic),
                    _ => m.topic,
                };
                TraceEvent {
                    kind,
                    topic,
                    queue_id: m.queue_id,
                    queue_offset: m.queue_offset,
                    store_timestamp_ms: m.store_timestamp_ms,
                    attempts: m.reconsume_times,
                    deliver_at_ms,
                }
            })
            .collect())
    }

    /// The message with this id.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`], [`Error::Reserved`] for a message of another gateway's
    /// topic, store errors.
    pub async fn by_id(self, id: &str) -> Result<StoredMessage> {
        if id.is_empty() || id.len() > self.broker.inner.config.limits.max_field_bytes {
            return Err(Error::IllegalField {
                field: crate::error::Field::MessageId,
                reason: "empty or too long".into(),
            });
        }
        let reads = self.broker.inner.store.visible().await?;
        let m = reads
            .find_by_id(id)?
            .map(|m| {
                if m.topic == TIMER_TOPIC {
                    timer::present_scheduled(m)
                } else {
                    m
                }
            })
            .ok_or_else(|| Error::MessageNotFound(id.to_owned()))?;
        // A gateway's reserved topic is not read by others, by id either.
        self.broker.check_reserved_topic(&m.topic)?;
        Ok(m)
    }

    /// Messages of `topic` with `key` stored within `[begin_ms, end_ms]`, newest first.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::InvalidArgument`] for `max` out of range or an
    /// inverted time range, store errors.
    pub async fn by_key(
        self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        self.broker.topic(topic)?;
        let limit = self.broker.inner.config.limits.max_batch;
        if max == 0 || max > limit {
            return Err(Error::InvalidArgument(format!(
                "max must be between 1 and {limit}"
            )));
        }
        if begin_ms > end_ms {
            return Err(Error::InvalidArgument("begin is after end".into()));
        }
        let reads = self.broker.inner.store.visible().await?;
        Ok(reads.find_by_key(topic, key, begin_ms, end_ms, max)?)
    }
}
