//! rocketgate core: a message store with RocketMQ semantics behind one async API, the
//! [`Broker`]. It knows no wire protocol; every gateway (gRPC, REST, WebSocket, MQTT) translates
//! its protocol to this API and maps its typed errors ([`Reason`]); none reaches past it (the
//! store and the broker's internals are private, and `tests/public-api.txt` snapshots what is
//! public).
//!
//! # The `Broker` and its services
//!
//! [`Broker`] is the cheap-`Clone` handle; it opens and shuts down the store and hands out one
//! service per concern, each a borrowed view with its own module:
//!
//! | service | what it does |
//! |---|---|
//! | [`Broker::topics`] → [`Topics`] | create, describe, list, update, delete topics; the change counter |
//! | [`Broker::producer`] → [`Producer`] | send one message or a batch; check a send without storing |
//! | [`Broker::consumer`] → [`Consumer`] | pull, pop / ack / nack / invisibility, offsets, clients, assignment, lag |
//! | [`Broker::groups`] → [`Groups`] | consumer groups, subscriptions, retry policy |
//! | [`Broker::scheduler`] → [`Scheduler`] | delayed and timed messages: list, count, cancel |
//! | [`Broker::transactions`] → [`Transactions`] | half messages, commit / rollback, check-back |
//! | [`Broker::dead_letters`] → [`DeadLetters`] | a group's dead-letter queue: list, resend, purge |
//! | [`Broker::queries`] → [`Queries`] | messages by id, key and time; traces; time positions |
//! | [`Broker::storage`] → [`Storage`] | health: write refusal, CommitLog positions, recovery |
//! | [`Broker::settings`] → [`Settings`] | small durable settings maps of gateways (on the KV store) |
//! | [`Broker::kv`] → [`Kv`] | the durable key-value store of small state: sessions, retained messages, settings |
//!
//! # Layout
//!
//! - [`api`]: request and response types; [`message`]: the message model; [`message_id`]:
//!   RocketMQ 5 ids.
//! - [`rules`]: the pure rules a gateway may call before it has a request (names), and the
//!   message properties core gives meaning to.
//! - [`config`]: configuration; [`error`]: errors, their precise [`Reason`] and kind;
//!   [`clock`]: the broker's time; [`metrics`]: the core's Prometheus metrics.
//! - private: `broker` (the services and their state), `store` (CommitLog, ConsumeQueues,
//!   index, flush, recovery, retention), `kv` (the key-value store of small state: log,
//!   snapshots, group commit; never touched by retention).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rocketgate_core::{Broker, Config, Message, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::default();
//! config.store.data_dir = dir.path().into();
//! config.store.segment_size = 1 << 20;
//! let broker = Broker::open(config)?;
//! broker.topics().create(TopicConfig::new("orders", 4))?;
//! let message = Message::new("orders", "hello").with_key("o-1");
//! let receipt = broker.producer().send(message.into()).await?;
//! let found = broker.queries().by_id(&receipt.message_id).await?;
//! assert_eq!(&found.body[..], b"hello");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod auth;
mod broker;
pub mod clock;
pub mod config;
pub mod error;
mod kv;
pub mod message;
pub mod message_id;
pub mod metrics;
// Phase 2 of replication (the transport) is its caller; until then only its tests are.
#[cfg_attr(not(test), allow(dead_code))]
pub mod replication;
pub mod rules;
mod spelling;
mod store;

pub use api::{
    BatchError, GroupPullRequest, Health, LogOffsets, PopRequest, PoppedMessage, PullResult,
    PullStatus, QueryResult, QueueLag, QueueSelector, RecoveryReport, SendReceipt, SendRequest,
    TopicInfo, TopicUpdate,
};
pub use broker::consumer_group::GroupConfig;
pub use broker::filter::{FilterExpression, FilterKind};
pub use broker::topic::{MessageType, Permission, TopicConfig};
pub use broker::{
    Auth, Broker, Consumer, Credits, DeadLetters, Groups, Kv, Producer, Queries, Scheduler,
    Settings, Storage, Subscription, SubscriptionCredits, SubscriptionRequest, Topics,
    Transactions,
};

/// The store's record codec and ConsumeQueue, for core's own micro-benchmarks only
/// (`--features bench-internals`); not part of the API.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals {
    pub use crate::store::{consume_queue, record};
}
pub use broker::retry::{dlq_topic, group_retry_topic, retry_topic, DlqSelection};
pub use broker::transaction::{
    CheckFuture, CheckResult, DiscardedTransaction, HalfMessage, Resolution, TransactionChecker,
};
pub use broker::{Caller, Gateway};
pub use clock::{now_ms, Clock, ManualClock, SystemClock};
pub use config::{Config, ConsumerConfig, FlushMode, KvConfig, LimitsConfig, StoreConfig};
pub use error::{Error, ErrorKind, Field, KvError, Reason, Result, StoreError};
pub use message::{Message, StoredMessage};
pub use spelling::UnknownName;
