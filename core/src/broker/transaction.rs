//! Transactional messages: half messages, their resolution, and check-back.
//!
//! Owns: the internal topics [`HALF_TOPIC`] (half messages, invisible to consumers) and
//! [`OP_TOPIC`] (resolutions: one line `transaction_id\tC|R|D`), the table of pending halves,
//! the checkers that producer groups register, and the check-back worker (`rg-transactions`).
//!
//! - `send_half` stores the message in the half topic (durably, before it returns) with its
//!   target topic and queue, producer group and a broker-assigned transaction id.
//! - `end_transaction(id, Commit)` appends the real message to its queue — same message id, its
//!   `prepared_offset` pointing at the half — and then the resolution; `Rollback` appends only
//!   the resolution. A second resolution of a resolved transaction changes nothing and returns
//!   [`Error::TransactionResolved`] (RocketMQ #5574: a double commit delivered twice).
//! - Unresolved halves are checked back through the [`TransactionChecker`] registered for
//!   their producer group — first `transaction.check_first_ms` after the half was stored (or
//!   the half's own [`PROP_CHECK_IMMUNITY_SECS`], at most a day), then
//!   every `transaction.check_interval_ms`, at most `transaction.max_checks` times — and then
//!   discarded (resolution `D`, logged, listed by [`Transactions::discarded`]).
//!
//! Recovery: at start every half without a resolution is pending again (and checked back). A
//! half whose committed copy is already stored (a crash between the two appends of a commit)
//! is recognised through the message-id index and resolved, never delivered twice: the message
//! is delivered once or discarded, never both, never lost.
//!
//! Concurrency: one mutex around the pending table; resolutions are serialised per transaction
//! by removing it from the table before appending.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::Broker;
use crate::error::{Error, Result};
use crate::message::StoredMessage;

/// Internal topic of half messages.
pub const HALF_TOPIC: &str = "rmq_sys_trans_half";
/// Internal topic of resolutions.
pub const OP_TOPIC: &str = "rmq_sys_trans_op";
/// Reserved property: the producer group of a half message.
pub const PROP_PRODUCER_GROUP: &str = "PGROUP";
/// Reserved property: the transaction id of a half message.
pub const PROP_TRANSACTION_ID: &str = "TRAN_MSG";
/// Producer property (RocketMQ's name): seconds before the first check-back of this half
/// message, instead of `transaction.check_first_ms`. The RocketMQ 5 gateway sets it from
/// `orphaned_transaction_recovery_duration`.
pub const PROP_CHECK_IMMUNITY_SECS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// Longest first-check delay a producer may ask for (1 day).
pub(super) const MAX_CHECK_IMMUNITY_MS: i64 = 24 * 3600 * 1000;

/// Delay before the first check-back of a half message with these properties (ms).
pub(super) fn first_check_ms(
    props: &BTreeMap<String, String>,
    config: &crate::config::TransactionConfig,
) -> i64 {
    props
        .get(PROP_CHECK_IMMUNITY_SECS)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(config.check_first_ms as i64, |secs| {
            (secs.min(u64::MAX / 1000) as i64)
                .saturating_mul(1000)
                .min(MAX_CHECK_IMMUNITY_MS)
        })
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Make the message visible.
    Commit,
    /// Discard it.
    Rollback,
}

/// What a producer's check-back answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// Resolve the transaction.
    Resolve(Resolution),
    /// Not known yet: check again later.
    Unknown,
}

/// A pending half message, as shown to a checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfMessage {
    /// Transaction id.
    pub transaction_id: String,
    /// Producer group.
    pub producer_group: String,
    /// The message as it will be delivered on commit (target topic and queue).
    pub message: StoredMessage,
}

/// A transaction discarded after too many unknown check-backs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscardedTransaction {
    /// Transaction id.
    pub transaction_id: String,
    /// Message id.
    pub message_id: String,
    /// Producer group.
    pub producer_group: String,
    /// Target topic.
    pub topic: String,
}

/// A boxed future of a check-back answer.
pub type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// Asks a producer how a transaction ended. Gateways implement it (gRPC over the Telemetry
/// stream, REST through a callback URL) and register it per producer group.
pub trait TransactionChecker: Send + Sync {
    /// Checks one half message.
    fn check(&self, half: HalfMessage) -> CheckFuture;
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) phy: u64,
    pub(super) size: u32,
    pub(super) message_id: String,
    pub(super) producer_group: String,
    pub(super) topic: String,
    pub(super) checks: u32,
    pub(super) next_check_ms: i64,
}

