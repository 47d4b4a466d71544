//! The domain types of a message: what a producer hands to the [`crate::Broker`]
//! ([`Message`]) and what a consumer gets back ([`StoredMessage`]).
//!
//! Owns: the message model and its conversion from a verified CommitLog record. Validation of
//! sizes and names lives in [`crate::broker::validate`], limits in [`crate::config`].

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::store::record::RecordView;

/// A message as a producer sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Target topic.
    pub topic: String,
    /// Payload.
    pub body: Bytes,
    /// Tag used by filter expressions.
    pub tag: Option<String>,
    /// Business keys, queryable.
    pub keys: Vec<String>,
    /// Message group (FIFO ordering) / sharding key.
    pub message_group: Option<String>,
    /// User properties.
    pub properties: BTreeMap<String, String>,
    /// Producer-assigned id; the broker generates one in the RocketMQ 5 format when absent.
    pub message_id: Option<String>,
    /// Producer timestamp in ms; the broker's clock when absent.
    pub born_timestamp_ms: Option<i64>,
    /// Producer host.
    pub born_host: Option<String>,
    /// Deliver after this delay level (1-based into `timer.delay_levels`).
    pub delay_level: Option<u32>,
    /// Deliver at this time (ms since the epoch); a time in the past delivers at once.
    pub deliver_at_ms: Option<i64>,
}

impl Message {
    /// A message with just a topic and a body.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            body: body.into(),
            ..Self::default()
        }
    }

    /// Sets the tag.
    #[must_use]
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Adds a key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Sets a property.
    #[must_use]
    pub fn with_property(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.properties.insert(k.into(), v.into());
        self
    }

    /// Delays delivery by a delay level.
    #[must_use]
    pub fn with_delay_level(mut self, level: u32) -> Self {
        self.delay_level = Some(level);
        self
    }

    /// Delivers at a time (ms since the epoch).
    #[must_use]
    pub fn with_deliver_at(mut self, at_ms: i64) -> Self {
        self.deliver_at_ms = Some(at_ms);
        self
    }

    /// Sets the message group.
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.message_group = Some(group.into());
        self
    }
}

/// A message as stored: the producer's fields plus what the store assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Message id.
    pub message_id: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset within the queue.
    pub queue_offset: u64,
    /// CommitLog offset.
    pub physical_offset: u64,
    /// Encoded record size.
    pub size: u32,
    /// When stored (ms).
    pub store_timestamp_ms: i64,
    /// When produced (ms).
    pub born_timestamp_ms: i64,
    /// Producer host.
    pub born_host: Option<String>,
    /// Tag.
    pub tag: Option<String>,
    /// Keys.
    pub keys: Vec<String>,
    /// Message group.
    pub message_group: Option<String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Payload.
    pub body: Bytes,
    /// Times redelivered before.
    pub reconsume_times: u32,
    /// Record flags.
    pub flags: u32,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl From<&RecordView<'_>> for StoredMessage {
    fn from(v: &RecordView<'_>) -> Self {
        Self {
            message_id: v.message_id.to_owned(),
            topic: v.topic.to_owned(),
            queue_id: v.fields.queue_id,
            queue_offset: v.fields.queue_offset,
            physical_offset: v.fields.physical_offset,
            size: v.total_len as u32,
            store_timestamp_ms: v.fields.store_timestamp,
            born_timestamp_ms: v.born_timestamp,
            born_host: non_empty(v.born_host),
            tag: non_empty(v.tag),
            keys: v.keys().map(str::to_owned).collect(),
            message_group: non_empty(v.message_group),
            properties: v
                .properties()
                .map(|(k, x)| (k.to_owned(), x.to_owned()))
                .collect(),
            body: v.body_bytes(),
            reconsume_times: v.reconsume_times,
            flags: v.flags,
        }
    }
}
