//! rocketgate core: a message store with RocketMQ semantics behind one async API, the
//! [`Broker`]. It knows no wire protocol; every gateway (gRPC, REST, WebSocket, MQTT) translates
//! its protocol to this API.
//!
//! # Layout
//!
//! - [`broker`]: the `Broker` handle: topics, send, pull, queries (semantics grow here).
//! - [`api`]: request and response types of the `Broker`.
//! - [`message`]: the message model; [`message_id`]: RocketMQ 5 ids.
//! - [`store`]: CommitLog, ConsumeQueues, index, flush, recovery, retention.
//! - [`config`]: configuration; [`error`]: errors and their protocol-neutral kinds;
//!   [`metrics`]: the core's Prometheus metrics (names and labels).
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
//! broker.create_topic(TopicConfig::new("orders", 4))?;
//! let receipt = broker.send(Message::new("orders", "hello").with_key("o-1").into()).await?;
//! let found = broker.message_by_id(&receipt.message_id).await?;
//! assert_eq!(&found.body[..], b"hello");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod api;
mod broker;
pub mod clock;
pub mod config;
pub mod error;
pub mod message;
pub mod message_id;
pub mod metrics;
pub mod rules;
mod store;

pub use api::{
    BatchError, GroupPullRequest, Health, LogOffsets, PopRequest, PoppedMessage, PullResult,
    PullStatus, QueryResult, QueueLag, QueueSelector, RecoveryReport, SendReceipt, SendRequest,
    TopicInfo, TopicUpdate,
};
pub use broker::consumer_group::GroupConfig;
pub use broker::filter::{FilterExpression, FilterKind};
pub use broker::topic::{MessageType, Permission, TopicConfig};
pub use broker::Broker;

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
pub use clock::now_ms;
pub use config::{Config, ConsumerConfig, FlushMode, LimitsConfig, StoreConfig};
pub use error::{Error, ErrorKind, Field, Reason, Result, StoreError};
pub use message::{Message, StoredMessage};
