//! Publishing: one message (JSON or a raw body with `rg-*` headers), a batch, and transactional
//! half messages with their commit / rollback.
//!
//! Invariants: a batch is checked whole (topic, sizes, delays) before its first message is
//! stored, so a bad message stores none; only a store fault in the middle (disk full) can leave
//! a prefix stored, and the error says so. Bodies are bounded by `http.max_body_bytes` and the
//! broker's `limits`.

use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rocketgate_core::api::QueueSelector;
use rocketgate_core::Resolution;
use rocketgate_core::{Message, SendRequest};

use rocketgate_core::auth::{Action, Resource};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{is_json, media_type, parse_json, read_body, unsupported, JsonBody, Path};
use crate::model::{PublishBatch, PublishHalf, PublishMessage, Published, PublishedBatch};
use crate::state::AppState;

pub(crate) use rocketgate_core::now_ms;

fn request(m: Message, queue_id: Option<u32>) -> SendRequest {
    SendRequest::new(
        m,
        queue_id.map_or(QueueSelector::Auto, QueueSelector::Queue),
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    h.get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII")))
        })
        .transpose()
}

fn parsed<T: FromStr>(h: &HeaderMap, name: &str) -> ApiResult<Option<T>> {
    header(h, name)?
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| ApiError::bad_request(format!("header {name} is not a number")))
        })
        .transpose()
}

/// A raw body with its fields in `rg-*` headers.
fn raw_message(
    topic: &str,
    h: &HeaderMap,
    body: bytes::Bytes,
    now_ms: i64,
) -> ApiResult<(Message, Option<u32>)> {
    let mut m = Message::new(topic, body);
    m.tag = header(h, "rg-tag")?.map(str::to_owned);
    m.keys = header(h, "rg-keys")?
        .map(|k| {
            k.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    m.message_group = header(h, "rg-message-group")?.map(str::to_owned);
    m.delay_level = parsed(h, "rg-delay-level")?;
    m.deliver_at_ms = parsed(h, "rg-deliver-at")?;
    if let Some(d) = parsed::<u64>(h, "rg-delay-ms")? {
        if m.deliver_at_ms.is_some() || m.delay_level.is_some() {
            return Err(ApiError::bad_request(
                "give at most one of rg-delay-level, rg-deliver-at and rg-delay-ms",
            ));
        }
        m.deliver_at_ms = Some(now_ms.saturating_add(i64::try_from(d).unwrap_or(i64::MAX)));
    }
    m.properties = properties(h)?;
    Ok((m, parsed(h, "rg-queue-id")?))
}

/// The properties of a raw publish: `rg-properties` (a JSON object of strings: names kept
/// exactly) and `rg-property-<name>` headers. Header names are case-insensitive (HTTP/2 and
/// hyper lower-case them), so `rg-property-<name>` sets the lower-case name; a name with
/// capitals (`mqttTopic`, `orderId`) or characters a header name cannot carry goes in
/// `rg-properties`. A name given twice, in either form, is refused rather than picked.
fn properties(h: &HeaderMap) -> ApiResult<std::collections::BTreeMap<String, String>> {
    let mut all = h.get_all("rg-properties").iter();
    let mut out: std::collections::BTreeMap<String, String> = match all.next() {
        None => Default::default(),
        Some(v) => {
            if all.next().is_some() {
                return Err(ApiError::bad_request("header rg-properties given twice"));
            }
            let v = v
                .to_str()
                .map_err(|_| ApiError::bad_request("header rg-properties is not ASCII (write other characters as JSON \\u escapes)"))?;
            serde_json::from_str(v).map_err(|e| {
                ApiError::bad_request(format!(
                    "header rg-properties is not a JSON object of string values: {e}"
                ))
            })?
        }
    };
    for name in h.keys() {
        let Some(key) = name.as_str().strip_prefix("rg-property-") else {
            continue;
        };
        let mut values = h.get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(ApiError::bad_request(format!("header {name} given twice")));
        };
        let v = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII")))?;
        if out.insert(key.to_owned(), v.to_owned()).is_some() {
            return Err(ApiError::bad_request(format!(
                "property `{key}` given both in rg-properties and as header {name}"
            )));
        }
    }
    Ok(out)
}

/// Publishes one message: a JSON [`PublishMessage`], or a raw body (`application/octet-stream`
/// or `text/plain`) with `rg-tag`, `rg-keys` (comma-separated), `rg-message-group`,
/// `rg-delay-level`, `rg-deliver-at`, `rg-delay-ms`, `rg-queue-id`, `rg-properties` (a JSON
/// object: property names kept exactly) and `rg-property-<name>` (a lower-case name) headers.
#[utoipa::path(post, path = "/v1/topics/{topic}/messages", tag = "messages",
    params(("topic" = String, Path, description = "Topic")),
    request_body(content(
        (PublishMessage = "application/json"),
        (Vec<u8> = "application/octet-stream"),
        (String = "text/plain"),
    )),
    responses((status = 200, description = "Stored", body = Published)))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    req: Request,
) -> ApiResult<Json<Published>> {
    let media = media_type(req.headers()).unwrap_or_default();
    let (parts, body) = read_body(req, state.config.max_body_bytes).await?;
    let (m, queue) = if is_json(&media) {
        let p: PublishMessage = parse_json(&body)?;
        let q = p.queue_id;
        (p.into_message(&topic, state.broker.now_ms())?, q)
    } else if media == "application/octet-stream" || media.starts_with("text/") {
        raw_message(&topic, &parts.headers, body, state.broker.now_ms())?
    } else {
        return Err(unsupported(
            "application/json, application/octet-stream or text/plain",
        ));
    };
    let receipt = state.broker.producer().send(request(m, queue)).await?;
    Ok(Json(receipt.into()))
}

