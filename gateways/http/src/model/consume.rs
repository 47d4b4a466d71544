//! The JSON shapes of consuming: stored and received messages, filters, receive / ack / nack /
//! invisibility requests, messages read by offset. No I/O, no locks.

use std::collections::BTreeMap;

use base64::Engine as _;
use rocketgate_core::{FilterExpression, FilterKind, PoppedMessage, StoredMessage};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::BodyEncoding;

/// A stored message as answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Message id.
    pub message_id: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue; `null` for a scheduled message (`GET /v1/scheduled`), which gets
    /// its offset only when it is delivered.
    pub queue_offset: Option<u64>,
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
            queue_offset: Some(m.queue_offset),
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
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterLanguage {
    /// Tags: `*`, `A || B`.
    #[default]
    Tag,
    /// SQL92 over properties.
    Sql,
}

super::any_case!(FilterLanguage {
    "TAG" => Tag,
    "SQL" => Sql,
    "SQL92" => Sql,
});

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
    #[serde(default, deserialize_with = "crate::extract::object::optional")]
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

/// Acknowledges one handle (`receipt_handle`) or several (`receipt_handles`; with both, the
/// single handle is acknowledged first, in the batch; with neither, nothing is).
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
