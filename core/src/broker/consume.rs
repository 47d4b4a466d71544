//! Helpers of the [`Consumer`](super::Consumer) service: the store source of a pop, the long-poll
//! loop of a group pull, filters, ack-journal replay, group resolution and name checks.
//!
//! Owns: the translation of consumer requests into [`ConsumerState`](super::consumer_state),
//! [`QueuePop`](super::pop::QueuePop) transitions and store reads. Long polling waits on the
//! store's per-topic arrival channel (woken by the dispatcher) or on the next in-flight
//! deadline; there is no busy polling and no per-request sleep.
//!
//! Concurrency: pop state is locked per (group, topic) for the duration of one pass over the
//! topic's queues (store reads only, never an `.await` under the lock).

use std::sync::Arc;
use std::time::Duration;

use super::consumer_group::{Group, GroupConfig};
use super::consumer_state::{parse_journal, ACK_JOURNAL_TOPIC};
use super::filter::{Filter, FilterExpression};
use super::pop::{Delivery, Expired, PopParams, Source};
use super::receipt::Receipt;
use super::{validate, Broker};
use crate::api::{GroupPullRequest, PoppedMessage, PullResult, PullStatus};
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use crate::store::consume_queue::CqEntry;
use crate::store::Store;

pub(super) struct StoreSource<'a> {
    pub(super) store: &'a Store,
    pub(super) topic: &'a str,
}

impl Source for StoreSource<'_> {
    fn range(&self, queue_id: u32) -> (u64, u64) {
        self.store.dispatched().queue_range(self.topic, queue_id)
    }
    fn entries(&self, queue_id: u32, from: u64, max: usize) -> Vec<(u64, CqEntry)> {
        self.store
            .dispatched()
            .queue_entries(self.topic, queue_id, from, max)
    }
    fn message(&self, entry: &CqEntry) -> Result<Option<StoredMessage>> {
        Ok(self
            .store
            .dispatched()
            .read_at(entry.physical_offset, Some(entry.size))?)
    }
}

