//! From the core to a connection: one core subscription (`Consumer::subscribe`) per
//! (consumer group, RocketMQ topic) the connection's subscriptions read, each with a small task
//! that forwards what it pops into the connection's channel.
//!
//! Invariant (the bound): every feed of a connection pops against one credit pool of
//! `max_popped_messages`; a credit goes back when the driver takes a delivery out of the
//! channel ([`Feeds::recv`]). So a connection holds at most that many popped and unwritten
//! messages; a slow one makes its feeds wait and the core keeps the rest.
//!
//! Concurrency: the forwarding tasks own their core subscription and a channel sender; the
//! driver aborts them when a feed is no longer wanted and at close (a message popped and not
//! forwarded then becomes visible again after its invisible time).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::{
    Broker, Credits, FilterExpression, PopRequest, StoredMessage, SubscriptionCredits,
    SubscriptionRequest,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages popped per pop of a connection's own group.
const POP_BATCH: usize = 32;
/// Messages popped per pop of a queue group: small, so that members share a burst.
const QUEUE_POP_BATCH: usize = 4;
/// The longest long-polling wait of one pop.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// A popped message for the connection.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub group: Arc<str>,
    pub receipt: String,
    pub message: StoredMessage,
}

/// A feed: (consumer group, RocketMQ topic).
pub(crate) type FeedKey = (Arc<str>, String);

/// A connection's feeds and the channel they fill.
#[derive(Debug)]
pub(crate) struct Feeds {
    tx: mpsc::Sender<Delivery>,
    rx: mpsc::Receiver<Delivery>,
    credits: SubscriptionCredits,
    running: HashMap<FeedKey, JoinHandle<()>>,
    invisible: Duration,
    /// A wanted feed could not start at the last [`Feeds::set`].
    missing: bool,
}

impl Feeds {
    /// No feeds yet; `capacity` popped messages at most, each invisible for `invisible`.
    pub(crate) fn new(capacity: usize, invisible: Duration) -> Self {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        Self {
            tx,
            rx,
            credits: SubscriptionCredits::new(u32::try_from(capacity).unwrap_or(u32::MAX)),
            running: HashMap::new(),
            invisible,
            missing: false,
        }
    }

    /// The next delivery (its credit goes back to the pool). Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        let d = self.rx.recv().await?;
        self.credits.grant(1);
        Some(d)
    }

    /// Whether a feed ended (its core subscription refused or stopped): the driver's next
    /// [`Feeds::set`] starts it again.
    pub(crate) fn any_ended(&self) -> bool {
        self.missing || self.running.values().any(JoinHandle::is_finished)
    }

    /// Runs exactly the feeds in `wanted` (`queue`: whether a group is a queue group, for its
    /// pop batch): stops the others, starts the missing ones.
    pub(crate) fn set(
        &mut self,
        broker: &Broker,
        wanted: &HashSet<FeedKey>,
        queue: impl Fn(&str) -> bool,
    ) {
        self.running.retain(|k, task| {
            let keep = wanted.contains(k) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        self.missing = false;
        for key in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            match self.start(broker, key, queue(&key.0)) {
                Ok(task) => {
                    self.running.insert(key.clone(), task);
                }
                Err(e) => {
                    self.missing = true;
                    tracing::debug!(error = %e, group = %key.0, topic = %key.1, "NATS feed not started");
                }
            }
        }
    }

    fn start(
        &self,
        broker: &Broker,
        key: &FeedKey,
        queue: bool,
    ) -> Result<JoinHandle<()>, rocketgate_core::Error> {
        let c = &broker.config().consumer;
        let invisible = self.invisible.clamp(
            Duration::from_millis(c.min_invisible_ms),
            Duration::from_millis(c.max_invisible_ms),
        );
        let batch = if queue { QUEUE_POP_BATCH } else { POP_BATCH };
        let mut sub = broker.consumer().subscribe(SubscriptionRequest {
            pop: PopRequest {
                group: key.0.to_string(),
                topic: key.1.clone(),
                filter: Some(FilterExpression::tag("*")),
                max: batch.min(c.max_pop_batch.max(1)),
                invisible,
                wait: Duration::from_millis(c.max_wait_ms).min(MAX_WAIT),
            },
            credits: Credits::Shared(self.credits.clone()),
            max_buffered_bytes: c.max_pop_bytes,
        })?;
        let tx = self.tx.clone();
        let group = key.0.clone();
        let topic = key.1.clone();
        Ok(tokio::spawn(async move {
            while let Some(item) = sub.next().await {
                match item {
                    Ok(p) => {
                        let d = Delivery {
                            group: group.clone(),
                            receipt: p.receipt_handle,
                            message: p.message,
                        };
                        // Never full (the credits bound it): no await, so an abort loses no
                        // credit.
                        match tx.try_send(d) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(d)) => {
                                if tx.send(d).await.is_err() {
                                    return;
                                }
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, group = %group, topic = %topic, "NATS pop failed");
                    }
                }
            }
        }))
    }

    /// Stops every feed and hands back what was popped and not taken yet.
    pub(crate) fn stop(&mut self) -> Vec<Delivery> {
        for (_, task) in self.running.drain() {
            task.abort();
        }
        let mut left = Vec::new();
        while let Ok(d) = self.rx.try_recv() {
            left.push(d);
        }
        left
    }
}
