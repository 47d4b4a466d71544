//! Administration: topics (create, list, describe, update, route, delete), consumer groups
//! (create, list, describe, delete, lag, clients, retry policy) and dead-letter queues (list,
//! query, resend, purge).
//!
//! Invariants: list answers are bounded by the broker's tables (topics and groups are bounded
//! by `limits`); dead-letter reads by `limits.max_batch`; resend id lists by `http.max_batch`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use rocketgate_core::api::TopicUpdate;
use rocketgate_core::DlqSelection;
use rocketgate_core::{GroupConfig, Permission, TopicConfig};
use serde::Deserialize;
use utoipa::IntoParams;

use rocketgate_core::auth::{Action, Resource};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path, Query};
use crate::model::{
    Clients, CreateGroup, CreateTopic, GroupList, GroupView, Lag, LagView, Pulled, ResendRequest,
    Resent, RetryPolicy, SetRetryPolicy, TopicList, TopicRoute, TopicView, UpdateTopic,
};
use crate::state::AppState;

/// Core refuses a well-formed name with a system-managed prefix (`rmq_sys_`, `%RETRY%`,
/// `%DLQ%`) as an illegal topic; over REST that is `403 reserved`: the name is fine, the broker
/// owns the topic (as a gateway's reserved topic is `403` too).
fn managed(name: &str, e: rocketgate_core::Error) -> ApiError {
    if e.reason() == rocketgate_core::Reason::IllegalTopic
        && rocketgate_core::rules::topic_name(name).is_ok()
    {
        return ApiError::new(StatusCode::FORBIDDEN, "reserved", e.to_string());
    }
    e.into()
}

/// Creates a topic.
#[utoipa::path(post, path = "/v1/topics", tag = "topics",
    request_body = CreateTopic,
    responses((status = 201, description = "Created", body = TopicView)))]
pub(crate) async fn create_topic(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateTopic>,
) -> ApiResult<(StatusCode, Json<TopicView>)> {
    let name = req.name.clone();
    let info = state
        .broker
        .topics()
        .create(TopicConfig::new(req.name, req.queue_count).with_type(req.message_type.into()))
        .map_err(|e| managed(&name, e))?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// Lists topics (user, retry and dead-letter topics; not internal journals).
#[utoipa::path(get, path = "/v1/topics", tag = "topics",
    responses((status = 200, description = "Topics", body = TopicList)))]
pub(crate) async fn list_topics(State(state): State<AppState>) -> Json<TopicList> {
    Json(TopicList {
        topics: state
            .broker
            .topics()
            .list()
            .iter()
            .map(Into::into)
            .collect(),
    })
}

/// Describes a topic with its per-queue offsets.
#[utoipa::path(get, path = "/v1/topics/{topic}", tag = "topics",
    params(("topic" = String, Path, description = "Topic")),
    responses((status = 200, description = "The topic", body = TopicView)))]
pub(crate) async fn describe_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<Json<TopicView>> {
    Ok(Json(state.broker.topics().describe(&topic).await?.into()))
}

/// Changes a topic (queue count up, message type, permissions).
#[utoipa::path(patch, path = "/v1/topics/{topic}", tag = "topics",
    params(("topic" = String, Path, description = "Topic")),
    request_body = UpdateTopic,
    responses((status = 200, description = "The changed topic", body = TopicView)))]
pub(crate) async fn update_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    JsonBody(req): JsonBody<UpdateTopic>,
) -> ApiResult<Json<TopicView>> {
    let config = state.broker.topics().config(&topic)?;
    if let Some(n) = req.queue_count.filter(|n| *n < config.queue_count) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "queue_count of topic `{topic}` can only grow (from {} to {n}): messages in the \
                 dropped queues would become unreadable",
                config.queue_count
            ),
        ));
    }
    let current = config.permission;
    let permission = (req.readable.is_some() || req.writable.is_some()).then(|| Permission {
        read: req.readable.unwrap_or(current.read),
        write: req.writable.unwrap_or(current.write),
    });
    let info = state
        .broker
        .topics()
        .update(
            &topic,
            TopicUpdate {
                queue_count: req.queue_count,
                message_type: req.message_type.map(Into::into),
                permission,
            },
        )
        .map_err(|e| managed(&topic, e))?;
    Ok(Json(info.into()))
}

