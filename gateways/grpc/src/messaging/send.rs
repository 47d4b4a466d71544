//! SendMessage: decoding the v2 message (its declared type, the gateway's own property prefix)
//! and the store of NORMAL, FIFO, DELAY and TRANSACTION messages through the core. Every rule
//! about the message itself (fields, sizes, the type against the topic's, a FIFO message's
//! group, a DELAY message's time) is core's (`Producer::send` with the declared type); this module
//! only maps core's typed refusal to a v2 `Code` (`code.rs`).
//!
//! Invariants: exactly one `SendResultEntry` per request message, in order, each echoing the
//! client's message id; the top-level status is the code shared by all entries, or
//! MULTIPLE_RESULTS. The client's `queue_id` is only a hint and is ignored: FIFO messages are
//! placed by the core by hashing `message_group`, so order holds per (topic, message_group)
//! whatever queue each SDK picked. A TRANSACTION message is stored as a half message with the
//! topic as its producer group (as the Java proxy does) and answered with its transaction id.
//! An entry's `offset` is the queue offset only when the message is in its queue: -1 for a
//! DELAY message (not yet due) and a TRANSACTION half (not yet committed).
//!
//! Calls the core `send` / `send_half` once per message; no state of its own.

use rocketgate_core::{MessageType, QueueSelector, SendRequest};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::Code;

use super::code::{common, from_core, ok, status};
use super::convert::{self, GATEWAY_PREFIX};
use super::route::topic_name;
use super::Context;

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
    let mut entries = Vec::with_capacity(req.messages.len());
    for (m, id) in req.messages.iter().zip(ids) {
        let entry = match decode(m) {
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

/// What only the wire knows about one message: that it has system properties, its declared
/// (or, when UNSPECIFIED, inferred) type, and that it does not use the gateway's own property
/// prefix. Everything else is checked by core when the message is stored.
fn decode(m: &pb::Message) -> Result<pb::MessageType, pb::Status> {
    let Some(sys) = m.system_properties.as_ref() else {
        return Err(status(Code::BadRequest, "missing system_properties"));
    };
    if let Some(k) = m
        .user_properties
        .keys()
        .find(|k| k.starts_with(GATEWAY_PREFIX))
    {
        return Err(status(
            Code::IllegalMessagePropertyKey,
            format!("`{k}` is a reserved property key"),
        ));
    }
    match pb::MessageType::try_from(sys.message_type) {
        Ok(pb::MessageType::Unspecified) if sys.delivery_timestamp.is_some() => {
            Ok(pb::MessageType::Delay)
        }
        Ok(pb::MessageType::Unspecified) if sys.message_group.is_some() => {
            Ok(pb::MessageType::Fifo)
        }
        Ok(pb::MessageType::Unspecified) => Ok(pb::MessageType::Normal),
        Ok(t) => Ok(t),
        Err(_) => Err(status(Code::BadRequest, "unknown message_type")),
    }
}

/// The `offset` of a `SendResultEntry`: the message's queue offset, or -1 while it has none (a
/// DELAY message until it is due, a TRANSACTION half until it is committed). The Java proxy
/// answers the offset of the internal timer or half record there, an offset the message never
/// has in its queue; -1 is RocketMQ's usual "no offset" and says so.
fn wire_offset(queue_offset: Option<u64>) -> i64 {
    queue_offset.map_or(-1, |o| i64::try_from(o).unwrap_or(i64::MAX))
}

/// The core type of a decoded v2 type (never UNSPECIFIED here).
fn core_type(kind: pb::MessageType) -> MessageType {
    match kind {
        pb::MessageType::Fifo => MessageType::Fifo,
        pb::MessageType::Delay => MessageType::Delay,
        pb::MessageType::Transaction => MessageType::Transaction,
        _ => MessageType::Normal,
    }
}

/// Stores one validated message.
async fn store(
    ctx: &Context,
    m: &pb::Message,
    topic: &str,
    kind: pb::MessageType,
) -> Result<pb::SendResultEntry, pb::Status> {
    let req = SendRequest::new(convert::to_core(m, topic, kind), QueueSelector::Auto)
        .with_type(core_type(kind));
    let receipt = if kind == pb::MessageType::Transaction {
        ctx.broker.transactions().send_half(req, topic).await
    } else {
        ctx.broker.producer().send(req).await
    }
    .map_err(|e| from_core(&e))?;
    Ok(pb::SendResultEntry {
        status: Some(ok()),
        message_id: receipt.message_id,
        transaction_id: receipt.transaction_id.unwrap_or_default(),
        offset: wire_offset(receipt.queue_offset),
        recall_handle: String::new(),
    })
}
