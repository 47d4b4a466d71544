//! The authentication seam of the gRPC endpoint: every MessagingService call passes its
//! request metadata (the `authorization` header, the `x-mq-date-time` it signs) to an
//! [`Authenticator`] before anything else happens, which answers who the caller is. What the
//! caller may then do is decided by the core's `Auth` service (`messaging/access.rs`). A
//! refusal is answered in the protocol's own terms: `Status{code: UNAUTHORIZED}` in the
//! response body.
//!
//! The default, [`CoreAuthenticator`], checks the RocketMQ 5 `MQv2-HMAC-SHA1` signature of the
//! official SDKs against the core's users when `auth.enabled` is on, and lets every request
//! through as anonymous when it is off. An implementation must not log secrets or signatures.
//!
//! Owns the trait and the default; no state beyond the broker handle.

use std::net::IpAddr;

use rocketgate_core::auth::{Credentials, Principal};
use rocketgate_core::Broker;
use tonic::metadata::MetadataMap;

/// Why a request was refused. The text is sent to the client: name what is wrong (a missing
/// header), never a secret, and never whether a user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Checks a request's credentials.
pub trait Authenticator: Send + Sync + 'static {
    /// Who the request from `source` (the peer's IP, when known) is from.
    ///
    /// # Errors
    /// [`AuthError`] to refuse it (answered with UNAUTHORIZED).
    fn authenticate(
        &self,
        metadata: &MetadataMap,
        source: Option<IpAddr>,
    ) -> Result<Principal, AuthError>;
}

/// Accepts every request as anonymous (for tests of other parts).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(
        &self,
        _metadata: &MetadataMap,
        _source: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        Ok(Principal::anonymous())
    }
}

/// The core's users: the SDKs' signature when authentication is on, anonymous when it is off.
#[derive(Debug, Clone)]
pub struct CoreAuthenticator {
    broker: Broker,
}

impl CoreAuthenticator {
    /// Authenticates against `broker`'s users.
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }
}

impl Authenticator for CoreAuthenticator {
    fn authenticate(
        &self,
        metadata: &MetadataMap,
        source: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let auth = self.broker.auth();
        if !auth.enabled() {
            return Ok(Principal::anonymous());
        }
        let header = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
        let (Some(authorization), Some(date_time)) =
            (header("authorization"), header("x-mq-date-time"))
        else {
            return Err(AuthError(
                "authentication is required: set the client's access key and secret key \
                 (headers `authorization` and `x-mq-date-time`)"
                    .into(),
            ));
        };
        auth.authenticate_from(
            Credentials::Signature {
                authorization,
                date_time,
            },
            source,
        )
        .map_err(|e| AuthError(e.to_string()))
    }
}
