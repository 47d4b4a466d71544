//! The JSON shapes of the REST API and WebSocket frames, and their conversions to and from the
//! core types.
//!
//! Invariants: bodies travel as UTF-8 text or base64 (`body_encoding`); answers pick text when
//! the body is valid UTF-8, unless the client asks for base64. Every schema here is listed in the
//! OpenAPI document (utoipa `ToSchema`), so the document and the answers cannot drift apart.
//! No I/O, no locks.

use std::collections::BTreeMap;

use base64::Engine as _;
use rocketgate_core::api::{CommittedOffset, QueueLag, QueueOffsets, TraceEvent, TraceKind};
use rocketgate_core::{
    FilterExpression, FilterKind, GroupConfig, Message, MessageType, PoppedMessage, SendReceipt,
    StoredMessage, TopicConfig, TopicInfo,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// How a body is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// UTF-8 text.
    #[default]
    Text,
    /// Standard base64 (with padding).
    Base64,
}

/// A message to publish.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishMessage {
    /// The payload, as text or base64 (see `body_encoding`).
    pub body: String,
    /// How `body` is encoded (`text` by default).
    #[serde(default)]
    pub body_encoding: BodyEncoding,
    /// Tag, for filters.
    #[serde(default)]
    pub tag: Option<String>,
    /// Alias of `tag` (RocketMQ calls it tags; one tag per message).
    #[serde(default)]
    pub tags: Option<String>,
    /// Business keys, queryable.
    #[serde(default)]
    pub keys: Vec<String>,
    /// User properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Message group (FIFO topics): one group always lands in one queue.
    #[serde(default)]
    pub message_group: Option<String>,
    /// Deliver after this delay level (1-based).
    #[serde(default)]
    pub delay_level: Option<u32>,
    /// Deliver at this time, ms since the epoch.
    #[serde(default, alias = "deliver_at")]
    pub deliver_at_ms: Option<i64>,
    /// Deliver after this many ms from now.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// This exact queue.
    #[serde(default)]
    pub queue_id: Option<u32>,
}

/// A batch to publish: every message is checked before any is stored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatch {
    /// The messages (at most `http.max_batch`).
    pub messages: Vec<PublishMessage>,
}

/// Where a published message was stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Published {
    /// Message id.
    pub message_id: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue (of the scheduled record for a delayed message).
    pub queue_offset: u64,
    /// When stored, ms since the epoch.
    pub store_timestamp_ms: i64,
    /// When a delayed message will be delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at_ms: Option<i64>,
    /// For a half message: the transaction id to commit or roll back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

impl From<SendReceipt> for Published {
    fn from(r: SendReceipt) -> Self {
        Self {
            message_id: r.message_id,
            queue_id: r.queue_id,
            queue_offset: r.queue_offset,
            store_timestamp_ms: r.store_timestamp_ms,
            deliver_at_ms: r.deliver_at_ms,
            transaction_id: r.transaction_id,
        }
    }
}

/// The answer to a batch publish, in request order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublishedBatch {
    /// One per message.
    pub messages: Vec<Published>,
}

/// Decodes a body as the client wrote it.
///
/// # Errors
/// `400 invalid_base64`.
pub fn decode_body(body: &str, encoding: BodyEncoding) -> Result<bytes::Bytes, ApiError> {
    match encoding {
        BodyEncoding::Text => Ok(bytes::Bytes::copy_from_slice(body.as_bytes())),
        BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map(bytes::Bytes::from)
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_base64",
                    format!("body is not valid base64: {e}"),
                )
            }),
    }
}

