//! FIFO topics through pop/ack: 10 message groups × 100 messages, consumed by 4 concurrent
//! consumer tasks popping small batches and acknowledging after random small delays.
//!
//! Checks, per message group: messages are delivered and acknowledged in send order; the next
//! message of a group is delivered only after the previous one's ack was issued (no two of a
//! group in flight); all 1,000 are consumed exactly once (nothing fails, so no redelivery).
//! Also: messages of a FIFO topic without a message group are not held back; an unacknowledged
//! head of a group comes back before the group's next message, also across a restart.
//!
//! Regression tests of former bugs (fixed): an ack wakes a pop waiting for the group's next
//! message (`…ack_wakes_a_pop_waiting_for_the_group`); a group with more than 1,024 queued
//! messages no longer blocks other groups behind it in the same queue
//! (`…a_long_group_backlog_does_not_block_other_groups`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rocketgate_core::{Message, MessageType, TopicConfig};

use crate::support;

const GROUPS: usize = 10;
const PER_GROUP: usize = 100;
const CONSUMERS: usize = 4;
const GROUP: &str = "fifo-consumer";

/// One consumer event on message `index` of message group `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Delivered by a pop (logged after the pop returned).
    Popped { group: usize, index: usize },
    /// About to be acknowledged (logged before `ack` is called, so before the broker can
    /// release the group's next message).
    Acking { group: usize, index: usize },
}

/// A totally ordered log of what the consumer tasks did.
#[derive(Default)]
struct EventLog(Mutex<Vec<Event>>);

