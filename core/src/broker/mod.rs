//! The `Broker`: the one API every gateway calls — a cheap-`Clone` handle that opens and shuts
//! down the store and hands out one service per concern:
//!
//! ```text
//! Broker ─┬─ topics()       Topics        topics.rs        topic table (topic.rs)
//!         ├─ producer()     Producer      produce.rs       the rulebook (validate.rs)
//!         ├─ consumer()     Consumer      consumer.rs      consume.rs, pop.rs, consumer_state.rs,
//!         │                                                receipt.rs, assignment.rs, retry.rs
//!         ├─ groups()       Groups        groups.rs        group table (consumer_group.rs)
//!         ├─ scheduler()    Scheduler     scheduler.rs     timer.rs, scheduled.rs
//!         ├─ transactions() Transactions  transactions.rs  transaction.rs
//!         ├─ dead_letters() DeadLetters   dead_letters.rs  retry.rs
//!         ├─ queries()      Queries       queries.rs
//!         ├─ storage()      Storage       storage.rs
//!         ├─ settings()     Settings      settings_map.rs
//!         ├─ kv()           Kv            kv.rs            the KV store (crate::kv)
//!         └─ auth()         Auth          auth.rs          users, policies, tokens (crate::auth)
//! ```
//!
//! A service is a borrowed view (`Copy`, methods take `self`); its state is one field of the
//! shared `Inner` below, a struct that owns its data and its worker: `topics` (the table and its
//! change counter), `consumption` (groups, offsets and pop state, receipt keys, clients, the
//! persister and revival workers), `timer` (scheduled messages, the delivery worker),
//! `transactions` (pending halves, checkers, the check-back worker), `auth` (users, policies,
//! tokens: `crate::auth::AuthState`). Helpers are `impl Broker`
//! blocks in the modules on the right.
//! This module owns what every service shares: opening (recovery, the internal topics, the
//! workers), shutdown, the topic lookup, queue selection, id assignment and the append of a
//! validated message (`validate_send`, `prepare`, `store_message`).
//!
//! Who calls it: gateways and the `rocketgate` binary. It depends on `store`, never on a wire
//! protocol.
//!
//! Concurrency: the store serialises appends internally and the topic table is behind an
//! `RwLock`; a send awaits durability under `SYNC_FLUSH`. Four background workers (OS threads,
//! `worker.rs`): consumer-state persister, timer delivery, transaction check-back, pop revival.

pub mod assignment;
mod auth;
mod caller;
mod consume;
mod consumer;
pub mod consumer_group;
pub mod consumer_state;
pub(crate) mod data_dir;
mod dead_letters;
pub mod filter;
mod groups;
mod kv;
pub(crate) mod meta_file;
pub mod pop;
mod pop_position;
mod produce;
mod queries;
mod reading;
pub mod receipt;
pub mod retry;
pub mod retry_policy;
pub mod scheduled;
mod scheduler;
pub mod settings_map;
pub mod sql_filter;
mod storage;
mod subscription;
mod table;
pub mod timer;
pub mod topic;
mod topics;
pub mod transaction;
mod transactions;
pub mod validate;
mod worker;

pub use self::auth::Auth;
pub use self::caller::{Caller, Gateway};
pub use self::consumer::Consumer;
pub use self::dead_letters::DeadLetters;
pub use self::groups::Groups;
pub use self::kv::Kv;
pub use self::produce::Producer;
pub use self::queries::Queries;
pub use self::scheduler::Scheduler;
pub use self::settings_map::Settings;
pub use self::storage::Storage;
pub use self::subscription::{Credits, Subscription, SubscriptionCredits, SubscriptionRequest};
pub use self::topics::Topics;
pub use self::transactions::Transactions;

pub(crate) use self::consume::validate_group_name;

use std::sync::Arc;
use std::time::Duration;

use self::assignment::Clients;
use self::consumer_group::GroupRegistry;
use self::consumer_state::{ConsumerState, ACK_JOURNAL_TOPIC};
use self::receipt::ReceiptKeys;
use self::timer::{Timer, TIMER_TOPIC};
use self::topic::{TopicConfig, TopicRegistry};
use self::transaction::{TransactionState, HALF_TOPIC, OP_TOPIC};
use self::worker::Worker;
use crate::api::{QueueOffsets, QueueSelector, SendReceipt, SendRequest, TopicInfo};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use crate::message_id;
use crate::store::record::RecordDraft;
use crate::store::{Store, SYSTEM_TOPIC_PREFIX};