/// Pending halves, resolutions and checkers.
pub struct TransactionState {
    pub(super) pending: Mutex<BTreeMap<String, Pending>>,
    pub(super) resolved: Mutex<HashMap<String, char>>,
    pub(super) discarded: Mutex<Vec<DiscardedTransaction>>,
    pub(super) checkers: Mutex<HashMap<String, Arc<dyn TransactionChecker>>>,
    pub(super) config: crate::config::TransactionConfig,
    pub(super) reconciled: std::sync::atomic::AtomicBool,
    /// The check-back worker (`rg-transactions`).
    pub(super) worker: super::worker::Worker,
}

impl std::fmt::Debug for TransactionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionState")
            .field("pending", &self.pending.lock().len())
            .finish_non_exhaustive()
    }
}

pub(super) fn half_of(m: &StoredMessage) -> Option<(String, String, String)> {
    Some((
        m.properties.get(PROP_TRANSACTION_ID)?.clone(),
        m.properties.get(PROP_PRODUCER_GROUP)?.clone(),
        m.properties.get(super::timer::PROP_REAL_TOPIC)?.clone(),
    ))
}

/// The message a half becomes on commit: target topic and queue, internal properties removed.
pub(super) fn committed_view(mut m: StoredMessage) -> StoredMessage {
    if let Some(t) = m.properties.remove(super::timer::PROP_REAL_TOPIC) {
        m.topic = t;
    }
    if let Some(q) = m.properties.remove(super::timer::PROP_REAL_QID) {
        m.queue_id = q.parse().unwrap_or(0);
    }
    m.properties.remove(PROP_PRODUCER_GROUP);
    m.properties.remove(PROP_TRANSACTION_ID);
    m
}

impl TransactionState {
    /// Rebuilds the pending table from the half and resolution topics.
    ///
    /// # Errors
    /// Store errors reading them.
    pub fn open(
        store: &crate::store::Store,
        config: crate::config::TransactionConfig,
        now: i64,
    ) -> Result<Self> {
        let mut resolved = HashMap::new();
        for m in read_all(store, OP_TOPIC)? {
            for line in std::str::from_utf8(&m.body).unwrap_or("").lines() {
                if let Some((id, r)) = line.split_once('\t') {
                    if let Some(c) = r.chars().next() {
                        resolved.insert(id.to_owned(), c);
                    }
                }
            }
        }
        let mut pending = BTreeMap::new();
        for m in read_all(store, HALF_TOPIC)? {
            let Some((tx, group, topic)) = half_of(&m) else {
                continue;
            };
            if resolved.contains_key(&tx) {
                continue;
            }
            pending.insert(
                tx,
                Pending {
                    phy: m.physical_offset,
                    size: m.size,
                    message_id: m.message_id,
                    producer_group: group,
                    topic,
                    checks: 0,
                    next_check_ms: (m.store_timestamp_ms + first_check_ms(&m.properties, &config))
                        .max(now),
                },
            );
        }
        Ok(Self {
            pending: Mutex::new(pending),
            resolved: Mutex::new(resolved),
            discarded: Mutex::new(Vec::new()),
            checkers: Mutex::new(HashMap::new()),
            config,
            reconciled: std::sync::atomic::AtomicBool::new(false),
            worker: super::worker::Worker::default(),
        })
    }

    /// Halves waiting for a resolution.
    pub fn pending(&self) -> usize {
        self.pending.lock().len()
    }
}

pub(super) fn read_all(store: &crate::store::Store, topic: &str) -> Result<Vec<StoredMessage>> {
    let (min, max) = store.dispatched().queue_range(topic, 0);
    let mut out = Vec::new();
    let mut at = min;
    while at < max {
        let batch = store.dispatched().read_queue(topic, 0, at, 512)?;
        let Some(last) = batch.last().map(|m| m.queue_offset) else {
            break;
        };
        at = last + 1;
        out.extend(batch);
    }
    Ok(out)
}

impl Broker {
    pub(super) async fn resolve(
        &self,
        p: &Pending,
        transaction_id: &str,
        resolution: Resolution,
    ) -> Result<()> {
        let code = match resolution {
            Resolution::Commit => {
                self.commit_half(p).await?;
                'C'
            }
            Resolution::Rollback => 'R',
        };
        self.record_resolution(transaction_id, code).await
    }

    pub(super) async fn commit_half(&self, p: &Pending) -> Result<()> {
        let Some(half) = self.inner.store.dispatched().read_at(p.phy, Some(p.size))? else {
            return Err(Error::MessageNotFound(p.message_id.clone()));
        };
        let view = committed_view(half);
        let topic = self
            .inner
            .topics
            .get(&view.topic)
            .ok_or_else(|| Error::TopicNotFound(view.topic.clone()))?;
        let qid = view.queue_id % topic.config.queue_count.max(1);
        let draft = super::copy_draft(&view, &view.topic, &view.properties, 0, p.phy);
        self.append_acked(&draft, qid).await?;
        Ok(())
    }

