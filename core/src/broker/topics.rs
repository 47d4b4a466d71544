//! The `Topics` service of the `Broker`: create, describe, list, update and delete topics, the
//! change counter of the topic table, and the queue offsets of a topic.
//!
//! Invariants:
//! - A topic's queue count only grows: a queue is never removed, so no stored message becomes
//!   unreadable. New queues are usable for send, pull and pop as soon as `update` returns
//!   (queues are created on their first message).
//! - The topic table is persisted before a change is reported (see [`super::topic`]); the
//!   counter of [`Topics::changed`] is bumped only after that, and only for user topics (the
//!   broker's own retry, dead-letter and journal topics never move it).
//! - `describe` and `queue_offsets` include every send that returned before the call.
//!
//! Who calls it: gateways (REST and gRPC administration, routes), the server (NameServer
//! registration). State: the topic table ([`super::topic::TopicRegistry`]) and its change
//! counter, both in the broker's `Inner`.
//!
//! Concurrency: changes hold the topic table's write lock across their check and persist; the
//! counter is a `tokio::sync::watch` channel (receivers see the latest value, not every step).

use super::topic::*;
use super::*;
use crate::api::*;
use crate::error::{Error, Result};

/// Topic administration: create, describe, list, update and delete topics, and the change counter of the topic table.
#[derive(Clone, Copy)]
pub struct Topics<'a> {
    pub(super) broker: &'a Broker,
}

impl Topics<'_> {
    /// Changes the queue count (grow only), message type or permissions of a user topic. Fields
    /// left `None` keep their value; an update that changes nothing succeeds without writing.
    ///
    /// # Errors
    /// [`Error::IllegalTopic`] for an illegal or reserved name (as [`Topics::create`]),
    /// [`Error::TopicNotFound`], [`Error::InvalidArgument`] for a queue count of 0, over
    /// `limits.max_queues_per_topic`, or smaller than the current one, [`Error::Metadata`] if the
    /// table cannot be persisted (nothing changes then).
    pub fn update(self, name: &str, update: TopicUpdate) -> Result<TopicInfo> {
        self.broker.check_master("changing a topic")?;
        check_user_topic_name(name)?;
        self.broker.check_reserved_topic(name)?;
        let max = self.broker.inner.config.limits.max_queues_per_topic;
        if let Some(n) = update.queue_count {
            if n == 0 || n > max {
                return Err(Error::InvalidArgument(format!(
                    "queue_count must be between 1 and {max}"
                )));
            }
        }
        let (topic, changed) = self.broker.inner.topics.update(name, |current| {
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
            self.broker.note_topics_changed();
        }
        self.broker.describe_now(name)
    }

    /// User topics (no journal, retry or dead-letter topics), sorted by name: what an admin
    /// lists and what a broker serves to clients.
    pub fn list_user(self) -> Vec<TopicConfig> {
        let mut topics = self.broker.inner.topics.list();
        topics.retain(|t| !super::is_system_managed(&t.name));
        topics
    }

    /// A counter bumped after every successful create, update (that changed something) and
    /// delete of a user topic, for whoever mirrors the topic table (the NameServer
    /// registration). Starts at 0 when the broker opens; only the latest value is kept.
    pub fn changed(self) -> tokio::sync::watch::Receiver<u64> {
        self.broker.inner.topics.version.subscribe()
    }

    /// Creates a topic. Through a handle carrying a principal ([`Broker::as_caller`]: a
    /// gateway creating a topic on first use for a client) the principal needs `Create` on the
    /// topic.
    ///
    /// # Errors
    /// [`Error::IllegalTopic`], [`Error::Reserved`], [`Error::InvalidArgument`] for a bad queue
    /// count, [`Error::TopicExists`], [`Error::LimitReached`] past `limits.max_topics`,
    /// [`Error::Denied`], [`Error::Metadata`].
    pub fn create(self, config: TopicConfig) -> Result<TopicInfo> {
        self.broker.check_master("creating a topic")?;
        check_user_topic_name(&config.name)?;
        self.broker.check_reserved_topic(&config.name)?;
        let limits = &self.broker.inner.config.limits;
        let max = limits.max_queues_per_topic;
        if config.queue_count == 0 || config.queue_count > max {
            return Err(Error::InvalidArgument(format!(
                "queue_count must be between 1 and {max}"
            )));
        }
        self.broker
            .authorize_create(crate::auth::Resource::topic(&config.name))?;
        let topic = self
            .broker
            .inner
            .topics
            .create_bounded(config, limits.max_topics)?;
        tracing::info!(topic = %topic.config.name, queues = topic.config.queue_count, "topic created");
        self.broker.note_topics_changed();
        self.broker.describe_now(&topic.config.name)
    }

    /// A topic's configuration (queues, type, permission).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::IllegalTopic`] for a name no topic can have.
    pub fn config(self, name: &str) -> Result<TopicConfig> {
        Ok(self.broker.topic(name)?.config.clone())
    }

    /// Describes a topic with its per-queue offsets, which include every message whose send
    /// returned before this call.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::IllegalTopic`] for a name no topic can have.
    pub async fn describe(self, name: &str) -> Result<TopicInfo> {
        // Every send that returned before this call is in the offsets.
        self.broker.inner.store.visible().await?;
        self.broker.describe_now(name)
    }

    /// All topics except the internal journals, sorted by name: user topics and the retry and
    /// dead-letter topics of groups ([`Topics::list_user`] leaves those out too).
    pub fn list(self) -> Vec<TopicConfig> {
        let mut topics = self.broker.inner.topics.list();
        topics.retain(|t| !t.name.starts_with(SYSTEM_TOPIC_PREFIX));
        topics
    }

    /// Deletes a topic and its ConsumeQueues (its CommitLog records age out with retention),
    /// and the groups' offsets and pop state in it, persisted at once. The deletion is a
    /// CommitLog record: slaves and a replay after a crash apply it at the same place, and a
    /// topic re-created under the name starts again at queue offset 0 (docs/storage.md).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::Reserved`] for a gateway's topic, I/O errors,
    /// [`Error::Metadata`] when the consumer state cannot be persisted.
    pub fn delete(self, name: &str) -> Result<()> {
        self.broker.check_master("deleting a topic")?;
        self.broker.check_reserved_topic(name)?;
        if name.starts_with(SYSTEM_TOPIC_PREFIX) {
            return Err(Error::PermissionDenied {
                topic: name.to_owned(),
                what: "deletable",
            });
        }
        self.broker.inner.topics.delete(name)?;
        if !is_system_managed(name) {
            self.broker.note_topics_changed();
        }
        self.broker.inner.store.delete_queues(name)?;
        self.broker.inner.consumption.consumers.forget_topic(name);
        // Durably (and so on slaves): a restart must not replay the old topic's acks from the
        // ack journal, nor find its committed offsets, onto the re-created topic.
        self.broker.consumer().persist_state()?;
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// `(min, max)` offsets of a queue.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`].
    pub async fn queue_offsets(self, topic: &str, queue_id: u32) -> Result<QueueOffsets> {
        let t = self.broker.topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        let reads = self.broker.inner.store.visible().await?;
        let (min, max) = reads.queue_range(topic, queue_id);
        Ok(QueueOffsets { queue_id, min, max })
    }
}

impl Broker {
    pub(super) fn note_topics_changed(&self) {
        self.inner
            .topics
            .version
            .send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
