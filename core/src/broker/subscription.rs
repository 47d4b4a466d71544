//! The one delivery loop: a credit- and byte-bounded stream of popped messages, what every
//! push-style gateway (a WebSocket subscription, an MQTT session's subscription) consumes
//! instead of writing its own pop loop.
//!
//! Owns: one task per [`Subscription`] that pops for its group and topic while it holds credits,
//! and the bounded buffer between that task and the gateway.
//!
//! Invariants:
//! - Credits bound what is popped: every popped message spends one credit, so at most the
//!   credits granted so far (minus the messages already taken with [`Subscription::next`]) are
//!   popped and not yet taken. A message is popped only when it has a place: nothing popped is
//!   ever dropped by the loop (it stays invisible to the group until acked, redelivered after
//!   its invisible time otherwise).
//! - Bytes bound the buffer: the task does not pop while the bodies waiting in the buffer reach
//!   `max_buffered_bytes` (a single larger message still goes through alone).
//! - Errors reach the gateway in order with the messages; a refusal that cannot heal
//!   (not found, invalid argument, forbidden) ends the stream after it, others are retried after
//!   [`RETRY_AFTER`].
//!
//! Who calls it: gateways, through [`Consumer::subscribe`]. Concurrency: the task runs on the
//! runtime that created the subscription and ends when the [`Subscription`] is dropped or the
//! broker shuts down; credits are a semaphore, the buffer an unbounded channel whose length the
//! credits bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::Consumer;
use crate::api::{PopRequest, PoppedMessage};
use crate::error::{Error, ErrorKind, Result};

/// How long the loop waits before popping again after an error that may heal.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What to subscribe to and how much to hold.
#[derive(Debug, Clone)]
pub struct SubscriptionRequest {
    /// Group, topic, filter and invisible time of every pop; `max` caps one pop (at most the
    /// broker's `consumer.max_pop_batch`), `wait` is each pop's long-polling wait.
    pub pop: PopRequest,
    /// Credits granted at the start (more with [`Subscription::grant`]).
    pub credits: u32,
    /// Most body bytes waiting in the buffer before the loop stops popping.
    pub max_buffered_bytes: usize,
}

struct Shared {
    credits: Semaphore,
    buffered: AtomicUsize,
    taken: Notify,
}

/// A running subscription: a stream of popped messages (see the module doc).
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Result<PoppedMessage>>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("credits", &self.credits.available_permits())
            .field("buffered", &self.buffered.load(Ordering::Relaxed))
            .finish()
    }
}

