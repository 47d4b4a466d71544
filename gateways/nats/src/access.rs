//! Who a NATS client is and what it may do, asked of the core's one identity model
//! (`Broker::auth()`, docs/security.md).
//!
//! - Core authentication on: INFO says `auth_required`; CONNECT's `user` is a user's access
//!   key and `pass` its secret key, or `auth_token` (or a `pass` of a token's exact shape,
//!   `rgt_` + 64 hex digits) is a bearer token the core issued (with `user` empty or the
//!   token's user). Without credentials, a client certificate the TLS listener verified names
//!   the user by its common name. Anything else: `-ERR 'Authorization Violation'`, closed.
//! - Core authentication off: every client is the anonymous principal (credentials are
//!   ignored), which the core allows everything — as the MQTT gateway with anonymous access.
//! - Publish needs `Pub` on `Topic:<first token>`; a subscription `Sub` on `Topic:<first
//!   token>` (`Topic:*` for a wildcard first token) and on the group it reads through
//!   (`Group:nats-c-…` for plain subscriptions, `Group:nats-q-…` for queue groups;
//!   `Group:nats-*` covers both); a wildcard subscription reads a topic only if `Sub` on it
//!   is allowed.
//!
//! Must not touch sockets. Never logs a password or token. No locks of its own.

use std::future::Future;
use std::net::IpAddr;

use rocketgate_core::auth::{Action, Credentials, Invalidation, Principal, Resource, TOKEN_PREFIX};
use rocketgate_core::Broker;

use crate::parse::ConnectOptions;

/// What one connection may do.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    broker: Broker,
    who: Principal,
    source: Option<IpAddr>,
    enabled: bool,
}

fn token_shaped(s: &str) -> bool {
    s.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Authenticates a CONNECT (see the module doc).
///
/// # Errors
/// `()` for "Authorization Violation" (counted, and audited by the core).
pub(crate) fn authenticate(
    broker: &Broker,
    options: &ConnectOptions,
    certificate: Option<&str>,
    source: Option<IpAddr>,
) -> Result<Access, ()> {
    let auth = broker.auth();
    let enabled = auth.enabled();
    let ok = |who| Access {
        broker: broker.clone(),
        who,
        source,
        enabled,
    };
    if !enabled {
        return Ok(ok(Principal::anonymous()));
    }
    let refused = || {
        metrics::counter!("rocketgate_auth_failures_total", "gateway" => "nats").increment(1);
    };
    let user = options.user.as_deref().unwrap_or("");
    let pass = options.pass.as_deref().unwrap_or("");
    let token = options
        .auth_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .or_else(|| token_shaped(pass).then_some(pass));
    let found = if let Some(token) = token {
        auth.authenticate_from(Credentials::Token(token), source)
            .ok()
            .filter(|p| user.is_empty() || p.user() == Some(user))
    } else if !pass.is_empty() {
        auth.authenticate_from(
            Credentials::Secret {
                access_key: user,
                secret_key: pass,
            },
            source,
        )
        .ok()
    } else if let Some(cert) = certificate.filter(|c| user.is_empty() || user == *c) {
        auth.authenticate_from(Credentials::Certificate(cert), source)
            .ok()
    } else {
        None
    };
    match found {
        Some(p) => Ok(ok(p)),
        None => {
            refused();
            Err(())
        }
    }
}

impl Access {
    /// The core (the gateway's handle).
    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The principal.
    pub(crate) fn principal(&self) -> &Principal {
        &self.who
    }

    /// Completes once the credentials stop being valid (never with authentication off).
    pub(crate) fn invalidated(&self) -> impl Future<Output = Invalidation> + Send + 'static {
        self.broker.auth().invalidated(&self.who)
    }

    fn allowed(&self, resource: Resource, action: Action) -> bool {
        !self.enabled
            || self
                .broker
                .auth()
                .authorize(&self.who, &resource, action, self.source)
                .is_ok()
    }

    /// Whether the client may publish to RocketMQ topic `topic`.
    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        self.allowed(Resource::topic(topic), Action::Pub)
    }

    /// Whether the client may subscribe through `group` to `topic` (`None`: every topic).
    pub(crate) fn may_subscribe(&self, topic: Option<&str>, group: &str) -> bool {
        self.allowed(Resource::topic(topic.unwrap_or("*")), Action::Sub)
            && self.allowed(Resource::group(group), Action::Sub)
    }

    /// Whether a wildcard subscription may read `topic`.
    pub(crate) fn may_read(&self, topic: &str) -> bool {
        self.allowed(Resource::topic(topic), Action::Sub)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn only_a_token_s_exact_shape_is_a_token() {
        assert!(super::token_shaped(&format!("rgt_{}", "ab12".repeat(16))));
        assert!(!super::token_shaped("rgt_short"));
        assert!(!super::token_shaped("secret"));
    }
}