impl EventLog {
    fn push(&self, events: impl IntoIterator<Item = Event>) {
        self.0.lock().unwrap().extend(events);
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn parse_body(body: &[u8]) -> (usize, usize) {
    let s = std::str::from_utf8(body).unwrap();
    let (g, i) = s.split_once(':').unwrap();
    (g.parse().unwrap(), i.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_fifo_groups_in_send_order_exactly_once_with_concurrent_consumers() {
    let mut rng = support::seeded_rng("fifo");
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::consume_config(dir.path());
    // The end of the test sends messages without a group into the FIFO topic, which only a
    // broker with the type check relaxed takes.
    config.limits.topic_message_type_check = false;
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new("fifo", 4).with_type(MessageType::Fifo))
        .unwrap();

    // Send the groups interleaved in a random order, each group's messages in order.
    let mut order: Vec<usize> = (0..GROUPS)
        .flat_map(|g| std::iter::repeat_n(g, PER_GROUP))
        .collect();
    order.shuffle(&mut rng);
    let mut next = [0usize; GROUPS];
    let t = Instant::now();
    for g in order {
        let i = next[g];
        next[g] += 1;
        let m = Message::new("fifo", format!("{g}:{i}")).with_group(format!("group-{g}"));
        support::send_ok(&broker, m).await;
    }
    println!("sent {} messages in {:?}", GROUPS * PER_GROUP, t.elapsed());

    let log = Arc::new(EventLog::default());
    let acked = Arc::new(AtomicUsize::new(0));
    let total = GROUPS * PER_GROUP;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONSUMERS {
        let broker = broker.clone();
        let log = log.clone();
        let acked = acked.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(rng.gen::<u64>() ^ c as u64);
        tasks.push(tokio::spawn(async move {
            let mut pops = 0usize;
            while acked.load(Ordering::SeqCst) < total {
                let max = rng.gen_range(1..=3);
                let got = support::pop(
                    &broker,
                    support::pop_req(
                        GROUP,
                        "fifo",
                        max,
                        Duration::from_secs(60),
                        Duration::from_millis(50),
                    ),
                )
                .await;
                pops += 1;
                assert!(got.len() <= max, "pop of {max} returned {}", got.len());
                let parsed: Vec<(usize, usize)> =
                    got.iter().map(|p| parse_body(&p.message.body)).collect();
                log.push(
                    parsed
                        .iter()
                        .map(|&(group, index)| Event::Popped { group, index }),
                );
                for (p, &(group, index)) in got.iter().zip(&parsed) {
                    assert_eq!(p.attempt, 1, "redelivered {group}:{index}");
                    assert_eq!(
                        p.message.message_group.as_deref(),
                        Some(format!("group-{group}").as_str())
                    );
                    let delay = rng.gen_range(0..=3);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    log.push([Event::Acking { group, index }]);
                    support::ack(&broker, GROUP, &p.receipt_handle).await;
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
            pops
        }));
    }
    let mut pops = Vec::new();
    for t in tasks {
        pops.push(
            support::within(Duration::from_secs(60), "FIFO consumers", t)
                .await
                .unwrap(),
        );
    }
    println!(
        "consumed {total} FIFO messages with {CONSUMERS} consumers in {:?} ({pops:?} pops)",
        started.elapsed()
    );

    // Per group: delivery order and ack order are the send order, each exactly once, and
    // message k+1 is delivered only after the ack of k was issued.
    let events = log.take();
    let mut popped: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut acking: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut ack_at: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (at, e) in events.iter().enumerate() {
        match *e {
            Event::Popped { group, index } => {
                if index > 0 {
                    let prev = ack_at.get(&(group, index - 1)).copied();
                    assert!(
                        prev.is_some_and(|p| p < at),
                        "group {group}: message {index} delivered (event {at}) before the ack of \
                         {} was issued ({prev:?})",
                        index - 1
                    );
                }
                popped.entry(group).or_default().push(index);
            }
            Event::Acking { group, index } => {
                assert!(ack_at.insert((group, index), at).is_none());
                acking.entry(group).or_default().push(index);
            }
        }
    }
    let in_order: Vec<usize> = (0..PER_GROUP).collect();
    for g in 0..GROUPS {
        assert_eq!(popped[&g], in_order, "group {g}: delivery order");
        assert_eq!(acking[&g], in_order, "group {g}: ack order");
    }
    assert_eq!(acked.load(Ordering::SeqCst), total);
    // Nothing left, nothing in flight, and a further pop finds nothing.
    let lag = broker.consumer().lag(GROUP, "fifo").unwrap();
    assert!(
        lag.iter()
            .all(|l| l.pop_unacked == 0 && l.pop_inflight == 0),
        "{lag:?}"
    );
    let rest = support::pop(
        &broker,
        support::pop_req(
            GROUP,
            "fifo",
            16,
            Duration::from_secs(60),
            Duration::from_millis(100),
        ),
    )
    .await;
    assert!(rest.is_empty(), "{rest:?}");

    // Messages without a message group are not held back: five in one queue come in one pop.
    for i in 0..5 {
        let req = rocketgate_core::SendRequest::new(
            Message::new("fifo", format!("free:{i}")),
            rocketgate_core::QueueSelector::Queue(0),
        );
        support::send_ok(&broker, req).await;
    }
    let free = support::pop(
        &broker,
        support::pop_req(
            GROUP,
            "fifo",
            16,
            Duration::from_secs(60),
            Duration::from_millis(100),
        ),
    )
    .await;
    assert_eq!(free.len(), 5, "{free:?}");
    broker.shutdown().unwrap();
}

/// An ack frees the message group: a pop already waiting for the group's next message gets it
/// promptly, not at the end of its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_fifo_ack_wakes_a_pop_waiting_for_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new("fifo-wake", 1).with_type(MessageType::Fifo))
        .unwrap();
    for i in 0..2 {
        support::send_ok(
            &broker,
            Message::new("fifo-wake", format!("0:{i}")).with_group("g"),
        )
        .await;
    }
    let req = |wait| support::pop_req(GROUP, "fifo-wake", 1, Duration::from_secs(60), wait);
    let first = support::pop(&broker, req(Duration::ZERO)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(parse_body(&first[0].message.body), (0, 0));
    let b = broker.clone();
    let wait = Duration::from_secs(5);
    let waiter = tokio::spawn(async move {
        let r = support::pop(&b, req(wait)).await;
        (Instant::now(), r)
    });
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the group's next message was released while the first is in flight"
    );
    support::ack(&broker, GROUP, &first[0].receipt_handle).await;
    let acked = Instant::now();
    let (done, second) = support::within(Duration::from_secs(30), "waiting pop", waiter)
        .await
        .unwrap();
    let took = done.saturating_duration_since(acked);
    println!("FIFO: pop waiting for the group returned {took:?} after the ack (wait {wait:?})");
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(parse_body(&second[0].message.body), (0, 1));
    assert!(
        took < support::PROMPTLY,
        "the waiting pop got the group's next message only {took:?} after the ack (wait {wait:?})"
    );
    broker.shutdown().unwrap();
}

/// A FIFO group's head that is not acknowledged comes back first (attempt 2) when its
/// invisible time passes; the next message waits for its ack, also across a clean restart.
#[tokio::test]
async fn consume_fifo_redelivers_the_groups_head_first_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::consume_config(dir.path());
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new("fifo-head", 1).with_type(MessageType::Fifo))
        .unwrap();
    for i in 0..3 {
        support::send_ok(
            &broker,
            Message::new("fifo-head", format!("0:{i}")).with_group("g"),
        )
        .await;
    }
    let req = |invisible_ms, wait_ms| {
        support::pop_req(
            GROUP,
            "fifo-head",
            3,
            Duration::from_millis(invisible_ms),
            Duration::from_millis(wait_ms),
        )
    };
    let bodies = |v: &[rocketgate_core::PoppedMessage]| -> Vec<((usize, usize), u32)> {
        v.iter()
            .map(|p| (parse_body(&p.message.body), p.attempt))
            .collect()
    };
    let first = support::pop(&broker, req(300, 0)).await;
    assert_eq!(bodies(&first), vec![((0, 0), 1)]);
    // Not acknowledged: after 300 ms the head comes back, not the next message.
    let again = support::pop(&broker, req(60_000, 3000)).await;
    assert_eq!(bodies(&again), vec![((0, 0), 2)]);
    // Restart with the head in flight: it comes back first (attempt 3), alone.
    broker.shutdown().unwrap();
    drop(broker);
    let broker = support::open(&config);
    let after = support::pop(&broker, req(60_000, 300)).await;
    assert_eq!(bodies(&after), vec![((0, 0), 3)]);
    let none = support::pop(&broker, req(60_000, 300)).await;
    assert!(none.is_empty(), "{:?}", bodies(&none));
    support::ack(&broker, GROUP, &after[0].receipt_handle).await;
    let next = support::pop(&broker, req(60_000, 300)).await;
    assert_eq!(bodies(&next), vec![((0, 1), 1)]);
    broker.shutdown().unwrap();
}

/// "Different groups proceed in parallel" (docs/consumption.md) also when one group has a long
/// backlog ahead of another group's message in the same queue.
#[tokio::test]
async fn consume_fifo_a_long_group_backlog_does_not_block_other_groups() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new("fifo-backlog", 1).with_type(MessageType::Fifo))
        .unwrap();
    for i in 0..1100 {
        support::send_ok(
            &broker,
            Message::new("fifo-backlog", format!("0:{i}")).with_group("hot"),
        )
        .await;
    }
    support::send_ok(
        &broker,
        Message::new("fifo-backlog", "1:0").with_group("cold"),
    )
    .await;
    let got = support::pop(
        &broker,
        support::pop_req(
            GROUP,
            "fifo-backlog",
            4,
            Duration::from_secs(60),
            Duration::from_millis(500),
        ),
    )
    .await;
    let bodies: Vec<(usize, usize)> = got.iter().map(|p| parse_body(&p.message.body)).collect();
    println!("first pop: {bodies:?}");
    assert_eq!(bodies, vec![(0, 0), (1, 0)]);
    broker.shutdown().unwrap();
}