struct Inner {
    config: Config,
    /// The time source of every decision (see [`crate::clock`]).
    clock: Arc<dyn crate::clock::Clock>,
    /// Shared with the slave's `Replica` when this is a slave's read-only broker.
    store: Arc<Store>,
    kv: Arc<crate::kv::KvStore>,
    /// The state of [`Topics`]: the topic table and its change counter.
    topics: TopicRegistry,
    /// The state of [`Consumer`] and [`Groups`], with their two workers.
    consumption: consumer::ConsumptionState,
    /// The state of [`Scheduler`]: scheduled messages and the delivery worker.
    timer: Timer,
    /// The state of [`Transactions`]: pending halves, checkers, the check-back worker.
    transactions: TransactionState,
    /// The state of [`Auth`]: users, policies, tokens.
    auth: crate::auth::AuthState,
    /// The in-sync set of this broker's slaves and the SYNC replication gate.
    in_sync: crate::replication::InSync,
    /// The write fence and switch requests of a switchover.
    handover: crate::replication::Handover,
    /// Set on a slave's read-only broker (`replication/reads.rs`): the offsets committed
    /// there. Such a broker runs no worker and writes nothing but that overlay.
    reader: Option<Arc<crate::replication::reads::SlaveCommits>>,
}

impl Inner {
    fn stop_workers(&self) {
        if self.reader.is_some() {
            return;
        }
        self.consumption.reviver.stop();
        self.transactions.worker.stop();
        self.timer.worker.stop();
        if let Err(e) = self.timer.persist() {
            tracing::error!(error = %e, "could not persist the timer progress");
        }
        self.consumption.persister.stop();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.reader.is_some() {
            return;
        }
        self.stop_workers();
        let journal = self.store.dispatched().queue_range(ACK_JOURNAL_TOPIC, 0).1;
        if let Err(e) = self.consumption.consumers.persist(journal) {
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
pub(super) struct Stored<'a> {
    message: &'a crate::message::Message,
    message_id: &'a str,
    queue_id: u32,
    reconsume_times: u32,
    now: i64,
}

/// The broker handle. Clones share one store. A handle may carry who asks
/// ([`Broker::as_caller`]); one that does not is a client without any gateway's capability.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
    caller: Option<Arc<Caller>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// The store and the KV store, for replication's leader side. The caller must not write
    /// through them.
    pub(crate) fn replication_parts(&self) -> (&Store, &Arc<crate::kv::KvStore>) {
        (&self.inner.store, &self.inner.kv)
    }

    pub(crate) fn in_sync(&self) -> &crate::replication::InSync {
        &self.inner.in_sync
    }

    pub(crate) fn handover(&self) -> &crate::replication::Handover {
        &self.inner.handover
    }

    /// Stops every background worker (timer delivery, check-backs, revival, the offset
    /// persister) and persists the consumer state, leaving the store open for reading: what a
    /// master does before it hands its role over, so that nothing more is written.
    ///
    /// # Errors
    /// Persisting the consumer state failed.
    pub(crate) fn quiesce(&self) -> Result<()> {
        self.inner.stop_workers();
        self.consumer().persist_state()
    }

    /// Appends a record a client will be told about: under SYNC replication, refused while
    /// too few replicas are in sync, and returned only once every in-sync slave has it (see
    /// `replication::in_sync`). Internal records (journals, timer deliveries) use the store
    /// directly: they replicate behind.
    pub(super) async fn append_acked(
        &self,
        draft: &RecordDraft<'_>,
        queue_id: u32,
    ) -> Result<crate::store::Appended> {
        let store = &self.inner.store;
        let end = || store.log_offsets().2;
        self.inner.handover.check_writable()?;
        self.inner.in_sync.check_writable(end)?;
        let appended = store.append(draft, queue_id).await?;
        self.inner.in_sync.replicated(appended.end, end).await?;
        Ok(appended)
    }

    /// Opens the store under `config.store.data_dir` (recovering it) and loads the metadata.
    ///
    /// # Errors
    /// Invalid configuration, store recovery failures, unreadable metadata.
    pub fn open(config: Config) -> Result<Self> {
        Self::open_with_clock(config, Arc::new(crate::clock::SystemClock))
    }

    /// [`Broker::open`] with `clock` as the time source of every decision (delivery times,
    /// invisibility, backoff, check-backs): tests pass a [`crate::clock::ManualClock`].
    ///
    /// # Errors
    /// As [`Broker::open`].
    pub fn open_with_clock(config: Config, clock: Arc<dyn crate::clock::Clock>) -> Result<Self> {
        config.validate()?;
        let meta = config.store.data_dir.join("config");
        data_dir::make_private(&config.store.data_dir)?;
        // The store first: it takes the data directory's lock, so a second process on the same
        // directory is refused before it touches the KV store or the metadata.
        let store = Store::open_with_clock(config.store.clone(), clock.clone())?;
        std::fs::create_dir_all(&meta).map_err(|e| meta_file::meta_err(&meta, e))?;
        let kv = Arc::new(crate::kv::KvStore::open(
            &config.store.data_dir.join("kv"),
            crate::kv::Limits {
                max_value: config.limits.max_body_bytes.saturating_add(64 << 10),
                max_total: config.kv.max_total_bytes,
                compact_log_bytes: config.kv.compact_log_bytes,
            },
        )?);
        settings_map::import_json_files(&kv, &meta)?;
        let broker = Self::assemble(config, clock, Arc::new(store), kv, None)?;
        let replayed = broker.replay_ack_journal()?;
        if replayed > 0 {
            tracing::info!(acks = replayed, "replayed the pop ack journal");
        }
        broker.start_workers()?;
        broker.commit_slave_offsets(&meta)?;
        Ok(broker)
    }

    /// A read-only broker over a slave's copy (`store` and `kv` are the `Replica`'s, which
    /// refuse local writes): it loads the tables from the KV store, runs no worker, refuses
    /// writes with [`Error::NotMaster`] and keeps the offsets committed on it aside
    /// (`replication/reads.rs`).
    ///
    /// # Errors
    /// Unreadable metadata.
    pub(crate) fn open_reader(
        config: Config,
        store: Arc<Store>,
        kv: Arc<crate::kv::KvStore>,
    ) -> Result<Self> {
        let meta = config.store.data_dir.join("config");
        std::fs::create_dir_all(&meta).map_err(|e| meta_file::meta_err(&meta, e))?;
        let commits = Arc::new(crate::replication::reads::SlaveCommits::open(&meta)?);
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let broker = Self::assemble(config, clock, store, kv, Some(commits))?;
        broker.overlay_slave_commits();
        Ok(broker)
    }

    /// The broker over an open store and KV store: loads every table (a master also creates
    /// the internal topics).
    fn assemble(
        config: Config,
        clock: Arc<dyn crate::clock::Clock>,
        store: Arc<Store>,
        kv: Arc<crate::kv::KvStore>,
        reader: Option<Arc<crate::replication::reads::SlaveCommits>>,
    ) -> Result<Self> {
        let meta = config.store.data_dir.join("config");
        let topics = TopicRegistry::load(kv.clone(), &meta)?;
        let groups = GroupRegistry::load(kv.clone(), &meta)?;
        let receipts = ReceiptKeys::load_or_create(&meta)?;
        let consumers = ConsumerState::load(kv.clone(), &meta, clock.now_ms())?;
        if reader.is_none() {
            for internal in [ACK_JOURNAL_TOPIC, TIMER_TOPIC, HALF_TOPIC, OP_TOPIC] {
                if topics.get(internal).is_none() {
                    topics.create(TopicConfig::new(internal, 1))?;
                }
            }
        }
        let timer = Timer::open(kv.clone(), &meta, &config.timer, &store)?;
        let retry_backoff_ms = config.consumer.retry_backoff_ms()?;
        let transactions =
            TransactionState::open(&store, config.transaction.clone(), clock.now_ms())?;
        let clients = Clients::new(Duration::from_millis(config.consumer.client_expiry_ms));
        let mut auth_config = config.auth.clone();
        if reader.is_some() {
            // The bootstrap user is the master's to write; it arrives with the KV store.
            auth_config.bootstrap_access_key = None;
            auth_config.bootstrap_secret_key = None;
        }
        let auth = crate::auth::AuthState::load(kv.clone(), auth_config, clock.now_ms())?;
        let in_sync_clock = clock.clone();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                clock,
                store,
                kv,
                topics,
                consumption: consumer::ConsumptionState {
                    groups,
                    consumers,
                    receipts,
                    clients,
                    retry_backoff_ms,
                    persister: Worker::default(),
                    reviver: Worker::default(),
                },
                timer,
                transactions,
                auth,
                in_sync: crate::replication::InSync::new(in_sync_clock),
                handover: crate::replication::Handover::new(),
                reader,
            }),
            caller: None,
        })
    }

    pub(super) fn start_workers(&self) -> Result<()> {
        let inner = &self.inner;
        let every = Duration::from_millis(inner.config.consumer.offset_persist_interval_ms);
        inner
            .consumption
            .persister
            .start("rg-offsets", inner, move |inner| async move {
                let journal = inner.store.dispatched().queue_range(ACK_JOURNAL_TOPIC, 0).1;
                if let Err(e) = inner.consumption.consumers.persist(journal) {
                    tracing::error!(error = %e, "could not persist consumer offsets");
                }
                every
            })?;
        inner
            .timer
            .worker
            .start("rg-timer", inner, |inner| async move {
                timer::tick(&inner).await
            })?;
        inner
            .transactions
            .worker
            .start("rg-transactions", inner, |inner| async move {
                let broker = Broker {
                    inner,
                    caller: None,
                };
                broker.transaction_tick().await;
                Duration::from_millis(200)
            })?;
        inner
            .consumption
            .reviver
            .start("rg-revive", inner, |inner| async move {
                Broker {
                    inner,
                    caller: None,
                }
                .revive_all()
                .await;
                Duration::from_secs(1)
            })?;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Now, by the broker's clock (ms since the epoch): what gateways stamp protocol times
    /// with, so that they agree with the broker's decisions.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Runs every background worker's next round now (timer delivery, redelivery of expired
    /// pops, transaction check-backs, offset persistence) instead of at its next interval:
    /// what a test calls after moving a [`crate::clock::ManualClock`].
    pub fn wake_workers(&self) {
        let i = &self.inner;
        for w in [
            &i.timer.worker,
            &i.consumption.reviver,
            &i.transactions.worker,
            &i.consumption.persister,
        ] {
            w.wake();
        }
    }

    /// Topic administration: create, describe, list, update, delete; the change counter.
    pub fn topics(&self) -> Topics<'_> {
        Topics { broker: self }
    }

    /// Sending: one message, a batch, and checking a send without storing it.
    pub fn producer(&self) -> Producer<'_> {
        Producer { broker: self }
    }

    /// Consumption: pull, pop / ack / nack / invisibility, offsets, clients, assignment, lag.
    pub fn consumer(&self) -> Consumer<'_> {
        Consumer { broker: self }
    }

    /// Consumer groups: create, read, list, delete, subscriptions, retry policy.
    pub fn groups(&self) -> Groups<'_> {
        Groups { broker: self }
    }

    /// Scheduled (delayed and timed) messages: list, count, cancel.
    pub fn scheduler(&self) -> Scheduler<'_> {
        Scheduler { broker: self }
    }

    /// Transactions: half messages, commit / rollback, check-back checkers.
    pub fn transactions(&self) -> Transactions<'_> {
        Transactions { broker: self }
    }

    /// Dead letters of a group: list, resend, purge.
    pub fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters { broker: self }
    }

    /// Queries: by message id, key and store time; traces; queue time positions.
    pub fn queries(&self) -> Queries<'_> {
        Queries { broker: self }
    }

    /// The store's health: write refusal, CommitLog positions, recovery, retention now.
    pub fn storage(&self) -> Storage<'_> {
        Storage { broker: self }
    }

    /// Small durable settings maps of gateways.
    pub fn settings(&self) -> Settings<'_> {
        Settings { broker: self }
    }

    /// The durable key-value store of small state: get, put, delete, scan, its sequence.
    pub fn kv(&self) -> Kv<'_> {
        Kv { broker: self }
    }

    /// Users, policies and tokens; authentication and authorization for every gateway.
    pub fn auth(&self) -> Auth<'_> {
        Auth { broker: self }
    }

    /// [`Topics::describe`] with the offsets dispatched so far.
    pub(super) fn describe_now(&self, name: &str) -> Result<TopicInfo> {
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

    pub(super) fn topic(&self, name: &str) -> Result<Arc<topic::Topic>> {
        self.check_reserved_topic(name)?;
        match self.inner.topics.get(name) {
            Some(t) => Ok(t),
            None => {
                validate::topic_name(name)?;
                Err(Error::TopicNotFound(name.to_owned()))
            }
        }
    }

    /// Appends a record to an internal journal topic (queue 0): not indexed, stored under the
    /// flush mode before this returns.
    pub(super) async fn append_internal(&self, topic: &str, body: &[u8]) -> Result<()> {
        let empty = std::collections::BTreeMap::new();
        let now = self.inner.clock.now_ms();
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

    /// The rules of a send (`half` for a transactional half message), in the order of
    /// RocketMQ's proxy: topic, message fields, permission, delivery time, message type
    /// (declared, or what the fields make it) against the topic's, queue. Returns the topic and, for a delayed message, when it is due.
    pub(super) fn validate_send(
        &self,
        req: &SendRequest,
        half: bool,
        now: i64,
    ) -> Result<(Arc<topic::Topic>, Option<i64>)> {
        let m = &req.message;
        let topic = self.topic(&m.topic)?;
        validate::message(m, &self.inner.config.limits)?;
        self.check_reserved_properties(m.properties.keys())?;
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
        let actual = match req.message_type {
            Some(declared) => {
                validate::declared_type(m, declared, half)?;
                declared
            }
            None => validate::inferred_type(m, half),
        };
        // The broker's own re-publishes (dead-letter resends) put back what a topic once took.
        if self.inner.config.limits.topic_message_type_check && !self.is_internal() {
            validate::topic_accepts(&m.topic, topic.config.message_type, actual)?;
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
    pub(super) fn prepare<'a>(
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
    pub(super) async fn store_message(
        &self,
        s: &Stored<'_>,
        deliver_at: Option<i64>,
    ) -> Result<SendReceipt> {
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
        let appended = self.append_acked(&draft, queue_id).await?;
        if deliver_at.is_some() {
            self.inner.timer.worker.wake();
        }
        Ok(SendReceipt {
            message_id: s.message_id.to_owned(),
            queue_id: s.queue_id,
            // A scheduled record sits in the timer topic: the target queue's offset is known
            // only when it is due.
            queue_offset: deliver_at.is_none().then_some(appended.queue_offset),
            physical_offset: appended.physical_offset,
            store_timestamp_ms: appended.store_timestamp,
            deliver_at_ms: deliver_at,
            transaction_id: None,
        })
    }

    /// Flushes and closes the store cleanly (also done when the last handle drops).
    ///
    /// # Errors
    /// The final flush's error.
    pub fn shutdown(&self) -> Result<()> {
        if self.inner.reader.is_some() {
            // A slave's read-only broker: the store is the slave's, closed by it.
            return Ok(());
        }
        self.inner.stop_workers();
        self.consumer().persist_state()?;
        Ok(self.inner.store.shutdown()?)
    }

    /// [`Broker::shutdown`] from async code: the joins of the worker threads and the final
    /// flush run on tokio's blocking pool, so no runtime worker thread is blocked.
    ///
    /// # Errors
    /// As [`Broker::shutdown`]; [`crate::StoreError::Closed`] if the blocking task could not run.
    pub async fn close(&self) -> Result<()> {
        let broker = self.clone();
        match tokio::task::spawn_blocking(move || broker.shutdown()).await {
            Ok(r) => r,
            Err(_) => Err(crate::store::Error::Closed.into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod state_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
