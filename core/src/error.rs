//! The core's error type, its precise [`Reason`] and the small [`ErrorKind`]: what gateways map
//! to their wire codes.
//!
//! The one rulebook: every rule about messages, topics, groups and limits is checked in core,
//! and the error says precisely which rule refused. Gateways map [`Error::reason`] (to a
//! RocketMQ v2 `Code`, an HTTP problem code, an MQTT reason code) with a fallback on
//! [`Reason::kind`]; they never match on the `Error` enum itself and never re-check what core
//! checks. A new reason gets a sensible wire code through its kind before a gateway learns it.
//! Request errors (bad input, unknown objects) are separate from faults (`Store` I/O,
//! poisoning) which are logged once at the gateway boundary.

use crate::store;

/// The store's errors, as wrapped by [`Error::Store`].
pub use crate::store::Error as StoreError;

/// The KV store's faults, as wrapped by [`Error::Kv`].
pub use crate::kv::Error as KvError;

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
    /// No or bad credentials: authenticate first.
    Unauthenticated,
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
    /// Properties over the count or size limit.
    #[error("message properties too large: {0}")]
    PropertiesTooLarge(String),
    /// A property key that is blank, too long or reserved for the broker.
    #[error("illegal message property key: {0}")]
    IllegalPropertyKey(String),
    /// Another field (tag, key, message group, message id, consumer group, ...) is invalid.
    #[error("illegal {field}: {reason}")]
    IllegalField {
        /// Which field.
        field: Field,
        /// What rule it breaks.
        reason: String,
    },
    /// The message's type (declared, or what its fields make it) is not one its topic
    /// accepts, or a declared type lacks what it needs (a DELAY message without a delivery
    /// time).
    #[error("message type conflict: {0}")]
    MessageTypeConflict(String),
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
    /// An offset past the end of its queue (a commit that would skip messages not sent yet).
    #[error("offset {offset} is past the end of queue {queue_id} of topic `{topic}` ({end})")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Queue.
        queue_id: u32,
        /// The offset asked for.
        offset: u64,
        /// One past the queue's last message.
        end: u64,
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
    /// A fault of the KV store (I/O, corruption, read-only after a failed write).
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A write would take a bounded resource over its configured limit.
    #[error("quota exceeded: {what} would hold {would} bytes, the limit is {limit}")]
    QuotaExceeded {
        /// What is full.
        what: &'static str,
        /// Bytes it would hold after the write.
        would: u64,
        /// The limit.
        limit: u64,
    },
    /// Creating one more object would pass a quota of `[limits]` (`max_topics`,
    /// `max_groups`).
    #[error("quota exceeded: at most {limit} {what}; delete some first or raise `limits.{key}`")]
    LimitReached {
        /// What is counted ("topics", "consumer groups").
        what: &'static str,
        /// The configuration key of the limit.
        key: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Under SYNC replication, too few replicas are in sync to take (or acknowledge) a write.
    #[error(
        "only {in_sync} of the {required} replicas `replication.min_in_sync_replicas` requires are in sync (the master included); the write is not acknowledged, retry later"
    )]
    NotEnoughReplicas {
        /// Replicas in sync, the master included.
        in_sync: usize,
        /// `min_in_sync_replicas`.
        required: usize,
    },
    /// The master is handing its role over to slave `target` (an admin switchover): writes
    /// are refused until the new master takes them.
    #[error(
        "this master is handing over to broker {target} (a switchover): the write is not taken here; retry, the new master takes writes in a moment"
    )]
    MasterHandover {
        /// The slave being promoted.
        target: u64,
    },
    /// A requested switchover did not happen; this broker stays the master.
    #[error("the switchover did not happen: {0}")]
    SwitchFailed(String),
    /// This node is a slave serving reads: writes (sends, pops, acks, administration) go to
    /// the group's master.
    #[error("this broker is a slave serving reads only: {what} goes to the master of its group")]
    NotMaster {
        /// What was refused, in words.
        what: &'static str,
    },
    /// A topic or message property reserved for a gateway, used by a request that does not
    /// come from it.
    #[error("{what} is reserved for {owner}")]
    Reserved {
        /// The topic or property, named.
        what: String,
        /// Who it is reserved for.
        owner: &'static str,
    },
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
    /// No credentials, or credentials that do not prove a user (the text never says which
    /// part was wrong, nor whether the user exists).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The user's policy does not allow this.
    #[error("`{user}` may not {action} {resource}")]
    Denied {
        /// The access key.
        user: String,
        /// The action asked for.
        action: String,
        /// The resource (`Topic:orders`).
        resource: String,
    },
    /// No such user.
    #[error("user `{0}` does not exist")]
    UserNotFound(String),
    /// The user exists already.
    #[error("user `{0}` already exists")]
    UserExists(String),
}

