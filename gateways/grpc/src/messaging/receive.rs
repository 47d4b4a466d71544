//! ReceiveMessage: a long-polling pop across all queues of the topic, answered as the
//! stream `{status OK}, {message}×N, {delivery_timestamp}` or `{status MESSAGE_NOT_FOUND},
//! {delivery_timestamp}`, or one error `{status}`, then end of stream.
//!
//! Invariants: every frame has its `content` set; each delivered message has `topic`,
//! `system_properties` and a receipt handle (RC unwraps all three). The long poll is the
//! request's `long_polling_timeout` clamped to the configured [min, max] (20 s by default) and
//! kept below the caller's `grpc-timeout` minus a reserve, so RC's 40 s poll inside a 40 s
//! deadline ends with MESSAGE_NOT_FOUND instead of DEADLINE_EXCEEDED. The pop runs before the
//! stream is returned: a cancelled call never leaves popped messages unsent in a buffer. At
//! most `max_long_polls` receives and pulls wait at once; one more is TOO_MANY_REQUESTS.
//! With `auto_renew` the messages are invisible for `default_invisible_ms` and renewed by
//! `renew.rs` until acked.
//!
//! Each message travels in its own frame, so a frame stays below RC's 4 MiB receive limit as
//! long as bodies stay below the advertised `publishing.max_body_size`.

use std::time::Duration;

use rocketgate_core::{FilterExpression, PopRequest};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::receive_message_response::Content;
use rocketgate_proto::apache::rocketmq::v2::Code;

use super::code::{from_core, ok, status};
use super::convert::{self, Delivery};
use super::route::{group_name, topic_name};
use super::{Context, MessagingConfig};

/// Messages per receive when the request names no (or a non-positive) batch size.
pub(super) const DEFAULT_BATCH: usize = 32;

/// The core filter of a v2 filter expression (`None` = all, or the group's subscription).
pub(super) fn filter(f: Option<&pb::FilterExpression>) -> Option<FilterExpression> {
    let f = f?;
    let expr = f.expression.trim();
    match pb::FilterType::try_from(f.r#type) {
        Ok(pb::FilterType::Sql) => Some(FilterExpression::sql(expr)),
        _ if expr.is_empty() => Some(FilterExpression::tag("*")),
        _ => Some(FilterExpression::tag(expr)),
    }
}

/// How long the receive may wait for messages.
///
/// # Errors
/// ILLEGAL_POLLING_TIME when the caller's deadline leaves less than the minimum poll.
pub(super) fn poll_time(
    config: &MessagingConfig,
    requested: Option<Duration>,
    remaining: Option<Duration>,
    core_max: Duration,
) -> Result<Duration, pb::Status> {
    let max = Duration::from_millis(config.max_long_polling_ms).min(core_max);
    let min = Duration::from_millis(config.min_long_polling_ms).min(max);
    let mut poll = requested.unwrap_or(max).clamp(min, max);
    if let Some(left) = remaining {
        let usable = left.saturating_sub(Duration::from_millis(config.deadline_reserve_ms));
        if poll > usable {
            if usable < min {
                return Err(status(
                    Code::IllegalPollingTime,
                    format!(
                        "the deadline leaves {} ms, less than the minimum long poll of {} ms",
                        usable.as_millis(),
                        min.as_millis()
                    ),
                ));
            }
            poll = usable;
        }
    }
    Ok(poll)
}

/// A permit to wait `wait` for messages: `None` when `max_long_polls` calls already wait. A
/// call that does not wait needs none.
pub(super) fn poll_permit(
    ctx: &Context,
    wait: Duration,
) -> Option<Option<tokio::sync::OwnedSemaphorePermit>> {
    if wait.is_zero() {
        return Some(None);
    }
    ctx.polls.clone().try_acquire_owned().ok().map(Some)
}

fn frame(content: Content) -> pb::ReceiveMessageResponse {
    pb::ReceiveMessageResponse {
        content: Some(content),
    }
}

/// The frames of a refused receive: one status, then the delivery timestamp.
fn refused(s: pb::Status) -> Vec<pb::ReceiveMessageResponse> {
    vec![
        frame(Content::Status(s)),
        frame(Content::DeliveryTimestamp(convert::now())),
    ]
}

