//! The JSON shapes of publishing: messages, batches, where they were stored, and body
//! encodings. No I/O, no locks.

use std::collections::BTreeMap;

use base64::Engine as _;
use rocketgate_core::{Message, SendReceipt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// How a body is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// UTF-8 text.
    #[default]
    Text,
    /// Standard base64 (with padding).
    Base64,
}

super::any_case!(BodyEncoding {
    "text" => Text,
    "base64" => Base64,
});

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
    #[serde(default)]
    pub deliver_at_ms: Option<i64>,
    /// Alias of `deliver_at_ms` (deprecated; not both).
    #[serde(default)]
    #[schema(ignore)]
    pub deliver_at: Option<i64>,
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
    #[serde(deserialize_with = "crate::extract::object::list")]
    pub messages: Vec<PublishMessage>,
}

/// Where a published message was stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Published {
    /// Message id.
    pub message_id: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue; `null` while the message is not in it: a delayed message until
    /// it is due, a half message until it is committed (find them by `message_id`).
    pub queue_offset: Option<u64>,
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
        if self.deliver_at.is_some() && self.deliver_at_ms.is_some() {
            return Err(ApiError::bad_request(
                "give deliver_at_ms or deliver_at (its alias), not both",
            ));
        }
        let deliver_at_ms = self.deliver_at_ms.or(self.deliver_at);
        let delays = [
            self.delay_level.is_some(),
            deliver_at_ms.is_some(),
            self.delay_ms.is_some(),
        ];
        if self.tag.is_some() && self.tags.is_some() {
            return Err(ApiError::bad_request(
                "give tag or tags (its alias), not both",
            ));
        }
        if delays.iter().filter(|d| **d).count() > 1 {
            return Err(ApiError::bad_request(
                "give at most one of delay_level, deliver_at_ms and delay_ms",
            ));
        }
        let deliver_at_ms = match self.delay_ms {
            Some(d) => Some(now_ms.saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
            None => deliver_at_ms,
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
