//! Where a pop consumer group starts on a topic: RocketMQ's `CONSUME_FROM_LAST_OFFSET` for the
//! pop (simple consumer) model.
//!
//! Owns: [`Consumer::pop_from_end`], which moves a group's pop position on every queue of a topic
//! to the current end of the queue, so that the group receives only messages stored afterwards
//! (a new subscriber that must not see history: an MQTT subscription, a "latest" consumer).
//!
//! Invariant: only positions are moved; in-flight messages of the group on that topic are
//! dropped from its state (their receipt handles become stale). The new position is persisted
//! with the next consumer-state snapshot (see `consumer_state.rs`); until then a crash restarts
//! the group from the first retained message.
//!
//! Concurrency: holds the (group, topic) pop mutex while it rewrites the queues, never across
//! an `.await`.

use super::pop::{QueuePop, QueuePopSnapshot};
use super::Consumer;
use crate::error::Result;

impl Consumer<'_> {
    /// Starts `group` on `topic` at the end of every queue: messages already stored are never
    /// popped by this group; later ones are. Creates the group when auto-creation is on.
    ///
    /// # Errors
    /// [`crate::Error::TopicNotFound`], [`crate::Error::PermissionDenied`],
    /// [`crate::Error::GroupNotFound`] (without auto-creation), name errors.
    pub async fn pop_from_end(self, group: &str, topic: &str) -> Result<()> {
        let t = self.broker.topic(topic)?;
        if !t.config.permission.read {
            return Err(crate::Error::PermissionDenied {
                topic: topic.to_owned(),
                what: "readable",
            });
        }
        let queue_count = t.config.queue_count;
        drop(t);
        self.broker.resolve_group(group)?;
        let store = &self.broker.inner.store;
        let reads = store.visible().await?;
        let state = self
            .broker
            .inner
            .consumption
            .consumers
            .topic_pop(group, topic);
        let mut tp = state.lock();
        for queue_id in 0..queue_count {
            let (_, max) = reads.queue_range(topic, queue_id);
            *tp.queue(queue_id) = QueuePop::restore(&QueuePopSnapshot {
                low: max,
                acked: Vec::new(),
                attempts: Vec::new(),
            });
        }
        tp.notify_change();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use crate::api::PopRequest;
    use crate::{Broker, Config, Message, TopicConfig};

    fn pop(group: &str) -> PopRequest {
        PopRequest {
            group: group.into(),
            topic: "t".into(),
            filter: None,
            max: 16,
            invisible: Duration::from_secs(10),
            wait: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_group_started_at_the_end_sees_only_later_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.store.data_dir = dir.path().into();
        c.store.segment_size = 1 << 20;
        let b = Broker::open(c).unwrap();
        b.topics().create(TopicConfig::new("t", 2)).unwrap();
        for i in 0..4 {
            b.producer()
                .send(Message::new("t", format!("old{i}")).into())
                .await
                .unwrap();
        }
        b.consumer().pop_from_end("late", "t").await.unwrap();
        assert!(b.consumer().pop(pop("late")).await.unwrap().is_empty());
        b.producer()
            .send(Message::new("t", "new").into())
            .await
            .unwrap();
        let got = b.consumer().pop(pop("late")).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].message.body[..], b"new");
        // A group without the call starts at the beginning.
        assert_eq!(b.consumer().pop(pop("early")).await.unwrap().len(), 5);
        // The position survives a restart.
        b.shutdown().unwrap();
        drop(b);
        let mut c = Config::default();
        c.store.data_dir = dir.path().into();
        c.store.segment_size = 1 << 20;
        let b = Broker::open(c).unwrap();
        b.producer()
            .send(Message::new("t", "after").into())
            .await
            .unwrap();
        let got = b.consumer().pop(pop("late")).await.unwrap();
        let bodies: Vec<_> = got.iter().map(|m| m.message.body.clone()).collect();
        assert!(bodies.iter().all(|b| &b[..] != b"old0"), "{bodies:?}");
    }
}
