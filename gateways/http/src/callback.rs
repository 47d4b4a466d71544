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
//! [`SETTINGS`] (written before the registration is answered), with their owner in [`OWNERS`],
//! and registered again with the core when the gateway starts ([`restore`]). The callback never
//! sees more than the message itself.
//!
//! Safety (a server-side request to a URL a client chose): off unless `http.allow_callbacks`;
//! the URL's host must be listed in `http.callback_allowed_hosts` or resolve only to public
//! addresses, checked at registration and at every request (`callback/target.rs`); only the
//! registration's owner — the user that registered it, or a super user; with authentication
//! off, the first registrant until it is removed (a different URL answers `409`) — replaces or
//! removes it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rocketgate_core::{CheckFuture, CheckResult, HalfMessage, Resolution, TransactionChecker};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::model::{
    CallbackView, CheckAction, CheckAnswer, CheckRequest, MessageView, RegisterCallback,
};
use crate::state::AppState;

/// The core settings map of the registrations: producer group → URL.
pub const SETTINGS: &str = "http-callbacks";
/// The core settings map of their owners: producer group → access key (empty: anonymous).
pub const OWNERS: &str = "http-callback-owners";

mod target;

pub(crate) use target::Resolver;

/// A registered callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The URL asked.
    pub url: String,
    /// The access key of the user that registered it (empty: anonymous).
    pub owner: String,
}

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
    allowed: Arc<Vec<String>>,
}

impl CallbackChecker {
    async fn ask(&self, body: &CheckRequest) -> CheckResult {
        if !target::literal_allowed(&self.url, &self.allowed) {
            tracing::warn!("callback address not allowed: not asked");
            return CheckResult::Unknown;
        }
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
            allowed: self.allowed.clone(),
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
    caller: Caller,
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
    target::check(&url, &state.config.callback_allowed_hosts)
        .await
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "callback_host_not_allowed", why))?;
    let existing = state.callbacks().lock().get(&group).cloned();
    may_change(&state, &caller, &group, existing.as_ref(), Some(&req.url))?;
    let owner = caller.principal.user().unwrap_or_default().to_owned();
    let settings = state.broker.settings();
    settings
        .set(OWNERS, &group, Some(&owner))
        .map_err(ApiError::from)?;
    settings
        .set(SETTINGS, &group, Some(&req.url))
        .map_err(ApiError::from)?;
    install(
        &state,
        tokio::runtime::Handle::current(),
        &group,
        url,
        Registered {
            url: req.url.clone(),
            owner,
        },
    );
    Ok(Json(CallbackView {
        producer_group: group,
        url: req.url,
    }))
}

/// Whether `caller` may replace (`new_url`) or remove (`None`) the registration `existing` of
/// `group` (see the module doc).
fn may_change(
    state: &AppState,
    caller: &Caller,
    group: &str,
    existing: Option<&Registered>,
    new_url: Option<&str>,
) -> ApiResult<()> {
    let Some(existing) = existing else {
        return Ok(());
    };
    if state.broker.auth().enabled() {
        let who = caller.principal.user().unwrap_or_default();
        if caller.principal.is_super() || who == existing.owner {
            return Ok(());
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "callback_owned",
            format!("the callback of producer group `{group}` belongs to another user"),
        ));
    }
    match new_url {
        Some(url) if url != existing.url => Err(ApiError::new(
            StatusCode::CONFLICT,
            "callback_exists",
            format!("producer group `{group}` has a callback: remove it first"),
        )),
        _ => Ok(()),
    }
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
    registered: Registered,
) {
    let checker = CallbackChecker {
        runtime,
        client: state.http_client().clone(),
        url,
        retries: state.config.callback_retries,
        backoff: Duration::from_millis(state.config.callback_retry_backoff_ms),
        allowed: Arc::new(state.config.callback_allowed_hosts.clone()),
    };
    state
        .broker
        .transactions()
        .register_checker(group, Arc::new(checker));
    state
        .callbacks()
        .lock()
        .insert(group.to_owned(), registered);
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
    let owners = state.broker.settings().map(OWNERS).unwrap_or_default();
    let allowed = &state.config.callback_allowed_hosts;
    for (group, raw) in stored {
        match (check_group(&group), parse_url(&raw)) {
            (Ok(()), Some(url)) if target::literal_allowed(&url, allowed) => {
                let owner = owners.get(&group).cloned().unwrap_or_default();
                install(
                    state,
                    runtime.clone(),
                    &group,
                    url,
                    Registered { url: raw, owner },
                );
            }
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
    let url = state.callbacks().lock().get(&group).map(|r| r.url.clone());
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
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    let Some(existing) = state.callbacks().lock().get(&group).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "callback_not_found",
            format!("producer group `{group}` has no callback"),
        ));
    };
    may_change(&state, &caller, &group, Some(&existing), None)?;
    let settings = state.broker.settings();
    settings
        .set(SETTINGS, &group, None)
        .map_err(ApiError::from)?;
    settings.set(OWNERS, &group, None).map_err(ApiError::from)?;
    state.callbacks().lock().remove(&group);
    state.broker.transactions().unregister_checker(&group);
    Ok(StatusCode::NO_CONTENT)
}