impl PublishMessage {
    /// The core message for `topic`.
    ///
    /// # Errors
    /// `400` for base64 that does not decode or conflicting delay fields.
    pub fn into_message(self, topic: &str, now_ms: i64) -> Result<Message, ApiError> {
        let body = decode_body(&self.body, self.body_encoding)?;
        let delays = [
            self.delay_level.is_some(),
            self.deliver_at_ms.is_some(),
            self.delay_ms.is_some(),
        ];
        if delays.iter().filter(|d| **d).count() > 1 {
            return Err(ApiError::bad_request(
                "give at most one of delay_level, deliver_at_ms and delay_ms",
            ));
        }
        let deliver_at_ms = match self.delay_ms {
            Some(d) => Some(now_ms.saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
            None => self.deliver_at_ms,
        };
        Ok(Message {
            topic: topic.to_owned(),
            body,
            tag: self.tag.or(self.tags),
            keys: self.keys,
            message_group: self.message_group,
            properties: self.properties,
            message_id: None,
            born_timestamp_ms: None,
            born_host: None,
            delay_level: self.delay_level,
            deliver_at_ms,
        })
    }
}

/// A stored message as answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Message id.
    pub message_id: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue.
    pub queue_offset: u64,
    /// Payload.
    pub body: String,
    /// How `body` is encoded.
    pub body_encoding: BodyEncoding,
    /// Tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Keys.
    pub keys: Vec<String>,
    /// Properties.
    pub properties: BTreeMap<String, String>,
    /// Message group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_group: Option<String>,
    /// When produced, ms.
    pub born_timestamp_ms: i64,
    /// When stored, ms.
    pub store_timestamp_ms: i64,
    /// Times redelivered before.
    pub reconsume_times: u32,
}

impl MessageView {
    /// Renders a stored message; `force_base64` writes the body in base64 whatever it is.
    pub fn new(m: StoredMessage, force_base64: bool) -> Self {
        let (body, body_encoding) = match std::str::from_utf8(&m.body) {
            Ok(s) if !force_base64 => (s.to_owned(), BodyEncoding::Text),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(&m.body),
                BodyEncoding::Base64,
            ),
        };
        Self {
            message_id: m.message_id,
            topic: m.topic,
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            body,
            body_encoding,
            tag: m.tag,
            keys: m.keys,
            properties: m.properties,
            message_group: m.message_group,
            born_timestamp_ms: m.born_timestamp_ms,
            store_timestamp_ms: m.store_timestamp_ms,
            reconsume_times: m.reconsume_times,
        }
    }
}

/// A received (popped) message with its receipt handle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceivedMessage {
    /// The message.
    #[serde(flatten)]
    pub message: MessageView,
    /// Handle for ack, nack and invisibility changes.
    pub receipt_handle: String,
    /// Delivery attempt, 1 for the first.
    pub attempt: u32,
    /// When it becomes visible again unless acknowledged, ms.
    pub invisible_until_ms: i64,
}

impl ReceivedMessage {
    /// Renders a popped message.
    pub fn new(p: PoppedMessage, force_base64: bool) -> Self {
        Self {
            message: MessageView::new(p.message, force_base64),
            receipt_handle: p.receipt_handle,
            attempt: p.attempt,
            invisible_until_ms: p.invisible_until_ms,
        }
    }
}

/// A filter: `{"kind":"TAG","expression":"a || b"}` or `{"kind":"SQL","expression":"x > 1"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `TAG` (default) or `SQL`.
    #[serde(default)]
    pub kind: FilterLanguage,
    /// The expression.
    pub expression: String,
}

/// Filter languages.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterLanguage {
    /// Tags: `*`, `A || B`.
    #[default]
    Tag,
    /// SQL92 over properties.
    Sql,
}

impl From<Filter> for FilterExpression {
    fn from(f: Filter) -> Self {
        Self {
            kind: match f.kind {
                FilterLanguage::Tag => FilterKind::Tag,
                FilterLanguage::Sql => FilterKind::Sql,
            },
            expression: f.expression,
        }
    }
}

impl From<&FilterExpression> for Filter {
    fn from(f: &FilterExpression) -> Self {
        Self {
            kind: match f.kind {
                FilterKind::Sql => FilterLanguage::Sql,
                _ => FilterLanguage::Tag,
            },
            expression: f.expression.clone(),
        }
    }
}

/// A receive (pop) request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    /// Topic to receive from.
    pub topic: String,
    /// Most messages (1 by default).
    #[serde(default = "one")]
    pub max: usize,
    /// Long polling: how long to wait when nothing is visible, ms (0 by default).
    #[serde(default)]
    pub wait_ms: u64,
    /// How long received messages stay invisible to others, ms (30,000 by default).
    #[serde(default = "thirty_seconds")]
    pub invisible_ms: u64,
    /// Filter; the group's subscription when absent.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Write bodies in base64 whatever they are.
    #[serde(default)]
    pub base64: bool,
}

fn one() -> usize {
    1
}

fn thirty_seconds() -> u64 {
    30_000
}

/// Received messages.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Received {
    /// The messages (empty when none was visible within the wait).
    pub messages: Vec<ReceivedMessage>,
}

