//! The one delivery loop: a credit- and byte-bounded stream of popped messages, what every
//! push-style gateway (a WebSocket subscription, an MQTT session's subscriptions) consumes
//! instead of writing its own pop loop.
//!
//! Owns: one task per [`Subscription`] that pops for its group and topic while its credit pool
//! holds credits, and the bounded buffer between that task and the gateway. A pool is the
//! subscription's own ([`Credits::Own`]) or shared by several subscriptions
//! ([`Credits::Shared`]: an MQTT session's one queue for all the topics it reads).
//!
//! Invariants:
//! - Credits bound what is popped: every popped message spends one credit of its pool, so
//!   across all the subscriptions of a pool at most the credits granted to it so far (minus
//!   the messages already taken with [`Subscription::next`]) are popped and not yet taken. A
//!   loop takes credits for one pop (at least one, at most `pop.max`) and gives back at once
//!   what that pop did not use. A message is popped only when it has a place: nothing popped
//!   is ever dropped by the loop (it stays invisible to the group until acked, redelivered
//!   after its invisible time otherwise).
//! - A dropped [`Subscription`] gives its pool back every credit it still holds (a pop in
//!   progress, messages popped and never taken), once both its task and its handle are gone:
//!   a shared pool never shrinks because one of its subscriptions ended.
//! - Bytes bound the buffer: the task does not pop while the bodies waiting in the buffer reach
//!   `max_buffered_bytes` (a single larger message still goes through alone).
//! - Errors reach the gateway in order with the messages; a refusal that cannot heal
//!   (not found, invalid argument, forbidden) ends the stream after it, others are retried after
//!   [`RETRY_AFTER`].
//!
//! Who calls it: gateways, through [`Consumer::subscribe`]. Concurrency: the task runs on the
//! runtime that created the subscription and ends when the [`Subscription`] is dropped or the
//! broker shuts down; a pool is a semaphore (fair: loops waiting on an empty pool are woken in
//! order by grants), shared by its subscriptions' tasks and every [`SubscriptionCredits`]
//! handle; the buffer is an unbounded channel whose length the credits bound.

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
    /// The credit pool the subscription pops against.
    pub credits: Credits,
    /// Most body bytes waiting in the buffer before the loop stops popping.
    pub max_buffered_bytes: usize,
}

/// Where a subscription's credits come from.
#[derive(Debug, Clone)]
pub enum Credits {
    /// A pool of its own, with this many credits at the start (more with
    /// [`Subscription::grant`]).
    Own(u32),
    /// A pool shared with other subscriptions: together they never hold more popped and not
    /// yet taken messages than its credits.
    Shared(SubscriptionCredits),
}

impl From<u32> for Credits {
    fn from(n: u32) -> Self {
        Self::Own(n)
    }
}

/// A credit pool: one subscription's, or several subscriptions' shared (see the module doc).
/// Cloning it gives another handle to the same pool, to grant from elsewhere than where the
/// messages are read (a connection that receives credit frames while a task forwards them).
#[derive(Debug, Clone)]
pub struct SubscriptionCredits {
    pool: Arc<Semaphore>,
}

impl SubscriptionCredits {
    /// A new pool holding `n` credits, to share with [`Credits::Shared`].
    pub fn new(n: u32) -> Self {
        Self {
            pool: Arc::new(Semaphore::new(n as usize)),
        }
    }

    /// Grants `n` more credits: the gateway's client can take `n` more messages.
    pub fn grant(&self, n: u32) {
        self.pool.add_permits(n as usize);
    }

    /// Credits not spent yet.
    pub fn available(&self) -> usize {
        self.pool.available_permits()
    }
}

/// One subscription's state, shared by its task and its handle.
struct Shared {
    pool: SubscriptionCredits,
    /// Credits this subscription spent and that neither went back to the pool nor left with a
    /// message taken by the gateway: a pop in progress, messages waiting in the buffer.
    held: AtomicUsize,
    buffered: AtomicUsize,
    taken: Notify,
}

