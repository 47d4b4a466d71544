//! Authentication and authorization of every request through the core's `Auth` service, when
//! `auth.enabled` is on: the credentials (`Authorization: Bearer rgt_…`, a core token, or
//! `Authorization: Basic base64(ak:sk)`; on the WebSocket upgrade also `?access_token=rgt_…`,
//! since browsers cannot set headers there) become a core [`Credentials`]; the route's
//! [`Rule`](crate::access::Rule) is asked of the core with the caller's address; the request
//! then carries its [`Caller`] for the handlers that ask for more (a body's topic, a handle's
//! topic).
//!
//! Refusals: no or bad credentials → `401 unauthenticated` with `WWW-Authenticate` (the same
//! "invalid credentials" whether or not the user exists); a policy that does not allow it →
//! `403 forbidden`. With authentication off every request is the anonymous caller, allowed
//! everything, and nothing is checked (behaviour unchanged).
//!
//! Owns no state; never logs a credential (the core audits failures without them).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rocketgate_core::auth::{Action, Credentials, Principal, Resource};

use crate::access::{rule, Rule};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Who sent a request, as authenticated, and from where.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The principal (anonymous with authentication off).
    pub principal: Principal,
    /// The peer address.
    pub source: Option<IpAddr>,
}

impl Caller {
    /// Asks the core for one of `actions` on `resource`.
    ///
    /// # Errors
    /// `401` for an anonymous caller while authentication is on, `403` when refused.
    pub(crate) fn need(
        &self,
        state: &AppState,
        resource: &Resource,
        actions: &[Action],
    ) -> ApiResult<()> {
        let auth = state.broker.auth();
        if !auth.enabled() {
            return Ok(());
        }
        let mut last = None;
        for action in actions {
            match auth.authorize(&self.principal, resource, *action, self.source) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(ApiError::from(e)),
            None => Ok(()),
        }
    }

    /// Asks for `Sub` on the topic of a receipt handle of `group` (a handle that does not
    /// decode is left to the core, which refuses it).
    ///
    /// # Errors
    /// As [`Caller::need`].
    pub(crate) fn need_handle(&self, state: &AppState, group: &str, handle: &str) -> ApiResult<()> {
        if !state.broker.auth().enabled() {
            return Ok(());
        }
        match state.broker.consumer().receipt_topic(group, handle) {
            Ok(topic) => self.need(state, &Resource::topic(topic), &[Action::Sub]),
            Err(_) => Ok(()),
        }
    }

    /// Whether the caller may manage users, policies and tokens: a super user (anyone with
    /// authentication off).
    ///
    /// # Errors
    /// `403` for any other user.
    pub(crate) fn need_super(&self, state: &AppState) -> ApiResult<()> {
        if !state.broker.auth().enabled() || self.principal.is_super() {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "only a super user may manage users, policies and tokens",
        ))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller {
                principal: Principal::anonymous(),
                source: source(parts),
            }))
    }
}

/// The shared state whose broker handle carries the request's caller (its principal and
/// address, [`rocketgate_core::Broker::as_caller`]): what the data-plane handlers (consume)
/// use, so that core's `Create` check of a group created on first use sees who asks. With
/// authentication off it is the shared state unchanged. Admin routes keep the plain handle:
/// their rule (`Cluster:*`) is their permission.
pub(crate) struct Scoped(pub(crate) AppState);

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !state.broker.auth().enabled() {
            return Ok(Self(state.clone()));
        }
        let caller = Caller::from_request_parts(parts, state).await?;
        let mut scoped = state.clone();
        scoped.broker = state.broker.as_caller(rocketgate_core::Caller::client(
            Some(caller.principal),
            caller.source,
        ));
        Ok(Self(scoped))
    }
}

fn source(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The credential of a request: its `Authorization` header, or on the WebSocket route its
/// `access_token` query parameter. `Err` for a header that is there but unusable.
/// The common name of the client certificate the TLS handshake verified (mTLS), put in each
/// request of the connection by the server; without an `Authorization` header it names the
/// user (`Credentials::Certificate`).
#[derive(Debug, Clone)]
pub(crate) struct PeerCertificate(pub(crate) String);

fn credentials<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    websocket: bool,
    basic: &'a mut String,
) -> Result<Option<Credentials<'a>>, ApiError> {
    let bad = || ApiError::unauthenticated("invalid credentials");
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| bad())?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Some(Credentials::Token(rest)));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| bad())?;
            *basic = String::from_utf8(decoded).map_err(|_| bad())?;
            let (access_key, secret_key) = basic.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credentials::Secret {
                access_key,
                secret_key,
            }));
        }
        return Err(ApiError::unauthenticated(
            "unsupported authorization scheme: use Bearer or Basic",
        ));
    }
    if websocket {
        let token = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("access_token=").filter(|t| !t.is_empty()));
        if let Some(t) = token {
            return Ok(Some(Credentials::Token(t)));
        }
    }
    Ok(None)
}

/// The middleware: authenticates and authorizes by the route's rule (see the module doc).
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match admit(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn admit(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    admit_checked(state, req).await.inspect_err(|e| {
        // One line per refused request, with the address; never the credential (the core
        // audits the failure too, on the `audit` target).
        if e.status == axum::http::StatusCode::UNAUTHORIZED {
            tracing::info!(peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()), route = route.as_deref().unwrap_or("-"), reason = %e.detail, "HTTP authentication failed");
        }
    })
}

async fn admit_checked(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let src = source(&parts);
    let auth = state.broker.auth();
    if !auth.enabled() {
        parts.extensions.insert(Caller {
            principal: Principal::anonymous(),
            source: src,
        });
        return Ok(Request::from_parts(parts, body));
    }
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let params = RawPathParams::from_request_parts(&mut parts, state)
        .await
        .ok();
    let param = |name: &str| {
        params
            .as_ref()
            .and_then(|p| {
                p.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_owned())
            })
            .unwrap_or_default()
    };
    let rule = rule(&parts.method, route.as_deref(), param);
    if matches!(rule, Rule::Public) {
        return Ok(Request::from_parts(parts, body));
    }
    let websocket = route.as_deref() == Some("/v1/ws");
    let mut basic = String::new();
    let certificate = parts.extensions.get::<PeerCertificate>().cloned();
    let found = credentials(&parts.headers, parts.uri.query(), websocket, &mut basic)?
        .or_else(|| certificate.as_ref().map(|c| Credentials::Certificate(&c.0)));
    let principal = match found {
        None => {
            return Err(ApiError::unauthenticated(
                "authentication is required: Authorization: Bearer <token> or Basic <access key:secret key>",
            ))
        }
        Some(c) => auth.authenticate_from(c, src).map_err(|e| match e {
            // "invalid credentials", or "too many failed authentications" from this address.
            rocketgate_core::Error::Unauthenticated(why) => ApiError::unauthenticated(why),
            _ => ApiError::unauthenticated("invalid credentials"),
        })?,
    };
    let caller = Caller {
        principal,
        source: src,
    };
    match rule {
        Rule::Public => {}
        Rule::Super => caller.need_super(state)?,
        Rule::Needs(needs) => {
            for (resource, actions) in &needs {
                caller.need(state, resource, actions)?;
            }
        }
        Rule::Unknown => {
            return Err(ApiError::forbidden("no access rule for this route"));
        }
    }
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, body))
}