/// Passes a pop makes without waiting while entries are left unscanned (each scans up to
/// `SCAN_LIMIT` entries per queue).
pub(super) const MAX_EXTRA_PASSES: u32 = 16;

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Broker {
    pub(super) fn resolve_group(&self, name: &str) -> Result<Arc<Group>> {
        if let Some(g) = self.inner.consumption.groups.get(name) {
            return Ok(g);
        }
        self.may_auto_create_group(name)?;
        let max = self.inner.config.limits.max_groups;
        match self
            .inner
            .consumption
            .groups
            .upsert_bounded(GroupConfig::new(name), false, max)
        {
            Ok(g) => Ok(g),
            Err(Error::GroupExists(_)) => self
                .inner
                .consumption
                .groups
                .get(name)
                .ok_or_else(|| Error::GroupNotFound(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Whether a group that does not exist may be created on first use: a legal name,
    /// `consumer.auto_create_groups`, room under `limits.max_groups`, and `Create` on it for
    /// the caller's principal.
    pub(super) fn may_auto_create_group(&self, name: &str) -> Result<()> {
        validate_group_name(name)?;
        if !self.inner.config.consumer.auto_create_groups {
            return Err(Error::GroupNotFound(name.to_owned()));
        }
        let max = self.inner.config.limits.max_groups;
        if self.inner.consumption.groups.len() >= max {
            return Err(Error::LimitReached {
                what: "consumer groups",
                key: "max_groups",
                limit: max,
            });
        }
        self.authorize_create(crate::auth::Resource::group(name))
    }

    pub(super) fn filter_for(
        &self,
        group: &Group,
        topic: &str,
        expression: Option<&FilterExpression>,
    ) -> Result<Filter> {
        match expression {
            Some(e) => Filter::parse(e),
            None => Ok(group.filter(topic).cloned().unwrap_or_default()),
        }
    }

    pub(super) fn check_wait(&self, wait: Duration) -> Result<()> {
        let max_ms = self.inner.config.consumer.max_wait_ms;
        if millis(wait) > max_ms {
            return Err(Error::IllegalWait {
                got_ms: millis(wait),
                max_ms,
            });
        }
        Ok(())
    }

    pub(super) fn pull_filtered(
        &self,
        req: &GroupPullRequest,
        filter: &Filter,
    ) -> Result<PullResult> {
        let store = &self.inner.store;
        let (min, max) = store.dispatched().queue_range(&req.topic, req.queue_id);
        let (status, mut at) = if req.offset < min {
            (PullStatus::OffsetMoved, min)
        } else if req.offset > max {
            (PullStatus::OffsetTooBig, max)
        } else {
            (PullStatus::Found, req.offset)
        };
        let mut messages = Vec::new();
        let mut scanned = 0usize;
        // The pop's byte budget applies to pulls too (stored record sizes).
        let mut budget = self.inner.config.consumer.max_pop_bytes.max(1);
        'scan: while messages.len() < req.max && at < max && scanned < super::pop::SCAN_LIMIT {
            let entries = store
                .dispatched()
                .queue_entries(&req.topic, req.queue_id, at, 64);
            if entries.is_empty() {
                break;
            }
            for (offset, e) in entries {
                if !messages.is_empty() && e.size as usize > budget {
                    break 'scan;
                }
                scanned += 1;
                at = offset + 1;
                if !filter.may_match(e.tag_hash) {
                    continue;
                }
                if let Some(m) = store
                    .dispatched()
                    .read_at(e.physical_offset, Some(e.size))?
                {
                    if filter.matches(&m) {
                        budget = budget.saturating_sub(e.size as usize);
                        messages.push(m);
                        if messages.len() >= req.max {
                            break;
                        }
                    }
                }
            }
        }
        let status = match status {
            PullStatus::Found if messages.is_empty() && at >= max => PullStatus::NoNewMessage,
            PullStatus::Found if messages.is_empty() => PullStatus::NoMatchedMessage,
            s => s,
        };
        Ok(PullResult {
            status,
            messages,
            next_offset: at,
            min_offset: min,
            max_offset: max,
        })
    }

    pub(super) fn readable_queue(
        &self,
        topic: &str,
        queue_id: u32,
    ) -> Result<Arc<super::topic::Topic>> {
        let t = self.readable_topic(topic)?;
        if queue_id >= t.config.queue_count {
            return Err(Error::QueueNotFound {
                topic: topic.to_owned(),
                queue_id,
            });
        }
        Ok(t)
    }

    pub(super) fn readable_topic(&self, topic: &str) -> Result<Arc<super::topic::Topic>> {
        let t = self.topic(topic)?;
        if !t.config.permission.read {
            return Err(Error::PermissionDenied {
                topic: topic.to_owned(),
                what: "readable",
            });
        }
        Ok(t)
    }

    pub(super) fn check_batch(&self, max: usize, limit: usize) -> Result<()> {
        if max == 0 || max > limit {
            return Err(Error::IllegalBatchSize {
                got: max,
                max: limit,
            });
        }
        Ok(())
    }

    pub(super) fn existing_group(&self, name: &str) -> Result<Arc<Group>> {
        match self.inner.consumption.groups.get(name) {
            Some(g) => Ok(g),
            None => {
                validate_group_name(name)?;
                Err(Error::GroupNotFound(name.to_owned()))
            }
        }
    }

    pub(super) fn check_invisible(&self, invisible: Duration) -> Result<i64> {
        let c = &self.inner.config.consumer;
        let ms = millis(invisible);
        if ms < c.min_invisible_ms || ms > c.max_invisible_ms {
            return Err(Error::IllegalInvisibleTime {
                got_ms: ms,
                min_ms: c.min_invisible_ms,
                max_ms: c.max_invisible_ms,
            });
        }
        Ok(ms as i64)
    }

    /// One pass over the queues of `topic` for `group`: deliveries into `out`, expired messages
    /// into `expired`. Returns the earliest in-flight deadline.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pop_pass(
        &self,
        group: &str,
        topic: &str,
        queue_count: u32,
        max: usize,
        params: &PopParams<'_>,
        out: &mut Vec<Delivery>,
        expired: &mut Vec<(String, u32, Expired)>,
    ) -> Result<(Option<i64>, bool)> {
        let state = self.inner.consumption.consumers.topic_pop(group, topic);
        let mut tp = state.lock();
        let src = StoreSource {
            store: &self.inner.store,
            topic,
        };
        let start = tp.rotation;
        tp.rotation = tp.rotation.wrapping_add(1);
        let mut seq = || self.inner.consumption.consumers.next_seq();
        let mut exp = Vec::new();
        let mut more = false;
        for i in 0..queue_count {
            let qid = ((start as u64 + u64::from(i)) % u64::from(queue_count.max(1))) as u32;
            let need = max.saturating_sub(out.len());
            more |= tp
                .queue(qid)
                .pop(&src, qid, need, params, &mut seq, out, &mut exp)?;
            expired.extend(exp.drain(..).map(|e| (topic.to_owned(), qid, e)));
        }
        Ok((
            tp.queues.iter().filter_map(|q| q.next_deadline()).min(),
            more,
        ))
    }

    pub(super) fn popped(&self, group: &str, d: Delivery) -> PoppedMessage {
        let receipt = Receipt {
            topic: d.message.topic.clone(),
            queue_id: d.message.queue_id,
            queue_offset: d.message.queue_offset,
            seq: d.seq,
            deadline_ms: d.deadline_ms,
        };
        let mut message = d.message;
        if let Some(origin) = message.properties.remove(super::retry::PROP_RETRY_TOPIC) {
            // A retry: presented as the original message of its topic.
            message.topic = origin;
        }
        PoppedMessage {
            receipt_handle: self.inner.consumption.receipts.encode(group, &receipt),
            attempt: d.attempt,
            invisible_until_ms: d.deadline_ms,
            message,
        }
    }

    /// Decodes a receipt handle of `group` and finds the pop state it refers to.
    pub(super) fn in_flight(
        &self,
        group: &str,
        handle: &str,
    ) -> Result<(
        Receipt,
        Arc<parking_lot::Mutex<super::consumer_state::TopicPop>>,
    )> {
        let r = self.inner.consumption.receipts.decode(group, handle)?;
        let state = self
            .inner
            .consumption
            .consumers
            .existing_topic_pop(group, &r.topic)
            .ok_or(Error::InvalidReceiptHandle("not in flight"))?;
        Ok((r, state))
    }

    pub(super) fn ack_one(&self, group: &str, handle: &str) -> Result<Receipt> {
        let (r, state) = self.in_flight(group, handle)?;
        let mut tp = state.lock();
        tp.notify_change();
        tp.queue(r.queue_id)
            .ack(r.queue_offset, r.seq)
            .map_err(|_| {
                Error::InvalidReceiptHandle(
                    "no longer current: acknowledged, redelivered or changed",
                )
            })?;
        Ok(r)
    }

    pub(super) async fn journal(&self, body: String) -> Result<()> {
        self.append_internal(ACK_JOURNAL_TOPIC, body.as_bytes())
            .await
    }

    /// Replays the ack journal from the loaded snapshot's position (at open).
    pub(super) fn replay_ack_journal(&self) -> Result<u64> {
        let store = &self.inner.store;
        let mut at = self.inner.consumption.consumers.journal_offset();
        let mut replayed = 0u64;
        loop {
            let batch = store
                .dispatched()
                .read_queue(ACK_JOURNAL_TOPIC, 0, at, 256)?;
            let Some(last) = batch.last() else { break };
            at = last.queue_offset + 1;
            for m in &batch {
                for (group, topic, queue_id, offset) in parse_journal(&m.body) {
                    let state = self.inner.consumption.consumers.topic_pop(group, topic);
                    state.lock().queue(queue_id).replay_ack(offset);
                    replayed += 1;
                }
            }
        }
        Ok(replayed)
    }
}

/// Group names follow the topic name rules.
pub(crate) fn validate_group_name(name: &str) -> Result<()> {
    validate::topic_name(name).map_err(|_| Error::IllegalField {
        field: crate::error::Field::ConsumerGroup,
        reason: "1-127 characters of letters, digits and `_ - % |`".into(),
    })
}

pub(super) fn validate_client_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(Error::IllegalField {
            field: crate::error::Field::ClientId,
            reason: "1-256 characters, no control characters".into(),
        });
    }
    Ok(())
}
