//! The `Broker`: the one API every gateway calls. A cheap-`Clone` handle over the store and the
//! broker's metadata.
//!
//! Owns: topic administration, queue selection, message validation, id assignment, and the
//! translation between the domain types of [`crate::message`] / [`crate::api`] and the store.
//! Each further concern has its own module: `consume` (groups, pull, offsets, pop / ack, lag),
//! `admin` (topic updates and their change counter, queries by store time, group topics),
//! [`retry`], [`timer`], [`transaction`].
//!
//! Who calls it: gateways and the `rocketgate` binary. It depends on `store`, never on a wire
//! protocol.
//!
//! Concurrency: all methods take `&self`; the store serialises appends internally and the topic
//! table is behind an `RwLock`. `send` awaits durability under `SYNC_FLUSH`. Topic changes are
//! announced on a `tokio::sync::watch` counter ([`Broker::topics_changed`]) after they are
//! persisted.

mod admin;
pub mod assignment;
mod consume;
pub mod consumer_group;
pub mod consumer_state;
pub mod filter;
mod health;
mod meta_file;
pub mod pop;
mod pop_position;
pub mod receipt;
pub mod retry;
pub mod retry_policy;
pub mod scheduled;
pub mod settings_map;
pub mod sql_filter;
pub mod timer;
pub mod topic;
pub mod transaction;
pub mod validate;
mod worker;

pub(crate) use self::consume::validate_group_name;

use std::sync::Arc;
use std::time::Duration;

use self::assignment::Clients;
use self::consumer_group::GroupRegistry;
use self::consumer_state::{ConsumerState, ACK_JOURNAL_TOPIC};
use self::receipt::ReceiptKeys;
use self::timer::{Timer, TIMER_TOPIC};
use self::topic::{TopicConfig, TopicRegistry};
use self::transaction::{Transactions, HALF_TOPIC, OP_TOPIC};
use self::worker::Worker;
use crate::api::{
    PullResult, PullStatus, QueueOffsets, QueueSelector, SendReceipt, SendRequest, TopicInfo,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use crate::message_id;
use crate::store::record::RecordDraft;
use crate::store::{now_ms, Store, SYSTEM_TOPIC_PREFIX};

struct Inner {
    config: Config,
    store: Store,
    topics: TopicRegistry,
    groups: GroupRegistry,
    consumers: ConsumerState,
    receipts: ReceiptKeys,
    clients: Clients,
    timer: Timer,
    retry_backoff_ms: Vec<u64>,
    transactions: Transactions,
    /// Bumped after every change of a user topic (see [`Broker::topics_changed`]).
    topics_version: tokio::sync::watch::Sender<u64>,
    persister: Worker,
    timer_worker: Worker,
    transaction_worker: Worker,
    reviver: Worker,
}

impl Inner {
    fn stop_workers(&self) {
        self.reviver.stop();
        self.transaction_worker.stop();
        self.timer_worker.stop();
        if let Err(e) = self.timer.persist() {
            tracing::error!(error = %e, "could not persist the timer progress");
        }
        self.persister.stop();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_workers();
        let journal = self.store.dispatched().queue_range(ACK_JOURNAL_TOPIC, 0).1;
        if let Err(e) = self.consumers.persist(journal) {
            tracing::error!(error = %e, "could not persist consumer offsets at shutdown");
        }
    }
}

/// Topics the broker manages itself: internal journals, retry and dead-letter topics.
fn is_system_managed(name: &str) -> bool {
    name.starts_with(SYSTEM_TOPIC_PREFIX)
        || name.starts_with(retry::RETRY_PREFIX)
        || name.starts_with(retry::DLQ_PREFIX)
}

/// Checks that `name` is a legal topic name users may create or change.
fn check_user_topic_name(name: &str) -> Result<()> {
    validate::topic_name(name)?;
    if is_system_managed(name) {
        return Err(Error::IllegalTopic {
            name: name.to_owned(),
            reason: "the `rmq_sys_`, `%RETRY%` and `%DLQ%` prefixes are reserved",
        });
    }
    Ok(())
}

/// A record that copies a stored message (id, tag, group, host, keys, body, born time) to
/// `topic` with `properties`: deliveries of scheduled messages and committed halves.
fn copy_draft<'a>(
    m: &'a StoredMessage,
    topic: &'a str,
    properties: &'a std::collections::BTreeMap<String, String>,
    reconsume_times: u32,
    prepared_offset: u64,
) -> RecordDraft<'a> {
    RecordDraft {
        topic,
        message_id: &m.message_id,
        tag: m.tag.as_deref().unwrap_or(""),
        message_group: m.message_group.as_deref().unwrap_or(""),
        born_host: m.born_host.as_deref().unwrap_or(""),
        keys: &m.keys,
        properties,
        body: &m.body,
        born_timestamp: m.born_timestamp_ms,
        reconsume_times,
        flags: 0,
        prepared_offset,
    }
}

