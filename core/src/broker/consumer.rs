//! The `Consumer` service of the `Broker`: everything a consumer does — classic pull by offset
//! and by group (with long polling), pop / ack / nack / invisibility changes / dead-lettering
//! (the RocketMQ 5 simple consumer, also what REST, WebSocket and MQTT use), committed offsets
//! and their reset to a time, client heartbeats and queue assignment, lag.
//!
//! Owns the request side of consumption; the state it changes lives in the broker's `Inner`
//! (`consumer_state`: committed offsets and pop positions, `pop`: in-flight messages of a
//! (group, topic), `receipt`: receipt-handle keys, `assignment`: live clients) and its helpers
//! in `consume.rs` (long-poll waits, the store source of a pop) and `retry.rs` (moves to retry
//! and dead-letter topics).
//!
//! Invariants: a pop or pull sees every send that returned before it (`Store::visible`); an
//! acknowledged message is journalled (`rmq_sys_pop_ack`) before the ack returns, so a restart
//! never redelivers it; FIFO groups release the next message of a group only after the previous
//! one is acked or dead-lettered.
//!
//! Who calls it: gateways. Concurrency: pop state is locked per (group, topic) for one pass over
//! the topic's queues, never across an `.await`; long polls wait on the dispatcher's per-topic
//! arrival channel or the next in-flight deadline.

use super::consume::*;
use super::consumer_state::*;
use super::filter::*;
use super::pop::*;
use super::receipt::Receipt;
use super::retry::*;
use super::*;
use crate::api::*;
use crate::error::{Error, Result};
use std::time::Duration;
use tokio::time::Instant;

/// What [`Consumer`] and [`Groups`] own: the group table, committed offsets and pop state,
/// receipt-handle keys, live clients, the retry backoff, and the two workers that persist the
/// consumer state (`rg-offsets`) and revive expired pops (`rg-revive`).
pub(super) struct ConsumptionState {
    pub(super) groups: super::consumer_group::GroupRegistry,
    pub(super) consumers: super::consumer_state::ConsumerState,
    pub(super) receipts: super::receipt::ReceiptKeys,
    pub(super) clients: super::assignment::Clients,
    pub(super) retry_backoff_ms: Vec<u64>,
    pub(super) persister: super::worker::Worker,
    pub(super) reviver: super::worker::Worker,
}

/// Consumption: pull by offset and by group, pop / ack / nack / invisibility, offsets, clients
/// and queue assignment, lag.
#[derive(Clone, Copy)]
pub struct Consumer<'a> {
    pub(super) broker: &'a Broker,
}

