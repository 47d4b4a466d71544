//! Message queries (by id, by key, by store time, the trace of a message) and scheduled
//! messages (count, list, cancel).
//!
//! Invariants: every query is bounded by `max` (at most `limits.max_batch`) and a time range.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::model::{Found, MessageView, Scheduled, ScheduledMessage, Trace};
use crate::state::AppState;

/// Query of a message lookup.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BodyQuery {
    /// Write the body in base64 whatever it is.
    #[serde(default)]
    base64: bool,
}

/// The message with this id.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "query",
    params(("id" = String, Path, description = "Message id"), BodyQuery),
    responses((status = 200, description = "The message", body = MessageView)))]
pub(crate) async fn by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<BodyQuery>,
) -> ApiResult<Json<MessageView>> {
    let m = state.broker.queries().by_id(&id).await?;
    Ok(Json(MessageView::new(m, q.base64)))
}

/// The life of a message: every record stored under its id, oldest first.
#[utoipa::path(get, path = "/v1/messages/{id}/trace", tag = "query",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, description = "Trace", body = Trace)))]
pub(crate) async fn trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Trace>> {
    let steps = state.broker.queries().trace(&id).await?;
    Ok(Json(Trace {
        steps: steps.into_iter().map(Into::into).collect(),
    }))
}

/// Query of a topic search.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Messages with this key (newest first); all messages in the range (oldest first) when
    /// absent.
    key: Option<String>,
    /// Start of the store-time range, ms (0 by default).
    #[serde(default)]
    begin_ms: i64,
    /// End of the store-time range, ms (now by default).
    end_ms: Option<i64>,
    /// Most messages (32 by default).
    #[serde(default = "thirty_two")]
    max: usize,
    /// Write bodies in base64 whatever they are.
    #[serde(default)]
    base64: bool,
}

fn thirty_two() -> usize {
    32
}

/// Searches a topic by key and/or store-time range.
#[utoipa::path(get, path = "/v1/topics/{topic}/messages", tag = "query",
    params(("topic" = String, Path, description = "Topic"), SearchQuery),
    responses((status = 200, description = "Messages found", body = Found)))]
pub(crate) async fn search(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Query(q): Query<SearchQuery>,
) -> ApiResult<Json<Found>> {
    let end = q.end_ms.unwrap_or_else(super::publish::now_ms);
    if q.begin_ms > end {
        // An empty range: nothing was stored in it (the topic must still exist, and `max` be
        // what the broker takes).
        state.broker.topics().config(&topic)?;
        let limit = state.broker.config().limits.max_batch;
        if q.max == 0 || q.max > limit {
            return Err(ApiError::bad_request(format!(
                "max must be between 1 and {limit}"
            )));
        }
        return Ok(Json(Found {
            messages: vec![],
            truncated: false,
        }));
    }
    let (messages, truncated) = match &q.key {
        Some(key) => {
            let found = state
                .broker
                .queries()
                .by_key(&topic, key, q.begin_ms, end, q.max)
                .await?;
            (found, false)
        }
        None => {
            let r = state
                .broker
                .queries()
                .by_time(&topic, q.begin_ms, end, q.max)
                .await?;
            (r.messages, r.truncated)
        }
    };
    Ok(Json(Found {
        messages: messages
            .into_iter()
            .map(|m| MessageView::new(m, q.base64))
            .collect(),
        truncated,
    }))
}

/// Query of the scheduled listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ScheduledQuery {
    /// Where the page starts (the previous answer's `next_offset`; 0 by default).
    #[serde(default)]
    offset: u64,
    /// Most messages (32 by default).
    #[serde(default = "thirty_two")]
    max: usize,
    /// Write bodies in base64 whatever they are.
    #[serde(default)]
    base64: bool,
}

/// Scheduled (delayed) messages waiting for their time: the count and a page of them.
#[utoipa::path(get, path = "/v1/scheduled", tag = "scheduled",
    params(ScheduledQuery),
    responses((status = 200, description = "Pending count and a page", body = Scheduled)))]
pub(crate) async fn scheduled(
    State(state): State<AppState>,
    Query(q): Query<ScheduledQuery>,
) -> ApiResult<Json<Scheduled>> {
    let page = state.broker.scheduler().list(q.offset, q.max).await?;
    Ok(Json(Scheduled {
        pending: state.broker.scheduler().pending(),
        messages: page
            .messages
            .into_iter()
            .map(|(m, at)| ScheduledMessage {
                // The offset of the internal timer queue is not one in the target queue.
                message: MessageView {
                    queue_offset: None,
                    ..MessageView::new(m, q.base64)
                },
                deliver_at_ms: at,
            })
            .collect(),
        next_offset: page.next_offset,
        end: page.end,
    }))
}

/// Cancels a scheduled message before it is due.
#[utoipa::path(delete, path = "/v1/scheduled/{id}", tag = "scheduled",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 204, description = "Cancelled: it will not be delivered")))]
pub(crate) async fn cancel_scheduled(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.broker.scheduler().cancel(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
