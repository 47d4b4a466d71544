//! Who an MQTT client is and what it may do, asked of the core's one identity model
//! (`Broker::auth()`): the CONNECT's username and password become a core credential and the
//! answer a CONNACK code; every PUBLISH, SUBSCRIBE filter, will, delivery feed and retained
//! message is an authorization question ([`Access`]) about the MQTT topic *and* the RocketMQ
//! topic it is stored in (allowed by either, denied by either: `Auth::authorize_any`), asked
//! with the client's address and, for `MqttTopic:` patterns, its client id.
//!
//! - Core authentication on (`auth.enabled`): the username is a user's access key and the
//!   password its secret key ([`Credentials::Secret`]), or the password is a bearer token the
//!   core issued (`rgt_` + 64 hex digits, [`Credentials::Token`]) and the username is empty or
//!   the access key of the token's user. Without a password, a client certificate the TLS
//!   listener verified against its client CA (mTLS) names the user by its common name
//!   ([`Credentials::Certificate`]), when the username is empty or that same name; a password
//!   wins over the certificate. No credentials: "not authorized" (v5 0x87, 3.1.1 5); wrong
//!   ones: "bad user name or password" (v5 0x86, 3.1.1 4). Never "server unavailable".
//! - The identity holds while the core says it is valid: [`Access::invalidated`] completes
//!   when its user is disabled, deleted or changed, or its token revoked or expired.
//! - Core authentication off: the gateway's own `allow_anonymous` / `users` decide, as before
//!   (`MqttConfig::authenticate_local`; a refusal is "bad user name or password"), and the
//!   client is the anonymous principal, which the core allows everything.
//!
//! What each question names (docs/mqtt.md, "Authorization"):
//! - publish (and the will, at CONNECT and when it goes out): `Pub` on `Topic:<first level>` or
//!   `MqttTopic:<topic name>`;
//! - subscribe: `Sub` on `Topic:<first level>` (`Topic:*` for a wildcard first level) or
//!   `MqttTopic:<filter>`, and `Sub` on the consumer group the subscription reads through
//!   (`mqtt-<client id>`, or `mqtt-share-…` for `$share/…`);
//! - a delivery feed of a wildcard-first-level filter reads one RocketMQ topic `t`: the filter
//!   narrowed to `t` (`#` → `t/#`, `+/x` → `t/x`) is asked for, so a deny on one topic keeps
//!   its feed closed; a retained message is asked for by its own MQTT topic.
//!
//! Must not touch: sockets, sessions. Never logs a password or token (the core audits the
//! refusal without it). Pure but for the core call; no locks of its own.

use std::net::IpAddr;

use std::future::Future;

use rocketgate_core::auth::{Action, Credentials, Invalidation, Principal, Resource, TOKEN_PREFIX};
use rocketgate_core::{Broker, StoredMessage};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Login};

use crate::config::MqttConfig;
use crate::topic::{self, EMPTY_FIRST_LEVEL_TOPIC};

/// What one connection may do: its principal (with its client id) and address, and the core
/// that decides.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    broker: Broker,
    who: Principal,
    source: Option<IpAddr>,
    /// The core's authentication is on (off: everything is allowed, nothing is asked).
    enabled: bool,
}

impl Access {
    /// The access of `who` on the connection of `client_id` from `source`.
    pub(crate) fn new(
        broker: &Broker,
        who: Principal,
        client_id: &str,
        source: Option<IpAddr>,
    ) -> Self {
        Self {
            enabled: broker.auth().enabled(),
            broker: broker.clone(),
            who: who.with_client_id(client_id),
            source,
        }
    }