/// Deletes a topic.
#[utoipa::path(delete, path = "/v1/topics/{topic}", tag = "topics",
    params(("topic" = String, Path, description = "Topic")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .broker
        .topics()
        .delete(&topic)
        .map_err(|e| managed(&topic, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The route of a topic: with NameServers, every broker group they route it to (as
/// `rocketgate admin topic route` lists them), this broker's queues from its own table;
/// without, this broker's queues (`source`).
#[utoipa::path(get, path = "/v1/topics/{topic}/route", tag = "topics",
    params(("topic" = String, Path, description = "Topic")),
    responses((status = 200, description = "The route", body = TopicRoute)))]
pub(crate) async fn route(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<TopicRoute>> {
    let (local, unknown) = match state.broker.topics().describe(&topic).await {
        Ok(info) => (Some(info), None),
        Err(e) if e.kind() == rocketgate_core::ErrorKind::NotFound => (None, Some(e)),
        Err(e) => return Err(e.into()),
    };
    let cluster = state.cluster();
    let routed = match cluster {
        Some(c) => c.route(&topic).await,
        None => None,
    };
    if let (None, None, Some(e)) = (&local, &routed, unknown) {
        return Err(e.into());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    Ok(Json(crate::cluster::assemble(
        &topic,
        local.as_ref(),
        state.scheme(),
        host,
        cluster.map(crate::cluster::Cluster::broker_name),
        routed.as_deref(),
    )))
}

/// Creates a consumer group.
#[utoipa::path(post, path = "/v1/groups", tag = "groups",
    request_body = CreateGroup,
    responses((status = 201, description = "Created", body = GroupView)))]
pub(crate) async fn create_group(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateGroup>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    let mut config = GroupConfig::new(req.name);
    if let Some(n) = req.max_delivery_attempts {
        if n == 0 || n > crate::rules::MAX_DELIVERY_ATTEMPTS {
            return Err(ApiError::bad_request(format!(
                "max_delivery_attempts must be between 1 and {}",
                crate::rules::MAX_DELIVERY_ATTEMPTS
            )));
        }
        config.max_delivery_attempts = n;
    }
    config.subscriptions = req
        .subscriptions
        .into_iter()
        .map(|(t, f)| (t, f.into()))
        .collect();
    let created = state.broker.groups().create(config)?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Lists consumer groups.
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    responses((status = 200, description = "Groups", body = GroupList)))]
pub(crate) async fn list_groups(State(state): State<AppState>) -> Json<GroupList> {
    Json(GroupList {
        groups: state
            .broker
            .groups()
            .list()
            .into_iter()
            .map(Into::into)
            .collect(),
    })
}

/// Describes a consumer group.
#[utoipa::path(get, path = "/v1/groups/{group}", tag = "groups",
    params(("group" = String, Path, description = "Consumer group")),
    responses((status = 200, description = "The group", body = GroupView)))]
pub(crate) async fn describe_group(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<Json<GroupView>> {
    Ok(Json(state.broker.groups().get(&group)?.into()))
}

/// Deletes a consumer group with its offsets.
#[utoipa::path(delete, path = "/v1/groups/{group}", tag = "groups",
    params(("group" = String, Path, description = "Consumer group")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_group(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    state.broker.groups().delete(&group)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of a lag request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LagQuery {
    /// Only this topic; every topic of the group when absent.
    topic: Option<String>,
}

/// The lag of a group, per topic and queue.
#[utoipa::path(get, path = "/v1/groups/{group}/lag", tag = "groups",
    params(("group" = String, Path, description = "Consumer group"), LagQuery),
    responses((status = 200, description = "Lag", body = Lag)))]
pub(crate) async fn lag(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    Query(q): Query<LagQuery>,
) -> ApiResult<Json<Lag>> {
    let topics = match q.topic {
        Some(t) => {
            state.broker.groups().get(&group)?;
            vec![t]
        }
        None => state.broker.groups().topics(&group)?,
    };
    for t in &topics {
        caller.need(&state, &Resource::topic(t), &[Action::Sub])?;
    }
    let mut queues = Vec::new();
    for t in &topics {
        for l in state.broker.consumer().lag(&group, t)? {
            queues.push(LagView::new(t, &l));
        }
    }
    let total = queues.iter().map(LagView::backlog).sum();
    Ok(Json(Lag { total, queues }))
}

/// Live clients of a group (those that sent a heartbeat recently).
#[utoipa::path(get, path = "/v1/groups/{group}/clients", tag = "groups",
    params(("group" = String, Path, description = "Consumer group")),
    responses((status = 200, description = "Client ids", body = Clients)))]
