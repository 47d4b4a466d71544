//! Retries and dead letters: what happens to a message a consumer did not acknowledge.
//!
//! Owns: the retry and dead-letter topics of consumer groups and the moves into them.
//! - A popped message whose invisible time passes, or that is nacked, is copied — same id,
//!   keys, tag, properties and body, its delivery count in `reconsume_times` and its original
//!   topic in the reserved property [`PROP_RETRY_TOPIC`] — to the retry topic of the group and
//!   topic ([`retry_topic`]), and the original is acknowledged. An expired message is
//!   receivable again as soon as its invisible time ends (the invisible time *is* its backoff,
//!   as in Apache RocketMQ: push clients stretch it with `ChangeInvisibleDuration` by the
//!   backoff the server advertises); a nacked one after the delay the consumer asked for, or
//!   without one after the backoff of its attempt (`consumer.retry_backoff`). Pops of the topic by the
//!   group also receive these retries, presented as messages of the original topic: the group
//!   subscribes to nothing extra.
//! - A message pulled by a classic consumer and sent back ([`Consumer::send_back`]) goes to
//!   `%RETRY%<group>`, which such consumers pull like any queue.
//! - After the group's `max_delivery_attempts` deliveries a message goes to `%DLQ%<group>`
//!   instead, once. FIFO topics retry in place (order is kept) and dead-letter after the same
//!   maximum instead of blocking their message group forever.
//!
//! Invariant: the copy is stored (durably, under the store's flush mode) before the original is
//! acknowledged, so a crash in between delivers the message twice, never zero times.

use super::consumer_group::Group;
use super::consumer_state::journal_line;
use super::pop::Expired;
use super::topic::TopicConfig;
use super::{Broker, Stored};
use crate::error::{Error, Result};
use crate::message::{Message, StoredMessage};

/// Reserved property holding the original topic of a retried or dead-lettered message.
pub const PROP_RETRY_TOPIC: &str = "RETRY_TOPIC";
/// How long an expired message stays invisible while it is being moved (ms).
pub const REVIVE_GRACE_MS: i64 = 30_000;
/// Prefix of retry topics.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// The retry topic of pop consumers of `group` on `topic`: `%RETRY%<group>+<topic>` (RocketMQ
/// 5's "retry topic v2" naming). `+` is allowed in neither group nor topic names, so two
/// (group, topic) pairs never share a retry topic. Shortened with a hash of the full name when
/// it would not fit a file name.
pub fn retry_topic(group: &str, topic: &str) -> String {
    let name = format!("{RETRY_PREFIX}{group}+{topic}");
    if name.len() <= 200 {
        return name;
    }
    let hash = blake3::hash(name.as_bytes());
    let short: String = group.chars().take(100).collect();
    format!("{RETRY_PREFIX}{short}+{}", &hash.to_hex()[..16])
}

/// The retry topic earlier versions used, `%RETRY%<group>_<topic>`: ambiguous (group `a` on
/// topic `b_c` and group `a_b` on topic `c` shared it). Nothing is written there any more; pops
/// still read it while it exists, so retries stored before an upgrade are not stranded.
pub(super) fn legacy_retry_topic(group: &str, topic: &str) -> String {
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
        for (group, topic) in self.inner.consumption.consumers.pop_keys() {
            let Some(g) = self.inner.consumption.groups.get(&group) else {
                continue;
            };
            let Some(t) = self.inner.topics.get(&topic) else {
                continue;
            };
            let fifo = t.config.message_type == super::topic::MessageType::Fifo;
            let all = super::filter::Filter::All;
            let params = super::pop::PopParams {
                filter: &all,
                now_ms: self.inner.clock.now_ms(),
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
    pub(super) fn backoff_ms(&self, attempts: u32) -> u64 {
        let b = &self.inner.consumption.retry_backoff_ms;
        let i = (attempts.max(1) as usize - 1).min(b.len().saturating_sub(1));
        b.get(i).copied().unwrap_or(0)
    }

    pub(super) fn ensure_internal_topic(&self, name: &str) -> Result<()> {
        if self.inner.topics.get(name).is_some() {
            return Ok(());
        }
        match self.inner.topics.create(TopicConfig::new(name, 1)) {
            Ok(_) | Err(Error::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Copies `m` (delivered `attempts` times) to the group's retry or dead-letter topic.
    pub(super) async fn move_message(
        &self,
        group: &Group,
        m: StoredMessage,
        attempts: u32,
        dead: bool,
        retry_to: String,
        delay_ms: Option<u64>,
    ) -> Result<()> {
        let now = self.inner.clock.now_ms();
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
    /// acknowledges the original. The retry is receivable at once: its invisible time was its
    /// backoff.
    pub(super) async fn revive(
        &self,
        group: &Group,
        topic: &str,
        queue_id: u32,
        e: Expired,
    ) -> Result<()> {
        self.revive_with(group, topic, queue_id, e, Some(0)).await
    }

    pub(super) async fn revive_with(
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
            let state = self.inner.consumption.consumers.topic_pop(name, topic);
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
}
