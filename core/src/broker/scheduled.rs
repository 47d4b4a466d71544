//! Listing scheduled (delayed and timed) messages that are still waiting for their time.
//!
//! Owns: [`Broker::scheduled_list`], a bounded page over the internal timer queue. A record is
//! listed when its delivery time is still in the future and it was not cancelled; the
//! cancellations are read from the timer's progress file (`config/timer.json`), which
//! [`super::timer::Timer::cancel`] persists before it returns, so a cancelled message is never
//! listed. Due messages the delivery thread has not copied yet (a few ms) are not listed.
//!
//! Who calls it: gateways (REST `GET /v1/scheduled`). Protocol-neutral; reads the store and the
//! progress file only, holds no lock beyond the store's own.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::timer::{present_scheduled, TIMER_TOPIC};
use super::{meta_file, Broker};
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use crate::store::now_ms;

/// Entries of the timer queue examined per listed message, at most: bounds one call's work.
const SCAN_FACTOR: usize = 16;

/// A page of scheduled messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduledPage {
    /// Pending messages as they will be delivered (target topic and queue), with their
    /// delivery time in ms, in the order they were scheduled.
    pub messages: Vec<(StoredMessage, i64)>,
    /// Where the next page starts (an offset of the internal timer queue).
    pub next_offset: u64,
    /// Whether the scan reached the end of the timer queue.
    pub end: bool,
}

/// The part of the timer's progress file this reads.
#[derive(Deserialize, Default)]
struct Cancellations {
    #[serde(default)]
    cancelled: Vec<u64>,
}

impl Broker {
    /// Up to `max` scheduled messages not yet due nor cancelled, from `offset` of the internal
    /// timer queue (0 for the first page; then the answer's `next_offset`). Examines at most
    /// `16 × max` timer entries per call, so a page can be short without being the last one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `max` out of `1..=limits.max_batch`, [`Error::Metadata`]
    /// for an unreadable progress file, store errors.
    pub async fn scheduled_list(&self, offset: u64, max: usize) -> Result<ScheduledPage> {
        let limit = self.inner.config.limits.max_batch;
        if max == 0 || max > limit {
            return Err(Error::InvalidArgument(format!(
                "max must be between 1 and {limit}"
            )));
        }
        let store = &self.inner.store;
        let reads = store.visible().await?;
        let path = self
            .inner
            .config
            .store
            .data_dir
            .join("config")
            .join("timer.json");
        let cancelled: BTreeSet<u64> = meta_file::load::<Cancellations>(&path)?
            .unwrap_or_default()
            .cancelled
            .into_iter()
            .collect();
        let (min, end) = reads.queue_range(TIMER_TOPIC, 0);
        let now = now_ms();
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
                if deliver_at > now && !cancelled.contains(&e.physical_offset) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::broker::topic::TopicConfig;
    use crate::message::Message;
    use crate::{Broker, Config};

    fn broker(dir: &std::path::Path) -> Broker {
        let mut c = Config::default();
        c.store.data_dir = dir.to_path_buf();
        c.store.segment_size = 1 << 20;
        c.store.disk_max_used_ratio = 0.999;
        Broker::open(c).unwrap()
    }

    #[tokio::test]
    async fn lists_pending_messages_without_the_cancelled_or_delivered_ones() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        b.create_topic(TopicConfig::new("t", 2)).unwrap();
        let now = crate::store::now_ms();
        let mut ids = Vec::new();
        for i in 0..5 {
            let m = Message::new("t", format!("m{i}")).with_deliver_at(now + 60_000 + i);
            ids.push(b.send(m.into()).await.unwrap().message_id);
        }
        // Due at once: delivered, never listed.
        b.send(Message::new("t", "now").with_deliver_at(now - 1).into())
            .await
            .unwrap();
        b.cancel_scheduled(&ids[1]).await.unwrap();
        let page = b.scheduled_list(0, 100).await.unwrap();
        let listed: Vec<&str> = page
            .messages
            .iter()
            .map(|(m, _)| m.message_id.as_str())
            .collect();
        assert_eq!(
            listed,
            vec![&ids[0][..], &ids[2][..], &ids[3][..], &ids[4][..]]
        );
        assert!(page.end);
        let (m, at) = &page.messages[0];
        assert_eq!(
            (m.topic.as_str(), &m.body[..], *at),
            ("t", &b"m0"[..], now + 60_000)
        );
        // Paging: two at a time, then the rest.
        let first = b.scheduled_list(0, 2).await.unwrap();
        assert_eq!(first.messages.len(), 2);
        assert!(!first.end);
        let rest = b.scheduled_list(first.next_offset, 10).await.unwrap();
        assert_eq!(rest.messages.len(), 2);
        assert!(b.scheduled_list(0, 0).await.is_err());
    }
}
