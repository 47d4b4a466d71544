//! AckMessage, ChangeInvisibleDuration and ForwardMessageToDeadLetterQueue: what a consumer
//! does with a receipt handle.
//!
//! Invariants: exactly one `AckMessageResultEntry` per request entry, in order, echoing
//! message id and handle (RC reads `entries[0]`); the top-level status is the entries' common
//! code or MULTIPLE_RESULTS. A garbled, stale or foreign handle is INVALID_RECEIPT_HANDLE.
//! ChangeInvisibleDuration answers a new handle; the old one stops working.
//!
//! Receipt handles are the core's opaque, versioned ASCII strings. A handle of a message an
//! auto-renew consumer received is first swapped for its current one (`renew.rs`), which
//! also ends its renewal.

use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::Code;

use super::code::{common, from_core, ok, status};
use super::convert;
use super::route::{group_name, topic_name};
use super::Context;

/// AckMessage.
pub(super) async fn ack(ctx: &Context, req: pb::AckMessageRequest) -> pb::AckMessageResponse {
    let entry = |e: &pb::AckMessageEntry, s: pb::Status| pb::AckMessageResultEntry {
        message_id: e.message_id.clone(),
        receipt_handle: e.receipt_handle.clone(),
        status: Some(s),
    };
    let refuse_all = |s: pb::Status| pb::AckMessageResponse {
        status: Some(s.clone()),
        entries: req.entries.iter().map(|e| entry(e, s.clone())).collect(),
    };
    if req.entries.is_empty() {
        return refuse_all(status(Code::BadRequest, "no entries"));
    }
    let group = match group_name(req.group.as_ref()) {
        Ok(g) => g,
        Err(s) => return refuse_all(s),
    };
    if let Err(s) = topic_name(req.topic.as_ref()) {
        return refuse_all(s);
    }
    // A message kept invisible for an auto-renew consumer: its current handle.
    let current: Vec<String> = req
        .entries
        .iter()
        .map(|e| ctx.renewals.take(group, &e.receipt_handle))
        .collect();
    let handles: Vec<&str> = current.iter().map(String::as_str).collect();
    let results = match ctx.broker.consumer().ack_batch(group, &handles).await {
        Ok(r) => r,
        Err(e) => return refuse_all(from_core(&e)),
    };
    let entries: Vec<_> = req
        .entries
        .iter()
        .zip(results)
        .map(|(e, r)| {
            entry(
                e,
                match r {
                    Ok(()) => ok(),
                    Err(err) => from_core(&err),
                },
            )
        })
        .collect();
    let statuses: Vec<&pb::Status> = entries.iter().filter_map(|e| e.status.as_ref()).collect();
    pb::AckMessageResponse {
        status: Some(common(&statuses)),
        entries,
    }
}

/// ChangeInvisibleDuration.
pub(super) fn change_invisible_duration(
    ctx: &Context,
    req: &pb::ChangeInvisibleDurationRequest,
) -> pb::ChangeInvisibleDurationResponse {
    let answer = |s| pb::ChangeInvisibleDurationResponse {
        status: Some(s),
        receipt_handle: String::new(),
    };
    let group = match group_name(req.group.as_ref()) {
        Ok(g) => g,
        Err(s) => return answer(s),
    };
    if let Err(s) = topic_name(req.topic.as_ref()) {
        return answer(s);
    }
    let Some(invisible) = req.invisible_duration.as_ref().and_then(convert::duration) else {
        return answer(status(
            Code::IllegalInvisibleTime,
            "missing or negative invisible_duration",
        ));
    };
    match ctx.broker.consumer().change_invisible_duration(
        group,
        &ctx.renewals.take(group, &req.receipt_handle),
        invisible,
    ) {
        Ok(handle) => pb::ChangeInvisibleDurationResponse {
            status: Some(ok()),
            receipt_handle: handle,
        },
        Err(e) => answer(from_core(&e)),
    }
}

/// ForwardMessageToDeadLetterQueue: the message goes to the group's dead-letter queue at once
/// and the handle is spent.
pub(super) async fn forward_to_dlq(
    ctx: &Context,
    req: &pb::ForwardMessageToDeadLetterQueueRequest,
) -> pb::ForwardMessageToDeadLetterQueueResponse {
    let answer = |s| pb::ForwardMessageToDeadLetterQueueResponse { status: Some(s) };
    let group = match group_name(req.group.as_ref()) {
        Ok(g) => g,
        Err(s) => return answer(s),
    };
    if let Err(s) = topic_name(req.topic.as_ref()) {
        return answer(s);
    }
    let handle = ctx.renewals.take(group, &req.receipt_handle);
    match ctx.broker.consumer().dead_letter(group, &handle).await {
        Ok(()) => answer(ok()),
        Err(e) => answer(from_core(&e)),
    }
}