/// Acknowledges one handle (`receipt_handle`) or several (`receipt_handles`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// One handle: a failure answers a problem.
    #[serde(default)]
    pub receipt_handle: Option<String>,
    /// Several handles: answered with one result each.
    #[serde(default)]
    pub receipt_handles: Vec<String>,
}

/// Per-handle outcome of a batch ack.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AckResult {
    /// The handle.
    pub receipt_handle: String,
    /// Whether it was acknowledged.
    pub ok: bool,
    /// The problem code when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The answer to an ack.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AckResponse {
    /// One per handle.
    pub results: Vec<AckResult>,
}

/// A negative acknowledgement.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackRequest {
    /// The handle.
    pub receipt_handle: String,
    /// Redeliver after this delay, ms; the group's backoff when absent.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// A change of invisibility.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvisibilityRequest {
    /// The handle.
    pub receipt_handle: String,
    /// New invisible duration from now, ms.
    pub invisible_ms: u64,
}

/// A receipt handle that replaces the old one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewHandle {
    /// The new handle (the old one stops working).
    pub receipt_handle: String,
}

/// A receipt handle (dead-letter at once).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandleRequest {
    /// The handle.
    pub receipt_handle: String,
}

/// Messages read by offset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pulled {
    /// `FOUND`, `NO_NEW_MESSAGE`, `OFFSET_MOVED`, `OFFSET_TOO_BIG`, `NO_MATCHED_MESSAGE`.
    pub status: String,
    /// Messages in queue order.
    pub messages: Vec<MessageView>,
    /// Offset to read from next.
    pub next_offset: u64,
    /// Queue minimum.
    pub min_offset: u64,
    /// Queue maximum (one past the last message).
    pub max_offset: u64,
}

impl Pulled {
    /// Renders a pull result.
    pub fn new(r: rocketgate_core::PullResult, force_base64: bool) -> Self {
        use rocketgate_core::PullStatus as S;
        let status = match r.status {
            S::Found => "FOUND",
            S::NoNewMessage => "NO_NEW_MESSAGE",
            S::OffsetMoved => "OFFSET_MOVED",
            S::OffsetTooBig => "OFFSET_TOO_BIG",
            S::NoMatchedMessage => "NO_MATCHED_MESSAGE",
        };
        Self {
            status: status.into(),
            messages: r
                .messages
                .into_iter()
                .map(|m| MessageView::new(m, force_base64))
                .collect(),
            next_offset: r.next_offset,
            min_offset: r.min_offset,
            max_offset: r.max_offset,
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OffsetView {
    /// Queue.
    pub queue_id: u32,
    /// Committed offset (next message to consume); absent when never committed.
    pub offset: Option<u64>,
}

impl From<CommittedOffset> for OffsetView {
    fn from(c: CommittedOffset) -> Self {
        Self {
            queue_id: c.queue_id,
            offset: Some(c.offset),
        }
    }
}

/// Committed offsets of a group on a topic.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Offsets {
    /// One per queue.
    pub offsets: Vec<OffsetView>,
}

/// An offset to commit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitOffset {
    /// The next offset to consume.
    pub offset: u64,
}

/// Moves committed offsets to a time.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetOffsets {
    /// First message stored at or after this time, ms since the epoch.
    pub timestamp_ms: i64,
}

/// Topic message types (RocketMQ 5).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TopicType {
    /// Plain.
    #[default]
    Normal,
    /// Ordered per message group.
    Fifo,
    /// Delayed / timed.
    Delay,
    /// Transactional.
    Transaction,
    /// Any.
    Mixed,
}

impl From<TopicType> for MessageType {
    fn from(t: TopicType) -> Self {
        match t {
            TopicType::Normal => Self::Normal,
            TopicType::Fifo => Self::Fifo,
            TopicType::Delay => Self::Delay,
            TopicType::Transaction => Self::Transaction,
            TopicType::Mixed => Self::Mixed,
        }
    }
}

impl From<MessageType> for TopicType {
    fn from(t: MessageType) -> Self {
        match t {
            MessageType::Fifo => Self::Fifo,
            MessageType::Delay => Self::Delay,
            MessageType::Transaction => Self::Transaction,
            MessageType::Mixed => Self::Mixed,
            _ => Self::Normal,
        }
    }
}

/// A topic to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// Name.
    pub name: String,
    /// Number of queues (4 by default).
    #[serde(default = "four")]
    pub queue_count: u32,
    /// Accepted message type (`NORMAL` by default).
    #[serde(default)]
    pub message_type: TopicType,
}

