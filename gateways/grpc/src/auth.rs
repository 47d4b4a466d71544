//! The authentication seam of the gRPC endpoint: every MessagingService call passes its
//! request metadata (the `authorization` header, `x-mq-date-time` it signs, the client id) to
//! an [`Authenticator`] before anything else happens. A refusal is answered in the protocol's
//! own terms: `Status{code: UNAUTHORIZED}` in the response body.
//!
//! Off by default: [`AllowAll`] accepts every request (the security work will add the
//! RocketMQ 5 `MQv2-HMAC-SHA1` scheme of the protocol brief §0.1 behind this trait). An
//! implementation must not log secrets or signatures.
//!
//! Owns the trait and the default only; no state.

use tonic::metadata::MetadataMap;

/// Why a request was refused. The text is sent to the client: name what is wrong (a missing
/// header, an unknown access key), never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Checks a request's credentials.
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok` to let the request through.
    ///
    /// # Errors
    /// [`AuthError`] to refuse it (answered with UNAUTHORIZED).
    fn authenticate(&self, metadata: &MetadataMap) -> Result<(), AuthError>;
}

/// Accepts every request: authentication off (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _metadata: &MetadataMap) -> Result<(), AuthError> {
        Ok(())
    }
}
