//! The JSON shapes of queries, scheduled messages, transactions and their callbacks, and
//! health. No I/O, no locks.

use rocketgate_core::api::{TraceEvent, TraceKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{MessageView, PublishMessage};

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
    #[serde(deserialize_with = "crate::extract::object::required")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    /// Deliver the message.
    Commit,
    /// Discard it.
    Rollback,
    /// Not known yet: ask again later.
    Unknown,
}

super::any_case!(CheckAction {
    "commit" => Commit,
    "rollback" => Rollback,
    "unknown" => Unknown,
});

/// Health of the broker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `refusing_writes`.
    pub status: String,
    /// Why writes are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
