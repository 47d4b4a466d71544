//! Retries and dead letters: what happens to a message a consumer did not acknowledge.
//!
//! Owns: the retry and dead-letter topics of consumer groups and the moves into them.
//! - A popped message whose invisible time passes, or that is nacked, is copied — same id,
//!   keys, tag, properties and body, its delivery count in `reconsume_times` and its original
//!   topic in the reserved property [`PROP_RETRY_TOPIC`] — to the retry topic of the group and
//!   topic ([`retry_topic`]), scheduled after the backoff of its attempt
//!   (`consumer.retry_backoff`), and the original is acknowledged. Pops of the topic by the
//!   group also receive these retries, presented as messages of the original topic: the group
//!   subscribes to nothing extra.
//! - A message pulled by a classic consumer and sent back ([`Broker::send_back`]) goes to
//!   `%RETRY%<group>`, which such consumers pull like any queue.
//! - After the group's `max_delivery_attempts` deliveries a message goes to `%DLQ%<group>`
//!   instead, once. FIFO topics retry in place (order is kept) and dead-letter after the same
//!   maximum instead of blocking their message group forever.
//!
//! Invariant: the copy is stored (durably, under the store's flush mode) before the original is
//! acknowledged, so a crash in between delivers the message twice, never zero times.

use std::time::Duration;

use super::consumer_group::Group;
use super::consumer_state::journal_line;
use super::pop::Expired;
use super::topic::TopicConfig;
use super::{Broker, Stored};
use crate::api::{PullResult, QueueSelector};
use crate::error::{Error, Result};
use crate::message::{Message, StoredMessage};
use crate::store::now_ms;

/// Reserved property holding the original topic of a retried or dead-lettered message.
pub const PROP_RETRY_TOPIC: &str = "RETRY_TOPIC";
/// How long an expired message stays invisible while it is being moved (ms).
pub const REVIVE_GRACE_MS: i64 = 30_000;
/// Prefix of retry topics.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// The retry topic of pop consumers of `group` on `topic` (RocketMQ 5 naming), shortened with a
/// hash when it would not fit a file name.
pub fn retry_topic(group: &str, topic: &str) -> String {
    let name = format!("{RETRY_PREFIX}{group}_{topic}");
    if name.len() <= 200 {
        return name;
    }
    let hash = blake3::hash(name.as_bytes());
    let short: String = group.chars().take(100).collect();
    format!("{RETRY_PREFIX}{short}_{}", &hash.to_hex()[..16])
}

/// The retry topic of classic (pull) consumers of `group`.
pub fn group_retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of `group`.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// Which dead letters to resend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqSelection {
    /// These message ids.
    Ids(Vec<String>),
    /// Everything in the dead-letter queue.
    All,
}

impl Broker {
    /// One sweep of the reviver worker (`rg-revive`, every second): moves expired in-flight
    /// messages of every group and topic even when no consumer is popping.
    pub(super) async fn revive_all(&self) {
        for (group, topic) in self.inner.consumers.pop_keys() {
            let Some(g) = self.inner.groups.get(&group) else {
                continue;
            };
            let Some(t) = self.inner.topics.get(&topic) else {
                continue;
            };
            let fifo = t.config.message_type == super::topic::MessageType::Fifo;
            let all = super::filter::Filter::All;
            let params = super::pop::PopParams {
                filter: &all,
                now_ms: now_ms(),
                invisible_ms: 0,
                fifo,
                revive: !fifo,
                max_attempts: g.config.max_delivery_attempts.max(1),
                revive_grace_ms: REVIVE_GRACE_MS,
                max_bytes: usize::MAX,
            };
            let mut out = Vec::new();
            let mut expired = Vec::new();
            // `max = 0`: hand out nothing, only collect what expired.
            if let Err(e) = self.pop_pass(
                &group,
                &topic,
                t.config.queue_count,
                0,
                &params,
                &mut out,
                &mut expired,
            ) {
                tracing::error!(error = %e, group = %group, topic = %topic, "revive sweep failed");
                continue;
            }
            for (topic, queue_id, e) in expired {
                if let Err(err) = self.revive(&g, &topic, queue_id, e).await {
                    tracing::error!(error = %err, group = %group, topic = %topic, "could not retry an expired message");
                }
            }
        }
    }

    /// The retry backoff before attempt `attempts + 1` (ms).
    fn backoff_ms(&self, attempts: u32) -> u64 {
        let b = &self.inner.retry_backoff_ms;
        let i = (attempts.max(1) as usize - 1).min(b.len().saturating_sub(1));
        b.get(i).copied().unwrap_or(0)
    }

