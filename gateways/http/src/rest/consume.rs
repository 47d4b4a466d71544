//! Consuming: receive (pop with long polling), ack, nack, invisibility changes and
//! dead-lettering for receive-style consumers; pull by offset and committed offsets for
//! offset-style consumers.
//!
//! Invariants: `wait_ms` is bounded by `http.max_wait_ms` (and the core's
//! `consumer.max_wait_ms`), `max` and handle lists by the broker's and `http.max_batch`, so one
//! request holds bounded memory and ends before the request timeout.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rocketgate_core::{GroupPullRequest, PopRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use rocketgate_core::auth::{Action, Resource};

use crate::auth::{Caller, Scoped};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::model::{
    AckRequest, AckResponse, AckResult, CommitOffset, HandleRequest, InvisibilityRequest,
    NackRequest, NewHandle, OffsetView, Offsets, Pulled, ReceiveRequest, Received, ReceivedMessage,
    ResetOffsets,
};
use crate::rules;
use crate::state::AppState;

/// The longest wait a request may ask for, in ms.
pub(crate) fn max_wait_ms(state: &AppState) -> u64 {
    state
        .config
        .max_wait_ms
        .min(state.broker.config().consumer.max_wait_ms)
}

pub(crate) fn check_wait(state: &AppState, wait_ms: u64) -> ApiResult<Duration> {
    let max_ms = max_wait_ms(state);
    if wait_ms > max_ms {
        return Err(rocketgate_core::Error::IllegalWait {
            got_ms: wait_ms,
            max_ms,
        }
        .into());
    }
    Ok(Duration::from_millis(wait_ms))
}

/// Receives messages for a group (pop): they stay invisible to the group's other consumers for
/// `invisible_ms` unless acknowledged.
#[utoipa::path(post, path = "/v1/groups/{group}/receive", tag = "consume",
    params(("group" = String, Path, description = "Consumer group")),
    request_body = ReceiveRequest,
    responses((status = 200, description = "Messages (possibly none)", body = Received)))]
pub(crate) async fn receive(
    Scoped(state): Scoped,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<ReceiveRequest>,
) -> ApiResult<Json<Received>> {
    caller.need(&state, &Resource::topic(&req.topic), &[Action::Sub])?;
    let wait = check_wait(&state, req.wait_ms)?;
    let popped = state
        .broker
        .consumer()
        .pop(PopRequest {
            group,
            topic: req.topic,
            filter: req.filter.map(Into::into),
            max: req.max,
            invisible: Duration::from_millis(req.invisible_ms),
            wait,
        })
        .await?;
    Ok(Json(Received {
        messages: popped
            .into_iter()
            .map(|p| ReceivedMessage::new(p, req.base64))
            .collect(),
    }))
}

/// Acknowledges one handle (`receipt_handle` alone: a failure answers a problem) or several
/// (`receipt_handles`, with `receipt_handle` first when both are given: one result each; none
/// answers no result).
#[utoipa::path(post, path = "/v1/groups/{group}/ack", tag = "consume",
    params(("group" = String, Path, description = "Consumer group")),
    request_body = AckRequest,
    responses((status = 200, description = "One result per handle", body = AckResponse)))]
pub(crate) async fn ack(
    Scoped(state): Scoped,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<AckRequest>,
) -> ApiResult<Json<AckResponse>> {
    rocketgate_core::rules::group_name(&group)?;
    let max = state.config.max_batch;
    if req.receipt_handles.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_batch_size",
            format!("at most {max} handles per ack"),
        ));
    }
    for h in req.receipt_handle.iter().chain(req.receipt_handles.iter()) {
        rules::receipt_handle(h)?;
        caller.need_handle(&state, &group, h)?;
    }
    if let (Some(h), true) = (&req.receipt_handle, req.receipt_handles.is_empty()) {
        state.broker.consumer().ack(&group, h).await?;
        return Ok(Json(AckResponse {
            results: vec![AckResult {
                receipt_handle: h.clone(),
                ok: true,
                code: None,
            }],
        }));
    }
    let all: Vec<String> = req
        .receipt_handle
        .into_iter()
        .chain(req.receipt_handles)
        .collect();
    if all.is_empty() {
        return Ok(Json(AckResponse { results: vec![] }));
    }
    let handles: Vec<&str> = all.iter().map(String::as_str).collect();
    let results = state.broker.consumer().ack_batch(&group, &handles).await?;
    Ok(Json(AckResponse {
        results: all
            .iter()
            .zip(results)
            .map(|(h, r)| AckResult {
                receipt_handle: h.clone(),
                ok: r.is_ok(),
                code: r.err().map(|e| ApiError::from(e).code.to_owned()),
            })
            .collect(),
    }))
}

