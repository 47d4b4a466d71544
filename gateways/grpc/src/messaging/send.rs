//! SendMessage: validation in the Java proxy's order (protocol brief §1.2) and the store of
//! NORMAL, FIFO, DELAY and TRANSACTION messages through the core.
//!
//! Invariants: exactly one `SendResultEntry` per request message, in order, each echoing the
//! client's message id; the top-level status is the code shared by all entries, or
//! MULTIPLE_RESULTS. The client's `queue_id` is only a hint and is ignored: FIFO messages are
//! placed by the core by hashing `message_group`, so order holds per (topic, message_group)
//! whatever queue each SDK picked. A TRANSACTION message is stored as a half message with the
//! topic as its producer group (as the Java proxy does) and answered with its transaction id.
//!
//! Calls the core `send` / `send_half` once per message; no state of its own.

use rocketgate_core::broker::validate::RESERVED_PROPERTY_KEYS;
use rocketgate_core::{MessageType, QueueSelector, SendRequest, TopicConfig};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::Code;

use super::code::{common, from_core, ok, status};
use super::convert::{self, GATEWAY_PREFIX};
use super::route::topic_name;
use super::Context;

/// Longest message group the protocol allows.
const MAX_MESSAGE_GROUP: usize = 64;

/// SendMessage. `client_id` is the header check's outcome: a missing id refuses every entry.
pub(super) async fn send_message(
    ctx: &Context,
    client_id: Result<String, pb::Status>,
    req: pb::SendMessageRequest,
) -> pb::SendMessageResponse {
    let ids: Vec<String> = req
        .messages
        .iter()
        .map(|m| {
            m.system_properties
                .as_ref()
                .map(|s| s.message_id.clone())
                .unwrap_or_default()
        })
        .collect();
    let refuse_all = |s: pb::Status| pb::SendMessageResponse {
        status: Some(s.clone()),
        entries: ids
            .iter()
            .map(|id| pb::SendResultEntry {
                status: Some(s.clone()),
                message_id: id.clone(),
                ..Default::default()
            })
            .collect(),
    };
    if req.messages.is_empty() {
        return refuse_all(status(Code::BadRequest, "no messages"));
    }
    if let Err(s) = client_id {
        return refuse_all(s);
    }
    let first = req.messages[0].topic.as_ref();
    if req
        .messages
        .iter()
        .any(|m| m.topic.as_ref().map(|t| &t.name) != first.map(|t| &t.name))
    {
        return refuse_all(status(
            Code::BadRequest,
            "all messages of one request must have the same topic",
        ));
    }
    let topic = match topic_name(first) {
        Ok(t) => t.to_owned(),
        Err(s) => return refuse_all(s),
    };
    let config = match ctx.broker.describe_topic(&topic) {
        Ok(info) => info.config,
        Err(e) => return refuse_all(from_core(&e)),
    };
    let mut entries = Vec::with_capacity(req.messages.len());
    for (m, id) in req.messages.iter().zip(ids) {
        let entry = match validate(ctx, m, &config) {
            Ok(t) => store(ctx, m, &topic, t).await,
            Err(s) => Err(s),
        };
        entries.push(match entry {
            Ok(mut e) => {
                e.message_id = id;
                e
            }
            Err(s) => pb::SendResultEntry {
                status: Some(s),
                message_id: id,
                ..Default::default()
            },
        });
    }
    let statuses: Vec<&pb::Status> = entries.iter().filter_map(|e| e.status.as_ref()).collect();
    pb::SendMessageResponse {
        status: Some(common(&statuses)),
        entries,
    }
}

