//! The core's error type and the small [`ErrorKind`] that gateways map to their wire codes.
//!
//! Gateways match on [`Error::kind`], never on the full enum, so a new variant never breaks a
//! gateway's mapping. Request errors (bad input, unknown objects) are separate from faults
//! (`Store` I/O, poisoning) which are logged once at the gateway boundary.

use crate::store;

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure, in protocol-neutral terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named object does not exist.
    NotFound,
    /// The object to create exists already.
    AlreadyExists,
    /// The request is malformed or violates a limit.
    InvalidArgument,
    /// The object forbids this operation (permissions).
    PermissionDenied,
    /// Refused for now (rate, capacity); retry later.
    Throttled,
    /// Not the leader of the data; ask another node.
    NotLeader,
    /// The broker cannot serve writes (disk full, poisoned, shutting down).
    Unavailable,
    /// The request conflicts with the current state.
    Conflict,
    /// A broker fault.
    Internal,
}

/// Errors of the `Broker` API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such topic.
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    /// Topic exists already.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// A topic name that is empty, too long or has illegal characters.
    #[error("illegal topic name `{name}`: {reason}")]
    IllegalTopic {
        /// The name as given (truncated for display by the caller if needed).
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// Body over the maximum.
    #[error("message body of {size} bytes exceeds the maximum of {max}")]
    BodyTooLarge {
        /// Body size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Properties over a limit, or a reserved/blank key.
    #[error("illegal message properties: {0}")]
    IllegalProperties(String),
    /// Another message field (tag, key, group, id) is invalid.
    #[error("illegal message field `{field}`: {reason}")]
    IllegalField {
        /// Field name.
        field: &'static str,
        /// What rule it breaks.
        reason: String,
    },
    /// Other invalid argument (queue counts, batch sizes, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A queue id the topic does not have.
    #[error("topic `{topic}` has no queue {queue_id}")]
    QueueNotFound {
        /// Topic.
        topic: String,
        /// Requested queue.
        queue_id: u32,
    },
    /// The topic's permissions forbid this.
    #[error("topic `{topic}` is not {what}")]
    PermissionDenied {
        /// Topic.
        topic: String,
        /// "writable" or "readable".
        what: &'static str,
    },
    /// No message with this id (or key).
    #[error("message `{0}` not found")]
    MessageNotFound(String),
    /// No such consumer group.
    #[error("consumer group `{0}` does not exist")]
    GroupNotFound(String),
    /// Consumer group exists already.
    #[error("consumer group `{0}` already exists")]
    GroupExists(String),
    /// A filter expression that does not parse.
    #[error("illegal filter expression {0}")]
    IllegalFilter(String),
    /// A receipt handle that is garbled, forged, of another group, or no longer current.
    #[error("invalid receipt handle: {0}")]
    InvalidReceiptHandle(&'static str),
    /// An invisible duration out of range.
    #[error("invisible duration {got_ms} ms is outside [{min_ms}, {max_ms}] ms")]
    IllegalInvisibleTime {
        /// Requested.
        got_ms: u64,
        /// Minimum.
        min_ms: u64,
        /// Maximum.
        max_ms: u64,
    },
    /// A long-polling wait out of range.
    #[error("wait of {got_ms} ms exceeds the maximum of {max_ms} ms")]
    IllegalWait {
        /// Requested.
        got_ms: u64,
        /// Maximum.
        max_ms: u64,
    },
    /// A batch size out of range.
    #[error("batch size {got} is outside [1, {max}]")]
    IllegalBatchSize {
        /// Requested.
        got: usize,
        /// Maximum.
        max: usize,
    },
    /// A delay level outside `1..=levels`.
    #[error("delay level {got} is outside 1..={max}")]
    IllegalDelayLevel {
        /// Requested.
        got: u32,
        /// Number of levels.
        max: u32,
    },
    /// A delivery time beyond the maximum delay.
    #[error("delivery time {deliver_at_ms} is more than {max_delay_ms} ms in the future")]
    IllegalDeliveryTime {
        /// Requested (ms since the epoch).
        deliver_at_ms: i64,
        /// Limit.
        max_delay_ms: u64,
    },
    /// No pending or resolved transaction has this id.
    #[error("unknown transaction id `{0}`")]
    InvalidTransactionId(String),
    /// The transaction was resolved already; nothing changed.
    #[error("transaction `{transaction_id}` was already {}", if *committed { "committed" } else { "rolled back or discarded" })]
    TransactionResolved {
        /// Transaction id.
        transaction_id: String,
        /// Whether it was committed.
        committed: bool,
    },
    /// An error of the store.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Broker metadata could not be read or written.
    #[error("metadata error on {path}: {reason}")]
    Metadata {
        /// File.
        path: std::path::PathBuf,
        /// What happened.
        reason: String,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Error {
    /// Whether this [`ErrorKind::Unavailable`] error means the broker is shutting down (try
    /// again on another node or after a restart), as opposed to a running store that refuses
    /// writes (disk full, read-only after a failed flush), which stays so until an operator acts.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, Self::Store(store::Error::Closed))
    }

    /// The protocol-neutral kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::TopicNotFound(_)
            | Self::QueueNotFound { .. }
            | Self::MessageNotFound(_)
            | Self::GroupNotFound(_) => ErrorKind::NotFound,
            Self::TopicExists(_) | Self::GroupExists(_) => ErrorKind::AlreadyExists,
            Self::IllegalFilter(_)
            | Self::InvalidReceiptHandle(_)
            | Self::IllegalInvisibleTime { .. }
            | Self::IllegalWait { .. }
            | Self::IllegalBatchSize { .. }
            | Self::IllegalDelayLevel { .. }
            | Self::IllegalDeliveryTime { .. }
            | Self::InvalidTransactionId(_) => ErrorKind::InvalidArgument,
            Self::TransactionResolved { .. } => ErrorKind::Conflict,
            Self::IllegalTopic { .. }
            | Self::BodyTooLarge { .. }
            | Self::IllegalProperties(_)
            | Self::IllegalField { .. }
            | Self::InvalidArgument(_)
            | Self::Config(_) => ErrorKind::InvalidArgument,
            Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::Store(e) => match e {
                store::Error::DiskFull(_) | store::Error::Poisoned(_) | store::Error::Closed => {
                    ErrorKind::Unavailable
                }
                store::Error::RecordTooLarge { .. } => ErrorKind::InvalidArgument,
                _ => ErrorKind::Internal,
            },
            Self::Metadata { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_is_told_apart_from_a_store_refusing_writes() {
        let closed = Error::Store(store::Error::Closed);
        let full = Error::Store(store::Error::DiskFull("95% used".into()));
        let poisoned = Error::Store(store::Error::Poisoned("fsync failed".into()));
        for e in [&closed, &full, &poisoned] {
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        }
        assert!(closed.is_shutdown());
        assert!(!full.is_shutdown() && !poisoned.is_shutdown());
        assert!(!Error::TopicNotFound("t".into()).is_shutdown());
    }
}
