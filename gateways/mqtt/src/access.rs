//! Who an MQTT client is, asked of the core's one identity model (`Broker::auth()`): the
//! CONNECT's username and password become a core credential, and the answer a CONNACK code.
//!
//! - Core authentication on (`auth.enabled`): the username is a user's access key and the
//!   password its secret key ([`Credentials::Secret`]), or the password is a bearer token the
//!   core issued (`rgt_` + 64 hex digits, [`Credentials::Token`]) and the username is empty or
//!   the access key of the token's user. No credentials: "not authorized" (v5 0x87, 3.1.1 5);
//!   wrong ones: "bad user name or password" (v5 0x86, 3.1.1 4). Never "server unavailable".
//! - Core authentication off: the gateway's own `allow_anonymous` / `users` decide, as before
//!   (`MqttConfig::authenticate_local`; a refusal is "bad user name or password"), and the
//!   client is the anonymous principal, which the core allows everything.
//!
//! Must not touch: sockets, sessions. Never logs a password or token (the core audits the
//! refusal without it). Pure but for the core call; no locks of its own.

use rocketgate_core::auth::{Credentials, Principal, TOKEN_PREFIX};
use rocketgate_core::Broker;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Login};

use crate::config::MqttConfig;

/// Whether `password` has the shape of a core bearer token (`rgt_` + 64 hex digits).
fn token_shaped(password: &str) -> bool {
    password
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Authenticates a CONNECT's `login` (see the module doc).
///
/// # Errors
/// The CONNACK code of the refusal: `NotAuthorized` without credentials (core authentication
/// on, or anonymous clients not allowed), `BadUserNamePassword` for wrong ones.
pub(crate) fn authenticate(
    broker: &Broker,
    config: &MqttConfig,
    login: Option<&Login>,
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
    let Some(l) = login else {
        return refused(ConnectReturnCode::NotAuthorized);
    };
    let found = if token_shaped(&l.password) {
        auth.authenticate(Credentials::Token(&l.password))
            .ok()
            .filter(|p| l.username.is_empty() || p.user() == Some(l.username.as_str()))
    } else {
        auth.authenticate(Credentials::Secret {
            access_key: &l.username,
            secret_key: &l.password,
        })
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
