//! Access administration under `/v1/auth`: users (create, list, show, update, delete), their
//! policies (show, replace) and bearer tokens (issue, list, revoke) — what `rocketgate admin
//! user …` / `token …` do over gRPC, over the core's `Auth` service.
//!
//! Invariants: with authentication on, only a super user gets here (the route's rule in
//! `access.rs`, asked again by each handler: managing users is granting permissions); secrets
//! are read, never answered; a new token is answered once and only its hash is kept. Every
//! change is audited by the core. No state of its own.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rocketgate_core::auth::{UserKind, UserStatus, UserUpdate};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Path};
use crate::model::{
    CreateUser, IssueToken, IssuedTokenView, PolicyView, TokenList, UpdateUser, UserList, UserView,
};
use crate::state::AppState;

fn user(state: &AppState, access_key: &str) -> ApiResult<UserView> {
    state
        .broker
        .auth()
        .users()
        .into_iter()
        .find(|u| u.access_key == access_key)
        .map(UserView::from)
        .ok_or_else(|| rocketgate_core::Error::UserNotFound(access_key.to_owned()).into())
}

/// Lists users (never their secrets).
#[utoipa::path(get, path = "/v1/auth/users", tag = "access",
    responses((status = 200, description = "Users", body = UserList)))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<UserList>> {
    caller.need_super(&state)?;
    Ok(Json(UserList {
        users: state
            .broker
            .auth()
            .users()
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// Creates a user.
#[utoipa::path(post, path = "/v1/auth/users", tag = "access",
    request_body = CreateUser,
    responses((status = 201, description = "Created", body = UserView)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    caller.need_super(&state)?;
    let kind = if req.superuser {
        UserKind::Super
    } else {
        UserKind::Normal
    };
    state
        .broker
        .auth()
        .create_user(&req.access_key, &req.secret_key, kind)?;
    Ok((StatusCode::CREATED, Json(user(&state, &req.access_key)?)))
}

/// Shows a user.
#[utoipa::path(get, path = "/v1/auth/users/{access_key}", tag = "access",
    params(("access_key" = String, Path, description = "Access key")),
    responses((status = 200, description = "The user", body = UserView)))]
pub(crate) async fn show_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(access_key): Path<String>,
) -> ApiResult<Json<UserView>> {
    caller.need_super(&state)?;
    Ok(Json(user(&state, &access_key)?))
}

/// Changes a user's secret, kind or status.
#[utoipa::path(patch, path = "/v1/auth/users/{access_key}", tag = "access",
    params(("access_key" = String, Path, description = "Access key")),
    request_body = UpdateUser,
    responses((status = 200, description = "The changed user", body = UserView)))]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(access_key): Path<String>,
    JsonBody(req): JsonBody<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    caller.need_super(&state)?;
    let change = UserUpdate {
        secret_key: req.secret_key,
        kind: req
            .superuser
            .map(|s| if s { UserKind::Super } else { UserKind::Normal }),
        status: req.enabled.map(|e| {
            if e {
                UserStatus::Enabled
            } else {
                UserStatus::Disabled
            }
        }),
    };
    state.broker.auth().update_user(&access_key, change)?;
    Ok(Json(user(&state, &access_key)?))
}

/// Deletes a user with its policy and tokens.
#[utoipa::path(delete, path = "/v1/auth/users/{access_key}", tag = "access",
    params(("access_key" = String, Path, description = "Access key")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(access_key): Path<String>,
) -> ApiResult<StatusCode> {
    caller.need_super(&state)?;
    state.broker.auth().delete_user(&access_key)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's policy (empty when none was set: nothing allowed).
#[utoipa::path(get, path = "/v1/auth/users/{access_key}/policy", tag = "access",
    params(("access_key" = String, Path, description = "Access key")),
    responses((status = 200, description = "The policy", body = PolicyView)))]
pub(crate) async fn policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(access_key): Path<String>,
) -> ApiResult<Json<PolicyView>> {
    caller.need_super(&state)?;
    Ok(Json(PolicyView {
        entries: state.broker.auth().policy(&access_key)?,
    }))
}

/// Replaces a user's policy.
#[utoipa::path(put, path = "/v1/auth/users/{access_key}/policy", tag = "access",
    params(("access_key" = String, Path, description = "Access key")),
    request_body = PolicyView,
    responses((status = 200, description = "The new policy", body = PolicyView)))]
pub(crate) async fn set_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(access_key): Path<String>,
    JsonBody(req): JsonBody<PolicyView>,
) -> ApiResult<Json<PolicyView>> {
    caller.need_super(&state)?;
    state.broker.auth().set_policy(&access_key, req.entries)?;
    Ok(Json(PolicyView {
        entries: state.broker.auth().policy(&access_key)?,
    }))
}

/// Issues a bearer token for a user: answered once, only its hash is kept.
#[utoipa::path(post, path = "/v1/auth/users/{access_key}/tokens", tag = "access",
    params(("access_key" = String, Path, description = "Access key")),
    request_body = IssueToken,
    responses((status = 201, description = "The token (shown once)", body = IssuedTokenView)))]
pub(crate) async fn issue_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(access_key): Path<String>,
    JsonBody(req): JsonBody<IssueToken>,
) -> ApiResult<(StatusCode, Json<IssuedTokenView>)> {
    caller.need_super(&state)?;
    let issued = state
        .broker
        .auth()
        .issue_token(&access_key, req.ttl_ms.map(Duration::from_millis))?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedTokenView {
            token: issued.token,
            info: issued.info.into(),
        }),
    ))
}

/// A user's tokens (ids, never the tokens).
#[utoipa::path(get, path = "/v1/auth/users/{access_key}/tokens", tag = "access",
    params(("access_key" = String, Path, description = "Access key")),
    responses((status = 200, description = "Tokens", body = TokenList)))]
pub(crate) async fn user_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(access_key): Path<String>,
) -> ApiResult<Json<TokenList>> {
    caller.need_super(&state)?;
    user(&state, &access_key)?;
    Ok(Json(TokenList {
        tokens: state
            .broker
            .auth()
            .tokens(Some(&access_key))
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// Every user's tokens (ids, never the tokens).
#[utoipa::path(get, path = "/v1/auth/tokens", tag = "access",
    responses((status = 200, description = "Tokens", body = TokenList)))]
pub(crate) async fn tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TokenList>> {
    caller.need_super(&state)?;
    Ok(Json(TokenList {
        tokens: state
            .broker
            .auth()
            .tokens(None)
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// Revokes a token by id.
#[utoipa::path(delete, path = "/v1/auth/tokens/{id}", tag = "access",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.need_super(&state)?;
    if !state.broker.auth().tokens(None).iter().any(|t| t.id == id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "token_not_found",
            format!("no token with id `{id}`"),
        ));
    }
    state
        .broker
        .auth()
        .revoke_token(&id)
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
