//! Transaction check-back over HTTP: a producer group registers a callback URL; when a half
//! message of the group stays unresolved, the core's check-back worker calls
//! [`CallbackChecker::check`], which POSTs a [`CheckRequest`] to the URL and maps the answer
//! (`{"action":"commit"|"rollback"|"unknown"}`) to the core's [`CheckResult`].
//!
//! Invariants: one request takes at most `http.callback_timeout_ms`; transport errors and 5xx
//! answers are retried `http.callback_retries` times after `http.callback_retry_backoff_ms`;
//! anything else that is not a valid answer (4xx, bad JSON, a body over 64 KiB) is `Unknown`, so
//! the core asks again later and finally discards the half after `transaction.max_checks`.
//! Redirects are not followed. Registrations are durable: kept in the core's settings map
//! [`SETTINGS`] (written before the registration is answered) and registered again with the
//! core when the gateway starts ([`restore`]). The callback never sees more than the message
//! itself.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rocketgate_core::{CheckFuture, CheckResult, HalfMessage, Resolution, TransactionChecker};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::model::{
    CallbackView, CheckAction, CheckAnswer, CheckRequest, MessageView, RegisterCallback,
};
use crate::state::AppState;

/// The core settings map of the registrations: producer group → URL.
pub const SETTINGS: &str = "http-callbacks";

/// Longest callback URL.
const MAX_URL: usize = 2048;
/// Largest callback answer read.
const MAX_ANSWER: usize = 64 << 10;

/// Asks a producer group's callback URL.
pub struct CallbackChecker {
    /// The gateway's runtime: the core's check-back worker has no I/O driver of its own.
    runtime: tokio::runtime::Handle,
    client: reqwest::Client,
    url: reqwest::Url,
    retries: u32,
    backoff: Duration,
}

impl CallbackChecker {
    async fn ask(&self, body: &CheckRequest) -> CheckResult {
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(self.backoff).await;
            }
            let answer = match self.client.post(self.url.clone()).json(body).send().await {
                Ok(r) if r.status().is_server_error() => {
                    tracing::debug!(status = %r.status(), "callback answered a server error");
                    continue;
                }
                Ok(r) if !r.status().is_success() => return CheckResult::Unknown,
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "callback request failed");
                    continue;
                }
            };
            if answer
                .content_length()
                .is_some_and(|n| n > MAX_ANSWER as u64)
            {
                return CheckResult::Unknown;
            }
            let Ok(bytes) = answer.bytes().await else {
                continue;
            };
            if bytes.len() > MAX_ANSWER {
                return CheckResult::Unknown;
            }
            return match serde_json::from_slice::<CheckAnswer>(&bytes).map(|a| a.action) {
                Ok(CheckAction::Commit) => CheckResult::Resolve(Resolution::Commit),
                Ok(CheckAction::Rollback) => CheckResult::Resolve(Resolution::Rollback),
                Ok(CheckAction::Unknown) | Err(_) => CheckResult::Unknown,
            };
        }
        CheckResult::Unknown
    }
}

impl TransactionChecker for CallbackChecker {
    fn check(&self, half: HalfMessage) -> CheckFuture {
        let runtime = self.runtime.clone();
        let this = Self {
            runtime: self.runtime.clone(),
            client: self.client.clone(),
            url: self.url.clone(),
            retries: self.retries,
            backoff: self.backoff,
        };
        Box::pin(async move {
            let body = CheckRequest {
                transaction_id: half.transaction_id,
                producer_group: half.producer_group,
                message: MessageView::new(half.message, false),
            };
            let result = runtime
                .spawn(async move { this.ask(&body).await })
                .await
                .unwrap_or(CheckResult::Unknown);
            metrics::counter!("rocketgate_http_callbacks_total", "result" => match result {
                CheckResult::Resolve(Resolution::Commit) => "commit",
                CheckResult::Resolve(Resolution::Rollback) => "rollback",
                CheckResult::Unknown => "unknown",
            })
            .increment(1);
            result
        })
    }
}

fn check_group(group: &str) -> ApiResult<()> {
    if group.is_empty()
        || group.len() > 255
        || !group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_%|".contains(&b))
    {
        return Err(ApiError::bad_request(
            "producer group: 1 to 255 characters of [A-Za-z0-9_%|-]",
        ));
    }
    Ok(())
}