    fn ensure_internal_topic(&self, name: &str) -> Result<()> {
        if self.inner.topics.get(name).is_some() {
            return Ok(());
        }
        match self.inner.topics.create(TopicConfig::new(name, 1)) {
            Ok(_) | Err(Error::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Copies `m` (delivered `attempts` times) to the group's retry or dead-letter topic.
    async fn move_message(
        &self,
        group: &Group,
        m: StoredMessage,
        attempts: u32,
        dead: bool,
        retry_to: String,
        delay_ms: Option<u64>,
    ) -> Result<()> {
        let now = now_ms();
        let origin = m
            .properties
            .get(PROP_RETRY_TOPIC)
            .cloned()
            .unwrap_or_else(|| m.topic.clone());
        let target = if dead {
            dlq_topic(&group.config.name)
        } else {
            retry_to
        };
        self.ensure_internal_topic(&target)?;
        let mut properties = m.properties;
        properties.insert(PROP_RETRY_TOPIC.into(), origin);
        let copy = Message {
            topic: target,
            body: m.body,
            tag: m.tag,
            keys: m.keys,
            message_group: m.message_group,
            properties,
            message_id: Some(m.message_id.clone()),
            born_timestamp_ms: Some(m.born_timestamp_ms),
            born_host: m.born_host,
            delay_level: None,
            deliver_at_ms: None,
        };
        let delay = if dead {
            0
        } else {
            delay_ms.unwrap_or_else(|| self.backoff_ms(attempts))
        };
        let deliver_at = (delay > 0).then(|| now + delay as i64);
        self.store_message(
            &Stored {
                message: &copy,
                message_id: &m.message_id,
                queue_id: 0,
                reconsume_times: attempts,
                now,
            },
            deliver_at,
        )
        .await?;
        if dead {
            tracing::info!(group = %group.config.name, id = %m.message_id, attempts, "message moved to the dead-letter queue");
        }
        Ok(())
    }

    /// Retries or dead-letters an expired in-flight message of `topic`/`queue_id`, then
    /// acknowledges the original.
    pub(super) async fn revive(
        &self,
        group: &Group,
        topic: &str,
        queue_id: u32,
        e: Expired,
    ) -> Result<()> {
        self.revive_with(group, topic, queue_id, e, None).await
    }

    async fn revive_with(
        &self,
        group: &Group,
        topic: &str,
        queue_id: u32,
        e: Expired,
        delay_ms: Option<u64>,
    ) -> Result<()> {
        let name = &group.config.name;
        if let Some(m) = self
            .inner
            .store
            .dispatched()
            .read_at(e.entry.physical_offset, Some(e.entry.size))?
        {
            let origin = m
                .properties
                .get(PROP_RETRY_TOPIC)
                .cloned()
                .unwrap_or_else(|| m.topic.clone());
            self.move_message(
                group,
                m,
                e.attempts,
                e.dead,
                retry_topic(name, &origin),
                delay_ms,
            )
            .await?;
        }
        let acked = {
            let state = self.inner.consumers.topic_pop(name, topic);
            let mut tp = state.lock();
            // A dead-lettered FIFO head frees its group: wake pops waiting for it.
            tp.notify_change();
            tp.queue(queue_id).ack(e.offset, e.seq).is_ok()
        };
        if acked {
            let mut line = String::new();
            journal_line(&mut line, name, topic, queue_id, e.offset);
            self.journal(line).await?;
        }
        Ok(())
    }

    /// Negative acknowledgement of a popped message: it is retried after `delay` (or the backoff
    /// of its attempt), or dead-lettered when it reached the group's maximum. On a FIFO topic it
    /// is redelivered in place after the delay, keeping its group's order.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`], store errors.
    pub async fn nack(&self, group: &str, handle: &str, delay: Option<Duration>) -> Result<()> {
        let g = self.resolve_group(group)?;
        let (r, state) = self.in_flight(group, handle)?;
        let fifo = self
            .inner
            .topics
            .get(&r.topic)
            .is_some_and(|t| t.config.message_type == super::topic::MessageType::Fifo);
        let now = now_ms();
        let max = g.config.max_delivery_attempts.max(1);
        let e = state
            .lock()
            .queue(r.queue_id)
            .take_for_retry(r.queue_offset, r.seq, now + REVIVE_GRACE_MS, max)
            .map_err(|_| {
                Error::InvalidReceiptHandle(
                    "no longer current: acknowledged, redelivered or changed",
                )
            })?;
        let delay_ms = delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if fifo && !e.dead {
            // In place: visible again after the delay, before any later message of its group.
            let wait = delay_ms.unwrap_or_else(|| self.backoff_ms(e.attempts)) as i64;
            let seq = self.inner.consumers.next_seq();
            let mut tp = state.lock();
            tp.notify_change();
            let _ = tp
                .queue(r.queue_id)
                .change_invisible(r.queue_offset, e.seq, now + wait, seq);
            return Ok(());
        }
        self.revive_with(&g, &r.topic, r.queue_id, e, delay_ms)
            .await
    }

    /// Moves a popped message to the group's dead-letter queue at once, whatever its attempt
    /// count (a consumer gave up on it, e.g. a RocketMQ 5 `ForwardMessageToDeadLetterQueue`),
    /// then acknowledges the original. The handle stops working.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::InvalidReceiptHandle`], store errors.
    pub async fn dead_letter(&self, group: &str, handle: &str) -> Result<()> {
        let g = self.resolve_group(group)?;
        let (r, state) = self.in_flight(group, handle)?;
        let mut e = state
            .lock()
            .queue(r.queue_id)
            .take_for_retry(r.queue_offset, r.seq, now_ms() + REVIVE_GRACE_MS, 1)
            .map_err(|_| {
                Error::InvalidReceiptHandle(
                    "no longer current: acknowledged, redelivered or changed",
                )
            })?;
        e.dead = true;
        self.revive_with(&g, &r.topic, r.queue_id, e, None).await
    }

    /// Sends a pulled message back for a later retry (classic pull consumers): it is copied to
    /// `%RETRY%<group>` after `delay_level` (or the backoff of its attempt), or to the
    /// dead-letter queue when it reached the group's maximum.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::MessageNotFound`] for an
    /// offset with no message, [`Error::IllegalDelayLevel`], store errors.
    pub async fn send_back(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
        delay_level: Option<u32>,
    ) -> Result<()> {
        let g = self.resolve_group(group)?;
        self.readable_queue(topic, queue_id)?;
        let reads = self.inner.store.visible().await?;
        let now = now_ms();
        let delay_ms = match delay_level {
            Some(l) => self
                .inner
                .timer
                .due_time(now, Some(l), None)?
                .map(|t| (t - now).max(0) as u64),
            None => None,
        };
        let m = reads
            .read_queue(topic, queue_id, queue_offset, 1)?
            .into_iter()
            .find(|m| m.queue_offset == queue_offset)
            .ok_or_else(|| Error::MessageNotFound(format!("{topic}/{queue_id}@{queue_offset}")))?;
        let attempts = m.reconsume_times + 1;
        let dead = attempts >= g.config.max_delivery_attempts.max(1);
        self.move_message(&g, m, attempts, dead, group_retry_topic(group), delay_ms)
            .await
    }

    /// Reads the group's dead-letter queue from `offset`.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::IllegalBatchSize`].
    pub async fn dlq_list(&self, group: &str, offset: u64, max: usize) -> Result<PullResult> {
        self.existing_group(group)?;
        let topic = dlq_topic(group);
        self.ensure_internal_topic(&topic)?;
        self.pull(&topic, 0, offset, max).await
    }

    /// Resends dead letters to their original topic with their attempts reset. Returns how
    /// many were resent.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] naming an id that is not in the dead-letter queue (nothing is
    /// resent then), store errors.
    pub async fn dlq_resend(&self, group: &str, selection: DlqSelection) -> Result<usize> {
        self.existing_group(group)?;
        let topic = dlq_topic(group);
        let reads = self.inner.store.visible().await?;
        let (min, max) = reads.queue_range(&topic, 0);
        let mut picked: Vec<StoredMessage> = Vec::new();
        let mut at = min;
        while at < max {
            let batch = reads.read_queue(&topic, 0, at, 256)?;
            let Some(last) = batch.last().map(|m| m.queue_offset) else {
                break;
            };
            at = last + 1;
            for m in batch {
                let wanted = match &selection {
                    DlqSelection::All => true,
                    DlqSelection::Ids(ids) => ids.contains(&m.message_id),
                };
                if wanted && !picked.iter().any(|p| p.message_id == m.message_id) {
                    picked.push(m);
                }
            }
        }
        if let DlqSelection::Ids(ids) = &selection {
            if let Some(missing) = ids
                .iter()
                .find(|id| !picked.iter().any(|m| &m.message_id == *id))
            {
                return Err(Error::MessageNotFound(missing.clone()));
            }
        }
        let count = picked.len();
        for mut m in picked {
            let origin = m
                .properties
                .remove(PROP_RETRY_TOPIC)
                .ok_or_else(|| Error::MessageNotFound(m.message_id.clone()))?;
            let message = Message {
                topic: origin,
                body: m.body,
                tag: m.tag,
                keys: m.keys,
                message_group: m.message_group,
                properties: m.properties,
                message_id: Some(m.message_id),
                born_timestamp_ms: Some(m.born_timestamp_ms),
                born_host: m.born_host,
                delay_level: None,
                deliver_at_ms: None,
            };
            self.send(crate::api::SendRequest::new(message, QueueSelector::Auto))
                .await?;
        }
        Ok(count)
    }

    /// Deletes every message of the group's dead-letter queue.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], I/O errors.
    pub fn dlq_purge(&self, group: &str) -> Result<()> {
        self.existing_group(group)?;
        let topic = dlq_topic(group);
        self.inner.store.delete_queues(&topic)?;
        self.inner.consumers.forget_topic(&topic);
        Ok(())
    }
}
