//! The gateway's errors: why [`crate::serve`] could not start, and the `-ERR` texts the
//! protocol sends, in NATS's own words ([`ProtocolError`]).
//!
//! Owns the mapping from a protocol or core refusal to the text a NATS client sees and to
//! whether the connection ends. Pure; no I/O.

use rocketgate_core::{ErrorKind, Reason};

/// Why the gateway could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An invalid `[nats]` setting.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

/// A refusal sent to the client as `-ERR '<text>'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An operation that is not one of the protocol's, or malformed arguments.
    #[error("Unknown Protocol Operation")]
    UnknownOperation,
    /// A control line longer than `max_control_line`.
    #[error("Maximum Control Line Exceeded")]
    ControlLine,
    /// A payload larger than `max_payload` (or headers larger than `max_header_bytes`).
    #[error("Maximum Payload Violation")]
    MaxPayload,
    /// A CONNECT that does not parse, or a protocol version we do not speak.
    #[error("Invalid Client Protocol")]
    InvalidClientProtocol,
    /// Missing or wrong credentials, or revoked ones.
    #[error("Authorization Violation")]
    Authorization,
    /// No CONNECT in time.
    #[error("Authentication Timeout")]
    AuthTimeout,
    /// A subject that is not a valid subscription subject (or cannot be mapped).
    #[error("Invalid Subject")]
    InvalidSubject,
    /// A subject that is not a valid publish subject (or cannot be mapped).
    #[error("Invalid Publish Subject")]
    InvalidPublishSubject,
    /// The policy does not allow this publish.
    #[error("Permissions Violation for Publish to \"{0}\"")]
    PublishDenied(String),
    /// The policy does not allow this subscription.
    #[error("Permissions Violation for Subscription to \"{0}\"")]
    SubscribeDenied(String),
    /// Over `max_subscriptions`.
    #[error("Maximum Subscriptions Exceeded")]
    MaxSubscriptions,
    /// Over `max_connections`.
    #[error("Maximum Connections Exceeded")]
    MaxConnections,
    /// The client fell `max_pending_bytes` behind.
    #[error("Slow Consumer")]
    SlowConsumer,
    /// Unanswered PINGs.
    #[error("Stale Connection")]
    Stale,
    /// The core did not store a publish (the reason, never internals).
    #[error("Publish Refused: {0}")]
    PublishRefused(&'static str),
}

impl ProtocolError {
    /// Whether NATS closes the connection after this error (it does for protocol violations,
    /// authorization and limits; not for a subject or a permission refused).
    pub fn closes(&self) -> bool {
        !matches!(
            self,
            Self::InvalidSubject
                | Self::InvalidPublishSubject
                | Self::PublishDenied(_)
                | Self::SubscribeDenied(_)
                | Self::MaxSubscriptions
                | Self::PublishRefused(_)
        )
    }

    /// The refusal of a publish the core did not store (`subject` for a permission error).
    pub fn of_publish(e: &rocketgate_core::Error, subject: &str) -> Self {
        match e.reason() {
            Reason::IllegalTopic | Reason::TopicNotFound => Self::InvalidPublishSubject,
            Reason::BodyTooLarge => Self::PublishRefused("message too large"),
            Reason::IllegalPropertyKey | Reason::PropertiesTooLarge => {
                Self::PublishRefused("invalid headers")
            }
            Reason::Reserved => Self::PublishRefused("reserved header name"),
            Reason::IllegalKey => Self::PublishRefused("invalid Nats-Msg-Id"),
            Reason::MessageTypeConflict => {
                Self::PublishRefused("topic does not take this message type")
            }
            _ => match e.kind() {
                ErrorKind::PermissionDenied => Self::PublishDenied(subject.to_owned()),
                ErrorKind::Throttled => Self::PublishRefused("throttled"),
                ErrorKind::InvalidArgument => Self::PublishRefused("invalid message"),
                _ => Self::PublishRefused("unavailable"),
            },
        }
    }
}