/// A request field core checks, named in [`Error::IllegalField`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// A message tag.
    Tag,
    /// A message key.
    Key,
    /// A message group (FIFO) or sharding key.
    MessageGroup,
    /// A message id.
    MessageId,
    /// The producer host.
    BornHost,
    /// A consumer group name.
    ConsumerGroup,
    /// A producer group name.
    ProducerGroup,
    /// A client id.
    ClientId,
    /// A user, policy or token field (access key, secret key, resource, action, source).
    Auth,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tag => "tag",
            Self::Key => "message key",
            Self::MessageGroup => "message group",
            Self::MessageId => "message id",
            Self::BornHost => "born host",
            Self::ConsumerGroup => "consumer group",
            Self::ProducerGroup => "producer group",
            Self::ClientId => "client id",
            Self::Auth => "access control field",
        })
    }
}

/// Precisely which rule refused a request, or which fault failed it: what a gateway maps to
/// its protocol's code. Every reason has a [`Reason::kind`] to fall back on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No such topic.
    TopicNotFound,
    /// The topic has no such queue.
    QueueNotFound,
    /// No such message (or scheduled message).
    MessageNotFound,
    /// No such consumer group.
    GroupNotFound,
    /// The topic exists already.
    TopicExists,
    /// The consumer group exists already.
    GroupExists,
    /// An illegal topic name (or a reserved one).
    IllegalTopic,
    /// An illegal consumer or producer group name.
    IllegalGroup,
    /// An illegal tag.
    IllegalTag,
    /// An illegal message key (or too many).
    IllegalKey,
    /// An illegal or missing message group.
    IllegalMessageGroup,
    /// An illegal message id.
    IllegalMessageId,
    /// An illegal client id.
    IllegalClientId,
    /// Another illegal field.
    IllegalField,
    /// A blank, oversized or reserved property key.
    IllegalPropertyKey,
    /// Too many properties or too many bytes of them.
    PropertiesTooLarge,
    /// A body over the maximum.
    BodyTooLarge,
    /// The message type does not fit the topic, or lacks what it needs.
    MessageTypeConflict,
    /// A filter expression that does not parse.
    IllegalFilter,
    /// A garbled, forged, foreign or stale receipt handle.
    InvalidReceiptHandle,
    /// An invisible duration out of range.
    IllegalInvisibleTime,
    /// A long-polling wait out of range.
    IllegalWait,
    /// An offset past the end of its queue.
    OffsetOutOfRange,
    /// A batch size out of range.
    IllegalBatchSize,
    /// A delay level or delivery time out of range.
    IllegalDeliveryTime,
    /// No transaction has this id.
    InvalidTransactionId,
    /// The transaction was resolved already.
    TransactionResolved,
    /// The topic's permission forbids this (not writable, not readable, not deletable).
    Forbidden,
    /// Another invalid argument (queue counts, time ranges, configuration).
    InvalidArgument,
    /// Writes are refused: the disk-use watermark or the size limit.
    DiskFull,
    /// A bounded resource (the KV store's total bytes, the number of topics or groups) is
    /// full: delete something first.
    QuotaExceeded,
    /// A topic or property reserved for a gateway, used by another caller.
    Reserved,
    /// Writes are refused until a restart: a flush failed.
    ReadOnly,
    /// Under SYNC replication, too few replicas are in sync; the master is handing over (a
    /// switchover); or a requested switchover could not happen.
    ReplicasUnavailable,
    /// The broker is shutting down.
    ShuttingDown,
    /// This node is a slave serving reads only; writes go to the group's master.
    NotMaster,
    /// No or bad credentials.
    Unauthenticated,
    /// The user's policy does not allow the action on the resource.
    Denied,
    /// No such user.
    UserNotFound,
    /// The user exists already.
    UserExists,
    /// A broker fault (I/O, corruption, metadata).
    Internal,
}

impl Reason {
    /// The protocol-neutral kind of this reason.
    pub fn kind(self) -> ErrorKind {
        match self {
            Self::TopicNotFound
            | Self::QueueNotFound
            | Self::MessageNotFound
            | Self::GroupNotFound
            | Self::UserNotFound => ErrorKind::NotFound,
            Self::TopicExists | Self::GroupExists | Self::UserExists => ErrorKind::AlreadyExists,
            Self::IllegalTopic
            | Self::IllegalGroup
            | Self::IllegalTag
            | Self::IllegalKey
            | Self::IllegalMessageGroup
            | Self::IllegalMessageId
            | Self::IllegalClientId
            | Self::IllegalField
            | Self::IllegalPropertyKey
            | Self::PropertiesTooLarge
            | Self::BodyTooLarge
            | Self::MessageTypeConflict
            | Self::IllegalFilter
            | Self::InvalidReceiptHandle
            | Self::IllegalInvisibleTime
            | Self::IllegalWait
            | Self::OffsetOutOfRange
            | Self::IllegalBatchSize
            | Self::IllegalDeliveryTime
            | Self::InvalidTransactionId
            | Self::InvalidArgument => ErrorKind::InvalidArgument,
            Self::TransactionResolved => ErrorKind::Conflict,
            Self::QuotaExceeded => ErrorKind::Throttled,
            Self::Forbidden | Self::Denied | Self::Reserved => ErrorKind::PermissionDenied,
            Self::Unauthenticated => ErrorKind::Unauthenticated,
            Self::DiskFull | Self::ReadOnly | Self::ShuttingDown | Self::ReplicasUnavailable => {
                ErrorKind::Unavailable
            }
            Self::NotMaster => ErrorKind::NotLeader,
            Self::Internal => ErrorKind::Internal,
        }
    }
}

