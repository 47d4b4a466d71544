//! Request and response types of the [`crate::Broker`] API: what gateways build from a wire
//! request and translate back into a wire answer.

use crate::message::{Message, StoredMessage};

/// How `send` picks the queue of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueueSelector {
    /// Round-robin over the topic's queues, unless the message has a message group, which is
    /// hashed so that one group always lands in one queue.
    #[default]
    Auto,
    /// Hash this sharding key to a queue (stable for a fixed queue count).
    ShardingKey(String),
    /// This exact queue.
    Queue(u32),
}

/// A send request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// The message.
    pub message: Message,
    /// Queue choice.
    pub queue: QueueSelector,
}

impl From<Message> for SendRequest {
    fn from(message: Message) -> Self {
        Self {
            message,
            queue: QueueSelector::Auto,
        }
    }
}

/// Where a sent message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// Message id (the producer's, or generated).
    pub message_id: String,
    /// Queue it went to.
    pub queue_id: u32,
    /// Offset within the queue.
    pub queue_offset: u64,
    /// CommitLog offset.
    pub physical_offset: u64,
    /// Store time (ms).
    pub store_timestamp_ms: i64,
}

/// Whether a pull found messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// At least one message.
    Found,
    /// The offset is at the end of the queue.
    NoNewMessage,
    /// The offset was below the minimum (retention removed those messages); reading started at
    /// the minimum.
    OffsetMoved,
    /// The offset is past the end of the queue.
    OffsetTooBig,
}

/// The answer to a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    /// Outcome.
    pub status: PullStatus,
    /// Messages in queue order.
    pub messages: Vec<StoredMessage>,
    /// Offset to pull from next.
    pub next_offset: u64,
    /// Queue minimum.
    pub min_offset: u64,
    /// Queue maximum (one past the last message).
    pub max_offset: u64,
}

/// A topic as described by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Configuration.
    pub config: crate::broker::topic::TopicConfig,
    /// `(min, max)` offsets per queue, by queue id.
    pub queues: Vec<QueueOffsets>,
}

/// Offsets of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOffsets {
    /// Queue id.
    pub queue_id: u32,
    /// Smallest readable offset.
    pub min: u64,
    /// One past the last message.
    pub max: u64,
}