/// Registers (or replaces) the check-back callback of a producer group.
#[utoipa::path(put, path = "/v1/producers/{group}/callback", tag = "transactions",
    params(("group" = String, Path, description = "Producer group")),
    request_body = RegisterCallback,
    responses((status = 200, description = "Registered", body = CallbackView)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Path(group): Path<String>,
    JsonBody(req): JsonBody<RegisterCallback>,
) -> ApiResult<Json<CallbackView>> {
    check_group(&group)?;
    if !state.config.allow_callbacks {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "callbacks_disabled",
            "transaction callbacks are disabled (http.allow_callbacks)",
        ));
    }
    let url = parse_url(&req.url).ok_or_else(|| {
        ApiError::bad_request("url must be an absolute http(s) URL of at most 2048 bytes")
    })?;
    state
        .broker
        .settings()
        .set(SETTINGS, &group, Some(&req.url))
        .map_err(ApiError::from)?;
    install(
        &state,
        tokio::runtime::Handle::current(),
        &group,
        url,
        &req.url,
    );
    Ok(Json(CallbackView {
        producer_group: group,
        url: req.url,
    }))
}

/// A callback URL as accepted: absolute http(s) with a host, at most [`MAX_URL`] bytes.
fn parse_url(url: &str) -> Option<reqwest::Url> {
    (url.len() <= MAX_URL)
        .then(|| reqwest::Url::parse(url).ok())
        .flatten()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Registers the checker of `group` with the core and records it in the gateway's table.
fn install(
    state: &AppState,
    runtime: tokio::runtime::Handle,
    group: &str,
    url: reqwest::Url,
    raw: &str,
) {
    let checker = CallbackChecker {
        runtime,
        client: state.http_client().clone(),
        url,
        retries: state.config.callback_retries,
        backoff: Duration::from_millis(state.config.callback_retry_backoff_ms),
    };
    state
        .broker
        .transactions()
        .register_checker(group, Arc::new(checker));
    state
        .callbacks()
        .lock()
        .insert(group.to_owned(), raw.to_owned());
}

/// Registers again the callbacks stored by an earlier run (at gateway start, on `runtime`).
/// Unreadable or no longer valid entries are logged and skipped; with `allow_callbacks` off
/// none is registered.
pub(crate) fn restore(state: &AppState, runtime: tokio::runtime::Handle) {
    let stored = match state.broker.settings().map(SETTINGS) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stored transaction callbacks");
            return;
        }
    };
    if stored.is_empty() {
        return;
    }
    if !state.config.allow_callbacks {
        tracing::warn!(
            callbacks = stored.len(),
            "http.allow_callbacks is off: stored transaction callbacks are not used"
        );
        return;
    }
    for (group, raw) in stored {
        match (check_group(&group), parse_url(&raw)) {
            (Ok(()), Some(url)) => install(state, runtime.clone(), &group, url, &raw),
            _ => tracing::warn!(group = %group, url = %raw, "skipping an invalid stored callback"),
        }
    }
}

/// The registered callback of a producer group.
#[utoipa::path(get, path = "/v1/producers/{group}/callback", tag = "transactions",
    params(("group" = String, Path, description = "Producer group")),
    responses((status = 200, description = "Registered callback", body = CallbackView)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<Json<CallbackView>> {
    let url = state.callbacks().lock().get(&group).cloned();
    url.map(|url| {
        Json(CallbackView {
            producer_group: group.clone(),
            url,
        })
    })
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "callback_not_found",
            format!("producer group `{group}` has no callback"),
        )
    })
}

/// Removes the callback of a producer group.
#[utoipa::path(delete, path = "/v1/producers/{group}/callback", tag = "transactions",
    params(("group" = String, Path, description = "Producer group")),
    responses((status = 204, description = "Removed")))]
pub(crate) async fn unregister(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.callbacks().lock().contains_key(&group) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "callback_not_found",
            format!("producer group `{group}` has no callback"),
        ));
    }
    state
        .broker
        .settings()
        .set(SETTINGS, &group, None)
        .map_err(ApiError::from)?;
    state.callbacks().lock().remove(&group);
    state.broker.transactions().unregister_checker(&group);
    Ok(StatusCode::NO_CONTENT)
}