/// Negative acknowledgement: redelivered after `delay_ms` (or the group's backoff), or
/// dead-lettered after the group's last attempt.
#[utoipa::path(post, path = "/v1/groups/{group}/nack", tag = "consume",
    params(("group" = String, Path, description = "Consumer group")),
    request_body = NackRequest,
    responses((status = 204, description = "Will be redelivered (or was dead-lettered)")))]
pub(crate) async fn nack(
    Scoped(state): Scoped,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<NackRequest>,
) -> ApiResult<StatusCode> {
    rules::receipt_handle(&req.receipt_handle)?;
    caller.need_handle(&state, &group, &req.receipt_handle)?;
    state
        .broker
        .consumer()
        .nack(
            &group,
            &req.receipt_handle,
            req.delay_ms.map(Duration::from_millis),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes how long a received message stays invisible; answers its new handle.
#[utoipa::path(post, path = "/v1/groups/{group}/invisibility", tag = "consume",
    params(("group" = String, Path, description = "Consumer group")),
    request_body = InvisibilityRequest,
    responses((status = 200, description = "The new handle; the old one stops working", body = NewHandle)))]
pub(crate) async fn invisibility(
    Scoped(state): Scoped,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<InvisibilityRequest>,
) -> ApiResult<Json<NewHandle>> {
    rules::receipt_handle(&req.receipt_handle)?;
    caller.need_handle(&state, &group, &req.receipt_handle)?;
    let receipt_handle = state.broker.consumer().change_invisible_duration(
        &group,
        &req.receipt_handle,
        Duration::from_millis(req.invisible_ms),
    )?;
    Ok(Json(NewHandle { receipt_handle }))
}

/// Moves a received message to the group's dead-letter queue at once.
#[utoipa::path(post, path = "/v1/groups/{group}/dead-letter", tag = "consume",
    params(("group" = String, Path, description = "Consumer group")),
    request_body = HandleRequest,
    responses((status = 204, description = "Dead-lettered")))]
pub(crate) async fn dead_letter(
    Scoped(state): Scoped,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<HandleRequest>,
) -> ApiResult<StatusCode> {
    rules::receipt_handle(&req.receipt_handle)?;
    caller.need_handle(&state, &group, &req.receipt_handle)?;
    state
        .broker
        .consumer()
        .dead_letter(&group, &req.receipt_handle)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of a pull.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PullQuery {
    /// Offset to read from (the committed offset, or 0, when absent).
    offset: Option<u64>,
    /// Most messages (32 by default).
    #[serde(default = "thirty_two")]
    max: usize,
    /// Long polling wait, ms (0 by default).
    #[serde(default)]
    wait_ms: u64,
    /// Write bodies in base64 whatever they are.
    #[serde(default)]
    base64: bool,
}

fn thirty_two() -> usize {
    32
}

/// Reads a queue by offset for a group (offset-style consumers); commit with `PUT .../offset`.
#[utoipa::path(get, path = "/v1/groups/{group}/topics/{topic}/queues/{queue}/messages", tag = "consume",
    params(
        ("group" = String, Path, description = "Consumer group"),
        ("topic" = String, Path, description = "Topic"),
        ("queue" = u32, Path, description = "Queue id"),
        PullQuery),
    responses((status = 200, description = "Messages from the offset", body = Pulled)))]
