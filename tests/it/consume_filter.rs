//! Filters through pop and `pull_group`: a group's tag subscription (`A || B`) and an SQL92
//! expression given with the request (`a > 5 AND b = 'x'`). Messages the filter rejects are
//! skipped and never delivered (not even by a pop waiting well past the invisible time, and they
//! do not count as unacknowledged); every matching message is delivered exactly once. A long poll
//! with a filter is not satisfied by a message the filter rejects.
//!
//! Regression tests of former bugs (fixed), behind a run of more than 4,096 rejected messages
//! (one scan's limit): `pull_group` finds the match instead of answering `Found` with no message
//! (`…pull_over_many_rejected_messages`), and a waiting pop returns it at once, not at its
//! deadline (`…pop_over_many_rejected_messages`).

use std::time::{Duration, Instant};

use rocketgate_core::{Broker, FilterExpression, Message, StoredMessage, TopicConfig};

use crate::support;

const TOPIC: &str = "filtered";
const QUEUES: u32 = 2;
const COUNT: u64 = 60;

/// Message `i`: tag A, B, C or none by `i % 4`; property `a = i` unless `i % 5 == 0`; property
/// `b` is `x` when `i % 3 == 0`, else `y`.
fn message(i: u64) -> Message {
    let mut m = Message::new(TOPIC, i.to_string())
        .with_property("b", if i.is_multiple_of(3) { "x" } else { "y" });
    if let Some(tag) = ["A", "B", "C"].get((i % 4) as usize) {
        m = m.with_tag(*tag);
    }
    if !i.is_multiple_of(5) {
        m = m.with_property("a", i.to_string());
    }
    m
}

fn tag_match(i: u64) -> bool {
    i % 4 < 2
}

fn sql_match(i: u64) -> bool {
    !i.is_multiple_of(5) && i > 5 && i.is_multiple_of(3)
}

fn index(m: &StoredMessage) -> u64 {
    std::str::from_utf8(&m.body).unwrap().parse().unwrap()
}

/// Pops until a pop waiting `wait` finds nothing; acknowledges everything; returns the indexes.
async fn pop_all(broker: &Broker, group: &str, filter: Option<FilterExpression>) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let mut req = support::pop_req(
            group,
            TOPIC,
            7,
            Duration::from_millis(400),
            Duration::from_millis(300),
        );
        req.filter = filter.clone();
        let got = support::pop(broker, req).await;
        if got.is_empty() {
            return out;
        }
        for p in got {
            assert_eq!(p.attempt, 1, "{group}: redelivered {:?}", p.message);
            out.push(index(&p.message));
            support::ack(broker, group, &p.receipt_handle).await;
        }
    }
}