fn four() -> u32 {
    4
}

/// Changes to a topic; absent fields keep their value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTopic {
    /// New queue count (never fewer).
    #[serde(default)]
    pub queue_count: Option<u32>,
    /// New message type.
    #[serde(default)]
    pub message_type: Option<TopicType>,
    /// Consumers may read.
    #[serde(default)]
    pub readable: Option<bool>,
    /// Producers may write.
    #[serde(default)]
    pub writable: Option<bool>,
}

/// A topic.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopicView {
    /// Name.
    pub name: String,
    /// Number of queues.
    pub queue_count: u32,
    /// Accepted message type.
    pub message_type: TopicType,
    /// Consumers may read.
    pub readable: bool,
    /// Producers may write.
    pub writable: bool,
    /// Offsets per queue (describe only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<QueueView>>,
}

/// Offsets of one queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Queue id.
    pub queue_id: u32,
    /// Smallest readable offset.
    pub min_offset: u64,
    /// One past the last message.
    pub max_offset: u64,
}

impl From<&QueueOffsets> for QueueView {
    fn from(q: &QueueOffsets) -> Self {
        Self {
            queue_id: q.queue_id,
            min_offset: q.min,
            max_offset: q.max,
        }
    }
}

impl From<&TopicConfig> for TopicView {
    fn from(c: &TopicConfig) -> Self {
        Self {
            name: c.name.clone(),
            queue_count: c.queue_count,
            message_type: c.message_type.into(),
            readable: c.permission.read,
            writable: c.permission.write,
            queues: None,
        }
    }
}

impl From<TopicInfo> for TopicView {
    fn from(i: TopicInfo) -> Self {
        let mut v = TopicView::from(&i.config);
        v.queues = Some(i.queues.iter().map(QueueView::from).collect());
        v
    }
}

/// Topics.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopicList {
    /// Sorted by name.
    pub topics: Vec<TopicView>,
}

/// The route of a topic: which broker serves which queue, and how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopicRoute {
    /// Topic.
    pub topic: String,
    /// One entry per queue.
    pub queues: Vec<RouteQueue>,
}

/// A queue of a route.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteQueue {
    /// Queue id.
    pub queue_id: u32,
    /// `READ_WRITE`, `READ`, `WRITE` or `NONE`.
    pub permission: String,
    /// Base URL of the broker serving it (this gateway, as the client reached it).
    pub endpoint: String,
}

/// A consumer group to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Name.
    pub name: String,
    /// Deliveries before dead-lettering, including the first (16 by default).
    #[serde(default)]
    pub max_delivery_attempts: Option<u32>,
    /// Topic → filter.
    #[serde(default)]
    pub subscriptions: BTreeMap<String, Filter>,
}

/// A consumer group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// Name.
    pub name: String,
    /// The retry policy: deliveries before dead-lettering, including the first.
    pub max_delivery_attempts: u32,
    /// Topic → filter.
    pub subscriptions: BTreeMap<String, Filter>,
}

impl From<GroupConfig> for GroupView {
    fn from(g: GroupConfig) -> Self {
        Self {
            name: g.name,
            max_delivery_attempts: g.max_delivery_attempts,
            subscriptions: g
                .subscriptions
                .iter()
                .map(|(t, f)| (t.clone(), Filter::from(f)))
                .collect(),
        }
    }
}

/// Consumer groups.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    /// Sorted by name.
    pub groups: Vec<GroupView>,
}

/// The retry policy of a group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetryPolicy {
    /// Deliveries before dead-lettering, including the first.
    pub max_delivery_attempts: u32,
    /// Backoff before each retry (the broker's `consumer.retry_backoff`).
    pub backoff: String,
}

/// A new retry policy.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetryPolicy {
    /// Deliveries before dead-lettering, including the first (1 to 1024).
    pub max_delivery_attempts: u32,
}

/// Live clients of a group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Clients {
    /// Client ids.
    pub clients: Vec<String>,
}

/// Lag of a group on one queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LagView {
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Queue max offset.
    pub max_offset: u64,
    /// Committed offset (offset-style consumers).
    pub committed: Option<u64>,
    /// `max_offset - committed`.
    pub pull_lag: u64,
    /// Not yet acknowledged (receive-style consumers), in flight included.
    pub unacked: u64,
    /// In flight (received, not acknowledged, still invisible).
    pub inflight: u64,
}

