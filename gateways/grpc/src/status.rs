//! Refusals and faults of a request, and their gRPC status codes.
//!
//! Owns the one mapping from [`rocketgate_core::ErrorKind`] to [`tonic::Code`] (the mapping is
//! by kind, never by the full core error enum, so a new core error cannot break it):
//!
//! | core kind | gRPC code |
//! |---|---|
//! | `NotFound` | `NOT_FOUND` |
//! | `AlreadyExists` | `ALREADY_EXISTS` |
//! | `InvalidArgument` | `INVALID_ARGUMENT` |
//! | `PermissionDenied` | `PERMISSION_DENIED` |
//! | `Throttled` | `RESOURCE_EXHAUSTED` |
//! | `NotLeader` | `UNAVAILABLE` (retry on another node) |
//! | `Unavailable`, the store refuses writes (disk full, read-only after an I/O error) | `FAILED_PRECONDITION` |
//! | `Unavailable`, the broker is shutting down ([`rocketgate_core::Error::is_shutdown`]) | `UNAVAILABLE` |
//! | `Conflict` (e.g. a transaction resolved meanwhile) | `ABORTED` |
//! | `Unauthenticated` (no or bad credentials) | `UNAUTHENTICATED` |
//! | `Internal`, and kinds added later | `INTERNAL`, logged once here with `tracing::error!` |
//!
//! Fields the gateway checks itself ([`RequestError::InvalidField`]) are `INVALID_ARGUMENT`.
//! Requests over the decoding limit are refused by tonic before decoding (`OUT_OF_RANGE`).
//! The status message is always the error's `Display` text, which names the object or field,
//! cut to [`MAX_MESSAGE_BYTES`] ([`bounded_message`]): it travels in the `grpc-message`
//! header, and a text echoing a long request field (an unknown access key of 6,000 bytes)
//! would otherwise make the response's headers too big for the client, which then sees an
//! `INTERNAL` "h2 protocol error" instead of the status (a fuzzing finding, issue 14).
//!
//! Used by every service of this crate; depends on core's error type only. No state.

use rocketgate_core::ErrorKind;
use tonic::{Code, Status};

/// The longest status message sent, in bytes. Percent-encoded in `grpc-message` it takes up
/// to three times as much, well within the 16 KiB of headers HTTP/2 clients accept by default
/// (hyper's, hence tonic's).
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// `text` cut to at most [`MAX_MESSAGE_BYTES`] bytes at a character boundary, ending in `…`
/// when it was cut.
pub fn bounded_message(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Why a request failed: a core error, or a wire field the gateway refused before calling core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The broker refused the request or failed.
    #[error(transparent)]
    Core(#[from] rocketgate_core::Error),
    /// A wire field breaks a documented rule.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// The field, as named in the `.proto` file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The gRPC code of a core error (see the module table).
pub fn code(err: &rocketgate_core::Error) -> Code {
    match err.kind() {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Throttled => Code::ResourceExhausted,
        ErrorKind::NotLeader => Code::Unavailable,
        ErrorKind::Unavailable
            if err.is_shutdown()
                || err.reason() == rocketgate_core::Reason::ReplicasUnavailable =>
        {
            Code::Unavailable
        }
        ErrorKind::Unavailable => Code::FailedPrecondition,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        _ => Code::Internal,
    }
}

impl From<RequestError> for Status {
    fn from(err: RequestError) -> Self {
        let code = match &err {
            RequestError::Core(e) => code(e),
            RequestError::InvalidField { .. } => Code::InvalidArgument,
        };
        if code == Code::Internal {
            tracing::error!(error = %err, "request failed");
        } else {
            tracing::debug!(error = %err, ?code, "request refused");
        }
        Status::new(code, bounded_message(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketgate_core::Error;

    #[test]
    fn kinds_map_to_codes_with_the_display_text() {
        let cases = [
            (Error::TopicNotFound("t".into()), Code::NotFound),
            (Error::TopicExists("t".into()), Code::AlreadyExists),
            (Error::InvalidArgument("x".into()), Code::InvalidArgument),
            (
                Error::PermissionDenied {
                    topic: "t".into(),
                    what: "writable",
                },
                Code::PermissionDenied,
            ),
            (
                Error::Store(rocketgate_core::StoreError::DiskFull("full".into())),
                Code::FailedPrecondition,
            ),
            (
                Error::Store(rocketgate_core::StoreError::Closed),
                Code::Unavailable,
            ),
            (
                Error::TransactionResolved {
                    transaction_id: "x".into(),
                    committed: true,
                },
                Code::Aborted,
            ),
            (
                Error::Metadata {
                    path: "/x".into(),
                    reason: "io".into(),
                },
                Code::Internal,
            ),
        ];
        for (err, want) in cases {
            let text = err.to_string();
            let status = Status::from(RequestError::from(err));
            assert_eq!(status.code(), want, "{text}");
            assert_eq!(status.message(), text);
        }
        let status = Status::from(RequestError::InvalidField {
            field: "max",
            reason: "too big".into(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid `max`: too big");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let status = Status::from(RequestError::from(Error::UserNotFound("é".repeat(3000))));
        assert_eq!(status.code(), Code::NotFound);
        let message = status.message();
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
        assert!(message.len() > MAX_MESSAGE_BYTES - 8, "{}", message.len());
        assert!(
            message.starts_with("user `éé") && message.ends_with("é…"),
            "{message}"
        );
        let short = "user `x` not found".to_owned();
        assert_eq!(bounded_message(short.clone()), short);
        let exact = "a".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(bounded_message(exact.clone()), exact);
    }
}
