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
    /// The type the producer declares (the RocketMQ 5 protocol's `message_type`). When set,
    /// core checks what the type needs (a FIFO message's group, a DELAY message's delivery
    /// time); when `None`, the message is the type its fields make it (TRANSACTION for a half
    /// send, DELAY with a delay, FIFO with a group, NORMAL otherwise). Either way the topic
    /// must accept that type (its own, or any for MIXED) unless
    /// `limits.topic_message_type_check` is off.
    pub message_type: Option<crate::MessageType>,
}

impl SendRequest {
    /// A request for `message` on the queue `queue`, with no declared type.
    pub fn new(message: Message, queue: QueueSelector) -> Self {
        Self {
            message,
            queue,
            message_type: None,
        }
    }

    /// Declares the message's type.
    #[must_use]
    pub fn with_type(mut self, message_type: crate::MessageType) -> Self {
        self.message_type = Some(message_type);
        self
    }
}

impl From<Message> for SendRequest {
    fn from(message: Message) -> Self {
        Self::new(message, QueueSelector::Auto)
    }
}

/// Where a sent message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// Message id (the producer's, or generated).
    pub message_id: String,
    /// Queue it went to (for a delayed or half message: the queue it will go to).
    pub queue_id: u32,
    /// Offset within the queue, when the message is in it: `None` for a delayed or timed
    /// message (it gets its offset when it is due) and for a half message (when it is
    /// committed). Those are found by their message id (the scheduled listing, cancel, queries).
    pub queue_offset: Option<u64>,
    /// CommitLog offset of the record written (for a delayed or half message: the scheduled
    /// or half record, not the message delivered later).
    pub physical_offset: u64,
    /// Store time (ms).
    pub store_timestamp_ms: i64,
    /// For a delayed or timed message: when it will be delivered (the schedule is named by
    /// `message_id`, e.g. to cancel it).
    pub deliver_at_ms: Option<i64>,
    /// For a half message: the transaction id to end it with.
    pub transaction_id: Option<String>,
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
    /// Messages were scanned but none matched the filter (a bounded scan stopped before the
    /// end of the queue): continue from `next_offset`.
    NoMatchedMessage,
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

/// Changes to a topic's configuration ([`crate::Topics::update`]); `None` keeps the
/// current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicUpdate {
    /// New number of queues: at least the current one (queues are never removed).
    pub queue_count: Option<u32>,
    /// New accepted message type.
    pub message_type: Option<crate::broker::topic::MessageType>,
    /// New permissions.
    pub permission: Option<crate::broker::topic::Permission>,
}

/// The answer to a bounded message query ([`crate::Queries::by_time`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryResult {
    /// The messages, in the order the query documents.
    pub messages: Vec<StoredMessage>,
    /// More messages matched than `max`: the answer was cut short.
    pub truncated: bool,
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

/// A pull by a consumer group (classic pull consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPullRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset to read from.
    pub offset: u64,
    /// Most messages to return.
    pub max: usize,
    /// Filter (`*`, `TagA || TagB`, or SQL92); `None` uses the group's subscription.
    pub filter: Option<crate::broker::filter::FilterExpression>,
    /// How long to hold the request when nothing is there (long polling).
    pub wait: std::time::Duration,
}

/// A pop by a consumer group (simple consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Filter expression; `None` uses the group's subscription.
    pub filter: Option<crate::broker::filter::FilterExpression>,
    /// Most messages to return.
    pub max: usize,
    /// How long delivered messages stay invisible to other consumers.
    pub invisible: std::time::Duration,
    /// How long to hold the request when nothing is visible (long polling).
    pub wait: std::time::Duration,
}

/// A popped message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoppedMessage {
    /// The message.
    pub message: StoredMessage,
    /// Opaque handle for `ack` and `change_invisible_duration`.
    pub receipt_handle: String,
    /// Delivery attempt, 1 for the first.
    pub attempt: u32,
    /// When it becomes visible again unless acknowledged (ms since the epoch).
    pub invisible_until_ms: i64,
}

/// A committed offset of a group on one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Queue.
    pub queue_id: u32,
    /// Committed offset (the next message to consume).
    pub offset: u64,
}

/// Lag of a group on one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLag {
    /// Queue.
    pub queue_id: u32,
    /// Queue max offset.
    pub max_offset: u64,
    /// Committed offset (pull consumers), if any.
    pub committed: Option<u64>,
    /// `max_offset - committed` (pull consumers).
    pub pull_lag: u64,
    /// Messages not yet acknowledged (pop consumers), including in-flight ones.
    pub pop_unacked: u64,
    /// Messages in flight (pop consumers).
    pub pop_inflight: u64,
}

/// One step in the life of a message, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// What happened.
    pub kind: TraceKind,
    /// The topic of the record (target topic for scheduled and half messages).
    pub topic: String,
    /// Queue of the record.
    pub queue_id: u32,
    /// Offset of the record in its queue.
    pub queue_offset: u64,
    /// When the record was stored (ms).
    pub store_timestamp_ms: i64,
    /// Deliveries counted before this record (retries, dead letters).
    pub attempts: u32,
    /// For scheduled records: when it is due (ms).
    pub deliver_at_ms: Option<i64>,
}

/// Kinds of [`TraceEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// Stored in its topic (sent, delivered after a delay, committed, resent).
    Stored,
    /// Waiting in the schedule for its delivery time.
    Scheduled,
    /// Stored as a transactional half message.
    Half,
    /// Copied to a retry topic.
    Retry,
    /// Moved to a dead-letter queue.
    DeadLettered,
}

/// CommitLog positions (bytes), as the health endpoints and benchmarks show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOffsets {
    /// The first byte still held (start of the oldest segment).
    pub min: u64,
    /// The end of what is flushed to disk.
    pub durable: u64,
    /// The end of what is written.
    pub end: u64,
    /// The end of what consumers can read: dispatched into ConsumeQueues and the index.
    pub dispatched: u64,
}

/// What the store's recovery did when the broker opened (for logs, health and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous run did not shut down cleanly.
    pub after_crash: bool,
    /// A damaged or torn tail was cut from the CommitLog.
    pub cut_tail: bool,
    /// CommitLog end after recovery.
    pub log_end: u64,
    /// Where ConsumeQueue/index replay started.
    pub replayed_from: u64,
    /// Records replayed into ConsumeQueues and the index.
    pub replayed_records: u64,
}

/// The broker's storage health: whether it takes writes, and where its CommitLog stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Why writes are refused (disk full, read-only after a failed flush), or `None`.
    pub write_refusal: Option<String>,
    /// Why the dispatcher cannot make new messages readable (a full disk), or `None`.
    pub dispatch_failure: Option<String>,
    /// CommitLog positions.
    pub log: LogOffsets,
    /// What recovery did at open.
    pub recovery: RecoveryReport,
}

/// Why [`crate::Producer::send_batch`] stopped.
#[derive(Debug, thiserror::Error)]
#[error("batch message {index}: {error}")]
pub struct BatchError {
    /// The request that failed (0-based).
    pub index: usize,
    /// How many requests before it were stored (0 when it failed its checks).
    pub stored: usize,
    /// Its error.
    #[source]
    pub error: crate::Error,
}
