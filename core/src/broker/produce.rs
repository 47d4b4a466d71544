//! The `Producer` service of the `Broker`: sending one message or a batch, and checking a send
//! without storing it.
//!
//! Every rule of a send is core's (the rulebook in `validate.rs`, applied by
//! `Broker::validate_send` in `mod.rs`): the topic and its permission, the message's fields and
//! limits, its delay, its type (declared, or what its fields make it) against the topic's
//! (`limits.topic_message_type_check`), the queue. A receipt has a queue offset only when the
//! message is in its queue: not for a delayed message before it is due. A gateway never repeats
//! them; it maps the typed error ([`crate::Reason`]).
//!
//! Invariants: under `SYNC_FLUSH` a send returns only once its record is durable; a batch is
//! checked whole before its first message is stored, so a bad message stores none.
//!
//! Who calls it: gateways, and the broker itself (dead-letter resends). Concurrency: appends take
//! the CommitLog's writer mutex briefly; no lock of its own.

use super::*;
use crate::api::*;
use crate::error::Result;

/// Sending: one message, a batch, and the check of a send without storing.
#[derive(Clone, Copy)]
pub struct Producer<'a> {
    pub(super) broker: &'a Broker,
}

impl Producer<'_> {
    /// Stores a message; under `SYNC_FLUSH` returns only once it is durable.
    ///
    /// # Errors
    /// Validation errors, [`Error::TopicNotFound`], [`Error::QueueNotFound`],
    /// [`Error::PermissionDenied`], and store errors (disk full, poisoned, I/O).
    pub async fn send(self, req: SendRequest) -> Result<SendReceipt> {
        self.broker.check_master("a send")?;
        let started = std::time::Instant::now();
        let now = self.broker.inner.clock.now_ms();
        let (m, queue_id, deliver_at) = self.broker.prepare(&req, false, now)?;
        let generated;
        let message_id = match &m.message_id {
            Some(id) => id.as_str(),
            None => {
                generated = message_id::generate(now);
                generated.as_str()
            }
        };
        self.broker
            .store_message(
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

    /// Stores a batch: every request is checked first ([`Producer::check`]), so a bad one
    /// stores none; then each is stored in order. Only a store fault in the middle (disk full,
    /// shutdown) leaves a prefix stored, and the error says how long.
    ///
    /// # Errors
    /// [`BatchError`] with the failing request's index, how many were stored before it, and
    /// the error [`Producer::send`] would give.
    pub async fn send_batch(
        self,
        requests: Vec<SendRequest>,
    ) -> std::result::Result<Vec<SendReceipt>, crate::api::BatchError> {
        use crate::api::BatchError;
        self.broker
            .check_master("a send")
            .map_err(|error| BatchError {
                index: 0,
                stored: 0,
                error,
            })?;
        for (index, r) in requests.iter().enumerate() {
            self.broker
                .producer()
                .check(r)
                .map_err(|error| BatchError {
                    index,
                    stored: 0,
                    error,
                })?;
        }
        let mut receipts = Vec::with_capacity(requests.len());
        for (index, r) in requests.into_iter().enumerate() {
            match self.broker.producer().send(r).await {
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

    /// Checks a send request against every rule [`Producer::send`] applies before storing (the
    /// topic, its permission and type, the message's fields and limits, the queue, the delay),
    /// without storing anything: what a gateway calls to refuse a whole batch before its first
    /// message is stored.
    ///
    /// # Errors
    /// The validation errors of [`Producer::send`].
    pub fn check(self, req: &SendRequest) -> Result<()> {
        self.broker
            .validate_send(req, false, self.broker.inner.clock.now_ms())?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