impl LagView {
    /// What is left to consume: the pull lag where the group commits offsets, the unacknowledged
    /// messages where it receives (pops).
    pub fn backlog(&self) -> u64 {
        self.committed.map_or(self.unacked, |_| self.pull_lag)
    }

    /// Renders a queue lag.
    pub fn new(topic: &str, l: &QueueLag) -> Self {
        Self {
            topic: topic.to_owned(),
            queue_id: l.queue_id,
            max_offset: l.max_offset,
            committed: l.committed,
            pull_lag: l.pull_lag,
            unacked: l.pop_unacked,
            inflight: l.pop_inflight,
        }
    }
}

/// Lag of a group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Lag {
    /// What is left to consume over all queues: `pull_lag` on queues with a committed offset,
    /// `unacked` on the others.
    pub total: u64,
    /// Per queue.
    pub queues: Vec<LagView>,
}

/// Dead letters to resend: some ids, or all.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// These message ids (at most `http.max_batch`).
    #[serde(default)]
    pub message_ids: Vec<String>,
    /// Everything in the dead-letter queue.
    #[serde(default)]
    pub all: bool,
}

/// How many dead letters were resent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Resent {
    /// Count.
    pub resent: usize,
}

/// Messages found by a query.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Found {
    /// The messages.
    pub messages: Vec<MessageView>,
    /// More matched than `max`.
    pub truncated: bool,
}

/// One step in a message's life.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TraceStep {
    /// `STORED`, `SCHEDULED`, `HALF`, `RETRY`, `DEAD_LETTERED`.
    pub kind: String,
    /// Topic (target topic for scheduled and half records).
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset.
    pub queue_offset: u64,
    /// Stored at, ms.
    pub store_timestamp_ms: i64,
    /// Deliveries before this record.
    pub attempts: u32,
    /// Due time of a scheduled record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at_ms: Option<i64>,
}

impl From<TraceEvent> for TraceStep {
    fn from(e: TraceEvent) -> Self {
        let kind = match e.kind {
            TraceKind::Stored => "STORED",
            TraceKind::Scheduled => "SCHEDULED",
            TraceKind::Half => "HALF",
            TraceKind::Retry => "RETRY",
            TraceKind::DeadLettered => "DEAD_LETTERED",
        };
        Self {
            kind: kind.into(),
            topic: e.topic,
            queue_id: e.queue_id,
            queue_offset: e.queue_offset,
            store_timestamp_ms: e.store_timestamp_ms,
            attempts: e.attempts,
            deliver_at_ms: e.deliver_at_ms,
        }
    }
}

/// The life of a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Trace {
    /// Oldest first.
    pub steps: Vec<TraceStep>,
}

/// Scheduled messages: the pending count and one page of them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Scheduled {
    /// Scheduled messages not yet delivered.
    pub pending: usize,
    /// This page: messages not yet due nor cancelled, as they will be delivered.
    pub messages: Vec<ScheduledMessage>,
    /// Offset of the next page (`offset=`).
    pub next_offset: u64,
    /// Whether this was the last page.
    pub end: bool,
}

/// A scheduled message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledMessage {
    /// The message (target topic and queue).
    #[serde(flatten)]
    pub message: MessageView,
    /// When it will be delivered, ms since the epoch.
    pub deliver_at_ms: i64,
}

/// A half message to publish.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishHalf {
    /// The producer group whose callback is asked about the transaction.
    pub producer_group: String,
    /// The message.
    pub message: PublishMessage,
}

/// A transaction check-back callback registration.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterCallback {
    /// `http://` or `https://` URL the broker POSTs a [`CheckRequest`] to.
    pub url: String,
}

/// A registered callback.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallbackView {
    /// Producer group.
    pub producer_group: String,
    /// URL.
    pub url: String,
}

/// What the broker POSTs to a producer group's callback URL.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckRequest {
    /// Transaction id.
    pub transaction_id: String,
    /// Producer group.
    pub producer_group: String,
    /// The message as it will be delivered on commit.
    pub message: MessageView,
}

/// What a callback answers: `{"action":"commit"}`, `"rollback"` or `"unknown"`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckAnswer {
    /// The resolution.
    pub action: CheckAction,
}

/// Resolutions of a check-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    /// Deliver the message.
    Commit,
    /// Discard it.
    Rollback,
    /// Not known yet: ask again later.
    Unknown,
}

/// Health of the broker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `refusing_writes`.
    pub status: String,
    /// Why writes are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
