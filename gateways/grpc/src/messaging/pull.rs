//! PullMessage, UpdateOffset, GetOffset and QueryOffset: offset-based consumption of one
//! queue (the PullConsumer of other SDKs) on the core's `pull_group` and committed offsets.
//!
//! Invariants: the PullMessage stream is `{status}`, then the messages (OK only), then
//! `{next_offset}`, then end; an empty pull answers MESSAGE_NOT_FOUND with the next offset.
//! The long poll follows the same cap as ReceiveMessage. A group without a committed offset on
//! a queue answers GetOffset with NOT_FOUND.
//!
//! No state of its own.

use std::time::Duration;

use rocketgate_core::{GroupPullRequest, PullStatus};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::pull_message_response::Content;
use rocketgate_proto::apache::rocketmq::v2::Code;

use super::code::{from_core, ok, status};
use super::convert::{self, Delivery};
use super::route::{group_name, topic_name};
use super::Context;

fn frame(content: Content) -> pb::PullMessageResponse {
    pb::PullMessageResponse {
        content: Some(content),
    }
}

/// Topic and queue id of a request's message queue.
fn queue(q: Option<&pb::MessageQueue>) -> Result<(&str, u32), pb::Status> {
    let topic = topic_name(q.and_then(|q| q.topic.as_ref()))?;
    let id = q
        .and_then(|q| u32::try_from(q.id).ok())
        .ok_or_else(|| status(Code::BadRequest, "missing or negative message_queue.id"))?;
    Ok((topic, id))
}

fn offset(o: i64) -> Result<u64, pb::Status> {
    u64::try_from(o).map_err(|_| status(Code::BadRequest, "negative offset"))
}

/// PullMessage: the frames of the answer.
pub(super) async fn pull(
    ctx: &Context,
    remaining: Option<Duration>,
    req: pb::PullMessageRequest,
) -> Vec<pb::PullMessageResponse> {
    match pull_frames(ctx, remaining, &req).await {
        Ok(frames) => frames,
        Err(s) => vec![frame(Content::Status(s))],
    }
}

async fn pull_frames(
    ctx: &Context,
    remaining: Option<Duration>,
    req: &pb::PullMessageRequest,
) -> Result<Vec<pb::PullMessageResponse>, pb::Status> {
    let group = group_name(req.group.as_ref())?;
    let (topic, queue_id) = queue(req.message_queue.as_ref())?;
    let from = offset(req.offset)?;
    let core = ctx.broker.config();
    // A pull waits only as long as asked (no minimum), capped like a receive.
    let reserve = Duration::from_millis(ctx.config.deadline_reserve_ms);
    let wait = req
        .long_polling_timeout
        .as_ref()
        .and_then(convert::duration)
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_millis(ctx.config.max_long_polling_ms))
        .min(Duration::from_millis(core.consumer.max_wait_ms))
        .min(remaining.map_or(Duration::MAX, |r| r.saturating_sub(reserve)));
    let max = usize::try_from(req.batch_size)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(super::receive::DEFAULT_BATCH)
        .min(core.limits.max_batch.max(1));
    let Some(_permit) = super::receive::poll_permit(ctx, wait) else {
        return Err(status(
            Code::TooManyRequests,
            "too many pulls waiting on this broker; retry later",
        ));
    };
    let result = ctx
        .broker
        .consumer()
        .pull_group(GroupPullRequest {
            group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            offset: from,
            max,
            filter: super::receive::filter(req.filter_expression.as_ref()),
            wait,
        })
        .await
        .map_err(|e| from_core(&e))?;
    let namespace = req
        .message_queue
        .as_ref()
        .and_then(|q| q.topic.as_ref())
        .map(|t| t.resource_namespace.as_str())
        .unwrap_or("");
    let mut frames = Vec::with_capacity(result.messages.len() + 2);
    if result.messages.is_empty() || result.status != PullStatus::Found {
        frames.push(frame(Content::Status(status(
            Code::MessageNotFound,
            "no new message",
        ))));
    } else {
        frames.push(frame(Content::Status(ok())));
        let host = ctx.store_host();
        for m in &result.messages {
            frames.push(frame(Content::Message(convert::to_pb(
                m,
                namespace,
                &host,
                Delivery::default(),
            ))));
        }
    }
    frames.push(frame(Content::NextOffset(
        i64::try_from(result.next_offset).unwrap_or(i64::MAX),
    )));
    Ok(frames)
}

/// UpdateOffset: commits the group's offset of a queue.
pub(super) fn update_offset(
    ctx: &Context,
    req: &pb::UpdateOffsetRequest,
) -> pb::UpdateOffsetResponse {
    let run = || -> Result<(), pb::Status> {
        let group = group_name(req.group.as_ref())?;
        let (topic, queue_id) = queue(req.message_queue.as_ref())?;
        let at = offset(req.offset)?;
        ctx.broker
            .consumer()
            .commit_offset(group, topic, queue_id, at)
            .map_err(|e| from_core(&e))
    };
    pb::UpdateOffsetResponse {
        status: Some(run().map_or_else(|s| s, |()| ok())),
    }
}

/// GetOffset: the group's committed offset of a queue.
pub(super) fn get_offset(ctx: &Context, req: &pb::GetOffsetRequest) -> pb::GetOffsetResponse {
    let run = || -> Result<i64, pb::Status> {
        let group = group_name(req.group.as_ref())?;
        let (topic, queue_id) = queue(req.message_queue.as_ref())?;
        match ctx
            .broker
            .consumer()
            .committed_offset(group, topic, queue_id)
            .map_err(|e| from_core(&e))?
        {
            Some(o) => Ok(i64::try_from(o).unwrap_or(i64::MAX)),
            None => Err(status(
                Code::NotFound,
                format!("group `{group}` has no committed offset on {topic}/{queue_id}"),
            )),
        }
    };
    match run() {
        Ok(offset) => pb::GetOffsetResponse {
            status: Some(ok()),
            offset,
        },
        Err(s) => pb::GetOffsetResponse {
            status: Some(s),
            offset: 0,
        },
    }
}

/// QueryOffset: the first, end, or first-at-a-time offset of a queue.
pub(super) async fn query_offset(
    ctx: &Context,
    req: &pb::QueryOffsetRequest,
) -> pb::QueryOffsetResponse {
    let run = async {
        let (topic, queue_id) = queue(req.message_queue.as_ref())?;
        let range = ctx
            .broker
            .topics()
            .queue_offsets(topic, queue_id)
            .await
            .map_err(|e| from_core(&e))?;
        Ok::<u64, pb::Status>(
            match pb::QueryOffsetPolicy::try_from(req.query_offset_policy) {
                Ok(pb::QueryOffsetPolicy::Beginning) => range.min,
                Ok(pb::QueryOffsetPolicy::End) => range.max,
                Ok(pb::QueryOffsetPolicy::Timestamp) => {
                    let Some(at) = req.timestamp.as_ref() else {
                        return Err(status(
                            Code::BadRequest,
                            "TIMESTAMP policy needs a timestamp",
                        ));
                    };
                    ctx.broker
                        .queries()
                        .offset_for_time(topic, queue_id, convert::timestamp_ms(at))
                        .await
                        .map_err(|e| from_core(&e))?
                }
                Err(_) => return Err(status(Code::BadRequest, "unknown query_offset_policy")),
            },
        )
    };
    match run.await {
        Ok(o) => pb::QueryOffsetResponse {
            status: Some(ok()),
            offset: i64::try_from(o).unwrap_or(i64::MAX),
        },
        Err(s) => pb::QueryOffsetResponse {
            status: Some(s),
            offset: 0,
        },
    }
}