    pub(super) async fn record_resolution(&self, transaction_id: &str, code: char) -> Result<()> {
        let body = format!("{transaction_id}\t{code}\n");
        self.append_internal(OP_TOPIC, body.as_bytes()).await?;
        self.inner
            .transactions
            .resolved
            .lock()
            .insert(transaction_id.to_owned(), code);
        Ok(())
    }

    /// Resolves pending halves whose commit was already stored (a crash between the two
    /// appends of a commit). Called once at start.
    pub(super) async fn reconcile_transactions(&self) -> Result<()> {
        let pending: Vec<(String, Pending)> = self
            .inner
            .transactions
            .pending
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (tx, p) in pending {
            let committed = self
                .inner
                .store
                .dispatched()
                .find_all_by_id(&p.message_id)?
                .iter()
                .any(|m| m.topic == p.topic && self.is_commit_of(m, p.phy));
            if committed {
                self.inner.transactions.pending.lock().remove(&tx);
                self.record_resolution(&tx, 'C').await?;
                tracing::info!(transaction = %tx, "found an already stored commit; resolved");
            }
        }
        Ok(())
    }

    pub(super) fn is_commit_of(&self, m: &StoredMessage, half_phy: u64) -> bool {
        // The committed copy points at its half through the record's prepared offset.
        self.inner
            .store
            .dispatched()
            .prepared_offset_at(m.physical_offset)
            .is_some_and(|o| o == half_phy)
    }

    /// One tick of the check-back worker (`rg-transactions`): the first one reconciles halves
    /// whose commit is already stored, every one checks back what is due.
    pub(super) async fn transaction_tick(&self) {
        use std::sync::atomic::Ordering;
        if !self
            .inner
            .transactions
            .reconciled
            .swap(true, Ordering::AcqRel)
        {
            if let Err(e) = self.reconcile_transactions().await {
                tracing::error!(error = %e, "could not reconcile pending transactions");
            }
        }
        self.check_round().await;
    }

    pub(super) async fn check_round(&self) {
        let now = self.inner.clock.now_ms();
        let cfg = self.inner.transactions.config.clone();
        let mut checks = tokio::task::JoinSet::new();
        let due: Vec<(String, Pending)> = self
            .inner
            .transactions
            .pending
            .lock()
            .iter()
            .filter(|(_, p)| p.next_check_ms <= now)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (tx, p) in due {
            if p.checks >= cfg.max_checks {
                if self.inner.transactions.pending.lock().remove(&tx).is_some() {
                    if let Err(e) = self.record_resolution(&tx, 'D').await {
                        tracing::error!(error = %e, "could not record a discarded transaction");
                    }
                    tracing::warn!(transaction = %tx, id = %p.message_id, group = %p.producer_group, "transaction discarded after {} unknown check-backs", p.checks);
                    let mut d = self.inner.transactions.discarded.lock();
                    if d.len() >= 10_000 {
                        d.remove(0);
                    }
                    d.push(DiscardedTransaction {
                        transaction_id: tx,
                        message_id: p.message_id,
                        producer_group: p.producer_group,
                        topic: p.topic,
                    });
                }
                continue;
            }
            let checker = self
                .inner
                .transactions
                .checkers
                .lock()
                .get(&p.producer_group)
                .cloned();
            // Count the attempt whether or not a producer is there to answer it.
            if let Some(q) = self.inner.transactions.pending.lock().get_mut(&tx) {
                q.checks += 1;
                q.next_check_ms = now + cfg.check_interval_ms as i64;
            }
            let Some(checker) = checker else { continue };
            let Ok(Some(half)) = self.inner.store.dispatched().read_at(p.phy, Some(p.size)) else {
                continue;
            };
            // Each check-back on its own task: a slow or hung producer group delays nobody
            // else, and a checker that panics only loses its own answer.
            let broker = self.clone();
            let timeout = Duration::from_millis(cfg.check_timeout_ms);
            checks.spawn(async move {
                let question = HalfMessage {
                    transaction_id: tx.clone(),
                    producer_group: p.producer_group.clone(),
                    message: committed_view(half),
                };
                let answer = tokio::time::timeout(timeout, checker.check(question)).await;
                if let Ok(CheckResult::Resolve(r)) = answer {
                    match broker.transactions().end(&tx, r).await {
                        Ok(()) | Err(Error::TransactionResolved { .. }) => {}
                        Err(e) => {
                            tracing::error!(error = %e, transaction = %tx, "check-back resolution failed")
                        }
                    }
                }
            });
        }
        while let Some(done) = checks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a transaction checker failed");
            }
        }
    }
}