/// Publishes a batch. Every message is checked before any is stored.
#[utoipa::path(post, path = "/v1/topics/{topic}/messages/batch", tag = "messages",
    params(("topic" = String, Path, description = "Topic")),
    request_body = PublishBatch,
    responses((status = 200, description = "Stored, in request order", body = PublishedBatch)))]
pub(crate) async fn publish_batch(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    JsonBody(batch): JsonBody<PublishBatch>,
) -> ApiResult<Json<PublishedBatch>> {
    let max = state.config.max_batch;
    if batch.messages.is_empty() || batch.messages.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_batch_size",
            format!("a batch holds 1 to {max} messages"),
        ));
    }
    let now = state.broker.now_ms();
    let mut requests = Vec::with_capacity(batch.messages.len());
    for (i, p) in batch.messages.into_iter().enumerate() {
        let q = p.queue_id;
        let m = p.into_message(&topic, now).map_err(|e| at(i, e))?;
        requests.push(request(m, q));
    }
    let out = state
        .broker
        .producer()
        .send_batch(requests)
        .await
        .map_err(|b| {
            let mut e = ApiError::from(b.error);
            if b.stored > 0 {
                e.detail = format!("{} (the first {} messages were stored)", e.detail, b.stored);
            }
            at(b.index, e)
        })?;
    let out = out.into_iter().map(Into::into).collect();
    Ok(Json(PublishedBatch { messages: out }))
}

fn at(i: usize, mut e: ApiError) -> ApiError {
    e.detail = format!("messages[{i}]: {}", e.detail);
    e
}

/// Publishes a transactional half message: stored, invisible until committed. The producer
/// group's registered callback is asked when it stays unresolved.
#[utoipa::path(post, path = "/v1/topics/{topic}/transactions", tag = "transactions",
    params(("topic" = String, Path, description = "Topic")),
    request_body = PublishHalf,
    responses((status = 200, description = "Stored as a half message; `transaction_id` set", body = Published)))]
pub(crate) async fn publish_half(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    JsonBody(half): JsonBody<PublishHalf>,
) -> ApiResult<Json<Published>> {
    let q = half.message.queue_id;
    let m = half.message.into_message(&topic, state.broker.now_ms())?;
    let receipt = state
        .broker
        .transactions()
        .send_half(request(m, q), &half.producer_group)
        .await?;
    Ok(Json(receipt.into()))
}

async fn end(state: &AppState, caller: &Caller, id: &str, r: Resolution) -> ApiResult<StatusCode> {
    // Pub on the half's topic; an id that is not pending (unknown, or resolved) changes
    // nothing, and the core says which.
    if let Some(topic) = state.broker.transactions().topic_of(id) {
        caller.need(state, &Resource::topic(topic), &[Action::Pub])?;
    }
    state.broker.transactions().end(id, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Commits a transaction: its message becomes visible.
#[utoipa::path(post, path = "/v1/transactions/{id}/commit", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id")),
    responses((status = 204, description = "Committed")))]
pub(crate) async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    end(&state, &caller, &id, Resolution::Commit).await
}

/// Rolls a transaction back: its message is discarded.
#[utoipa::path(post, path = "/v1/transactions/{id}/rollback", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id")),
    responses((status = 204, description = "Rolled back")))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    end(&state, &caller, &id, Resolution::Rollback).await
}
