//! The `rocketgate.cluster.v1.AccessAdmin` service: users, policies and tokens for
//! `rocketgate admin user …` / `token …` (docs/security.md), over the core's `Auth` service.
//!
//! Owns: decoding each request (enums, policy entries parsed by core's model), one call to the
//! core, encoding the answer. With authentication on every call needs a super user (managing
//! users is granting permissions: a normal user must not be able to grant itself more);
//! `UNAUTHENTICATED` / `PERMISSION_DENIED` otherwise. Secrets and tokens are never returned,
//! except a new token once.
//!
//! Requests are at most [`MAX_REQUEST_BYTES`] on the wire (`OUT_OF_RANGE` beyond, before
//! decoding); status messages are cut to `status::MAX_MESSAGE_BYTES`.
//!
//! No state besides the broker handle.

use std::time::Duration;

use rocketgate_core::auth::{
    Action, Decision, PolicyEntry, TokenInfo, UserInfo, UserKind, UserStatus, UserUpdate,
};
use rocketgate_core::{Broker, ErrorKind};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::access_admin_server::{AccessAdmin, AccessAdminServer};
use tonic::{Request, Response, Status};

use crate::auth::CoreAuthenticator;
use crate::status::{bounded_message, RequestError};

type Reply<T> = Result<Response<T>, Status>;

/// The largest request the service decodes (256 KiB: a policy of 256 entries of 1 KiB each).
/// Requests are decoded before the caller is authenticated, and prost turns every two bytes
/// of an empty `PolicyEntry` into an 80-byte element: at tonic's default of 4 MiB, one
/// unsigned `SetPolicy` made the broker allocate 168 MB (a fuzzing finding, issue 14); at this
/// limit, 10 MB at most.
pub const MAX_REQUEST_BYTES: usize = 256 << 10;

/// The access service over one broker.
#[derive(Debug, Clone)]
pub struct AccessAdminService {
    broker: Broker,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Status {
    Status::from(RequestError::InvalidField {
        field,
        reason: reason.into(),
    })
}

fn core(e: rocketgate_core::Error) -> Status {
    Status::from(RequestError::Core(e))
}

fn user(u: UserInfo) -> pb::User {
    pb::User {
        access_key: u.access_key,
        kind: match u.kind {
            UserKind::Super => pb::UserKind::Super,
            UserKind::Normal => pb::UserKind::Normal,
        } as i32,
        status: match u.status {
            UserStatus::Enabled => pb::UserStatus::Enabled,
            UserStatus::Disabled => pb::UserStatus::Disabled,
        } as i32,
        created_ms: u.created_ms,
    }
}

fn token(t: TokenInfo) -> pb::Token {
    pb::Token {
        id: t.id,
        access_key: t.access_key,
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
    }
}

fn kind(value: i32) -> Result<Option<UserKind>, Status> {
    match pb::UserKind::try_from(value) {
        Ok(pb::UserKind::Unspecified) => Ok(None),
        Ok(pb::UserKind::Normal) => Ok(Some(UserKind::Normal)),
        Ok(pb::UserKind::Super) => Ok(Some(UserKind::Super)),
        Err(_) => Err(invalid("kind", format!("unknown value {value}"))),
    }
}

fn status(value: i32) -> Result<Option<UserStatus>, Status> {
    match pb::UserStatus::try_from(value) {
        Ok(pb::UserStatus::Unspecified) => Ok(None),
        Ok(pb::UserStatus::Enabled) => Ok(Some(UserStatus::Enabled)),
        Ok(pb::UserStatus::Disabled) => Ok(Some(UserStatus::Disabled)),
        Err(_) => Err(invalid("status", format!("unknown value {value}"))),
    }
}

fn entry(e: pb::PolicyEntry, i: usize) -> Result<PolicyEntry, Status> {
    let field = |what: &str, err: rocketgate_core::Error| {
        invalid("entries", format!("entry {i}, {what}: {err}"))
    };
    Ok(PolicyEntry {
        resources: e
            .resources
            .iter()
            .map(|r| r.parse().map_err(|err| field("resources", err)))
            .collect::<Result<_, _>>()?,
        actions: e
            .actions
            .iter()
            .map(|a| a.parse().map_err(|err| field("actions", err)))
            .collect::<Result<_, _>>()?,
        decision: match pb::Decision::try_from(e.decision) {
            Ok(pb::Decision::Allow) => Decision::Allow,
            Ok(pb::Decision::Deny) => Decision::Deny,
            _ => {
                return Err(invalid(
                    "entries",
                    format!("entry {i}: decision is ALLOW or DENY"),
                ))
            }
        },
        sources: e
            .sources
            .iter()
            .map(|s| s.parse().map_err(|err| field("sources", err)))
            .collect::<Result<_, _>>()?,
    })
}

fn policy(access_key: String, entries: Vec<PolicyEntry>) -> pb::Policy {
    pb::Policy {
        access_key,
        entries: entries
            .into_iter()
            .map(|e| pb::PolicyEntry {
                resources: e.resources.iter().map(ToString::to_string).collect(),
                actions: e.actions.iter().map(ToString::to_string).collect(),
                decision: match e.decision {
                    Decision::Allow => pb::Decision::Allow,
                    Decision::Deny => pb::Decision::Deny,
                } as i32,
                sources: e.sources.iter().map(ToString::to_string).collect(),
            })
            .collect(),
    }
}

impl AccessAdminService {
    /// A service managing `broker`'s users.
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }

    /// The tonic server for this service, decoding requests up to [`MAX_REQUEST_BYTES`]
    /// (larger ones are refused with `OUT_OF_RANGE` before decoding).
    pub fn into_server(self) -> AccessAdminServer<Self> {
        AccessAdminServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Lets the call through if auth is off or its caller is a super user.
    fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let auth = self.broker.auth();
        if !auth.enabled() {
            return Ok(());
        }
        let who =
            crate::auth::authenticate_request(&CoreAuthenticator::new(self.broker.clone()), req)
                .map_err(|e| Status::unauthenticated(bounded_message(e.to_string())))?;
        if who.is_super() {
            return Ok(());
        }
        let source = req.remote_addr().map(|a| a.ip());
        // Audited as a refusal; the decision itself is "super users only".
        let _ = auth.authorize(
            &who,
            &rocketgate_core::auth::Resource::cluster(),
            Action::All,
            source,
        );
        Err(Status::permission_denied(
            "users, policies and tokens are managed by super users only",
        ))
    }

    fn user_info(&self, access_key: &str) -> Result<pb::User, Status> {
        self.broker
            .auth()
            .users()
            .into_iter()
            .find(|u| u.access_key == access_key)
            .map(user)
            .ok_or_else(|| core(rocketgate_core::Error::UserNotFound(access_key.to_owned())))
    }
}

#[tonic::async_trait]
impl AccessAdmin for AccessAdminService {
    async fn create_user(&self, req: Request<pb::CreateUserRequest>) -> Reply<pb::User> {
        self.admit(&req)?;
        let r = req.into_inner();
        let k = kind(r.kind)?.unwrap_or(UserKind::Normal);
        self.broker
            .auth()
            .create_user(&r.access_key, &r.secret_key, k)
            .map_err(core)?;
        Ok(Response::new(self.user_info(&r.access_key)?))
    }

    async fn update_user(&self, req: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        self.admit(&req)?;
        let r = req.into_inner();
        let change = UserUpdate {
            secret_key: (!r.secret_key.is_empty()).then_some(r.secret_key),
            kind: kind(r.kind)?,
            status: status(r.status)?,
        };
        self.broker
            .auth()
            .update_user(&r.access_key, change)
            .map_err(core)?;
        Ok(Response::new(self.user_info(&r.access_key)?))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        self.admit(&req)?;
        self.broker
            .auth()
            .delete_user(&req.into_inner().access_key)
            .map_err(core)?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        self.admit(&req)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: self.broker.auth().users().into_iter().map(user).collect(),
        }))
    }

    async fn set_policy(&self, req: Request<pb::SetPolicyRequest>) -> Reply<pb::Policy> {
        self.admit(&req)?;
        let r = req.into_inner();
        let entries = r
            .entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| entry(e, i))
            .collect::<Result<Vec<_>, _>>()?;
        let auth = self.broker.auth();
        auth.set_policy(&r.access_key, entries).map_err(core)?;
        let now = auth.policy(&r.access_key).map_err(core)?;
        Ok(Response::new(policy(r.access_key, now)))
    }

    async fn get_policy(&self, req: Request<pb::GetPolicyRequest>) -> Reply<pb::Policy> {
        self.admit(&req)?;
        let ak = req.into_inner().access_key;
        let entries = self.broker.auth().policy(&ak).map_err(core)?;
        Ok(Response::new(policy(ak, entries)))
    }

    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Reply<pb::IssueTokenResponse> {
        self.admit(&req)?;
        let r = req.into_inner();
        let ttl = (r.ttl_ms > 0).then(|| Duration::from_millis(r.ttl_ms));
        let issued = self
            .broker
            .auth()
            .issue_token(&r.access_key, ttl)
            .map_err(core)?;
        Ok(Response::new(pb::IssueTokenResponse {
            token: issued.token,
            info: Some(token(issued.info)),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Reply<pb::RevokeTokenResponse> {
        self.admit(&req)?;
        self.broker
            .auth()
            .revoke_token(&req.into_inner().id)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidArgument => Status::not_found(bounded_message(e.to_string())),
                _ => core(e),
            })?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Reply<pb::ListTokensResponse> {
        self.admit(&req)?;
        let ak = req.into_inner().access_key;
        let filter = (!ak.is_empty()).then_some(ak.as_str());
        Ok(Response::new(pb::ListTokensResponse {
            tokens: self
                .broker
                .auth()
                .tokens(filter)
                .into_iter()
                .map(token)
                .collect(),
        }))
    }
}
