//! The `Transactions` service of the `Broker`: half messages (stored, invisible until
//! committed), their end (commit / rollback), the check-back checkers producer groups register,
//! and the pending and discarded transactions.
//!
//! State and the check-back worker live in `transaction.rs` (`TransactionState`, the internal
//! half and op topics). Invariants: a half is durable before `send_half` returns; a commit stores
//! the real message before the resolution; a second resolution changes nothing.
//!
//! Who calls it: gateways (gRPC EndTransaction, REST commit/rollback, the HTTP callback
//! checker). Concurrency: the pending table's mutex, never held across an `.await`.

use super::transaction::*;
use super::*;
use crate::api::*;
use crate::error::{Error, Result};

/// Transactions: half messages, their end (commit / rollback), check-back checkers, and the pending and discarded ones.
#[derive(Clone, Copy)]
pub struct Transactions<'a> {
    pub(super) broker: &'a Broker,
}

impl Transactions<'_> {
    /// Stores a half message: durable, invisible to consumers until committed.
    ///
    /// # Errors
    /// As [`Producer::send`], plus [`Error::IllegalField`] for an invalid producer group and
    /// [`Error::MessageTypeConflict`] for a declared type other than TRANSACTION.
    pub async fn send_half(self, req: SendRequest, producer_group: &str) -> Result<SendReceipt> {
        self.broker.check_master("a transactional send")?;
        super::consume::validate_group_name(producer_group)?;
        let now = self.broker.inner.clock.now_ms();
        let (m, queue_id, _) = self.broker.prepare(&req, true, now)?;
        let message_id = m
            .message_id
            .clone()
            .unwrap_or_else(|| crate::message_id::generate(now));
        let transaction_id = crate::message_id::generate(now);
        let mut props = m.properties.clone();
        props.insert(super::timer::PROP_REAL_TOPIC.into(), m.topic.clone());
        props.insert(super::timer::PROP_REAL_QID.into(), queue_id.to_string());
        props.insert(PROP_PRODUCER_GROUP.into(), producer_group.to_owned());
        props.insert(PROP_TRANSACTION_ID.into(), transaction_id.clone());
        let draft = RecordDraft {
            topic: HALF_TOPIC,
            message_id: &message_id,
            tag: m.tag.as_deref().unwrap_or(""),
            message_group: m.message_group.as_deref().unwrap_or(""),
            born_host: m.born_host.as_deref().unwrap_or(""),
            keys: &m.keys,
            properties: &props,
            body: &m.body,
            born_timestamp: m.born_timestamp_ms.unwrap_or(now),
            reconsume_times: 0,
            flags: 0,
            prepared_offset: 0,
        };
        let appended = self.broker.append_acked(&draft, 0).await?;
        let tx = &self.broker.inner.transactions;
        tx.pending.lock().insert(
            transaction_id.clone(),
            Pending {
                phy: appended.physical_offset,
                size: appended.size,
                message_id: message_id.clone(),
                producer_group: producer_group.to_owned(),
                topic: m.topic.clone(),
                checks: 0,
                next_check_ms: now + first_check_ms(&m.properties, &tx.config),
            },
        );
        Ok(SendReceipt {
            message_id,
            queue_id,
            // The half record sits in the half topic: the real offset comes with the commit.
            queue_offset: None,
            physical_offset: appended.physical_offset,
            store_timestamp_ms: appended.store_timestamp,
            deliver_at_ms: None,
            transaction_id: Some(transaction_id),
        })
    }

    /// Commits or rolls back a transaction.
    ///
    /// # Errors
    /// [`Error::InvalidTransactionId`] for an unknown id, [`Error::TransactionResolved`] if it was
    /// resolved already (nothing changes then), store errors.
    pub async fn end(self, transaction_id: &str, resolution: Resolution) -> Result<()> {
        self.broker.check_master("ending a transaction")?;
        let tx = &self.broker.inner.transactions;
        let taken = {
            // Taken out of `pending` and marked resolved in one step, so a concurrent second
            // resolution sees `TransactionResolved`, never an unknown id.
            let mut pending = tx.pending.lock();
            let taken = pending.remove(transaction_id);
            if taken.is_some() {
                let code = match resolution {
                    Resolution::Commit => 'C',
                    Resolution::Rollback => 'R',
                };
                tx.resolved.lock().insert(transaction_id.to_owned(), code);
            }
            taken
        };
        let Some(p) = taken else {
            return match tx.resolved.lock().get(transaction_id) {
                Some(c) => Err(Error::TransactionResolved {
                    transaction_id: transaction_id.to_owned(),
                    committed: *c == 'C',
                }),
                None => Err(Error::InvalidTransactionId(transaction_id.to_owned())),
            };
        };
        match self.broker.resolve(&p, transaction_id, resolution).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Not resolved: keep it pending so a retry or check-back finishes it.
                let mut pending = tx.pending.lock();
                tx.resolved.lock().remove(transaction_id);
                pending.insert(transaction_id.to_owned(), p);
                Err(e)
            }
        }
    }

    /// Registers the checker of a producer group (replacing an earlier one).
    pub fn register_checker(self, producer_group: &str, checker: Arc<dyn TransactionChecker>) {
        self.broker
            .inner
            .transactions
            .checkers
            .lock()
            .insert(producer_group.to_owned(), checker);
        self.broker.inner.transactions.worker.wake();
    }

    /// Removes the checker of a producer group.
    pub fn unregister_checker(self, producer_group: &str) {
        self.broker
            .inner
            .transactions
            .checkers
            .lock()
            .remove(producer_group);
    }

    /// Half messages waiting for a resolution.
    pub fn pending(self) -> usize {
        self.broker.inner.transactions.pending()
    }

    /// Transactions discarded since start after too many unknown check-backs.
    pub fn discarded(self) -> Vec<DiscardedTransaction> {
        self.broker.inner.transactions.discarded.lock().clone()
    }
}

impl Transactions<'_> {
    /// The topic of a pending transaction (`None` once it is resolved, or for an unknown id):
    /// what a gateway authorizes before it ends the transaction.
    pub fn topic_of(self, transaction_id: &str) -> Option<String> {
        self.broker
            .inner
            .transactions
            .pending
            .lock()
            .get(transaction_id)
            .map(|p| p.topic.clone())
    }
}
