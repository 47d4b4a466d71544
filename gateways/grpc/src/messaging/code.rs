//! The RocketMQ v2 `Status` of every answer: core errors → v2 [`Code`], and the builders the
//! RPC modules use.
//!
//! Invariant: only codes of the protocol brief's §2.6 list are ever produced (RC 5.0.0 panics
//! on an unknown number), and no answer leaves with `status` unset. Core's precise [`Reason`]s
//! map to their v2 code (`TopicNotFound` → `TOPIC_NOT_FOUND`, ...); any other reason falls
//! back to its [`ErrorKind`], so a new core reason still gets a sensible code.
//! Internal faults are logged here, once.
//!
//! Pure functions; no state.

use rocketgate_core::{Error, ErrorKind, Reason};
use rocketgate_proto::apache::rocketmq::v2::{Code, Status};

/// `OK`.
pub(super) fn ok() -> Status {
    status(Code::Ok, "OK")
}

/// A status with `code` and a human-readable `message`.
pub(super) fn status(code: Code, message: impl Into<String>) -> Status {
    Status {
        code: code as i32,
        message: message.into(),
    }
}

/// The v2 code of a core error, by its [`Reason`].
pub(super) fn code_of(err: &Error) -> Code {
    match err.reason() {
        Reason::TopicNotFound => Code::TopicNotFound,
        Reason::IllegalTopic => Code::IllegalTopic,
        Reason::GroupNotFound => Code::ConsumerGroupNotFound,
        Reason::IllegalGroup => Code::IllegalConsumerGroup,
        Reason::BodyTooLarge => Code::MessageBodyTooLarge,
        Reason::PropertiesTooLarge => Code::MessagePropertiesTooLarge,
        Reason::IllegalPropertyKey => Code::IllegalMessagePropertyKey,
        Reason::IllegalTag => Code::IllegalMessageTag,
        Reason::IllegalKey => Code::IllegalMessageKey,
        Reason::IllegalMessageGroup => Code::IllegalMessageGroup,
        Reason::IllegalMessageId => Code::IllegalMessageId,
        Reason::MessageTypeConflict => Code::MessagePropertyConflictWithType,
        Reason::IllegalFilter => Code::IllegalFilterExpression,
        Reason::InvalidReceiptHandle => Code::InvalidReceiptHandle,
        Reason::IllegalInvisibleTime => Code::IllegalInvisibleTime,
        Reason::IllegalWait => Code::IllegalPollingTime,
        Reason::IllegalDeliveryTime => Code::IllegalDeliveryTime,
        Reason::InvalidTransactionId => Code::InvalidTransactionId,
        Reason::Forbidden | Reason::Denied => Code::Forbidden,
        Reason::Unauthenticated => Code::Unauthorized,
        Reason::QuotaExceeded => Code::TooManyRequests,
        // SYNC replication without enough in-sync replicas: the write was not acknowledged.
        Reason::ReplicasUnavailable => Code::HaNotAvailable,
        reason => match reason.kind() {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::InvalidArgument | ErrorKind::AlreadyExists | ErrorKind::Conflict => {
                Code::BadRequest
            }
            ErrorKind::PermissionDenied => Code::Forbidden,
            ErrorKind::Throttled => Code::TooManyRequests,
            ErrorKind::NotLeader => Code::HaNotAvailable,
            // Retryable for the SDKs that retry sends.
            ErrorKind::Unavailable => Code::InternalError,
            _ => Code::InternalServerError,
        },
    }
}

/// The status of a core error: its code and `Display` text (internal faults logged once).
pub(super) fn from_core(err: &Error) -> Status {
    let code = code_of(err);
    if matches!(code, Code::InternalServerError | Code::InternalError) {
        tracing::error!(error = %err, "messaging request failed");
    } else {
        tracing::debug!(error = %err, code = code.as_str_name(), "messaging request refused");
    }
    status(code, err.to_string())
}

/// The top-level status of a batch answer: the code all entries share, or `MULTIPLE_RESULTS`.
pub(super) fn common(entries: &[&Status]) -> Status {
    let Some(first) = entries.first() else {
        return status(Code::BadRequest, "no entries");
    };
    if entries.iter().all(|s| s.code == first.code) {
        (*first).clone()
    } else {
        status(Code::MultipleResults, "entries have different results")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_v2_codes() {
        let cases = [
            (Error::TopicNotFound("t".into()), Code::TopicNotFound),
            (
                Error::IllegalTopic {
                    name: "a b".into(),
                    reason: "x",
                },
                Code::IllegalTopic,
            ),
            (
                Error::IllegalField {
                    field: rocketgate_core::Field::Tag,
                    reason: "x".into(),
                },
                Code::IllegalMessageTag,
            ),
            (Error::InvalidReceiptHandle("x"), Code::InvalidReceiptHandle),
            (
                Error::InvalidTransactionId("x".into()),
                Code::InvalidTransactionId,
            ),
            (
                Error::Store(rocketgate_core::StoreError::Closed),
                Code::InternalError,
            ),
            (
                Error::MessageTypeConflict("x".into()),
                Code::MessagePropertyConflictWithType,
            ),
            (
                Error::IllegalPropertyKey("x".into()),
                Code::IllegalMessagePropertyKey,
            ),
            (Error::InvalidArgument("x".into()), Code::BadRequest),
        ];
        for (err, want) in cases {
            assert_eq!(code_of(&err), want, "{err}");
        }
    }

    #[test]
    fn common_status_of_a_batch() {
        let a = ok();
        let b = status(Code::InvalidReceiptHandle, "x");
        assert_eq!(common(&[&a, &a]).code, Code::Ok as i32);
        assert_eq!(common(&[&a, &b]).code, Code::MultipleResults as i32);
        assert_eq!(common(&[&b, &b]).code, Code::InvalidReceiptHandle as i32);
    }
}