impl Consumer<'_> {
    /// Starts a subscription: checks it like [`Consumer::check_subscription`], then pops in a
    /// task on the current tokio runtime while it holds credits.
    ///
    /// # Errors
    /// As [`Consumer::check_subscription`], and [`Error::IllegalBatchSize`] for a `pop.max` of
    /// 0 or over `consumer.max_pop_batch`.
    ///
    /// # Panics
    /// Outside a tokio runtime (the task is spawned on it).
    pub fn subscribe(self, req: SubscriptionRequest) -> Result<Subscription> {
        let pop = &req.pop;
        self.check_subscription(&pop.group, &pop.topic, pop.filter.as_ref(), pop.invisible)?;
        let limit = self.broker.inner.config.consumer.max_pop_batch;
        if pop.max == 0 || pop.max > limit {
            return Err(Error::IllegalBatchSize {
                got: pop.max,
                max: limit,
            });
        }
        let shared = Arc::new(Shared {
            credits: Semaphore::new(req.credits as usize),
            buffered: AtomicUsize::new(0),
            taken: Notify::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let broker = self.broker.clone();
        let task = tokio::spawn(run(broker, req, shared.clone(), tx));
        Ok(Subscription { rx, shared, task })
    }
}

/// The credits of a [`Subscription`], to grant from elsewhere than where it is read (a
/// connection that receives credit frames while a task forwards the messages).
#[derive(Debug, Clone)]
pub struct SubscriptionCredits {
    shared: Arc<Shared>,
}

impl SubscriptionCredits {
    /// Grants `n` more credits: the gateway's client can take `n` more messages.
    pub fn grant(&self, n: u32) {
        self.shared.credits.add_permits(n as usize);
    }

    /// Credits not spent yet.
    pub fn available(&self) -> usize {
        self.shared.credits.available_permits()
    }
}

impl Subscription {
    /// Grants `n` more credits (see [`SubscriptionCredits::grant`]).
    pub fn grant(&self, n: u32) {
        self.shared.credits.add_permits(n as usize);
    }

    /// Credits not spent yet.
    pub fn credits(&self) -> usize {
        self.shared.credits.available_permits()
    }

    /// A handle to grant credits from elsewhere.
    pub fn credit_handle(&self) -> SubscriptionCredits {
        SubscriptionCredits {
            shared: self.shared.clone(),
        }
    }

    /// The next popped message (or error), in pop order; `None` once the loop has ended (a
    /// refusal that cannot heal was delivered, or the broker shut down).
    pub async fn next(&mut self) -> Option<Result<PoppedMessage>> {
        let item = self.rx.recv().await?;
        if let Ok(p) = &item {
            self.shared
                .buffered
                .fetch_sub(p.message.body.len(), Ordering::AcqRel);
            self.shared.taken.notify_one();
        }
        Some(item)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether an error ends the subscription (it will not heal by retrying).
fn fatal(e: &Error) -> bool {
    e.is_shutdown()
        || matches!(
            e.kind(),
            ErrorKind::NotFound | ErrorKind::InvalidArgument | ErrorKind::PermissionDenied
        )
}

async fn run(
    broker: super::Broker,
    req: SubscriptionRequest,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Result<PoppedMessage>>,
) {
    let batch = req.pop.max.max(1);
    loop {
        // Room in bytes first, then at least one credit, then as many more as one pop takes.
        while shared.buffered.load(Ordering::Acquire) >= req.max_buffered_bytes {
            let taken = shared.taken.notified();
            if shared.buffered.load(Ordering::Acquire) < req.max_buffered_bytes {
                break;
            }
            taken.await;
        }
        let Ok(first) = shared.credits.acquire().await else {
            return;
        };
        first.forget();
        let extra = shared.credits.available_permits().min(batch - 1);
        let extra = match shared.credits.try_acquire_many(extra as u32) {
            Ok(p) => {
                let n = p.num_permits();
                p.forget();
                n
            }
            Err(_) => 0,
        };
        let taken = 1 + extra;
        let pop = PopRequest {
            max: taken,
            ..req.pop.clone()
        };
        match broker.consumer().pop(pop).await {
            Ok(messages) => {
                shared.credits.add_permits(taken - messages.len());
                for p in messages {
                    shared
                        .buffered
                        .fetch_add(p.message.body.len(), Ordering::AcqRel);
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                shared.credits.add_permits(taken);
                let end = fatal(&e);
                if tx.send(Err(e)).is_err() || end {
                    return;
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::topic::TopicConfig;
    use crate::config::Config;
    use crate::message::Message;
    use crate::Broker;

    const TOPIC: &str = "sub";
    const GROUP: &str = "g";

    fn open(dir: &std::path::Path) -> Broker {
        let mut c = Config::default();
        c.store.data_dir = dir.to_path_buf();
        c.store.segment_size = 1 << 20;
        let b = Broker::open(c).unwrap();
        b.topics().create(TopicConfig::new(TOPIC, 2)).unwrap();
        b
    }

    fn request(credits: u32, max_buffered_bytes: usize) -> SubscriptionRequest {
        SubscriptionRequest {
            pop: PopRequest {
                group: GROUP.into(),
                topic: TOPIC.into(),
                filter: None,
                max: 8,
                invisible: Duration::from_secs(60),
                wait: Duration::from_millis(200),
            },
            credits,
            max_buffered_bytes,
        }
    }

    async fn send(b: &Broker, n: usize, size: usize) {
        for _ in 0..n {
            b.producer()
                .send(Message::new(TOPIC, vec![b'x'; size]).into())
                .await
                .unwrap();
        }
    }

    fn inflight(b: &Broker) -> u64 {
        b.consumer()
            .lag(GROUP, TOPIC)
            .unwrap()
            .iter()
            .map(|l| l.pop_inflight)
            .sum()
    }

    async fn next(sub: &mut Subscription) -> PoppedMessage {
        tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn credits_bound_what_is_popped() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        send(&b, 10, 16).await;
        let mut sub = b.consumer().subscribe(request(3, 1 << 20)).unwrap();
        for _ in 0..3 {
            next(&mut sub).await;
        }
        // No credit left: nothing more is popped, however long we wait.
        let more = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(more.is_err(), "a message without a credit: {more:?}");
        assert_eq!(inflight(&b), 3);
        assert_eq!(sub.credits(), 0);
        sub.grant(7);
        for _ in 0..7 {
            next(&mut sub).await;
        }
        assert_eq!(inflight(&b), 10);
        // Credits left over wait for new messages (long polling), which come at once.
        sub.grant(1);
        send(&b, 1, 16).await;
        next(&mut sub).await;
    }

    #[tokio::test]
    async fn buffered_bytes_stop_the_loop_until_taken() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        send(&b, 20, 100).await;
        // Plenty of credits, but only 150 bytes of buffer: one pop (at most `max` = 8
        // messages), then nothing until the gateway takes them.
        let mut sub = b.consumer().subscribe(request(100, 150)).unwrap();
        let first = next(&mut sub).await;
        assert_eq!(first.message.body.len(), 100);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let popped = inflight(&b);
        assert!(
            (1..=8).contains(&popped),
            "popped {popped} past the byte bound"
        );
        let mut got = 1;
        while got < 20 {
            next(&mut sub).await;
            got += 1;
        }
        assert_eq!(inflight(&b), 20);
    }

    #[tokio::test]
    async fn a_refusal_that_cannot_heal_ends_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let mut sub = b.consumer().subscribe(request(1, 1 << 20)).unwrap();
        b.topics().delete(TOPIC).unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), async {
            let mut errors = 0;
            while let Some(item) = sub.next().await {
                let e = item.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
                errors += 1;
            }
            errors
        })
        .await
        .unwrap();
        assert_eq!(end, 1);
    }

    #[tokio::test]
    async fn bad_subscriptions_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        let mut req = request(1, 1024);
        req.pop.topic = "missing".into();
        assert_eq!(
            b.consumer().subscribe(req).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let mut req = request(1, 1024);
        req.pop.max = 0;
        assert!(matches!(
            b.consumer().subscribe(req).unwrap_err(),
            Error::IllegalBatchSize { .. }
        ));
        let mut req = request(1, 1024);
        req.pop.invisible = Duration::ZERO;
        assert_eq!(
            b.consumer().subscribe(req).unwrap_err().reason(),
            crate::Reason::IllegalInvisibleTime
        );
    }
}