impl Consumer<'_> {
    /// Checks a subscription before its first pop, with the rules every pop applies: the topic
    /// exists and is readable, the group exists or may be created on first use, the filter
    /// parses, the invisible duration is in range. Changes nothing.
    ///
    /// # Errors
    /// As [`Consumer::pop`] would for these arguments.
    pub fn check_subscription(
        self,
        group: &str,
        topic: &str,
        filter: Option<&FilterExpression>,
        invisible: Duration,
    ) -> Result<()> {
        self.broker.readable_topic(topic)?;
        if self.broker.inner.consumption.groups.get(group).is_none() {
            self.broker.may_auto_create_group(group)?;
        }
        filter.map(Filter::parse).transpose()?;
        self.broker.check_invisible(invisible)?;
        Ok(())
    }

    /// Reads messages of one queue for a group from `offset`, skipping those the filter
    /// rejects, holding the request up to `wait` when there is nothing yet.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::GroupNotFound`],
    /// [`Error::IllegalFilter`], [`Error::IllegalBatchSize`], [`Error::IllegalWait`],
    /// [`Error::PermissionDenied`], store errors.
    pub async fn pull_group(self, req: GroupPullRequest) -> Result<PullResult> {
        let topic = self.broker.readable_queue(&req.topic, req.queue_id)?;
        let group = self.broker.resolve_group(&req.group)?;
        let filter = self
            .broker
            .filter_for(&group, &req.topic, req.filter.as_ref())?;
        self.broker
            .check_batch(req.max, self.broker.inner.config.limits.max_batch)?;
        self.broker.check_wait(req.wait)?;
        drop(topic);
        let store = &self.broker.inner.store;
        let deadline = Instant::now() + req.wait;
        let mut arrivals = store.subscribe_topic(&req.topic);
        // The first pass sees every send that returned before this call; later ones are woken
        // by arrivals.
        store.visible().await?;
        loop {
            arrivals.borrow_and_update();
            let result = self.broker.pull_filtered(&req, &filter)?;
            if !matches!(result.status, PullStatus::NoNewMessage) || Instant::now() >= deadline {
                crate::metrics::delivered(&req.group, &req.topic, "pull", result.messages.len());
                return Ok(result);
            }
            // Woken by the dispatcher when this topic gets new entries.
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => {}
                // Deadline, or the store is shutting down.
                Ok(Err(_)) | Err(_) => {
                    let result = self.broker.pull_filtered(&req, &filter)?;
                    crate::metrics::delivered(
                        &req.group,
                        &req.topic,
                        "pull",
                        result.messages.len(),
                    );
                    return Ok(result);
                }
            }
        }
    }

    /// Commits a group's consumed offset of a queue (persisted with the next snapshot). The
    /// offset is the next one to consume, so at most one past the queue's last message: a
    /// commit beyond it is refused, because it would make the group skip messages not sent
    /// yet. A commit below the queue's minimum is accepted (consumption starts at the minimum).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::GroupNotFound`],
    /// [`Error::OffsetOutOfRange`] past the queue's end.
    pub fn commit_offset(self, group: &str, topic: &str, queue_id: u32, offset: u64) -> Result<()> {
        self.broker.readable_queue(topic, queue_id)?;
        if self.broker.inner.consumption.groups.get(group).is_none() {
            // A group that cannot exist is refused as such before the offset is judged.
            self.broker.may_auto_create_group(group)?;
        }
        let end = self.broker.inner.store.queue_end(topic, queue_id);
        if offset > end {
            return Err(Error::OffsetOutOfRange {
                topic: topic.to_owned(),
                queue_id,
                offset,
                end,
            });
        }
        self.broker.resolve_group(group)?;
        // On a slave: kept aside durably first, then visible like any commit.
        self.broker
            .note_slave_commit(group, topic, queue_id, offset)?;
        self.broker
            .inner
            .consumption
            .consumers
            .commit(group, topic, queue_id, offset);
        Ok(())
    }

    /// The committed offset of a group on a queue, if any.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::GroupNotFound`].
    pub fn committed_offset(self, group: &str, topic: &str, queue_id: u32) -> Result<Option<u64>> {
        self.broker.readable_queue(topic, queue_id)?;
        self.broker.existing_group(group)?;
        Ok(self
            .broker
            .inner
            .consumption
            .consumers
            .committed(group, topic, queue_id))
    }

    /// Moves a group's committed offsets on every queue of `topic` to the first message stored
    /// at or after `timestamp_ms`. Returns the new offsets.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`], store errors.
    pub async fn reset_offset_to_time(
        self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
    ) -> Result<Vec<CommittedOffset>> {
        self.broker.check_master("resetting offsets")?;
        let t = self.broker.readable_topic(topic)?;
        self.broker.resolve_group(group)?;
        let store = &self.broker.inner.store;
        let reads = store.visible().await?;
        let mut out = Vec::new();
        for q in 0..t.config.queue_count {
            let offset = reads.queue_offset_for_time(topic, q, timestamp_ms)?;
            self.broker
                .inner
                .consumption
                .consumers
                .commit(group, topic, q, offset);
            out.push(CommittedOffset {
                queue_id: q,
                offset,
            });
        }
        Ok(out)
    }

    /// Pops up to `max` visible messages of a topic for a group, making them invisible for
    /// `invisible`; holds the request up to `wait` when none are visible.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`], [`Error::IllegalFilter`],
    /// [`Error::IllegalInvisibleTime`], [`Error::IllegalBatchSize`], [`Error::IllegalWait`],
    /// [`Error::PermissionDenied`], store errors.
    pub async fn pop(self, req: PopRequest) -> Result<Vec<PoppedMessage>> {
        self.broker
            .check_master("pop (receiving with invisibility)")?;
        let topic = self.broker.readable_topic(&req.topic)?;
        let group = self.broker.resolve_group(&req.group)?;
        let filter = self
            .broker
            .filter_for(&group, &req.topic, req.filter.as_ref())?;
        self.broker
            .check_batch(req.max, self.broker.inner.config.consumer.max_pop_batch)?;
        let invisible_ms = self.broker.check_invisible(req.invisible)?;
        self.broker.check_wait(req.wait)?;
        let fifo = topic.config.message_type == super::topic::MessageType::Fifo;
        let queue_count = topic.config.queue_count;
        drop(topic);
        let store = &self.broker.inner.store;
        let deadline = Instant::now() + req.wait;
        let mut arrivals = store.subscribe_topic(&req.topic);
        // The first pass sees every send that returned before this call; later ones are woken
        // by arrivals and changes.
        store.visible().await?;
        let retry_topic = super::retry::retry_topic(&req.group, &req.topic);
        let legacy_retry_topic = super::retry::legacy_retry_topic(&req.group, &req.topic);
        let mut retry_arrivals = store.subscribe_topic(&retry_topic);
        let mut changes = self
            .broker
            .inner
            .consumption
            .consumers
            .topic_pop(&req.group, &req.topic)
            .lock()
            .changes
            .subscribe();
        let mut extra_passes = 0;
        loop {
            changes.borrow_and_update();
            arrivals.borrow_and_update();
            retry_arrivals.borrow_and_update();
            let now = self.broker.inner.clock.now_ms();
            let mut params = PopParams {
                filter: &filter,
                now_ms: now,
                invisible_ms,
                fifo,
                revive: !fifo,
                max_attempts: group.config.max_delivery_attempts.max(1),
                revive_grace_ms: super::retry::REVIVE_GRACE_MS,
                max_bytes: self.broker.inner.config.consumer.max_pop_bytes.max(1),
            };
            let mut out: Vec<Delivery> = Vec::new();
            let mut expired: Vec<(String, u32, Expired)> = Vec::new();
            let (mut next_deadline, mut more) = self.broker.pop_pass(
                &req.group,
                &req.topic,
                queue_count,
                req.max,
                &params,
                &mut out,
                &mut expired,
            )?;
            // Retries of this topic for this group (never FIFO: FIFO retries in place), and
            // those an earlier version stored under its retry topic name.
            for retries in [&retry_topic, &legacy_retry_topic] {
                if out.len() >= req.max || self.broker.inner.topics.get(retries).is_none() {
                    continue;
                }
                params.fifo = false;
                params.revive = true;
                let (d, m) = self.broker.pop_pass(
                    &req.group,
                    retries,
                    1,
                    req.max,
                    &params,
                    &mut out,
                    &mut expired,
                )?;
                more |= m;
                next_deadline = match (next_deadline, d) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            for (topic, queue_id, e) in expired {
                if let Err(err) = self.broker.revive(&group, &topic, queue_id, e).await {
                    tracing::error!(error = %err, group = %req.group, topic = %topic, "could not retry an expired message");
                }
            }
            if !out.is_empty() {
                crate::metrics::delivered(&req.group, &req.topic, "pop", out.len());
                return Ok(out
                    .into_iter()
                    .map(|d| self.broker.popped(&req.group, d))
                    .collect());
            }
            // Entries were left unscanned (a long run of filtered-out messages): go on at once,
            // for a bounded number of passes even past the deadline.
            if more && extra_passes < MAX_EXTRA_PASSES {
                extra_passes += 1;
                continue;
            }
            let now_instant = Instant::now();
            if now_instant >= deadline {
                return Ok(Vec::new());
            }
            // Wake on new messages or retries, on acks and visibility changes of this group
            // (a FIFO group freed, a deadline moved), or when the earliest in-flight message
            // expires.
            let mut until = deadline;
            if let Some(d) = next_deadline {
                let wait_ms = u64::try_from(d.saturating_sub(now)).unwrap_or(0);
                until = until.min(now_instant + Duration::from_millis(wait_ms + 1));
            }
            let woke = tokio::time::timeout_at(until, async {
                tokio::select! {
                    r = changes.changed() => r,
                    r = arrivals.changed() => r,
                    r = retry_arrivals.changed() => r,
                }
            })
            .await;
            if let Ok(Err(_)) = woke {
                return Ok(Vec::new()); // the store is shutting down
            }
        }
    }

    /// Acknowledges a popped message: it is never delivered to this group again.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`] for a garbled, forged, foreign or no longer current
    /// handle; store errors if the ack could not be journaled (the message may then be
    /// delivered again after a restart).
    pub async fn ack(self, group: &str, handle: &str) -> Result<()> {
        self.broker.check_master("an ack")?;
        let mut results = self.broker.consumer().ack_batch(group, &[handle]).await?;
        results
            .pop()
            .unwrap_or(Err(Error::InvalidReceiptHandle("empty")))
    }

    /// Acknowledges several handles with one journal write. Returns one result per handle, in
    /// order; the outer error is a failure to journal.
    ///
    /// # Errors
    /// Store errors journaling the acks.
    pub async fn ack_batch(self, group: &str, handles: &[&str]) -> Result<Vec<Result<()>>> {
        self.broker.check_master("an ack")?;
        let mut results = Vec::with_capacity(handles.len());
        let mut journal = String::new();
        for handle in handles {
            let r = self.broker.ack_one(group, handle);
            if let Ok(r) = &r {
                journal_line(&mut journal, group, &r.topic, r.queue_id, r.queue_offset);
            }
            results.push(r.map(|_| ()));
        }
        if !journal.is_empty() {
            self.broker.journal(journal).await?;
        }
        crate::metrics::acked(group, results.iter().filter(|r| r.is_ok()).count());
        Ok(results)
    }

    /// Gives a popped message a new invisible duration from now. Returns the new handle; the
    /// old one stops working.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`], [`Error::IllegalInvisibleTime`].
    pub fn change_invisible_duration(
        self,
        group: &str,
        handle: &str,
        invisible: Duration,
    ) -> Result<String> {
        self.broker.check_master("changing an invisible time")?;
        let ms = self.broker.check_invisible(invisible)?;
        let (r, state) = self.broker.in_flight(group, handle)?;
        let seq = self.broker.inner.consumption.consumers.next_seq();
        let deadline_ms = self.broker.inner.clock.now_ms() + ms;
        let mut tp = state.lock();
        tp.notify_change();
        tp.queue(r.queue_id)
            .change_invisible(r.queue_offset, r.seq, deadline_ms, seq)
            .map_err(|_| {
                Error::InvalidReceiptHandle(
                    "no longer current: acknowledged, redelivered or changed",
                )
            })?;
        Ok(self.broker.inner.consumption.receipts.encode(
            group,
            &Receipt {
                seq,
                deadline_ms,
                ..r
            },
        ))
    }

    /// Records that `client_id` of `group` is alive.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`] (without auto-creation), an illegal client id.
    pub fn heartbeat(self, group: &str, client_id: &str) -> Result<()> {
        self.broker.resolve_group(group)?;
        validate_client_id(client_id)?;
        self.broker
            .inner
            .consumption
            .clients
            .heartbeat(group, client_id);
        Ok(())
    }

    /// Removes a client from its group at once (clean shutdown of the client).
    pub fn unregister_client(self, group: &str, client_id: &str) {
        self.broker
            .inner
            .consumption
            .clients
            .remove(group, client_id);
    }

    /// Live clients of a group.
    pub fn clients(self, group: &str) -> Vec<String> {
        self.broker.inner.consumption.clients.live(group)
    }

    /// The queues of `topic` that `client_id` should consume: an even, stable share among the
    /// group's live clients (the call counts as a heartbeat).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`].
    pub fn assignment(self, group: &str, topic: &str, client_id: &str) -> Result<Vec<u32>> {
        let t = self.broker.readable_topic(topic)?;
        self.broker.consumer().heartbeat(group, client_id)?;
        let live = self.broker.inner.consumption.clients.live(group);
        Ok(assignment::allocate(t.config.queue_count, &live, client_id))
    }

    /// Per-queue lag of a group on a topic. A gauge: it reflects what the dispatcher has
    /// published, which may trail a send that just returned by the dispatch delay.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`].
    pub fn lag(self, group: &str, topic: &str) -> Result<Vec<QueueLag>> {
        let t = self.broker.topic(topic)?;
        self.broker.existing_group(group)?;
        let pops = self
            .broker
            .inner
            .consumption
            .consumers
            .existing_topic_pop(group, topic);
        let mut out = Vec::new();
        for q in 0..t.config.queue_count {
            let (min, max) = self.broker.inner.store.dispatched().queue_range(topic, q);
            let committed = self
                .broker
                .inner
                .consumption
                .consumers
                .committed(group, topic, q);
            let (unacked, inflight) = match &pops {
                Some(p) => {
                    let mut p = p.lock();
                    let qp = p.queue(q);
                    let low = qp.low().max(min);
                    let unacked = max
                        .saturating_sub(low)
                        .saturating_sub(qp.acked_above_low() as u64);
                    (unacked, qp.inflight() as u64)
                }
                None => (max.saturating_sub(min), 0),
            };
            out.push(QueueLag {
                queue_id: q,
                max_offset: max,
                committed,
                pull_lag: max.saturating_sub(committed.unwrap_or(min).max(min)),
                pop_unacked: unacked,
                pop_inflight: inflight,
            });
        }
        Ok(out)
    }

    /// Writes the consumer snapshot now.
    ///
    /// # Errors
    /// [`Error::Metadata`].
    pub fn persist_state(self) -> Result<()> {
        let journal = self
            .broker
            .inner
            .store
            .dispatched()
            .queue_range(ACK_JOURNAL_TOPIC, 0)
            .1;
        self.broker.inner.consumption.consumers.persist(journal)
    }

    /// Reads up to `max` messages of one queue from `offset` (no consumer group involved).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::PermissionDenied`],
    /// [`Error::InvalidArgument`] for `max` 0 or over the limit, store errors.
    pub async fn pull(
        self,
        topic: &str,
        queue_id: u32,
        offset: u64,
        max: usize,
    ) -> Result<PullResult> {
        let t = self.broker.topic(topic)?;
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
        let limit = self.broker.inner.config.limits.max_batch;
        if max == 0 || max > limit {
            return Err(Error::InvalidArgument(format!(
                "batch size must be between 1 and {limit}"
            )));
        }
        let reads = self.broker.inner.store.visible().await?;
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

    /// Negative acknowledgement of a popped message: it is retried after `delay` (or the backoff
    /// of its attempt), or dead-lettered when it reached the group's maximum. On a FIFO topic it
    /// is redelivered in place after the delay, keeping its group's order.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`], store errors.
    pub async fn nack(self, group: &str, handle: &str, delay: Option<Duration>) -> Result<()> {
        self.broker.check_master("a nack")?;
        let g = self.broker.resolve_group(group)?;
        let (r, state) = self.broker.in_flight(group, handle)?;
        let fifo = self
            .broker
            .inner
            .topics
            .get(&r.topic)
            .is_some_and(|t| t.config.message_type == super::topic::MessageType::Fifo);
        let now = self.broker.inner.clock.now_ms();
        let max = g.config.max_delivery_attempts.max(1);
        let e = state
            .lock()
            .queue(r.queue_id)
            .take_for_retry(r.queue_offset, r.seq, now + REVIVE_GRACE_MS, max)
            .map_err(|_| {
                Error::InvalidReceiptHandle(
                    "no longer current: acknowledged, redelivered or changed",
                )
            })?;
        let delay_ms = delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if fifo && !e.dead {
            // In place: visible again after the delay, before any later message of its group.
            let wait = delay_ms.unwrap_or_else(|| self.broker.backoff_ms(e.attempts)) as i64;
            let seq = self.broker.inner.consumption.consumers.next_seq();
            let mut tp = state.lock();
            tp.notify_change();
            let _ = tp
                .queue(r.queue_id)
                .change_invisible(r.queue_offset, e.seq, now + wait, seq);
            return Ok(());
        }
        self.broker
            .revive_with(&g, &r.topic, r.queue_id, e, delay_ms)
            .await
    }

    /// Moves a popped message to the group's dead-letter queue at once, whatever its attempt
    /// count (a consumer gave up on it, e.g. a RocketMQ 5 `ForwardMessageToDeadLetterQueue`),
    /// then acknowledges the original. The handle stops working.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::InvalidReceiptHandle`], store errors.
    pub async fn dead_letter(self, group: &str, handle: &str) -> Result<()> {
        self.broker.check_master("dead-lettering")?;
        let g = self.broker.resolve_group(group)?;
        let (r, state) = self.broker.in_flight(group, handle)?;
        let mut e = state
            .lock()
            .queue(r.queue_id)
            .take_for_retry(
                r.queue_offset,
                r.seq,
                self.broker.inner.clock.now_ms() + REVIVE_GRACE_MS,
                1,
            )
            .map_err(|_| {
                Error::InvalidReceiptHandle(
                    "no longer current: acknowledged, redelivered or changed",
                )
            })?;
        e.dead = true;
        self.broker
            .revive_with(&g, &r.topic, r.queue_id, e, None)
            .await
    }

    /// Sends a pulled message back for a later retry (classic pull consumers): it is copied to
    /// `%RETRY%<group>` after `delay_level` (or the backoff of its attempt), or to the
    /// dead-letter queue when it reached the group's maximum.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::MessageNotFound`] for an
    /// offset with no message, [`Error::IllegalDelayLevel`], store errors.
    pub async fn send_back(
        self,
        group: &str,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
        delay_level: Option<u32>,
    ) -> Result<()> {
        self.broker.check_master("sending a message back")?;
        let g = self.broker.resolve_group(group)?;
        self.broker.readable_queue(topic, queue_id)?;
        let reads = self.broker.inner.store.visible().await?;
        let now = self.broker.inner.clock.now_ms();
        let delay_ms = match delay_level {
            Some(l) => self
                .broker
                .inner
                .timer
                .due_time(now, Some(l), None)?
                .map(|t| (t - now).max(0) as u64),
            None => None,
        };
        let m = reads
            .read_queue(topic, queue_id, queue_offset, 1)?
            .into_iter()
            .find(|m| m.queue_offset == queue_offset)
            .ok_or_else(|| Error::MessageNotFound(format!("{topic}/{queue_id}@{queue_offset}")))?;
        let attempts = m.reconsume_times + 1;
        let dead = attempts >= g.config.max_delivery_attempts.max(1);
        self.broker
            .move_message(&g, m, attempts, dead, group_retry_topic(group), delay_ms)
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
