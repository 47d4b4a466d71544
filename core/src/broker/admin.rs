//! The administrative half of the `Broker` API beyond create / describe / delete: topic updates,
//! the change counter of the topic table, store-time queries, and the views admin tools show
//! (the topics a group is involved in, the store time of a queue's last message).
//!
//! Invariants:
//! - A topic's queue count only grows: a queue is never removed, so no stored message becomes
//!   unreadable. New queues are usable for send, pull and pop as soon as `update_topic` returns
//!   (queues are created on their first message).
//! - The topic table is persisted before a change is reported (see [`super::topic`]); the
//!   counter of [`Broker::topics_changed`] is bumped only after that, and only for user topics
//!   (the broker's own retry, dead-letter and journal topics never move it).
//! - Queries are bounded: a time query reads at most one header per queue plus `max + 1`
//!   messages, whatever the size of the range.
//!
//! Who calls it: gateways (the admin service), the server (NameServer registration). Store
//! access only through [`crate::store::Store`]'s public API.
//!
//! Concurrency: updates hold the topic table's write lock across their check and persist; the
//! counter is a `tokio::sync::watch` channel (receivers see the latest value, not every step).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use super::retry::DLQ_PREFIX;
use super::topic::TopicConfig;
use super::{check_user_topic_name, Broker};
use crate::api::{QueryResult, TopicInfo, TopicUpdate};
use crate::error::{Error, Result};
use crate::store::SYSTEM_TOPIC_PREFIX;

impl Broker {
    /// Changes the queue count (grow only), message type or permissions of a user topic. Fields
    /// left `None` keep their value; an update that changes nothing succeeds without writing.
    ///
    /// # Errors
    /// [`Error::IllegalTopic`] for an illegal or reserved name (as [`Broker::create_topic`]),
    /// [`Error::TopicNotFound`], [`Error::InvalidArgument`] for a queue count of 0, over
    /// `limits.max_queues_per_topic`, or smaller than the current one, [`Error::Metadata`] if the
    /// table cannot be persisted (nothing changes then).
    pub fn update_topic(&self, name: &str, update: TopicUpdate) -> Result<TopicInfo> {
        check_user_topic_name(name)?;
        let max = self.inner.config.limits.max_queues_per_topic;
        if let Some(n) = update.queue_count {
            if n == 0 || n > max {
                return Err(Error::InvalidArgument(format!(
                    "queue_count must be between 1 and {max}"
                )));
            }
        }
        let (topic, changed) = self.inner.topics.update(name, |current| {
            let mut next: TopicConfig = current.clone();
            if let Some(n) = update.queue_count {
                if n < current.queue_count {
                    return Err(Error::InvalidArgument(format!(
                        "queue_count of topic `{name}` can only grow (from {}): messages in \
                         queues {n}..{} would become unreadable",
                        current.queue_count, current.queue_count
                    )));
                }
                next.queue_count = n;
            }
            if let Some(t) = update.message_type {
                next.message_type = t;
            }
            if let Some(p) = update.permission {
                next.permission = p;
            }
            Ok(next)
        })?;
        if changed {
            let c = &topic.config;
            tracing::info!(topic = %c.name, queues = c.queue_count, message_type = ?c.message_type,
                read = c.permission.read, write = c.permission.write, "topic updated");
            self.note_topics_changed();
        }
        self.describe_now(name)
    }

    /// User topics (no journal, retry or dead-letter topics), sorted by name: what an admin
    /// lists and what a broker serves to clients.
    pub fn list_user_topics(&self) -> Vec<TopicConfig> {
        let mut topics = self.inner.topics.list();
        topics.retain(|t| !super::is_system_managed(&t.name));
        topics
    }

    /// A counter bumped after every successful create, update (that changed something) and
    /// delete of a user topic, for whoever mirrors the topic table (the NameServer
    /// registration). Starts at 0 when the broker opens; only the latest value is kept.
    pub fn topics_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.topics_version.subscribe()
    }

    pub(super) fn note_topics_changed(&self) {
        self.inner
            .topics_version
            .send_modify(|v| *v = v.wrapping_add(1));
    }

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
    pub async fn query_by_time(
        &self,
        topic: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<QueryResult> {
        let t = self.topic(topic)?;
        let limit = self.inner.config.limits.max_batch;
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
        let store = &self.inner.store;
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

    /// The topics `group` is involved in, sorted: those it subscribes to, has committed offsets
    /// on or has pop state for, that still exist. Journal (`rmq_sys_`) and dead-letter topics are
    /// left out (dead letters have their own calls); retry topics on which the group consumes
    /// (`%RETRY%<group>`, and the per-topic retry topics of its pops) are kept, since their lag
    /// is redelivery work still pending.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`] (an illegal name as [`Error::IllegalField`]).
    pub fn group_topics(&self, group: &str) -> Result<Vec<String>> {
        let g = self.existing_group(group)?;
        let mut topics: BTreeSet<String> = g.config.subscriptions.keys().cloned().collect();
        topics.extend(self.inner.consumers.group_topics(group));
        Ok(topics
            .into_iter()
            .filter(|t| !t.starts_with(SYSTEM_TOPIC_PREFIX) && !t.starts_with(DLQ_PREFIX))
            .filter(|t| self.inner.topics.get(t).is_some())
            .collect())
    }

    /// The store time of the last message of a queue, `None` when it has none (it is empty, or
    /// retention removed everything). A gauge: it reflects what the dispatcher has published,
    /// which may trail a send that just returned by the dispatch delay (reads that must see
    /// such a send, like [`Broker::describe_topic`], wait for it).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], store errors.
    pub fn queue_last_store_time(&self, topic: &str, queue_id: u32) -> Result<Option<i64>> {
        let t = self.topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        let store = &self.inner.store;
        let (min, max) = store.dispatched().queue_range(topic, queue_id);
        if max <= min {
            return Ok(None);
        }
        Ok(store
            .dispatched()
            .queue_store_time(topic, queue_id, max - 1)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
