//! The authentication seam of the gRPC endpoint: every call passes its [`Caller`] — the request
//! metadata (the `authorization` header, the `x-mq-date-time` it signs), the peer's address and
//! the verified client certificate's name on a TLS connection with client certificates — to an
//! [`Authenticator`] before anything else happens, which answers who the caller is. What the
//! caller may then do is decided by the core's `Auth` service (`messaging/access.rs`). A
//! refusal is answered in the protocol's own terms: `Status{code: UNAUTHORIZED}` in the
//! response body.
//!
//! The default, [`CoreAuthenticator`], checks the RocketMQ 5 `MQv2-HMAC-SHA1` signature of the
//! official SDKs against the core's users when `auth.enabled` is on — or, on a connection whose
//! client certificate the listener verified and with no signature, the certificate's common
//! name as the user (mTLS) — and lets every request through as anonymous when it is off. An
//! implementation must not log secrets or signatures.
//!
//! Owns the trait, [`Caller`] and the default; no state beyond the broker handle. Also the
//! glue that lets this crate's listener use the kit's TLS acceptor ([`KitTls`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::auth::{Credentials, Principal};
use rocketgate_core::Broker;
use rocketgate_gateway_kit::TlsAcceptor;
use rocketgate_nameserver::listener::{ConnectionInfo, ServerTls};
use tonic::metadata::MetadataMap;

/// Why a request was refused. The text is sent to the client: name what is wrong (a missing
/// header), never a secret, and never whether a user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Who is calling, as far as the transport knows.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The request's metadata.
    pub metadata: &'a MetadataMap,
    /// The peer's IP, when known.
    pub source: Option<IpAddr>,
    /// The common name of the client certificate the TLS handshake verified, if any.
    pub certificate: Option<&'a str>,
}

/// The verified client certificate's common name of a request's connection.
pub fn certificate_subject<T>(request: &tonic::Request<T>) -> Option<String> {
    let info = request.extensions().get::<ConnectionInfo>()?;
    rocketgate_gateway_kit::tls::subject_of(info.peer_certificates()?.first()?)
}

/// Checks a request's credentials.
pub trait Authenticator: Send + Sync + 'static {
    /// Who the request is from.
    ///
    /// # Errors
    /// [`AuthError`] to refuse it (answered with UNAUTHORIZED).
    fn authenticate(&self, caller: &Caller<'_>) -> Result<Principal, AuthError>;
}

/// Runs `auth` on `request`; a refusal is logged at info with the peer's address and client
/// id (`x-mq-client-id`, if any), never the credential.
///
/// # Errors
/// As [`Authenticator::authenticate`].
pub fn authenticate_request<T>(
    auth: &dyn Authenticator,
    request: &tonic::Request<T>,
) -> Result<Principal, AuthError> {
    let subject = certificate_subject(request);
    let r = auth.authenticate(&Caller {
        metadata: request.metadata(),
        source: request.remote_addr().map(|a| a.ip()),
        certificate: subject.as_deref(),
    });
    if let Err(e) = &r {
        let client = request
            .metadata()
            .get("x-mq-client-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            client,
            peer = %request.remote_addr().map_or_else(|| "-".to_owned(), |p| p.to_string()),
            error = %e,
            "gRPC authentication failed"
        );
    }
    r
}

/// Accepts every request as anonymous (for tests of other parts).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _caller: &Caller<'_>) -> Result<Principal, AuthError> {
        Ok(Principal::anonymous())
    }
}

/// The core's users: the SDKs' signature (or a verified client certificate) when authentication
/// is on, anonymous when it is off.
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
    fn authenticate(&self, caller: &Caller<'_>) -> Result<Principal, AuthError> {
        let auth = self.broker.auth();
        if !auth.enabled() {
            return Ok(Principal::anonymous());
        }
        let header = |name: &str| caller.metadata.get(name).and_then(|v| v.to_str().ok());
        let credentials = match (
            header("authorization"),
            header("x-mq-date-time"),
            caller.certificate,
        ) {
            (Some(authorization), Some(date_time), _) => Credentials::Signature {
                authorization,
                date_time,
            },
            (None, _, Some(subject)) => Credentials::Certificate(subject),
            _ => {
                return Err(AuthError(
                    "authentication is required: set the client's access key and secret key \
                     (headers `authorization` and `x-mq-date-time`), or connect with a client \
                     certificate"
                        .into(),
                ))
            }
        };
        auth.authenticate_from(credentials, caller.source)
            .map_err(|e| AuthError(e.to_string()))
    }
}

/// The kit's reloadable TLS acceptor as this crate's listener wants it.
#[derive(Debug, Clone)]
pub struct KitTls(pub TlsAcceptor);

impl ServerTls for KitTls {
    fn config(&self) -> Arc<rustls::ServerConfig> {
        self.0.config()
    }

    fn handshake_timeout(&self) -> Duration {
        self.0.settings().handshake_timeout
    }
}