/// Pulls every queue from 0 to the end; returns the indexes and checks `next_offset` reaches
/// the queue's max even when the last messages were filtered out.
async fn pull_all(broker: &Broker, group: &str, filter: Option<FilterExpression>) -> Vec<u64> {
    let mut out = Vec::new();
    for q in 0..QUEUES {
        let mut offset = 0;
        loop {
            let mut req = support::pull_req(group, TOPIC, q, offset, 4, Duration::ZERO);
            req.filter = filter.clone();
            let r = support::pull_group(broker, req).await;
            out.extend(r.messages.iter().map(index));
            assert!(r.next_offset >= offset);
            if r.messages.is_empty() {
                assert_eq!(r.next_offset, r.max_offset, "{group}: queue {q}: {r:?}");
                break;
            }
            offset = r.next_offset;
        }
    }
    out
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_filter_tag_and_sql_through_pop_and_pull_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new(TOPIC, QUEUES))
        .unwrap();
    broker
        .groups()
        .subscribe("tagged", TOPIC, FilterExpression::tag("A || B"))
        .unwrap();
    broker
        .groups()
        .subscribe("tagged-pull", TOPIC, FilterExpression::tag(" B||A "))
        .unwrap();
    for i in 0..COUNT {
        support::send_ok(&broker, message(i)).await;
    }
    let want_tag: Vec<u64> = (0..COUNT).filter(|i| tag_match(*i)).collect();
    let want_sql: Vec<u64> = (0..COUNT).filter(|i| sql_match(*i)).collect();
    assert!(!want_sql.is_empty() && want_sql.len() < want_tag.len());

    // Pop with the group's tag subscription; pop with an SQL filter of the request.
    let sql = FilterExpression::sql("a > 5 AND b = 'x'");
    let popped = pop_all(&broker, "tagged", None).await;
    assert_eq!(sorted(popped.clone()), want_tag, "pop, tag subscription");
    assert_eq!(popped.len(), want_tag.len(), "pop: delivered twice");
    let popped_sql = pop_all(&broker, "sql-pop", Some(sql.clone())).await;
    assert_eq!(sorted(popped_sql), want_sql, "pop, SQL filter");

    // The rejected messages never come, also long after the invisible time (400 ms), and are
    // not counted as unacknowledged.
    let t = Instant::now();
    let late = support::pop(
        &broker,
        support::pop_req(
            "tagged",
            TOPIC,
            16,
            Duration::from_millis(400),
            Duration::from_millis(1000),
        ),
    )
    .await;
    assert!(late.is_empty(), "{late:?}");
    assert!(t.elapsed() >= Duration::from_millis(1000));
    for group in ["tagged", "sql-pop"] {
        let lag = broker.consumer().lag(group, TOPIC).unwrap();
        assert!(
            lag.iter()
                .all(|l| l.pop_unacked == 0 && l.pop_inflight == 0),
            "{group}: {lag:?}"
        );
    }

    // pull_group: the subscription, an SQL filter of the request, a tag filter of the request
    // for a group without a subscription, and `TAGS` in SQL.
    let pulled = pull_all(&broker, "tagged-pull", None).await;
    assert_eq!(sorted(pulled), want_tag, "pull_group, tag subscription");
    let pulled_sql = pull_all(&broker, "sql-pull", Some(sql.clone())).await;
    assert_eq!(sorted(pulled_sql), want_sql, "pull_group, SQL filter");
    let only_c = pull_all(&broker, "plain", Some(FilterExpression::tag("C"))).await;
    assert_eq!(
        sorted(only_c),
        (0..COUNT).filter(|i| i % 4 == 2).collect::<Vec<_>>()
    );
    let tags_sql = pull_all(
        &broker,
        "plain",
        Some(FilterExpression::sql(
            "TAGS IN ('A', 'C') AND a IS NOT NULL",
        )),
    )
    .await;
    assert_eq!(
        sorted(tags_sql),
        (0..COUNT)
            .filter(|i| matches!(i % 4, 0 | 2) && !i.is_multiple_of(5))
            .collect::<Vec<_>>()
    );
    let everything = pull_all(&broker, "plain", None).await;
    assert_eq!(sorted(everything), (0..COUNT).collect::<Vec<_>>());

    // Long polls with a filter: a rejected message does not end the wait, a matching one does.
    let info = broker.topics().describe(TOPIC).await.unwrap();
    let end: Vec<u64> = info.queues.iter().map(|q| q.max).collect();
    let b = broker.clone();
    let mut pull = support::pull_req("tagged-pull", TOPIC, 0, end[0], 8, Duration::from_secs(10));
    pull.filter = None;
    let pull_waiter = tokio::spawn(async move { support::pull_group(&b, pull).await });
    let b = broker.clone();
    let pop_waiter = tokio::spawn(async move {
        support::pop(
            &b,
            support::pop_req(
                "tagged",
                TOPIC,
                8,
                Duration::from_secs(60),
                Duration::from_secs(10),
            ),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rejected = |i: u64| {
        let req: rocketgate_core::SendRequest = message(i).into();
        rocketgate_core::SendRequest {
            queue: rocketgate_core::QueueSelector::Queue(0),
            ..req
        }
    };
    support::send_ok(&broker, rejected(1002)).await; // tag C
    support::send_ok(&broker, rejected(1003)).await; // no tag
                                                     // A window in which nothing more may happen: the sleep is the check's subject, not a
                                                     // synchronization.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pull_waiter.is_finished(),
        "pull_group woken by rejected messages"
    );
    assert!(!pop_waiter.is_finished(), "pop woken by rejected messages");
    support::send_ok(&broker, rejected(1001)).await; // tag B
    let r = support::within(Duration::from_secs(15), "pull waiter", pull_waiter)
        .await
        .unwrap();
    assert_eq!(r.messages.iter().map(index).collect::<Vec<_>>(), vec![1001]);
    assert_eq!(r.next_offset, end[0] + 3);
    let p = support::within(Duration::from_secs(15), "pop waiter", pop_waiter)
        .await
        .unwrap();
    assert_eq!(
        p.iter().map(|p| index(&p.message)).collect::<Vec<_>>(),
        vec![1001]
    );
    broker.shutdown().unwrap();
}

/// Far more rejected messages than one pass scans (4,096 per queue), then one matching message
/// at the end of the queue.
async fn long_rejected_run(broker: &Broker, topic: &str) -> u64 {
    broker.topics().create(TopicConfig::new(topic, 1)).unwrap();
    for i in 0..5000 {
        support::send_ok(broker, Message::new(topic, i.to_string()).with_tag("C")).await;
    }
    let last = support::send_ok(broker, Message::new(topic, "match").with_tag("A")).await;
    last.queue_offset.unwrap()
}

/// A pull over a long run of rejected messages makes progress and never answers `Found`
/// without a message (`PullStatus::Found` is documented as "at least one message").
#[tokio::test]
async fn consume_filter_pull_over_many_rejected_messages() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    let at = long_rejected_run(&broker, "rejected-pull").await;
    let mut offset = 0;
    let mut found = Vec::new();
    for _ in 0..10 {
        let mut req = support::pull_req("scan", "rejected-pull", 0, offset, 8, Duration::ZERO);
        req.filter = Some(FilterExpression::tag("A"));
        let r = support::pull_group(&broker, req).await;
        println!(
            "pull from {offset}: {:?}, {} messages, next {}",
            r.status,
            r.messages.len(),
            r.next_offset
        );
        assert!(
            !(r.status == rocketgate_core::PullStatus::Found && r.messages.is_empty()),
            "Found without a message at {offset} (next {})",
            r.next_offset
        );
        assert!(r.next_offset > offset || r.messages.is_empty());
        found.extend(r.messages.iter().map(|m| m.queue_offset));
        if r.next_offset == r.max_offset {
            break;
        }
        offset = r.next_offset;
    }
    assert_eq!(found, vec![at]);
    broker.shutdown().unwrap();
}

/// A pop with a filter finds a matching message behind a long run of rejected ones at once,
/// not only when its wait ends.
#[tokio::test]
async fn consume_filter_pop_over_many_rejected_messages() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    let at = long_rejected_run(&broker, "rejected-pop").await;
    let mut req = support::pop_req(
        "scan",
        "rejected-pop",
        8,
        Duration::from_secs(60),
        Duration::from_secs(8),
    );
    req.filter = Some(FilterExpression::tag("A"));
    let t = Instant::now();
    let got = support::pop(&broker, req).await;
    let took = t.elapsed();
    println!("pop over 5000 rejected messages: {} in {took:?}", got.len());
    assert_eq!(
        got.iter()
            .map(|p| p.message.queue_offset)
            .collect::<Vec<_>>(),
        vec![at]
    );
    assert!(took < support::PROMPTLY, "took {took:?} of its 8 s wait");
    broker.shutdown().unwrap();
}
