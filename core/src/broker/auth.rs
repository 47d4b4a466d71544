//! The `Auth` service of the `Broker`: the one identity and authorization model of every
//! gateway — users (access key / secret key, super or normal, enabled or disabled), their
//! policies (RocketMQ ACL 2.0: resource patterns × actions × allow/deny × source ranges, deny
//! wins) and bearer tokens; authentication of each protocol's credentials; the authorization
//! decision every gateway asks for and answers in its own protocol's terms.
//!
//! State: `crate::auth::AuthState` (KV namespaces `auth.users`, `auth.policies`,
//! `auth.tokens`). Audit: user, policy and token changes and authentication failures are
//! logged on the tracing target `audit` (never a secret, token or signature).
//!
//! Revocation reaches open connections: a gateway that keeps a principal for a connection
//! waits on [`Auth::invalidated`] beside its socket and closes the connection when it
//! completes — when the principal's user is disabled, deleted or changed, or the token that
//! proved it is revoked or expires (`auth/validity.rs` has the rules). The future wakes on the
//! generation every user update, deletion and token revocation bumps ([`Auth::generation`]),
//! and at the token's expiry by the broker's clock (a tokio timer set from `now_ms`, checked
//! again by the clock when it fires): no polling.
//!
//! Who calls it: gateways (authenticate, authorize, wait for invalidation) and the admin
//! surfaces (users, policies, tokens). Concurrency: see `auth/state.rs`.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::watch;

use super::Broker;
use crate::auth::{
    Action, Credentials, Invalidation, IssuedToken, PolicyEntry, Principal, Resource, TokenInfo,
    UserInfo, UserKind, UserUpdate,
};
use crate::error::Result;

/// Users, policies, tokens; authentication and authorization (see the module doc).
#[derive(Clone, Copy)]
pub struct Auth<'a> {
    pub(super) broker: &'a Broker,
}

impl std::fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

fn audit<T>(what: &str, subject: &str, r: Result<T>) -> Result<T> {
    match &r {
        Ok(_) => tracing::info!(target: "audit", action = what, subject, "done"),
        Err(e) => tracing::info!(target: "audit", action = what, subject, error = %e, "refused"),
    }
    r
}