/// ReceiveMessage: the frames of the answer.
pub(super) async fn receive(
    ctx: &Context,
    client_id: &str,
    remaining: Option<Duration>,
    req: pb::ReceiveMessageRequest,
) -> Vec<pb::ReceiveMessageResponse> {
    let group = match group_name(req.group.as_ref()) {
        Ok(g) => g.to_owned(),
        Err(s) => return refused(s),
    };
    let resource = req
        .message_queue
        .as_ref()
        .and_then(|q| q.topic.clone())
        .unwrap_or_default();
    let topic = match topic_name(req.message_queue.as_ref().and_then(|q| q.topic.as_ref())) {
        Ok(t) => t.to_owned(),
        Err(s) => return refused(s),
    };
    let core = ctx.broker.config();
    let invisible = match req.invisible_duration.as_ref() {
        // Push consumers: the gateway keeps their messages invisible until acked.
        _ if req.auto_renew => Duration::from_millis(ctx.config.default_invisible_ms),
        None => Duration::from_millis(ctx.config.default_invisible_ms),
        Some(d) => match convert::duration(d) {
            Some(d) => d,
            None => {
                return refused(status(
                    Code::IllegalInvisibleTime,
                    "negative invisible_duration",
                ))
            }
        },
    };
    let requested = match req.long_polling_timeout.as_ref() {
        None => None,
        Some(d) => match convert::duration(d) {
            Some(d) => Some(d),
            None => {
                return refused(status(
                    Code::IllegalPollingTime,
                    "negative long_polling_timeout",
                ))
            }
        },
    };
    let wait = match poll_time(
        &ctx.config,
        requested,
        remaining,
        Duration::from_millis(core.consumer.max_wait_ms),
    ) {
        Ok(w) => w,
        Err(s) => return refused(s),
    };
    let max = usize::try_from(req.batch_size)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_BATCH)
        .min(core.consumer.max_pop_batch.max(1));
    ctx.clients.set_group(client_id, &group);
    ctx.renewals.seen(client_id, ctx.broker.now_ms());
    let Some(_permit) = poll_permit(ctx, wait) else {
        return refused(status(
            Code::TooManyRequests,
            "too many receives waiting on this broker; retry later",
        ));
    };
    let popped = ctx
        .broker
        .consumer()
        .pop(PopRequest {
            group: group.clone(),
            topic,
            filter: filter(req.filter_expression.as_ref()),
            max,
            invisible,
            wait,
        })
        .await;
    let popped = match popped {
        Ok(p) => p,
        Err(e) => return refused(from_core(&e)),
    };
    if popped.is_empty() {
        return refused(status(Code::MessageNotFound, "no new message"));
    }
    let store_host = ctx.store_host();
    let mut frames = Vec::with_capacity(popped.len() + 2);
    frames.push(frame(Content::Status(ok())));
    for p in popped {
        if req.auto_renew {
            ctx.renewals.track(
                ctx.config.auto_renew_max_handles,
                Duration::from_millis(ctx.config.auto_renew_max_ms),
                &group,
                client_id,
                &p.receipt_handle,
                p.invisible_until_ms,
                ctx.broker.now_ms(),
            );
        }
        let m = convert::to_pb(
            &p.message,
            &resource.resource_namespace,
            &store_host,
            Delivery {
                receipt_handle: Some(p.receipt_handle),
                attempt: Some(p.attempt),
                invisible: Some(invisible),
            },
        );
        frames.push(frame(Content::Message(m)));
    }
    frames.push(frame(Content::DeliveryTimestamp(convert::now())));
    frames
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_poll_is_capped_below_the_deadline() {
        let c = MessagingConfig::default();
        let core_max = Duration::from_secs(60);
        let s = Duration::from_secs;
        // RC: 40 s poll, 40 s deadline → 20 s.
        assert_eq!(
            poll_time(&c, Some(s(40)), Some(s(40)), core_max).unwrap(),
            s(20)
        );
        // Short deadline: the remaining time minus the reserve.
        let p = poll_time(&c, Some(s(40)), Some(s(10)), core_max).unwrap();
        assert!(p < s(10) && p > s(9));
        assert_eq!(
            poll_time(&c, Some(s(40)), Some(s(3)), core_max)
                .unwrap_err()
                .code,
            Code::IllegalPollingTime as i32
        );
        assert_eq!(poll_time(&c, Some(s(1)), None, core_max).unwrap(), s(5));
        assert_eq!(poll_time(&c, None, None, s(2)).unwrap(), s(2));
    }

    #[test]
    fn filters() {
        assert_eq!(filter(None), None);
        let tag = pb::FilterExpression {
            r#type: pb::FilterType::Tag as i32,
            expression: "a||b".into(),
        };
        assert_eq!(filter(Some(&tag)), Some(FilterExpression::tag("a||b")));
    }
}