pub(crate) async fn pull(
    Scoped(state): Scoped,
    Path((group, topic, queue)): Path<(String, String, u32)>,
    Query(q): Query<PullQuery>,
) -> ApiResult<Json<Pulled>> {
    let wait = check_wait(&state, q.wait_ms)?;
    let offset = match q.offset {
        Some(o) => o,
        None => state
            .broker
            .consumer()
            .committed_offset(&group, &topic, queue)
            .or_else(|e| match e {
                rocketgate_core::Error::GroupNotFound(_)
                    if state.broker.config().consumer.auto_create_groups =>
                {
                    Ok(None)
                }
                e => Err(e),
            })?
            .unwrap_or(0),
    };
    let r = state
        .broker
        .consumer()
        .pull_group(GroupPullRequest {
            group,
            topic,
            queue_id: queue,
            offset,
            max: q.max,
            filter: None,
            wait,
        })
        .await?;
    Ok(Json(Pulled::new(r, q.base64)))
}

/// The committed offsets of a group on every queue of a topic.
#[utoipa::path(get, path = "/v1/groups/{group}/topics/{topic}/offsets", tag = "consume",
    params(("group" = String, Path, description = "Consumer group"),
        ("topic" = String, Path, description = "Topic")),
    responses((status = 200, description = "Per queue", body = Offsets)))]
pub(crate) async fn offsets(
    Scoped(state): Scoped,
    Path((group, topic)): Path<(String, String)>,
) -> ApiResult<Json<Offsets>> {
    let info = state.broker.topics().describe(&topic).await?;
    let mut offsets = Vec::with_capacity(info.queues.len());
    for q in &info.queues {
        offsets.push(OffsetView {
            queue_id: q.queue_id,
            offset: state
                .broker
                .consumer()
                .committed_offset(&group, &topic, q.queue_id)?,
        });
    }
    Ok(Json(Offsets { offsets }))
}

/// Commits a group's offset on one queue (the next message to consume).
#[utoipa::path(put, path = "/v1/groups/{group}/topics/{topic}/queues/{queue}/offset", tag = "consume",
    params(("group" = String, Path, description = "Consumer group"),
        ("topic" = String, Path, description = "Topic"),
        ("queue" = u32, Path, description = "Queue id")),
    request_body = CommitOffset,
    responses((status = 200, description = "Committed", body = OffsetView)))]
pub(crate) async fn commit_offset(
    Scoped(state): Scoped,
    Path((group, topic, queue)): Path<(String, String, u32)>,
    JsonBody(req): JsonBody<CommitOffset>,
) -> ApiResult<Json<OffsetView>> {
    // Past the end of the queue is a conflict with its state, not a malformed request.
    let info = state.broker.topics().describe(&topic).await?;
    if let Some(q) = info.queues.iter().find(|q| q.queue_id == queue) {
        if req.offset > q.max {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "offset_out_of_range",
                format!(
                    "offset {} is past the end of queue {queue} of topic `{topic}` ({})",
                    req.offset, q.max
                ),
            ));
        }
    }
    state
        .broker
        .consumer()
        .commit_offset(&group, &topic, queue, req.offset)?;
    Ok(Json(OffsetView {
        queue_id: queue,
        offset: Some(req.offset),
    }))
}

/// Moves a group's committed offsets on every queue of a topic to a time.
#[utoipa::path(post, path = "/v1/groups/{group}/topics/{topic}/offsets/reset", tag = "consume",
    params(("group" = String, Path, description = "Consumer group"),
        ("topic" = String, Path, description = "Topic")),
    request_body = ResetOffsets,
    responses((status = 200, description = "The new offsets", body = Offsets)))]
pub(crate) async fn reset_offsets(
    State(state): State<AppState>,
    Path((group, topic)): Path<(String, String)>,
    JsonBody(req): JsonBody<ResetOffsets>,
) -> ApiResult<Json<Offsets>> {
    let moved = state
        .broker
        .consumer()
        .reset_offset_to_time(&group, &topic, req.timestamp_ms)
        .await?;
    Ok(Json(Offsets {
        offsets: moved.into_iter().map(Into::into).collect(),
    }))
}