impl Drop for Shared {
    /// Both the task and the handle are gone: what the subscription held is free again.
    fn drop(&mut self) {
        self.pool.pool.add_permits(*self.held.get_mut());
    }
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
            .field("credits", &self.pool.available())
            .field("held", &self.held.load(Ordering::Relaxed))
            .field("buffered", &self.buffered.load(Ordering::Relaxed))
            .finish()
    }
}

impl Consumer<'_> {
    /// Starts a subscription: checks it like [`Consumer::check_subscription`], then pops in a
    /// task on the current tokio runtime while its pool holds credits.
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
        let pool = match &req.credits {
            Credits::Own(n) => SubscriptionCredits::new(*n),
            Credits::Shared(pool) => pool.clone(),
        };
        let shared = Arc::new(Shared {
            pool,
            held: AtomicUsize::new(0),
            buffered: AtomicUsize::new(0),
            taken: Notify::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let broker = self.broker.clone();
        let task = tokio::spawn(run(broker, req, shared.clone(), tx));
        Ok(Subscription { rx, shared, task })
    }
}

impl Subscription {
    /// Grants `n` more credits to its pool (see [`SubscriptionCredits::grant`]; a shared pool's
    /// credits serve all its subscriptions).
    pub fn grant(&self, n: u32) {
        self.shared.pool.grant(n);
    }

    /// Credits of its pool not spent yet.
    pub fn credits(&self) -> usize {
        self.shared.pool.available()
    }

    /// A handle to its pool, to grant credits from elsewhere.
    pub fn credit_handle(&self) -> SubscriptionCredits {
        self.shared.pool.clone()
    }