    /// Completes, with the reason, once the client's credentials stop being valid (never with
    /// the core's authentication off).
    pub(crate) fn invalidated(&self) -> impl Future<Output = Invalidation> + Send + 'static {
        self.broker.auth().invalidated(&self.who)
    }

    fn allowed(&self, resources: &[Resource], action: Action) -> bool {
        !self.enabled
            || self
                .broker
                .auth()
                .authorize_any(&self.who, resources, action, self.source)
                .is_ok()
    }

    /// Whether the client may publish to the MQTT topic `name` (a name that does not map is
    /// refused for what it is elsewhere, not here).
    pub(crate) fn may_publish(&self, name: &str) -> bool {
        let Ok(core) = topic::core_topic_of_name(name) else {
            return true;
        };
        self.allowed(
            &[Resource::topic(core), Resource::mqtt_topic(name)],
            Action::Pub,
        )
    }

    /// Whether the client may subscribe to `filter` (without `$share/…`), stored in the
    /// RocketMQ topic `core` (`None`: a wildcard first level), through `group`.
    pub(crate) fn may_subscribe(&self, core: Option<&str>, filter: &str, group: &str) -> bool {
        self.allowed(
            &[
                Resource::topic(core.unwrap_or("*")),
                Resource::mqtt_topic(filter),
            ],
            Action::Sub,
        ) && self.allowed(&[Resource::group(group)], Action::Sub)
    }

    /// Whether `group` may read the RocketMQ topic `core` for the subscription `filter`
    /// (without `$share/…`): a filter with a wildcard first level is narrowed to `core`.
    pub(crate) fn may_read(&self, group: &str, core: &str, filter: &str) -> bool {
        if !self.enabled {
            return true;
        }
        let (first, rest) = filter.split_once('/').unwrap_or((filter, ""));
        let narrowed: Vec<String> = match first {
            "#" | "+" => {
                // `mqtt_slash` holds `/…` names and its own: both must be readable.
                let levels: &[&str] = if core == EMPTY_FIRST_LEVEL_TOPIC {
                    &["", EMPTY_FIRST_LEVEL_TOPIC]
                } else {
                    &[core]
                };
                levels
                    .iter()
                    .map(|l| match (first, filter.len()) {
                        ("#", _) => format!("{l}/#"),
                        (_, 1) => (*l).to_owned(),
                        _ => format!("{l}/{rest}"),
                    })
                    .collect()
            }
            _ => vec![filter.to_owned()],
        };
        narrowed.iter().all(|f| {
            self.allowed(
                &[Resource::topic(core), Resource::mqtt_topic(f.as_str())],
                Action::Sub,
            )
        }) && self.allowed(&[Resource::group(group)], Action::Sub)
    }

    /// Whether the client may receive the retained message `m` (asked by its MQTT topic).
    pub(crate) fn may_receive(&self, m: &StoredMessage) -> bool {
        self.allowed(
            &[
                Resource::topic(m.topic.as_str()),
                Resource::mqtt_topic(crate::delivery::mqtt_topic(m)),
            ],
            Action::Sub,
        )
    }
}

/// Whether `password` has the shape of a core bearer token (`rgt_` + 64 hex digits).
fn token_shaped(password: &str) -> bool {
    password
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Authenticates a CONNECT's `login` from `source`, over a connection whose TLS handshake
/// verified a client `certificate` with this common name, if any (see the module doc; failures
/// count against the source's budget of failed authentications in the core).
///
/// # Errors
/// The CONNACK code of the refusal: `NotAuthorized` without credentials (core authentication
/// on, or anonymous clients not allowed), `BadUserNamePassword` for wrong ones.
pub(crate) fn authenticate(
    broker: &Broker,
    config: &MqttConfig,
    login: Option<&Login>,
    certificate: Option<&str>,
    source: Option<IpAddr>,
) -> Result<Principal, ConnectReturnCode> {
    let auth = broker.auth();
    let refused = |code| {
        metrics::counter!("rocketgate_auth_failures_total", "gateway" => "mqtt").increment(1);
        Err(code)
    };
    if !auth.enabled() {
        let pair = login.map(|l| (l.username.as_str(), l.password.as_str()));
        // As before the core had users: one code for both refusals.
        return if config.authenticate_local(pair) {
            Ok(Principal::anonymous())
        } else {
            refused(ConnectReturnCode::BadUserNamePassword)
        };
    }
    let no_password = login.is_none_or(|l| l.password.is_empty());
    if let Some(cert) = certificate.filter(|_| no_password) {
        let name = login.map_or("", |l| l.username.as_str());
        if name.is_empty() || name == cert {
            return match auth.authenticate_from(Credentials::Certificate(cert), source) {
                Ok(p) => Ok(p),
                Err(_) => refused(ConnectReturnCode::BadUserNamePassword),
            };
        }
    }
    let Some(l) = login else {
        return refused(ConnectReturnCode::NotAuthorized);
    };
    let found = if token_shaped(&l.password) {
        auth.authenticate_from(Credentials::Token(&l.password), source)
            .ok()
            .filter(|p| l.username.is_empty() || p.user() == Some(l.username.as_str()))
    } else {
        auth.authenticate_from(
            Credentials::Secret {
                access_key: &l.username,
                secret_key: &l.password,
            },
            source,
        )
        .ok()
    };
    match found {
        Some(p) => Ok(p),
        None => refused(ConnectReturnCode::BadUserNamePassword),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::token_shaped;

    #[test]
    fn only_a_token_s_exact_shape_is_taken_for_a_token() {
        assert!(token_shaped(&format!("rgt_{}", "ab12".repeat(16))));
        assert!(!token_shaped("rgt_short"));
        assert!(!token_shaped(&format!("rgt_{}", "zz".repeat(32))));
        assert!(!token_shaped("a-secret-key"));
    }
}
