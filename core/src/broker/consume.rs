//! The consuming half of the `Broker` API: consumer groups, classic pull with long polling,
//! committed offsets, pop / ack / visibility changes, assignment and lag.
//!
//! Owns: the translation of those requests into [`ConsumerState`](super::consumer_state),
//! [`QueuePop`](super::pop::QueuePop) transitions and store reads. Long polling waits on the
//! store's per-topic arrival channel (woken by the dispatcher) or on the next in-flight
//! deadline; there is no busy polling and no per-request sleep.
//!
//! Concurrency: pop state is locked per (group, topic) for the duration of one pass over the
//! topic's queues (store reads only, never an `.await` under the lock).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::consumer_group::{Group, GroupConfig};
use super::consumer_state::{journal_line, parse_journal, ACK_JOURNAL_TOPIC};
use super::filter::{Filter, FilterExpression};
use super::pop::{Delivery, Expired, PopParams, Source};
use super::receipt::Receipt;
use super::{assignment, validate, Broker};
use crate::api::{
    CommittedOffset, GroupPullRequest, PopRequest, PoppedMessage, PullResult, PullStatus, QueueLag,
};
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use crate::store::consume_queue::CqEntry;
use crate::store::{now_ms, Store};

struct StoreSource<'a> {
    store: &'a Store,
    topic: &'a str,
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
const MAX_EXTRA_PASSES: u32 = 16;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Broker {
    /// Creates a consumer group.
    ///
    /// # Errors
    /// [`Error::IllegalTopic`]-style name errors (as [`Error::IllegalField`]),
    /// [`Error::GroupExists`], [`Error::IllegalFilter`], [`Error::Metadata`].
    pub fn create_group(&self, config: GroupConfig) -> Result<GroupConfig> {
        validate_group_name(&config.name)?;
        for topic in config.subscriptions.keys() {
            self.topic(topic)?;
        }
        Ok(self.inner.groups.upsert(config, false)?.config.clone())
    }

    /// A group's configuration.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`].
    pub fn group(&self, name: &str) -> Result<GroupConfig> {
        self.inner
            .groups
            .get(name)
            .map(|g| g.config.clone())
            .ok_or_else(|| Error::GroupNotFound(name.to_owned()))
    }

    /// All groups.
    pub fn list_groups(&self) -> Vec<GroupConfig> {
        self.inner.groups.list()
    }

    /// Deletes a group with its offsets and pop state.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::Metadata`].
    pub fn delete_group(&self, name: &str) -> Result<()> {
        self.inner.groups.delete(name)?;
        self.inner.consumers.forget_group(name);
        Ok(())
    }

    /// Subscribes `group` to `topic` with a tag filter expression (persisted).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`] (without auto-creation),
    /// [`Error::IllegalFilter`].
    pub fn subscribe(&self, group: &str, topic: &str, expression: FilterExpression) -> Result<()> {
        self.topic(topic)?;
        Filter::parse(&expression)?;
        let g = self.resolve_group(group)?;
        if g.config.subscriptions.get(topic) == Some(&expression) {
            return Ok(());
        }
        let mut config = g.config.clone();
        config.subscriptions.insert(topic.to_owned(), expression);
        self.inner.groups.upsert(config, true)?;
        Ok(())
    }

    /// Checks a subscription before its first pop, with the rules every pop applies: the topic
    /// exists and is readable, the group exists or may be created on first use, the filter
    /// parses, the invisible duration is in range. Changes nothing.
    ///
    /// # Errors
    /// As [`Broker::pop`] would for these arguments.
    pub fn check_subscription(
        &self,
        group: &str,
        topic: &str,
        filter: Option<&FilterExpression>,
        invisible: Duration,
    ) -> Result<()> {
        self.readable_topic(topic)?;
        if self.inner.groups.get(group).is_none() {
            validate_group_name(group)?;
            if !self.inner.config.consumer.auto_create_groups {
                return Err(Error::GroupNotFound(group.to_owned()));
            }
        }
        filter.map(Filter::parse).transpose()?;
        self.check_invisible(invisible)?;
        Ok(())
    }

    pub(super) fn resolve_group(&self, name: &str) -> Result<Arc<Group>> {
        if let Some(g) = self.inner.groups.get(name) {
            return Ok(g);
        }
        validate_group_name(name)?;
        if !self.inner.config.consumer.auto_create_groups {
            return Err(Error::GroupNotFound(name.to_owned()));
        }
        match self.inner.groups.upsert(GroupConfig::new(name), false) {
            Ok(g) => Ok(g),
            Err(Error::GroupExists(_)) => self
                .inner
                .groups
                .get(name)
                .ok_or_else(|| Error::GroupNotFound(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    fn filter_for(
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

    fn check_wait(&self, wait: Duration) -> Result<()> {
        let max_ms = self.inner.config.consumer.max_wait_ms;
        if millis(wait) > max_ms {
            return Err(Error::IllegalWait {
                got_ms: millis(wait),
                max_ms,
            });
        }
        Ok(())
    }

    /// Reads messages of one queue for a group from `offset`, skipping those the filter
    /// rejects, holding the request up to `wait` when there is nothing yet.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::GroupNotFound`],
    /// [`Error::IllegalFilter`], [`Error::IllegalBatchSize`], [`Error::IllegalWait`],
    /// [`Error::PermissionDenied`], store errors.
    pub async fn pull_group(&self, req: GroupPullRequest) -> Result<PullResult> {
        let topic = self.readable_queue(&req.topic, req.queue_id)?;
        let group = self.resolve_group(&req.group)?;
        let filter = self.filter_for(&group, &req.topic, req.filter.as_ref())?;
        self.check_batch(req.max, self.inner.config.limits.max_batch)?;
        self.check_wait(req.wait)?;
        drop(topic);
        let store = &self.inner.store;
        let deadline = Instant::now() + req.wait;
        let mut arrivals = store.subscribe_topic(&req.topic);
        // The first pass sees every send that returned before this call; later ones are woken
        // by arrivals.
        store.visible().await?;
        loop {
            arrivals.borrow_and_update();
            let result = self.pull_filtered(&req, &filter)?;
            if !matches!(result.status, PullStatus::NoNewMessage) || Instant::now() >= deadline {
                crate::metrics::delivered(&req.group, &req.topic, "pull", result.messages.len());
                return Ok(result);
            }
            // Woken by the dispatcher when this topic gets new entries.
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => {}
                // Deadline, or the store is shutting down.
                Ok(Err(_)) | Err(_) => {
                    let result = self.pull_filtered(&req, &filter)?;
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

    fn pull_filtered(&self, req: &GroupPullRequest, filter: &Filter) -> Result<PullResult> {
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

    fn readable_topic(&self, topic: &str) -> Result<Arc<super::topic::Topic>> {
        let t = self.topic(topic)?;
        if !t.config.permission.read {
            return Err(Error::PermissionDenied {
                topic: topic.to_owned(),
                what: "readable",
            });
        }
        Ok(t)
    }

    fn check_batch(&self, max: usize, limit: usize) -> Result<()> {
        if max == 0 || max > limit {
            return Err(Error::IllegalBatchSize {
                got: max,
                max: limit,
            });
        }
        Ok(())
    }

    /// Commits a group's consumed offset of a queue (persisted with the next snapshot).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::GroupNotFound`].
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> Result<()> {
        self.readable_queue(topic, queue_id)?;
        self.resolve_group(group)?;
        self.inner.consumers.commit(group, topic, queue_id, offset);
        Ok(())
    }

    /// The committed offset of a group on a queue, if any.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::QueueNotFound`], [`Error::GroupNotFound`].
    pub fn committed_offset(&self, group: &str, topic: &str, queue_id: u32) -> Result<Option<u64>> {
        self.readable_queue(topic, queue_id)?;
        self.existing_group(group)?;
        Ok(self.inner.consumers.committed(group, topic, queue_id))
    }

    pub(super) fn existing_group(&self, name: &str) -> Result<Arc<Group>> {
        match self.inner.groups.get(name) {
            Some(g) => Ok(g),
            None => {
                validate_group_name(name)?;
                Err(Error::GroupNotFound(name.to_owned()))
            }
        }
    }

    /// Moves a group's committed offsets on every queue of `topic` to the first message stored
    /// at or after `timestamp_ms`. Returns the new offsets.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`], store errors.
    pub async fn reset_offset_to_time(
        &self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
    ) -> Result<Vec<CommittedOffset>> {
        let t = self.readable_topic(topic)?;
        self.resolve_group(group)?;
        let store = &self.inner.store;
        let reads = store.visible().await?;
        let mut out = Vec::new();
        for q in 0..t.config.queue_count {
            let offset = reads.queue_offset_for_time(topic, q, timestamp_ms)?;
            self.inner.consumers.commit(group, topic, q, offset);
            out.push(CommittedOffset {
                queue_id: q,
                offset,
            });
        }
        Ok(out)
    }

    fn check_invisible(&self, invisible: Duration) -> Result<i64> {
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

    /// Pops up to `max` visible messages of a topic for a group, making them invisible for
    /// `invisible`; holds the request up to `wait` when none are visible.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`], [`Error::IllegalFilter`],
    /// [`Error::IllegalInvisibleTime`], [`Error::IllegalBatchSize`], [`Error::IllegalWait`],
    /// [`Error::PermissionDenied`], store errors.
    pub async fn pop(&self, req: PopRequest) -> Result<Vec<PoppedMessage>> {
        let topic = self.readable_topic(&req.topic)?;
        let group = self.resolve_group(&req.group)?;
        let filter = self.filter_for(&group, &req.topic, req.filter.as_ref())?;
        self.check_batch(req.max, self.inner.config.consumer.max_pop_batch)?;
        let invisible_ms = self.check_invisible(req.invisible)?;
        self.check_wait(req.wait)?;
        let fifo = topic.config.message_type == super::topic::MessageType::Fifo;
        let queue_count = topic.config.queue_count;
        drop(topic);
        let store = &self.inner.store;
        let deadline = Instant::now() + req.wait;
        let mut arrivals = store.subscribe_topic(&req.topic);
        // The first pass sees every send that returned before this call; later ones are woken
        // by arrivals and changes.
        store.visible().await?;
        let retry_topic = super::retry::retry_topic(&req.group, &req.topic);
        let mut retry_arrivals = store.subscribe_topic(&retry_topic);
        let mut changes = self
            .inner
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
            let now = now_ms();
            let mut params = PopParams {
                filter: &filter,
                now_ms: now,
                invisible_ms,
                fifo,
                revive: !fifo,
                max_attempts: group.config.max_delivery_attempts.max(1),
                revive_grace_ms: super::retry::REVIVE_GRACE_MS,
                max_bytes: self.inner.config.consumer.max_pop_bytes.max(1),
            };
            let mut out: Vec<Delivery> = Vec::new();
            let mut expired: Vec<(String, u32, Expired)> = Vec::new();
            let (mut next_deadline, mut more) = self.pop_pass(
                &req.group,
                &req.topic,
                queue_count,
                req.max,
                &params,
                &mut out,
                &mut expired,
            )?;
            // Retries of this topic for this group (never FIFO: FIFO retries in place).
            if out.len() < req.max && self.inner.topics.get(&retry_topic).is_some() {
                params.fifo = false;
                params.revive = true;
                let (d, m) = self.pop_pass(
                    &req.group,
                    &retry_topic,
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
                if let Err(err) = self.revive(&group, &topic, queue_id, e).await {
                    tracing::error!(error = %err, group = %req.group, topic = %topic, "could not retry an expired message");
                }
            }
            if !out.is_empty() {
                crate::metrics::delivered(&req.group, &req.topic, "pop", out.len());
                return Ok(out
                    .into_iter()
                    .map(|d| self.popped(&req.group, d))
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
        let state = self.inner.consumers.topic_pop(group, topic);
        let mut tp = state.lock();
        let src = StoreSource {
            store: &self.inner.store,
            topic,
        };
        let start = tp.rotation;
        tp.rotation = tp.rotation.wrapping_add(1);
        let mut seq = || self.inner.consumers.next_seq();
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

    fn popped(&self, group: &str, d: Delivery) -> PoppedMessage {
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
            receipt_handle: self.inner.receipts.encode(group, &receipt),
            attempt: d.attempt,
            invisible_until_ms: d.deadline_ms,
            message,
        }
    }

    /// Acknowledges a popped message: it is never delivered to this group again.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`] for a garbled, forged, foreign or no longer current
    /// handle; store errors if the ack could not be journaled (the message may then be
    /// delivered again after a restart).
    pub async fn ack(&self, group: &str, handle: &str) -> Result<()> {
        let mut results = self.ack_batch(group, &[handle]).await?;
        results
            .pop()
            .unwrap_or(Err(Error::InvalidReceiptHandle("empty")))
    }

    /// Acknowledges several handles with one journal write. Returns one result per handle, in
    /// order; the outer error is a failure to journal.
    ///
    /// # Errors
    /// Store errors journaling the acks.
    pub async fn ack_batch(&self, group: &str, handles: &[&str]) -> Result<Vec<Result<()>>> {
        let mut results = Vec::with_capacity(handles.len());
        let mut journal = String::new();
        for handle in handles {
            let r = self.ack_one(group, handle);
            if let Ok(r) = &r {
                journal_line(&mut journal, group, &r.topic, r.queue_id, r.queue_offset);
            }
            results.push(r.map(|_| ()));
        }
        if !journal.is_empty() {
            self.journal(journal).await?;
        }
        crate::metrics::acked(group, results.iter().filter(|r| r.is_ok()).count());
        Ok(results)
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
        let r = self.inner.receipts.decode(group, handle)?;
        let state = self
            .inner
            .consumers
            .existing_topic_pop(group, &r.topic)
            .ok_or(Error::InvalidReceiptHandle("not in flight"))?;
        Ok((r, state))
    }

    fn ack_one(&self, group: &str, handle: &str) -> Result<Receipt> {
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

    /// Gives a popped message a new invisible duration from now. Returns the new handle; the
    /// old one stops working.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`], [`Error::IllegalInvisibleTime`].
    pub fn change_invisible_duration(
        &self,
        group: &str,
        handle: &str,
        invisible: Duration,
    ) -> Result<String> {
        let ms = self.check_invisible(invisible)?;
        let (r, state) = self.in_flight(group, handle)?;
        let seq = self.inner.consumers.next_seq();
        let deadline_ms = now_ms() + ms;
        let mut tp = state.lock();
        tp.notify_change();
        tp.queue(r.queue_id)
            .change_invisible(r.queue_offset, r.seq, deadline_ms, seq)
            .map_err(|_| {
                Error::InvalidReceiptHandle(
                    "no longer current: acknowledged, redelivered or changed",
                )
            })?;
        Ok(self.inner.receipts.encode(
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
    pub fn heartbeat(&self, group: &str, client_id: &str) -> Result<()> {
        self.resolve_group(group)?;
        validate_client_id(client_id)?;
        self.inner.clients.heartbeat(group, client_id);
        Ok(())
    }

    /// Removes a client from its group at once (clean shutdown of the client).
    pub fn unregister_client(&self, group: &str, client_id: &str) {
        self.inner.clients.remove(group, client_id);
    }

    /// Live clients of a group.
    pub fn group_clients(&self, group: &str) -> Vec<String> {
        self.inner.clients.live(group)
    }

    /// The queues of `topic` that `client_id` should consume: an even, stable share among the
    /// group's live clients (the call counts as a heartbeat).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`].
    pub fn assignment(&self, group: &str, topic: &str, client_id: &str) -> Result<Vec<u32>> {
        let t = self.readable_topic(topic)?;
        self.heartbeat(group, client_id)?;
        let live = self.inner.clients.live(group);
        Ok(assignment::allocate(t.config.queue_count, &live, client_id))
    }

    /// Per-queue lag of a group on a topic. A gauge: it reflects what the dispatcher has
    /// published, which may trail a send that just returned by the dispatch delay.
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`].
    pub fn lag(&self, group: &str, topic: &str) -> Result<Vec<QueueLag>> {
        let t = self.topic(topic)?;
        self.existing_group(group)?;
        let pops = self.inner.consumers.existing_topic_pop(group, topic);
        let mut out = Vec::new();
        for q in 0..t.config.queue_count {
            let (min, max) = self.inner.store.dispatched().queue_range(topic, q);
            let committed = self.inner.consumers.committed(group, topic, q);
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

    /// Replays the ack journal from the loaded snapshot's position (at open).
    pub(super) fn replay_ack_journal(&self) -> Result<u64> {
        let store = &self.inner.store;
        let mut at = self.inner.consumers.journal_offset();
        let mut replayed = 0u64;
        loop {
            let batch = store
                .dispatched()
                .read_queue(ACK_JOURNAL_TOPIC, 0, at, 256)?;
            let Some(last) = batch.last() else { break };
            at = last.queue_offset + 1;
            for m in &batch {
                for (group, topic, queue_id, offset) in parse_journal(&m.body) {
                    let state = self.inner.consumers.topic_pop(group, topic);
                    state.lock().queue(queue_id).replay_ack(offset);
                    replayed += 1;
                }
            }
        }
        Ok(replayed)
    }

    /// Writes the consumer snapshot now.
    ///
    /// # Errors
    /// [`Error::Metadata`].
    pub fn persist_consumer_state(&self) -> Result<()> {
        let journal = self
            .inner
            .store
            .dispatched()
            .queue_range(ACK_JOURNAL_TOPIC, 0)
            .1;
        self.inner.consumers.persist(journal)
    }
}

/// Group names follow the topic name rules.
pub(crate) fn validate_group_name(name: &str) -> Result<()> {
    validate::topic_name(name).map_err(|_| Error::IllegalField {
        field: crate::error::Field::ConsumerGroup,
        reason: "1-127 characters of letters, digits and `_ - % |`".into(),
    })
}

fn validate_client_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(Error::IllegalField {
            field: crate::error::Field::ClientId,
            reason: "1-256 characters, no control characters".into(),
        });
    }
    Ok(())
}