    /// The next popped message (or error), in pop order; `None` once the loop has ended (a
    /// refusal that cannot heal was delivered, or the broker shut down).
    pub async fn next(&mut self) -> Option<Result<PoppedMessage>> {
        let item = self.rx.recv().await?;
        if let Ok(p) = &item {
            self.shared.held.fetch_sub(1, Ordering::AcqRel);
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
    let pool = shared.pool.pool.clone();
    loop {
        // Room in bytes first, then at least one credit, then as many more as one pop takes.
        while shared.buffered.load(Ordering::Acquire) >= req.max_buffered_bytes {
            let taken = shared.taken.notified();
            if shared.buffered.load(Ordering::Acquire) < req.max_buffered_bytes {
                break;
            }
            taken.await;
        }
        let Ok(first) = pool.acquire().await else {
            return;
        };
        first.forget();
        let extra = pool.available_permits().min(batch - 1);
        let extra = match pool.try_acquire_many(extra as u32) {
            Ok(p) => {
                let n = p.num_permits();
                p.forget();
                n
            }
            Err(_) => 0,
        };
        let taken = 1 + extra;
        // Held from here: a drop while popping gives them back (`Shared::drop`).
        shared.held.fetch_add(taken, Ordering::AcqRel);
        let pop = PopRequest {
            max: taken,
            ..req.pop.clone()
        };
        let popped = broker.consumer().pop(pop).await;
        let unused = popped.as_ref().map_or(taken, |m| taken - m.len());
        shared.held.fetch_sub(unused, Ordering::AcqRel);
        pool.add_permits(unused);
        match popped {
            Ok(messages) => {
                let got = !messages.is_empty();
                for p in messages {
                    shared
                        .buffered
                        .fetch_add(p.message.body.len(), Ordering::AcqRel);
                    // On failure the handle is gone: what is held goes back with `Shared`.
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                // Let other subscriptions of the same group pop before this one pops again:
                // without it, on a single-threaded runtime the first loop woken by a burst
                // took all of it, and an MQTT shared subscription was not load-balanced.
                if got {
                    tokio::task::yield_now().await;
                }
            }
            Err(e) => {
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
            credits: credits.into(),
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

    const OTHER: &str = "sub2";

    fn on(topic: &str, pool: &SubscriptionCredits) -> SubscriptionRequest {
        let mut req = request(0, 1 << 20);
        req.pop.topic = topic.into();
        req.credits = Credits::Shared(pool.clone());
        req
    }

    async fn send_to(b: &Broker, topic: &str, n: usize) {
        for _ in 0..n {
            b.producer()
                .send(Message::new(topic, vec![b'y'; 8]).into())
                .await
                .unwrap();
        }
    }

    /// Messages popped for the group on `topic` and not acked (0 before its first pop creates
    /// the group).
    fn inflight_on(b: &Broker, topic: &str) -> u64 {
        b.consumer()
            .lag(GROUP, topic)
            .unwrap_or_default()
            .iter()
            .map(|l| l.pop_inflight)
            .sum()
    }

    /// Waits (at most 10 s) until messages popped for the group on `topics` are `n`.
    async fn until_inflight(b: &Broker, topics: &[&str], n: u64) {
        let popped = || topics.iter().map(|t| inflight_on(b, t)).sum::<u64>();
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            while popped() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "popped {} of {n}", popped());
    }

    async fn nothing(sub: &mut Subscription) {
        let more = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(more.is_err(), "a message without a credit: {more:?}");
    }

    #[tokio::test]
    async fn subscriptions_sharing_a_pool_never_pop_more_than_its_credits() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.topics().create(TopicConfig::new(OTHER, 2)).unwrap();
        send_to(&b, TOPIC, 10).await;
        send_to(&b, OTHER, 10).await;
        let pool = SubscriptionCredits::new(5);
        let mut one = b.consumer().subscribe(on(TOPIC, &pool)).unwrap();
        let mut two = b.consumer().subscribe(on(OTHER, &pool)).unwrap();
        until_inflight(&b, &[TOPIC, OTHER], 5).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let total = inflight_on(&b, TOPIC) + inflight_on(&b, OTHER);
        assert_eq!(total, 5, "popped past the shared pool");
        assert_eq!(pool.available(), 0);
        // Taking messages does not make room: only grants do.
        let (mut got_one, mut got_two) = (0, 0);
        for _ in 0..5 {
            tokio::select! {
                Some(m) = one.next() => { m.unwrap(); got_one += 1; }
                Some(m) = two.next() => { m.unwrap(); got_two += 1; }
            }
        }
        nothing(&mut one).await;
        nothing(&mut two).await;
        assert_eq!(got_one + got_two, 5);
        assert_eq!(inflight_on(&b, TOPIC) + inflight_on(&b, OTHER), 5);
        // A grant on any handle serves both.
        one.grant(4);
        until_inflight(&b, &[TOPIC, OTHER], 9).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(inflight_on(&b, TOPIC) + inflight_on(&b, OTHER), 9);
        assert_eq!(two.credits(), 0);
    }

    #[tokio::test]
    async fn a_grant_wakes_the_subscriptions_of_an_empty_pool() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.topics().create(TopicConfig::new(OTHER, 2)).unwrap();
        let pool = SubscriptionCredits::new(0);
        let mut one = b.consumer().subscribe(on(TOPIC, &pool)).unwrap();
        let mut two = b.consumer().subscribe(on(OTHER, &pool)).unwrap();
        send_to(&b, TOPIC, 1).await;
        send_to(&b, OTHER, 1).await;
        nothing(&mut one).await;
        nothing(&mut two).await;
        // Both loops wait on the pool; two credits wake both (one would serve one of them).
        pool.grant(2);
        next(&mut one).await;
        next(&mut two).await;
        assert_eq!(pool.available(), 0);
    }

    #[tokio::test]
    async fn a_dropped_subscription_gives_its_credits_back_to_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.topics().create(TopicConfig::new(OTHER, 2)).unwrap();
        send_to(&b, TOPIC, 3).await;
        let pool = SubscriptionCredits::new(4);
        let one = b.consumer().subscribe(on(TOPIC, &pool)).unwrap();
        let mut two = b.consumer().subscribe(on(OTHER, &pool)).unwrap();
        // `one` popped 3 and never had them taken; `two` long-polls with what is left.
        until_inflight(&b, &[TOPIC], 3).await;
        drop(one);
        // The pool has its 4 credits again: 4 messages on the other topic all come through.
        send_to(&b, OTHER, 4).await;
        for _ in 0..4 {
            next(&mut two).await;
        }
        nothing(&mut two).await;
        assert_eq!(pool.available(), 0);
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
