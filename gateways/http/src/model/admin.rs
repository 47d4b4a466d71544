//! The JSON shapes of administration: offsets, topics and routes, groups, retry policies,
//! clients, lag, dead-letter resends. No I/O, no locks.

use std::collections::BTreeMap;

use rocketgate_core::api::{CommittedOffset, QueueLag, QueueOffsets};
use rocketgate_core::{GroupConfig, MessageType, TopicConfig, TopicInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Filter;

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
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
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

super::any_case!(TopicType {
    "NORMAL" => Normal,
    "FIFO" => Fifo,
    "DELAY" => Delay,
    "TRANSACTION" => Transaction,
    "MIXED" => Mixed,
});

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

/// The route of a topic: which broker group serves which queue, and how to reach it. With
/// NameServers, every group they route the topic to (what `rocketgate admin topic route`
/// lists), this broker's own queues read from its topic table.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopicRoute {
    /// Topic.
    pub topic: String,
    /// `nameserver`: the NameServers' route, every group that serves the topic; `local`: this
    /// broker's queues only (it has no NameServer, none answered within 1 s, or none knows the
    /// topic yet).
    pub source: String,
    /// One entry per queue, by broker name then queue id.
    pub queues: Vec<RouteQueue>,
    /// The groups of the NameServers' route, by broker name (empty for a `local` answer).
    pub brokers: Vec<RouteBroker>,
}

/// A queue of a route.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteQueue {
    /// The broker group serving it (absent when the gateway runs outside a node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_name: Option<String>,
    /// Queue id.
    pub queue_id: u32,
    /// `READ_WRITE`, `READ`, `WRITE` or `NONE`.
    pub permission: String,
    /// Base URL of the REST endpoint serving it: this gateway, as the client reached it, for
    /// this broker's queues; the group master's advertised `http` endpoint for the others
    /// (`null` when it advertises none).
    pub endpoint: Option<String>,
}

/// A broker group of a route.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteBroker {
    /// Its cluster.
    pub cluster: String,
    /// Its name.
    pub broker_name: String,
    /// Its live members, by broker id.
    pub addresses: Vec<RouteMember>,
}

/// A live member of a broker group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteMember {
    /// 0 for the master.
    pub broker_id: u64,
    /// `master` or `slave`.
    pub role: String,
    /// Protocol (`grpc`, `http`, `mqtt`, …) → advertised `host:port`.
    pub endpoints: BTreeMap<String, String>,
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
    #[serde(default, deserialize_with = "crate::extract::object::map")]
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
