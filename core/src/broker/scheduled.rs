//! Listing scheduled (delayed and timed) messages that are still waiting for their time.
//!
//! Owns: the helpers of [`super::Scheduler::list`] (`scheduler.rs`), a bounded page over the
//! internal timer queue. A record is
//! listed when its delivery time is still in the future and it was not cancelled; the timer
//! answers that from its in-memory cancellations, which [`super::timer::Timer::cancel`]
//! persists before it changes them, so a cancelled message is never listed. Due messages the delivery thread has not copied yet (a few ms) are not listed.
//!
//! Who calls it: gateways (REST `GET /v1/scheduled`). Protocol-neutral; reads the store and
//! asks the timer, holding its lock only per lookup.

use super::Broker;
use crate::message::StoredMessage;

/// Entries of the timer queue examined per listed message, at most: bounds one call's work.
pub(super) const SCAN_FACTOR: usize = 16;

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

impl Broker {}

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
        b.topics()
            .create(TopicConfig::new("t", 2).with_type(crate::MessageType::Delay))
            .unwrap();
        let now = crate::store::now_ms();
        let mut ids = Vec::new();
        for i in 0..5 {
            let m = Message::new("t", format!("m{i}")).with_deliver_at(now + 60_000 + i);
            ids.push(b.producer().send(m.into()).await.unwrap().message_id);
        }
        // Due at once: delivered, never listed.
        b.producer()
            .send(Message::new("t", "now").with_deliver_at(now - 1).into())
            .await
            .unwrap();
        b.scheduler().cancel(&ids[1]).await.unwrap();
        let page = b.scheduler().list(0, 100).await.unwrap();
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
        let first = b.scheduler().list(0, 2).await.unwrap();
        assert_eq!(first.messages.len(), 2);
        assert!(!first.end);
        let rest = b.scheduler().list(first.next_offset, 10).await.unwrap();
        assert_eq!(rest.messages.len(), 2);
        assert!(b.scheduler().list(0, 0).await.is_err());
    }
}