/// Checks one message against the rules of §1.2 (steps 3–7); returns its effective type.
fn validate(
    ctx: &Context,
    m: &pb::Message,
    topic: &TopicConfig,
) -> Result<pb::MessageType, pb::Status> {
    let limits = &ctx.broker.config().limits;
    let Some(sys) = m.system_properties.as_ref() else {
        return Err(status(Code::BadRequest, "missing system_properties"));
    };
    if sys.message_id.trim().is_empty() {
        return Err(status(Code::IllegalMessageId, "empty message_id"));
    }
    let mut total = 0usize;
    for (k, v) in &m.user_properties {
        if k.trim().is_empty() {
            return Err(status(
                Code::IllegalMessagePropertyKey,
                "blank property key",
            ));
        }
        if RESERVED_PROPERTY_KEYS.contains(&k.as_str()) || k.starts_with(GATEWAY_PREFIX) {
            return Err(status(
                Code::IllegalMessagePropertyKey,
                format!("`{k}` is a reserved property key"),
            ));
        }
        total = total.saturating_add(k.len() + v.len());
    }
    if m.user_properties.len() > limits.max_properties || total > limits.max_properties_bytes {
        return Err(status(
            Code::MessagePropertiesTooLarge,
            format!(
                "{} properties of {total} bytes; at most {} of {} bytes",
                m.user_properties.len(),
                limits.max_properties,
                limits.max_properties_bytes
            ),
        ));
    }
    if let Some(tag) = &sys.tag {
        if tag.trim().is_empty() || tag.contains('|') {
            return Err(status(
                Code::IllegalMessageTag,
                "tag must be non-blank without `|`",
            ));
        }
    }
    if sys.keys.iter().any(|k| k.trim().is_empty()) {
        return Err(status(Code::IllegalMessageKey, "blank message key"));
    }
    if m.body.len() > limits.max_body_bytes {
        return Err(status(
            Code::MessageBodyTooLarge,
            format!(
                "message body of {} bytes exceeds the maximum of {}",
                m.body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    let kind = match pb::MessageType::try_from(sys.message_type) {
        Ok(pb::MessageType::Unspecified) if sys.delivery_timestamp.is_some() => {
            pb::MessageType::Delay
        }
        Ok(pb::MessageType::Unspecified) if sys.message_group.is_some() => pb::MessageType::Fifo,
        Ok(pb::MessageType::Unspecified) => pb::MessageType::Normal,
        Ok(t) => t,
        Err(_) => return Err(status(Code::BadRequest, "unknown message_type")),
    };
    match kind {
        pb::MessageType::Fifo => {
            let g = sys.message_group.as_deref().unwrap_or("");
            if g.trim().is_empty() || g.len() > MAX_MESSAGE_GROUP || g.chars().any(char::is_control)
            {
                return Err(status(
                    Code::IllegalMessageGroup,
                    "a FIFO message needs a message_group of 1-64 characters",
                ));
            }
        }
        pb::MessageType::Delay => {
            let Some(at) = sys.delivery_timestamp.as_ref() else {
                return Err(status(
                    Code::MessagePropertyConflictWithType,
                    "a DELAY message needs a delivery_timestamp",
                ));
            };
            let max = ctx.broker.config().timer.max_delay_ms;
            let limit = rocketgate_core::store::now_ms()
                .saturating_add(i64::try_from(max).unwrap_or(i64::MAX));
            if convert::timestamp_ms(at) > limit {
                return Err(status(
                    Code::IllegalDeliveryTime,
                    format!("delivery time is more than {max} ms in the future"),
                ));
            }
        }
        _ => {}
    }
    let accepted = match topic.message_type {
        MessageType::Normal => kind == pb::MessageType::Normal,
        MessageType::Fifo => kind == pb::MessageType::Fifo,
        MessageType::Delay => kind == pb::MessageType::Delay,
        MessageType::Transaction => kind == pb::MessageType::Transaction,
        _ => true,
    };
    if !accepted {
        return Err(status(
            Code::MessagePropertyConflictWithType,
            format!(
                "topic `{}` does not accept {} messages",
                topic.name,
                kind.as_str_name()
            ),
        ));
    }
    Ok(kind)
}

/// Stores one validated message.
async fn store(
    ctx: &Context,
    m: &pb::Message,
    topic: &str,
    kind: pb::MessageType,
) -> Result<pb::SendResultEntry, pb::Status> {
    let req = SendRequest {
        message: convert::to_core(m, topic, kind),
        queue: QueueSelector::Auto,
    };
    let receipt = if kind == pb::MessageType::Transaction {
        ctx.broker.send_half(req, topic).await
    } else {
        ctx.broker.send(req).await
    }
    .map_err(|e| from_core(&e))?;
    Ok(pb::SendResultEntry {
        status: Some(ok()),
        message_id: receipt.message_id,
        transaction_id: receipt.transaction_id.unwrap_or_default(),
        offset: i64::try_from(receipt.queue_offset).unwrap_or(i64::MAX),
        recall_handle: String::new(),
    })
}