/// A validated message on its way into the store.
struct Stored<'a> {
    message: &'a crate::message::Message,
    message_id: &'a str,
    queue_id: u32,
    reconsume_times: u32,
    now: i64,
}

/// The broker handle. Clones share one store.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Opens the store under `config.store.data_dir` (recovering it) and loads the metadata.
    ///
    /// # Errors
    /// Invalid configuration, store recovery failures, unreadable metadata.
    pub fn open(config: Config) -> Result<Self> {
        config.validate()?;
        let meta = config.store.data_dir.join("config");
        let topics = TopicRegistry::load(&meta)?;
        let groups = GroupRegistry::load(&meta)?;
        let receipts = ReceiptKeys::load_or_create(&meta)?;
        let consumers = ConsumerState::load(&meta, now_ms())?;
        let store = Store::open(config.store.clone())?;
        for internal in [ACK_JOURNAL_TOPIC, TIMER_TOPIC, HALF_TOPIC, OP_TOPIC] {
            if topics.get(internal).is_none() {
                topics.create(TopicConfig::new(internal, 1))?;
            }
        }
        let timer = Timer::open(&meta, &config.timer, &store)?;
        let retry_backoff_ms = config.consumer.retry_backoff_ms()?;
        let transactions = Transactions::open(&store, config.transaction.clone())?;
        let clients = Clients::new(Duration::from_millis(config.consumer.client_expiry_ms));
        let broker = Self {
            inner: Arc::new(Inner {
                config,
                store,
                topics,
                groups,
                consumers,
                receipts,
                clients,
                timer,
                retry_backoff_ms,
                transactions,
                topics_version: tokio::sync::watch::channel(0).0,
                persister: Worker::default(),
                timer_worker: Worker::default(),
                transaction_worker: Worker::default(),
                reviver: Worker::default(),
            }),
        };
        let replayed = broker.replay_ack_journal()?;
        if replayed > 0 {
            tracing::info!(acks = replayed, "replayed the pop ack journal");
        }
        broker.start_workers()?;
        Ok(broker)
    }

    fn start_workers(&self) -> Result<()> {
        let inner = &self.inner;
        let every = Duration::from_millis(inner.config.consumer.offset_persist_interval_ms);
        inner
            .persister
            .start("rg-offsets", inner, move |inner| async move {
                let journal = inner.store.dispatched().queue_range(ACK_JOURNAL_TOPIC, 0).1;
                if let Err(e) = inner.consumers.persist(journal) {
                    tracing::error!(error = %e, "could not persist consumer offsets");
                }
                every
            })?;
        inner
            .timer_worker
            .start("rg-timer", inner, |inner| async move {
                timer::tick(&inner).await
            })?;
        inner
            .transaction_worker
            .start("rg-transactions", inner, |inner| async move {
                let broker = Broker { inner };
                broker.transaction_tick().await;
                Duration::from_millis(200)
            })?;
        inner
            .reviver
            .start("rg-revive", inner, |inner| async move {
                Broker { inner }.revive_all().await;
                Duration::from_secs(1)
            })?;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// [`Error::IllegalTopic`], [`Error::InvalidArgument`] for a bad queue count,
    /// [`Error::TopicExists`], [`Error::Metadata`].
    pub fn create_topic(&self, config: TopicConfig) -> Result<TopicInfo> {
        check_user_topic_name(&config.name)?;
        let max = self.inner.config.limits.max_queues_per_topic;
        if config.queue_count == 0 || config.queue_count > max {
            return Err(Error::InvalidArgument(format!(
                "queue_count must be between 1 and {max}"
            )));
        }
        let topic = self.inner.topics.create(config)?;
        tracing::info!(topic = %topic.config.name, queues = topic.config.queue_count, "topic created");
        self.note_topics_changed();
        self.describe_now(&topic.config.name)
    }

    /// A topic's configuration (queues, type, permission).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::IllegalTopic`] for a name no topic can have.
    pub fn topic_config(&self, name: &str) -> Result<TopicConfig> {
        Ok(self.topic(name)?.config.clone())
    }

    /// Describes a topic with its per-queue offsets, which include every message whose send
    /// returned before this call.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::IllegalTopic`] for a name no topic can have.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        // Every send that returned before this call is in the offsets.
        self.inner.store.visible().await?;
        self.describe_now(name)
    }

    /// [`Broker::describe_topic`] with the offsets dispatched so far.
    fn describe_now(&self, name: &str) -> Result<TopicInfo> {
        let topic = self.topic(name)?;
        let queues = (0..topic.config.queue_count)
            .map(|q| {
                let (min, max) = self.inner.store.dispatched().queue_range(name, q);
                QueueOffsets {
                    queue_id: q,
                    min,
                    max,
                }
            })
            .collect();
        Ok(TopicInfo {
            config: topic.config.clone(),
            queues,
        })
    }

    /// All topics except the internal journals, sorted by name: user topics and the retry and
    /// dead-letter topics of groups ([`Broker::list_user_topics`] leaves those out too).
    pub fn list_topics(&self) -> Vec<TopicConfig> {
        let mut topics = self.inner.topics.list();
        topics.retain(|t| !t.name.starts_with(SYSTEM_TOPIC_PREFIX));
        topics
    }

    /// Deletes a topic and its ConsumeQueues (its CommitLog records age out with retention).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], I/O errors.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        if name.starts_with(SYSTEM_TOPIC_PREFIX) {
            return Err(Error::PermissionDenied {
                topic: name.to_owned(),
                what: "deletable",
            });
        }
        self.inner.topics.delete(name)?;
        if !is_system_managed(name) {
            self.note_topics_changed();
        }
        self.inner.store.delete_queues(name)?;
        self.inner.consumers.forget_topic(name);
        tracing::info!(topic = %name, "topic deleted");
        Ok(())
    }

    fn topic(&self, name: &str) -> Result<Arc<topic::Topic>> {
        match self.inner.topics.get(name) {
            Some(t) => Ok(t),
            None => {
                validate::topic_name(name)?;
                Err(Error::TopicNotFound(name.to_owned()))
            }
        }
    }

    /// Stores a message; under `SYNC_FLUSH` returns only once it is durable.
    ///
    /// # Errors
    /// Validation errors, [`Error::TopicNotFound`], [`Error::QueueNotFound`],
    /// [`Error::PermissionDenied`], and store errors (disk full, poisoned, I/O).
    pub async fn send(&self, req: SendRequest) -> Result<SendReceipt> {
        let started = std::time::Instant::now();
        let now = now_ms();
        let (m, queue_id, deliver_at) = self.prepare(&req, false, now)?;
        let generated;
        let message_id = match &m.message_id {
            Some(id) => id.as_str(),
            None => {
                generated = message_id::generate(now);
                generated.as_str()
            }
        };
        self.store_message(
            &Stored {
                message: m,
                message_id,
                queue_id,
                reconsume_times: 0,
                now,
            },
            deliver_at,
        )
        .await
        .inspect(|_| crate::metrics::sent(&m.topic, m.body.len(), started.elapsed()))
    }

    /// Stores a batch: every request is checked first ([`Broker::check_send`]), so a bad one
    /// stores none; then each is stored in order. Only a store fault in the middle (disk full,
    /// shutdown) leaves a prefix stored, and the error says how long.
    ///
    /// # Errors
    /// [`BatchError`] with the failing request's index, how many were stored before it, and
    /// the error [`Broker::send`] would give.
    pub async fn send_batch(
        &self,
        requests: Vec<SendRequest>,
    ) -> std::result::Result<Vec<SendReceipt>, crate::api::BatchError> {
        use crate::api::BatchError;
        for (index, r) in requests.iter().enumerate() {
            self.check_send(r).map_err(|error| BatchError {
                index,
                stored: 0,
                error,
            })?;
        }
        let mut receipts = Vec::with_capacity(requests.len());
        for (index, r) in requests.into_iter().enumerate() {
            match self.send(r).await {
                Ok(receipt) => receipts.push(receipt),
                Err(error) => {
                    return Err(BatchError {
                        index,
                        stored: index,
                        error,
                    })
                }
            }
        }
        Ok(receipts)
    }

    /// Appends a record to an internal journal topic (queue 0): not indexed, stored under the
    /// flush mode before this returns.
    pub(super) async fn append_internal(&self, topic: &str, body: &[u8]) -> Result<()> {
        let empty = std::collections::BTreeMap::new();
        let now = now_ms();
        let id = message_id::generate(now);
        let draft = RecordDraft {
            topic,
            message_id: &id,
            tag: "",
            message_group: "",
            born_host: "",
            keys: &[],
            properties: &empty,
            body,
            born_timestamp: now,
            reconsume_times: 0,
            flags: crate::store::record::FLAG_NO_INDEX,
            prepared_offset: 0,
        };
        self.inner.store.append(&draft, 0).await?;
        Ok(())
    }

    /// Checks a send request against every rule [`Broker::send`] applies before storing (the
    /// topic, its permission and type, the message's fields and limits, the queue, the delay),
    /// without storing anything: what a gateway calls to refuse a whole batch before its first
    /// message is stored.
    ///
    /// # Errors
    /// The validation errors of [`Broker::send`].
    pub fn check_send(&self, req: &SendRequest) -> Result<()> {
        self.validate_send(req, false, now_ms())?;
        Ok(())
    }

    /// The rules of a send (`half` for a transactional half message), in the order of
    /// RocketMQ's proxy: topic, message fields, permission, delivery time, declared type,
    /// queue. Returns the topic and, for a delayed message, when it is due.
    fn validate_send(
        &self,
        req: &SendRequest,
        half: bool,
        now: i64,
    ) -> Result<(Arc<topic::Topic>, Option<i64>)> {
        let m = &req.message;
        let topic = self.topic(&m.topic)?;
        validate::message(m, &self.inner.config.limits)?;
        if !topic.config.permission.write || is_system_managed(&m.topic) {
            return Err(Error::PermissionDenied {
                topic: m.topic.clone(),
                what: "writable",
            });
        }
        let deliver_at = self
            .inner
            .timer
            .due_time(now, m.delay_level, m.deliver_at_ms)?;
        if let Some(declared) = req.message_type {
            validate::declared_type(m, declared, &m.topic, topic.config.message_type, half)?;
        }
        if let QueueSelector::Queue(q) = req.queue {
            if q >= topic.config.queue_count.max(1) {
                return Err(Error::QueueNotFound {
                    topic: m.topic.clone(),
                    queue_id: q,
                });
            }
        }
        Ok((topic, deliver_at))
    }

    /// Validates a send request and picks its queue; returns the message, its queue and when a
    /// delayed message is due.
    fn prepare<'a>(
        &self,
        req: &'a SendRequest,
        half: bool,
        now: i64,
    ) -> Result<(&'a crate::message::Message, u32, Option<i64>)> {
        let m = &req.message;
        let (topic, deliver_at) = self.validate_send(req, half, now)?;
        let n = topic.config.queue_count.max(1);
        let queue_id = match &req.queue {
            QueueSelector::Queue(q) => *q,
            QueueSelector::ShardingKey(k) => crc32c::crc32c(k.as_bytes()) % n,
            QueueSelector::Auto => match &m.message_group {
                Some(g) => crc32c::crc32c(g.as_bytes()) % n,
                None => topic.next_queue(),
            },
        };
        Ok((m, queue_id, deliver_at))
    }

    /// Appends a validated message to its queue, or to the timer topic until `deliver_at`.
    async fn store_message(&self, s: &Stored<'_>, deliver_at: Option<i64>) -> Result<SendReceipt> {
        let m = s.message;
        let scheduled_props;
        let (topic, queue_id, properties, flags, aux) = match deliver_at {
            Some(at) => {
                let mut p = m.properties.clone();
                p.insert(timer::PROP_REAL_TOPIC.into(), m.topic.clone());
                p.insert(timer::PROP_REAL_QID.into(), s.queue_id.to_string());
                p.insert(timer::PROP_DELIVER_AT.into(), at.to_string());
                scheduled_props = p;
                (
                    TIMER_TOPIC,
                    0,
                    &scheduled_props,
                    crate::store::record::FLAG_QUEUE_KEY,
                    at as u64,
                )
            }
            None => (m.topic.as_str(), s.queue_id, &m.properties, 0, 0),
        };
        let draft = RecordDraft {
            topic,
            message_id: s.message_id,
            tag: m.tag.as_deref().unwrap_or(""),
            message_group: m.message_group.as_deref().unwrap_or(""),
            born_host: m.born_host.as_deref().unwrap_or(""),
            keys: &m.keys,
            properties,
            body: &m.body,
            born_timestamp: m.born_timestamp_ms.unwrap_or(s.now),
            reconsume_times: s.reconsume_times,
            flags,
            prepared_offset: aux,
        };
        let appended = self.inner.store.append(&draft, queue_id).await?;
        if deliver_at.is_some() {
            self.inner.timer_worker.wake();
        }
        Ok(SendReceipt {
            message_id: s.message_id.to_owned(),
            queue_id: s.queue_id,
            queue_offset: appended.queue_offset,
            physical_offset: appended.physical_offset,
            store_timestamp_ms: appended.store_timestamp,
            deliver_at_ms: deliver_at,
            transaction_id: None,
        })
    }

    /// Cancels a scheduled message by id before it is due (RocketMQ 5 "recall").
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] if no such scheduled message is pending.
    pub async fn cancel_scheduled(&self, id: &str) -> Result<()> {
        let reads = self.inner.store.visible().await?;
        let pending = reads
            .find_all_by_id(id)?
            .into_iter()
            .filter(|m| m.topic == TIMER_TOPIC)
            .map(|m| self.inner.timer.cancel(m.physical_offset, m.queue_offset))
            .collect::<Result<Vec<bool>>>()?;
        if pending.contains(&true) {
            Ok(())
        } else {
            Err(Error::MessageNotFound(id.to_owned()))
        }
    }

    /// The life of a message so far: every record stored under its id (sent, scheduled, half,
    /// delivered, retried, dead-lettered, resent), oldest first.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] if nothing is stored under the id, store errors.
    pub async fn trace(&self, id: &str) -> Result<Vec<crate::api::TraceEvent>> {
        use crate::api::{TraceEvent, TraceKind};
        let reads = self.inner.store.visible().await?;
        let mut records = reads.find_all_by_id(id)?;
        if records.is_empty() {
            return Err(Error::MessageNotFound(id.to_owned()));
        }
        records.sort_by_key(|m| m.physical_offset);
        Ok(records
            .into_iter()
            .map(|m| {
                let deliver_at_ms = m
                    .properties
                    .get(timer::PROP_DELIVER_AT)
                    .and_then(|t| t.parse().ok());
                let kind = if m.topic == TIMER_TOPIC {
                    TraceKind::Scheduled
                } else if m.topic == HALF_TOPIC {
                    TraceKind::Half
                } else if m.topic.starts_with(retry::RETRY_PREFIX) {
                    TraceKind::Retry
                } else if m.topic.starts_with(retry::DLQ_PREFIX) {
                    TraceKind::DeadLettered
                } else {
                    TraceKind::Stored
                };
                let topic = match kind {
                    TraceKind::Scheduled | TraceKind::Half => m
                        .properties
                        .get(timer::PROP_REAL_TOPIC)
                        .cloned()
                        .unwrap_or(m.topic),
                    _ => m.topic,
                };
                TraceEvent {
                    kind,
                    topic,
                    queue_id: m.queue_id,
                    queue_offset: m.queue_offset,
                    store_timestamp_ms: m.store_timestamp_ms,
                    attempts: m.reconsume_times,
                    deliver_at_ms,
                }
            })
            .collect())
    }

    /// Scheduled messages not yet delivered.
    pub fn scheduled_pending(&self) -> usize {
        self.inner.timer.pending()
    }

    /// Reads up to `max` messages of one queue from `offset` (no consumer group involved).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::PermissionDenied`],
    /// [`Error::InvalidArgument`] for `max` 0 or over the limit, store errors.
    pub async fn pull(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
        max: usize,
    ) -> Result<PullResult> {
        let t = self.topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        if !t.config.permission.read {
            return Err(Error::PermissionDenied {
                topic: topic.to_owned(),
                what: "readable",
            });
        }
        let limit = self.inner.config.limits.max_batch;
        if max == 0 || max > limit {
            return Err(Error::InvalidArgument(format!(
                "batch size must be between 1 and {limit}"
            )));
        }
        let reads = self.inner.store.visible().await?;
        let (min, maxo) = reads.queue_range(topic, queue_id);
        let (status, from) = if offset < min {
            (PullStatus::OffsetMoved, min)
        } else if offset > maxo {
            (PullStatus::OffsetTooBig, maxo)
        } else {
            (PullStatus::Found, offset)
        };
        let messages = reads.read_queue(topic, queue_id, from, max)?;
        let next_offset = messages.last().map_or(from, |m| m.queue_offset + 1);
        let status = match status {
            PullStatus::Found if messages.is_empty() => PullStatus::NoNewMessage,
            s => s,
        };
        Ok(PullResult {
            status,
            messages,
            next_offset,
            min_offset: min,
            max_offset: maxo,
        })
    }

    /// `(min, max)` offsets of a queue.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`].
    pub async fn queue_offsets(&self, topic: &str, queue_id: u32) -> Result<QueueOffsets> {
        let t = self.topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        let reads = self.inner.store.visible().await?;
        let (min, max) = reads.queue_range(topic, queue_id);
        Ok(QueueOffsets { queue_id, min, max })
    }

    /// The message with this id.
    ///
    /// # Errors
    /// [`Error::MessageNotFound`], store errors.
    pub async fn message_by_id(&self, id: &str) -> Result<StoredMessage> {
        if id.is_empty() || id.len() > self.inner.config.limits.max_field_bytes {
            return Err(Error::IllegalField {
                field: crate::error::Field::MessageId,
                reason: "empty or too long".into(),
            });
        }
        let reads = self.inner.store.visible().await?;
        reads
            .find_by_id(id)?
            .map(|m| {
                if m.topic == TIMER_TOPIC {
                    timer::present_scheduled(m)
                } else {
                    m
                }
            })
            .ok_or_else(|| Error::MessageNotFound(id.to_owned()))
    }

    /// Messages of `topic` with `key` stored within `[begin_ms, end_ms]`, newest first.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::InvalidArgument`] for `max` out of range or an
    /// inverted time range, store errors.
    pub async fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        self.topic(topic)?;
        let limit = self.inner.config.limits.max_batch;
        if max == 0 || max > limit {
            return Err(Error::InvalidArgument(format!(
                "max must be between 1 and {limit}"
            )));
        }
        if begin_ms > end_ms {
            return Err(Error::InvalidArgument("begin is after end".into()));
        }
        let reads = self.inner.store.visible().await?;
        Ok(reads.find_by_key(topic, key, begin_ms, end_ms, max)?)
    }

    /// Flushes and closes the store cleanly (also done when the last handle drops).
    ///
    /// # Errors
    /// The final flush's error.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.stop_workers();
        self.persist_consumer_state()?;
        Ok(self.inner.store.shutdown()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