pub(crate) async fn clients(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<Json<Clients>> {
    state.broker.groups().get(&group)?;
    Ok(Json(Clients {
        clients: state.broker.consumer().clients(&group),
    }))
}

/// The retry policy of a group.
#[utoipa::path(get, path = "/v1/groups/{group}/retry-policy", tag = "groups",
    params(("group" = String, Path, description = "Consumer group")),
    responses((status = 200, description = "Retry policy", body = RetryPolicy)))]
pub(crate) async fn retry_policy(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<Json<RetryPolicy>> {
    let g = state.broker.groups().get(&group)?;
    Ok(Json(RetryPolicy {
        max_delivery_attempts: g.max_delivery_attempts,
        backoff: state.broker.config().consumer.retry_backoff.clone(),
    }))
}

/// Changes the retry policy of a group (its offsets and subscriptions stay).
#[utoipa::path(put, path = "/v1/groups/{group}/retry-policy", tag = "groups",
    params(("group" = String, Path, description = "Consumer group")),
    request_body = SetRetryPolicy,
    responses((status = 200, description = "The new retry policy", body = RetryPolicy)))]
pub(crate) async fn set_retry_policy(
    State(state): State<AppState>,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<SetRetryPolicy>,
) -> ApiResult<Json<RetryPolicy>> {
    let g = state
        .broker
        .groups()
        .set_max_delivery_attempts(&group, req.max_delivery_attempts)?;
    Ok(Json(RetryPolicy {
        max_delivery_attempts: g.max_delivery_attempts,
        backoff: state.broker.config().consumer.retry_backoff.clone(),
    }))
}

/// Query of a dead-letter listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DlqQuery {
    /// Offset in the dead-letter queue (0 by default).
    #[serde(default)]
    offset: u64,
    /// Most messages (32 by default).
    #[serde(default = "thirty_two")]
    max: usize,
    /// Only this message id.
    message_id: Option<String>,
}

fn thirty_two() -> usize {
    32
}

/// Lists (or queries by message id) the dead letters of a group.
#[utoipa::path(get, path = "/v1/groups/{group}/dlq", tag = "dlq",
    params(("group" = String, Path, description = "Consumer group"), DlqQuery),
    responses((status = 200, description = "Dead letters from the offset", body = Pulled)))]
pub(crate) async fn dlq_list(
    State(state): State<AppState>,
    Path(group): Path<String>,
    Query(q): Query<DlqQuery>,
) -> ApiResult<Json<Pulled>> {
    let mut r = state
        .broker
        .dead_letters()
        .list(&group, q.offset, q.max)
        .await?;
    if let Some(id) = &q.message_id {
        r.messages.retain(|m| &m.message_id == id);
    }
    Ok(Json(Pulled::new(r, false)))
}

/// Resends dead letters (some ids, or all: `"all": true` wins over ids; no id resends none) to
/// their topic with their attempts reset.
#[utoipa::path(post, path = "/v1/groups/{group}/dlq/resend", tag = "dlq",
    params(("group" = String, Path, description = "Consumer group")),
    request_body = ResendRequest,
    responses((status = 200, description = "How many were resent", body = Resent)))]
pub(crate) async fn dlq_resend(
    State(state): State<AppState>,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<ResendRequest>,
) -> ApiResult<Json<Resent>> {
    rocketgate_core::rules::group_name(&group)?;
    let max = state.config.max_batch;
    if req.message_ids.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_batch_size",
            format!("at most {max} ids per resend"),
        ));
    }
    let selection = if req.all {
        DlqSelection::All
    } else if req.message_ids.is_empty() {
        return Ok(Json(Resent { resent: 0 }));
    } else {
        DlqSelection::Ids(req.message_ids)
    };
    let resent = state
        .broker
        .dead_letters()
        .resend(&group, selection)
        .await?;
    Ok(Json(Resent { resent }))
}

/// Deletes every dead letter of a group.
#[utoipa::path(delete, path = "/v1/groups/{group}/dlq", tag = "dlq",
    params(("group" = String, Path, description = "Consumer group")),
    responses((status = 204, description = "Purged")))]
pub(crate) async fn dlq_purge(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    state.broker.dead_letters().purge(&group)?;
    Ok(StatusCode::NO_CONTENT)
}
