//! The `Scheduler` service of the `Broker`: delayed and timed messages waiting for their time —
//! list them (a bounded page), count them, cancel one before it is due (RocketMQ 5 "recall").
//!
//! State: the timer (`timer.rs`: the `rmq_sys_timer` queue, its progress and cancellations in
//! the KV store, and the delivery worker). A cancellation is persisted before it returns.
//!
//! Who calls it: gateways. Concurrency: the timer's own locks.

use super::scheduled::*;
use super::timer::*;
use super::*;
use crate::error::{Error, Result};

/// Scheduled (delayed and timed) messages: list, count and cancel them before they are due.
#[derive(Clone, Copy)]
pub struct Scheduler<'a> {
    pub(super) broker: &'a Broker,
}

impl Scheduler<'_> {
    /// Cancels a scheduled message by id before it is due (RocketMQ 5 "recall").
    ///
    /// # Errors
    /// [`Error::MessageNotFound`] if no such scheduled message is pending.
    pub async fn cancel(self, id: &str) -> Result<()> {
        self.broker.check_master("cancelling a scheduled message")?;
        let reads = self.broker.inner.store.visible().await?;
        let pending = reads
            .find_all_by_id(id)?
            .into_iter()
            .filter(|m| m.topic == TIMER_TOPIC)
            .map(|m| {
                self.broker
                    .inner
                    .timer
                    .cancel(m.physical_offset, m.queue_offset)
            })
            .collect::<Result<Vec<bool>>>()?;
        if pending.contains(&true) {
            Ok(())
        } else {
            Err(Error::MessageNotFound(id.to_owned()))
        }
    }

    /// Scheduled messages not yet delivered.
    pub fn pending(self) -> usize {
        self.broker.inner.timer.pending()
    }

    /// Up to `max` scheduled messages not yet due nor cancelled, from `offset` of the internal
    /// timer queue (0 for the first page; then the answer's `next_offset`). Examines at most
    /// `16 × max` timer entries per call, so a page can be short without being the last one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `max` out of `1..=limits.max_batch`, [`Error::Metadata`]
    /// for an unreadable progress file, store errors.
    pub async fn list(self, offset: u64, max: usize) -> Result<ScheduledPage> {
        let limit = self.broker.inner.config.limits.max_batch;
        if max == 0 || max > limit {
            return Err(Error::InvalidArgument(format!(
                "max must be between 1 and {limit}"
            )));
        }
        let store = &self.broker.inner.store;
        let reads = store.visible().await?;
        let timer = &self.broker.inner.timer;
        let (min, end) = reads.queue_range(TIMER_TOPIC, 0);
        let now = self.broker.inner.clock.now_ms();
        let mut page = ScheduledPage::default();
        let mut at = offset.max(min);
        let mut budget = max.saturating_mul(SCAN_FACTOR);
        while at < end && budget > 0 && page.messages.len() < max {
            let entries = reads.queue_entries(TIMER_TOPIC, 0, at, budget.min(1024));
            if entries.is_empty() {
                break;
            }
            for (o, e) in entries {
                budget = budget.saturating_sub(1);
                at = o + 1;
                let deliver_at = e.tag_hash as i64;
                if deliver_at > now && !timer.is_cancelled(e.physical_offset) {
                    if let Some(m) = reads
                        .read_queue(TIMER_TOPIC, 0, o, 1)?
                        .into_iter()
                        .find(|m| m.queue_offset == o)
                    {
                        page.messages.push((present_scheduled(m), deliver_at));
                    }
                }
                if page.messages.len() == max || budget == 0 {
                    break;
                }
            }
        }
        page.next_offset = at;
        page.end = at >= end;
        Ok(page)
    }
}