impl Error {
    /// Whether this [`ErrorKind::Unavailable`] error means the broker is shutting down (try
    /// again on another node or after a restart), as opposed to a running store that refuses
    /// writes (disk full, read-only after a failed flush), which stays so until an operator acts.
    pub fn is_shutdown(&self) -> bool {
        self.reason() == Reason::ShuttingDown
    }

    /// Precisely which rule refused the request, or which fault failed it.
    pub fn reason(&self) -> Reason {
        match self {
            Self::TopicNotFound(_) => Reason::TopicNotFound,
            Self::QueueNotFound { .. } => Reason::QueueNotFound,
            Self::MessageNotFound(_) => Reason::MessageNotFound,
            Self::GroupNotFound(_) => Reason::GroupNotFound,
            Self::TopicExists(_) => Reason::TopicExists,
            Self::GroupExists(_) => Reason::GroupExists,
            Self::IllegalTopic { .. } => Reason::IllegalTopic,
            Self::BodyTooLarge { .. } => Reason::BodyTooLarge,
            Self::PropertiesTooLarge(_) => Reason::PropertiesTooLarge,
            Self::IllegalPropertyKey(_) => Reason::IllegalPropertyKey,
            Self::IllegalField { field, .. } => match field {
                Field::Tag => Reason::IllegalTag,
                Field::Key => Reason::IllegalKey,
                Field::MessageGroup => Reason::IllegalMessageGroup,
                Field::MessageId => Reason::IllegalMessageId,
                Field::ConsumerGroup | Field::ProducerGroup => Reason::IllegalGroup,
                Field::ClientId => Reason::IllegalClientId,
                Field::BornHost | Field::Auth => Reason::IllegalField,
            },
            Self::MessageTypeConflict(_) => Reason::MessageTypeConflict,
            Self::IllegalFilter(_) => Reason::IllegalFilter,
            Self::InvalidReceiptHandle(_) => Reason::InvalidReceiptHandle,
            Self::IllegalInvisibleTime { .. } => Reason::IllegalInvisibleTime,
            Self::IllegalWait { .. } => Reason::IllegalWait,
            Self::IllegalBatchSize { .. } => Reason::IllegalBatchSize,
            Self::IllegalDelayLevel { .. } | Self::IllegalDeliveryTime { .. } => {
                Reason::IllegalDeliveryTime
            }
            Self::InvalidTransactionId(_) => Reason::InvalidTransactionId,
            Self::TransactionResolved { .. } => Reason::TransactionResolved,
            Self::PermissionDenied { .. } => Reason::Forbidden,
            Self::InvalidArgument(_) | Self::Config(_) => Reason::InvalidArgument,
            Self::Store(e) => match e {
                store::Error::DiskFull(_) => Reason::DiskFull,
                store::Error::Poisoned(_) => Reason::ReadOnly,
                store::Error::Closed => Reason::ShuttingDown,
                store::Error::Follower => Reason::NotMaster,
                store::Error::RecordTooLarge { .. } => Reason::BodyTooLarge,
                _ => Reason::Internal,
            },
            Self::Kv(KvError::Poisoned(_)) => Reason::ReadOnly,
            Self::Kv(_) | Self::Metadata { .. } => Reason::Internal,
            Self::QuotaExceeded { .. } | Self::LimitReached { .. } => Reason::QuotaExceeded,
            Self::OffsetOutOfRange { .. } => Reason::OffsetOutOfRange,
            Self::Reserved { .. } => Reason::Reserved,
            Self::NotEnoughReplicas { .. }
            | Self::MasterHandover { .. }
            | Self::SwitchFailed(_) => Reason::ReplicasUnavailable,
            Self::NotMaster { .. } => Reason::NotMaster,
            Self::Unauthenticated(_) => Reason::Unauthenticated,
            Self::Denied { .. } => Reason::Denied,
            Self::UserNotFound(_) => Reason::UserNotFound,
            Self::UserExists(_) => Reason::UserExists,
        }
    }

    /// The protocol-neutral kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.reason().kind()
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
