//! The `DeadLetters` service of the `Broker`: a group's dead-letter queue (`%DLQ%<group>`) —
//! list it by offset, resend some or all of its messages to their original topics, purge it.
//!
//! Invariants: a resend stores a copy under the original topic (same id, keys, tag, body) before
//! it returns; the dead letter itself stays until purged (retention ages it out otherwise).
//!
//! Who calls it: gateways (REST and gRPC administration). Reads go through `Store::visible`;
//! no lock of its own.

use super::retry::*;
use super::*;
use crate::api::*;
use crate::error::{Error, Result};
use crate::message::{Message, StoredMessage};

/// Dead letters: list a group's dead-letter queue, resend from it, purge it.
#[derive(Clone, Copy)]
pub struct DeadLetters<'a> {
    pub(super) broker: &'a Broker,
}

impl DeadLetters<'_> {
    /// Reads the group's dead-letter queue from `offset`.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::IllegalBatchSize`].
    pub async fn list(self, group: &str, offset: u64, max: usize) -> Result<PullResult> {
        self.broker.existing_group(group)?;
        let topic = dlq_topic(group);
        self.broker.ensure_internal_topic(&topic)?;
        self.broker.consumer().pull(&topic, 0, offset, max).await
    }

    /// Resends dead letters to their original topic with their attempts reset. Returns how
    /// many were resent.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] naming an id that is not in the dead-letter queue (nothing is
    /// resent then), store errors.
    pub async fn resend(self, group: &str, selection: DlqSelection) -> Result<usize> {
        self.broker.check_master("resending dead letters")?;
        self.broker.existing_group(group)?;
        let topic = dlq_topic(group);
        let reads = self.broker.inner.store.visible().await?;
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
            // The broker re-publishes what it stored: properties a gateway reserves (the
            // MQTT topic of an MQTT publish) were set by that gateway and go back as they are.
            self.broker
                .internal()
                .producer()
                .send(crate::api::SendRequest::new(message, QueueSelector::Auto))
                .await?;
        }
        Ok(count)
    }

    /// Deletes every message of the group's dead-letter queue (as [`super::Topics::delete`]
    /// deletes a topic's queues: replicated, replayed after a crash).
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], I/O errors, [`Error::Metadata`].
    pub fn purge(self, group: &str) -> Result<()> {
        self.broker.check_master("purging dead letters")?;
        self.broker.existing_group(group)?;
        let topic = dlq_topic(group);
        self.broker.inner.store.delete_queues(&topic)?;
        self.broker.inner.consumption.consumers.forget_topic(&topic);
        // As `Topics::delete`: no old ack or offset comes back after a restart.
        self.broker.consumer().persist_state()?;
        Ok(())
    }
}