impl<'a> Auth<'a> {
    fn state(self) -> &'a crate::auth::AuthState {
        &self.broker.inner.auth
    }

    fn now(self) -> i64 {
        self.broker.inner.clock.now_ms()
    }

    /// Whether authentication is on (`auth.enabled`). Off, every request is allowed and
    /// credentials are not checked.
    pub fn enabled(self) -> bool {
        self.state().enabled()
    }

    /// Creates a user.
    ///
    /// # Errors
    /// [`crate::Error::IllegalField`] for a bad access or secret key, [`crate::Error::UserExists`],
    /// [`crate::Error::InvalidArgument`] past `auth.max_users`, KV faults.
    pub fn create_user(self, access_key: &str, secret_key: &str, kind: UserKind) -> Result<()> {
        self.broker.check_master("creating a user")?;
        let r = self
            .state()
            .create_user(access_key, secret_key, kind, self.now());
        audit("user.create", access_key, r)
    }

    /// Changes a user's secret, kind or status.
    ///
    /// # Errors
    /// [`crate::Error::UserNotFound`], a bad secret, KV faults.
    pub fn update_user(self, access_key: &str, change: UserUpdate) -> Result<()> {
        self.broker.check_master("changing a user")?;
        audit(
            "user.update",
            access_key,
            self.state().update_user(access_key, change),
        )
    }

    /// Deletes a user with its policy and tokens.
    ///
    /// # Errors
    /// [`crate::Error::UserNotFound`], KV faults.
    pub fn delete_user(self, access_key: &str) -> Result<()> {
        self.broker.check_master("deleting a user")?;
        audit(
            "user.delete",
            access_key,
            self.state().delete_user(access_key),
        )
    }

    /// Every user (no secrets), by access key.
    pub fn users(self) -> Vec<UserInfo> {
        self.state().users()
    }

    /// Replaces a user's policy.
    ///
    /// # Errors
    /// [`crate::Error::UserNotFound`], a policy out of bounds, KV faults.
    pub fn set_policy(self, access_key: &str, entries: Vec<PolicyEntry>) -> Result<()> {
        self.broker.check_master("changing a policy")?;
        audit(
            "policy.set",
            access_key,
            self.state().set_policy(access_key, entries),
        )
    }

    /// A user's policy (empty if none was set).
    ///
    /// # Errors
    /// [`crate::Error::UserNotFound`].
    pub fn policy(self, access_key: &str) -> Result<Vec<PolicyEntry>> {
        self.state().policy(access_key)
    }

    /// Issues a bearer token for a user, valid for `ttl` (default `auth.token_ttl_ms`). The
    /// token is in the answer only; the broker keeps its hash.
    ///
    /// # Errors
    /// [`crate::Error::UserNotFound`], a lifetime out of range, too many live tokens, KV faults.
    pub fn issue_token(self, access_key: &str, ttl: Option<Duration>) -> Result<IssuedToken> {
        self.broker.check_master("issuing a token")?;
        let ttl_ms = ttl.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let r = self.state().issue_token(access_key, ttl_ms, self.now());
        audit("token.issue", access_key, r)
    }

    /// Revokes the token with this id.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] for an unknown id, KV faults.
    pub fn revoke_token(self, id: &str) -> Result<()> {
        self.broker.check_master("revoking a token")?;
        audit("token.revoke", id, self.state().revoke_token(id))
    }

    /// Tokens (never the tokens themselves), of one user or of all.
    pub fn tokens(self, access_key: Option<&str>) -> Vec<TokenInfo> {
        self.state().tokens(access_key)
    }

    /// Checks a credential and answers who it proves, for a caller whose address is unknown or
    /// in-process (never rate limited; gateways use [`Auth::authenticate_from`]).
    ///
    /// # Errors
    /// [`crate::Error::Unauthenticated`].
    pub fn authenticate(self, credentials: Credentials<'_>) -> Result<Principal> {
        self.authenticate_from(credentials, None)
    }

    /// Checks a credential from `source` and answers who it proves. Failures are audited
    /// (without the credential) and counted per source: past `auth.failure_burst` failures a
    /// source is refused unchecked until its bucket refills (`auth/limiter.rs`).
    ///
    /// # Errors
    /// [`crate::Error::Unauthenticated`].
    pub fn authenticate_from(
        self,
        credentials: Credentials<'_>,
        source: Option<IpAddr>,
    ) -> Result<Principal> {
        let now = self.now();
        let limiter = self.state().limiter();
        if !limiter.allows(source, now) {
            tracing::warn!(target: "audit", action = "authenticate", source = ?source, "refused: too many failures from this source");
            return Err(crate::Error::Unauthenticated(
                "too many failed authentications from this address; retry later".into(),
            ));
        }
        let r = self.state().authenticate(credentials, now);
        if let Err(e) = &r {
            limiter.failed(source, now);
            let kind = match credentials {
                Credentials::Secret { access_key, .. } => format!("secret of `{access_key}`"),
                Credentials::Token(_) => "token".into(),
                Credentials::Certificate(subject) => format!("certificate of `{subject}`"),
                Credentials::Signature { .. } => "signature".into(),
            };
            tracing::warn!(target: "audit", action = "authenticate", credential = %kind, source = ?source, error = %e, "refused");
        }
        r
    }

    /// Whether `who` may do `action` on `resource` from `source` (see the module doc).
    ///
    /// # Errors
    /// [`crate::Error::Unauthenticated`] for an anonymous principal while authentication is
    /// on, [`crate::Error::Denied`] when the policy does not allow it.
    pub fn authorize(
        self,
        who: &Principal,
        resource: &Resource,
        action: Action,
        source: Option<IpAddr>,
    ) -> Result<()> {
        self.authorize_any(who, std::slice::from_ref(resource), action, source)
    }

    /// Whether `who` may do `action` on the one thing `resources` name in several ways — an
    /// MQTT topic (`Resource::mqtt_topic`) and the RocketMQ topic it is stored in, say — from
    /// `source`: allowed when an `Allow` entry applies to any of them and no `Deny` entry to
    /// any. `MqttTopic:` patterns substitute `${username}` and `${clientid}` from `who`
    /// (`Principal::with_client_id`).
    ///
    /// # Errors
    /// As [`Auth::authorize`]; an empty `resources` is denied.
    pub fn authorize_any(
        self,
        who: &Principal,
        resources: &[Resource],
        action: Action,
        source: Option<IpAddr>,
    ) -> Result<()> {
        let r = self.state().authorize(who, resources, action, source);
        if let Err(e) = &r {
            tracing::info!(target: "audit", action = "authorize", user = who.user().unwrap_or("-"), error = %e, "refused");
        }
        r
    }

    /// Whether `who` is still what it was proven to be: its user exists, is enabled and of the
    /// same kind, the secret key that proved it is unchanged, and the token that proved it is
    /// neither revoked nor expired (by the broker's clock). Always true with authentication
    /// off, and for a principal without a user.
    pub fn still_valid(self, who: &Principal) -> bool {
        self.invalidation(who).is_none()
    }

    /// Why `who` is no longer valid (see [`Auth::still_valid`]); `None` while it is.
    pub fn invalidation(self, who: &Principal) -> Option<Invalidation> {
        self.state().invalidation(who, self.now())
    }

    /// The generation of users and tokens: it changes on every user update (secret, kind,
    /// status), user deletion and token revocation — when a held principal may have stopped
    /// being valid. [`Auth::invalidated`] is built on it.
    pub fn generation(self) -> watch::Receiver<u64> {
        self.state().changes()
    }

    /// Completes, with the reason, once `who` stops being valid ([`Auth::still_valid`]): at
    /// once if it already is not, after the change of users or tokens that ends it, or at the
    /// expiry of the token that proved it (a tokio timer, so paused test time drives it, set
    /// from the broker's clock and checked against it when it fires). Never completes with
    /// authentication off. What a gateway awaits beside a connection's socket, to close it.
    pub fn invalidated(
        self,
        who: &Principal,
    ) -> impl Future<Output = Invalidation> + Send + 'static {
        let broker = self.broker.clone();
        let who = who.clone();
        // Subscribed before the first check: no change can fall in between.
        let mut generation = self.generation();
        let enabled = self.enabled();
        async move {
            if !enabled {
                return std::future::pending().await;
            }
            loop {
                generation.borrow_and_update();
                let auth = broker.auth();
                if let Some(why) = auth.invalidation(&who) {
                    return why;
                }
                let expiry = who.expires_ms().map(|at| {
                    let left = u64::try_from(at.saturating_sub(auth.now())).unwrap_or(0);
                    tokio::time::Instant::now() + Duration::from_millis(left)
                });
                let expired = async {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = generation.changed() => {
                        if r.is_err() {
                            // The broker is gone: nothing will change any more.
                            std::future::pending::<()>().await;
                        }
                    }
                    () = expired => {}
                }
            }
        }
    }
}
