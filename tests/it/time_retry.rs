//! Retries with backoff and dead letters (docs/consumption.md "Retries and dead letters",
//! RELIABILITY.md T5b) on the real store, with the backoff scaled down by configuration:
//! `consumer.retry_backoff = "100ms 200ms 300ms"` and `max_delivery_attempts = 3` for the group.
//!
//! - T5b: 200 messages; a consumer acknowledges everything except 5% of the ids (chosen by the
//!   seed), whose handler fails: it nacks them without a delay, as REST and MQTT consumers do
//!   (the RocketMQ push SDK stretches the invisible time by the same backoff instead). Each
//!   failing id is delivered exactly three times (attempts 1, 2, 3), then lands in
//!   `%DLQ%<group>` exactly once; no other id is ever redelivered or dead-lettered. The retry
//!   delay — from the nack to the next delivery — is at least the configured level and on the
//!   whole within +20% of it (each one within a fixed slack; all figures printed). (A message
//!   that is not acknowledged at all comes back when its invisible time ends, with no backoff
//!   on top: `core/src/broker/tests.rs` checks that to the millisecond on a manual clock.) The dead letter keeps the
//!   id, keys, tag, body and properties (plus `RETRY_TOPIC`), has `reconsume_times = 3`, and its
//!   `trace` reads `Stored → Retry(1) → Retry(2) → DeadLettered(3)` (the retries wait in the
//!   schedule in between). `dlq_list` (paged), `message_by_id` and `query_by_key` on the DLQ
//!   topic find it; `dlq_resend` delivers it again with attempts reset, by id or all, and is
//!   refused as a whole (`MessageNotFound`) when one id is not in the DLQ; `dlq_purge` empties
//!   the DLQ for good (also across a restart) and later dead letters land in it again.
//! - `nack`: with an explicit delay the message comes back after that delay, without one after
//!   the backoff of its attempt, with a zero delay at once; a nack at the last attempt
//!   dead-letters it; a stale handle is refused.
//! - FIFO: a message group whose head is never acknowledged: the head is redelivered in place
//!   (attempts 1..3), other groups proceed meanwhile, then it is dead-lettered and the group's
//!   next messages are released in order — promptly, to a consumer that is long-polling.
//! - `send_back` (classic pull consumers): a pulled message sent back with delay level 1 shows
//!   up in `%RETRY%<group>` after 1 s, then after the backoff, and the third send-back
//!   dead-letters it.
//! - Retries across a clean restart: a retry waiting in the schedule comes back on time, a
//!   message in flight at once with its attempt counted on; both dead-lettered once.
//!
//! Timing-sensitive tests run on a memory filesystem: the timer persists its progress (fsync,
//! rename, directory fsync) on its delivery thread, so on a busy disk the measured delays would
//! include the disk's stalls (seen once here: +250–480 ms while other processes used the disk).
//!
//! Regression tests of former bugs (fixed, in `time_retry_fifo.rs`): dead-lettering a FIFO
//! group's head wakes a long-polling pop; `send_back` right after `send` finds the message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rand::seq::index::sample;
use rocketgate_core::api::TraceKind;
use rocketgate_core::rules::PROP_RETRY_TOPIC;
use rocketgate_core::MessageType;
use rocketgate_core::{dlq_topic, retry_topic, DlqSelection};
use rocketgate_core::{
    Broker, Error, ErrorKind, FlushMode, GroupConfig, Message, PoppedMessage, StoredMessage,
    TopicConfig,
};
use rocketgate_tests::time::{self, RETRY_BACKOFF_MS};

use crate::support;

pub(crate) const TOPIC: &str = "t5b";
pub(crate) const GROUP: &str = "t5b-group";
pub(crate) const MESSAGES: usize = 200;
pub(crate) const FAILING: usize = 10;
pub(crate) const MAX_ATTEMPTS: u32 = 3;
pub(crate) const INVISIBLE: Duration = Duration::from_millis(300);
/// Slack over +20% allowed for a single retry delay on a busy machine (the overall figure must
/// still be within +20%).
pub(crate) const RETRY_SLACK_MS: i64 = 400;

pub(crate) fn group(name: &str) -> GroupConfig {
    let mut g = GroupConfig::new(name);
    g.max_delivery_attempts = MAX_ATTEMPTS;
    g
}

pub(crate) fn message(i: usize) -> Message {
    Message::new(TOPIC, format!("body-{i}"))
        .with_key(format!("k-{i}"))
        .with_tag("t5b")
        .with_property("i", i.to_string())
        .with_property("kind", "t5b")
}

/// One delivery seen by the consumer.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    attempt: u32,
    popped_ms: i64,
    /// When the handler failed and nacked it (the delivery's time if it was acknowledged).
    failed_ms: i64,
}

/// Everything popped in one long poll, with when the pop returned.
pub(crate) async fn pop_batch(
    broker: &Broker,
    group: &str,
    topic: &str,
    max: usize,
    invisible: Duration,
    wait: Duration,
) -> (i64, Vec<PoppedMessage>) {
    let got = support::pop(broker, support::pop_req(group, topic, max, invisible, wait)).await;
    (support::now_ms(), got)
}

/// The whole DLQ of `group`, paged 4 at a time.
pub(crate) async fn dlq_all(broker: &Broker, group: &str) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = support::within(
            support::CALL_TIMEOUT,
            "dlq_list",
            broker.dead_letters().list(group, offset, 4),
        )
        .await
        .unwrap();
        if r.messages.is_empty() {
            return out;
        }
        assert!(r.messages.len() <= 4);
        offset = r.next_offset;
        out.extend(r.messages);
    }
}

/// The trace of `id` without the `Scheduled` steps (retries wait in the schedule), as
/// `(kind, attempts)`; checks that the scheduled steps are for `scheduled_topic`.
pub(crate) async fn trace_steps(
    broker: &Broker,
    id: &str,
    scheduled_topic: &str,
) -> Vec<(TraceKind, u32)> {
    let trace = broker.queries().trace(id).await.unwrap();
    for t in &trace {
        if t.kind == TraceKind::Scheduled {
            assert_eq!(t.topic, scheduled_topic, "{trace:?}");
        }
    }
    trace
        .iter()
        .filter(|t| t.kind != TraceKind::Scheduled)
        .map(|t| (t.kind, t.attempts))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_t5b_failing_ids_are_dead_lettered_once_after_backoff_retries() {
    let mut rng = support::seeded_rng("t5b");
    // On a memory filesystem: the timer persists its progress with fsyncs on its delivery
    // thread, so on a busy disk the measured delays would include the disk's stalls.
    let dir = support::memory_tempdir();
    let config = time::config(dir.path(), FlushMode::Async);
    let broker = support::open(&config);
    broker.topics().create(TopicConfig::new(TOPIC, 4)).unwrap();
    broker.groups().create(group(GROUP)).unwrap();
    let mut index_of = HashMap::new();
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        let r = support::send_ok(&broker, message(i)).await;
        index_of.insert(r.message_id.clone(), i);
        ids.push(r.message_id);
    }
    let failing: BTreeSet<usize> = sample(&mut rng, MESSAGES, FAILING).into_iter().collect();
    println!("t5b: failing message indexes {failing:?}");

    let started = Instant::now();
    let mut deliveries: BTreeMap<usize, Vec<Delivery>> = BTreeMap::new();
    let mut acked = BTreeSet::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "T5b not done within 30 s: {} acknowledged, failing deliveries {:?}",
            acked.len(),
            failing
                .iter()
                .map(|i| deliveries.get(i).map_or(0, Vec::len))
                .collect::<Vec<_>>()
        );
        let (popped_ms, got) = pop_batch(
            &broker,
            GROUP,
            TOPIC,
            32,
            INVISIBLE,
            Duration::from_millis(500),
        )
        .await;
        for p in got {
            let i = index_of[&p.message.message_id];
            let m = &p.message;
            let sent = message(i);
            assert_eq!(m.topic, TOPIC, "retries are presented in their topic");
            assert_eq!(
                (&m.body, &m.keys, &m.tag, &m.properties),
                (&sent.body, &sent.keys, &sent.tag, &sent.properties),
                "message {i} as delivered (attempt {})",
                p.attempt
            );
            let failed_ms = if failing.contains(&i) {
                support::within(
                    support::CALL_TIMEOUT,
                    "nack",
                    broker.consumer().nack(GROUP, &p.receipt_handle, None),
                )
                .await
                .unwrap();
                support::now_ms()
            } else {
                popped_ms
            };
            let seen = deliveries.entry(i).or_default();
            seen.push(Delivery {
                attempt: p.attempt,
                popped_ms,
                failed_ms,
            });
            assert_eq!(
                p.attempt as usize,
                seen.len(),
                "message {i}: attempts {:?}",
                seen.iter().map(|d| d.attempt).collect::<Vec<_>>()
            );
            assert_eq!(m.reconsume_times, p.attempt - 1, "message {i}");
            if failing.contains(&i) {
                assert!(
                    p.attempt <= MAX_ATTEMPTS,
                    "message {i}: attempt {}",
                    p.attempt
                );
            } else {
                assert_eq!(
                    p.attempt, 1,
                    "message {i} was acknowledged, yet redelivered"
                );
                support::ack(&broker, GROUP, &p.receipt_handle).await;
                acked.insert(i);
            }
        }
        let all_failed_thrice = failing
            .iter()
            .all(|i| deliveries.get(i).map_or(0, Vec::len) == MAX_ATTEMPTS as usize);
        if acked.len() == MESSAGES - FAILING
            && all_failed_thrice
            && dlq_all(&broker, GROUP).await.len() >= FAILING
        {
            break;
        }
    }
    println!(
        "t5b: all failing ids dead-lettered {:?} after the start",
        started.elapsed()
    );
    // No fourth delivery, nothing else.
    let (_, more) = pop_batch(&broker, GROUP, TOPIC, 32, INVISIBLE, Duration::from_secs(1)).await;
    assert!(more.is_empty(), "delivered after dead-lettering: {more:?}");

    // Retry delays: from the nack to the next delivery.
    let mut ratios = Vec::new();
    for level in 0..(MAX_ATTEMPTS as usize - 1) {
        let want = RETRY_BACKOFF_MS[level];
        let mut delays: Vec<i64> = failing
            .iter()
            .map(|i| {
                let d = &deliveries[i];
                d[level + 1].popped_ms - d[level].failed_ms
            })
            .collect();
        for (i, delay) in failing.iter().zip(&delays) {
            assert!(
                *delay * 10 >= want * 8,
                "message {i}: retry {} after {delay} ms, configured {want} ms",
                level + 1
            );
            assert!(
                *delay <= want * 12 / 10 + RETRY_SLACK_MS,
                "message {i}: retry {} after {delay} ms, configured {want} ms",
                level + 1
            );
            ratios.push(*delay as f64 / want as f64);
        }
        println!(
            "t5b: retry {} (configured {want} ms): measured delay after the nack (ms): {}",
            level + 1,
            support::summary(&mut delays)
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!("t5b: median measured/configured retry delay: {median:.3}");
    assert!(
        (0.8..=1.2).contains(&median),
        "median retry delay {median:.3} × the configured level"
    );

    // The DLQ: exactly the failing ids, once each, with their history.
    let dlq = dlq_all(&broker, GROUP).await;
    let mut in_dlq: BTreeMap<usize, u32> = BTreeMap::new();
    for m in &dlq {
        let i = index_of[&m.message_id];
        *in_dlq.entry(i).or_default() += 1;
        let sent = message(i);
        let mut props = sent.properties.clone();
        props.insert(PROP_RETRY_TOPIC.into(), TOPIC.into());
        assert_eq!(m.topic, dlq_topic(GROUP));
        assert_eq!(
            (&m.body, &m.keys, &m.tag, &m.properties),
            (&sent.body, &sent.keys, &sent.tag, &props),
            "dead letter {i}"
        );
        assert_eq!(m.reconsume_times, MAX_ATTEMPTS, "dead letter {i}");
    }
    assert_eq!(
        in_dlq.keys().copied().collect::<BTreeSet<_>>(),
        failing,
        "the DLQ holds exactly the failing ids"
    );
    assert!(
        in_dlq.values().all(|n| *n == 1),
        "dead-lettered more than once: {in_dlq:?}"
    );
    let retry = retry_topic(GROUP, TOPIC);
    for &i in &failing {
        let id = &ids[i];
        assert_eq!(
            trace_steps(&broker, id, &retry).await,
            vec![
                (TraceKind::Stored, 0),
                (TraceKind::Retry, 1),
                (TraceKind::Retry, 2),
                (TraceKind::DeadLettered, 3)
            ],
            "trace of failing message {i}"
        );
        let by_id = broker.queries().by_id(id).await.unwrap();
        assert_eq!(
            by_id.topic,
            dlq_topic(GROUP),
            "message_by_id finds the dead letter"
        );
        assert_eq!(by_id.reconsume_times, MAX_ATTEMPTS);
        let by_key = broker
            .queries()
            .by_key(&dlq_topic(GROUP), &format!("k-{i}"), 0, i64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(by_key.len(), 1, "query_by_key on the DLQ topic: {by_key:?}");
        assert_eq!(&by_key[0].message_id, id);
    }
    for (i, id) in ids
        .iter()
        .enumerate()
        .filter(|(i, _)| !failing.contains(i))
        .take(20)
    {
        assert_eq!(
            trace_steps(&broker, id, &retry).await,
            vec![(TraceKind::Stored, 0)],
            "trace of acknowledged message {i}"
        );
    }

    // Resend two by id: delivered again with attempts reset, as the original message.
    let failing_v: Vec<usize> = failing.iter().copied().collect();
    let (f0, f1, f2, f3) = (failing_v[0], failing_v[1], failing_v[2], failing_v[3]);
    let resent = broker
        .dead_letters()
        .resend(
            GROUP,
            DlqSelection::Ids(vec![ids[f0].clone(), ids[f1].clone()]),
        )
        .await
        .unwrap();
    assert_eq!(resent, 2);
    let back = pop_exactly(&broker, GROUP, TOPIC, 2).await;
    let back_ids: BTreeSet<&str> = back.iter().map(|p| p.message.message_id.as_str()).collect();
    assert_eq!(
        back_ids,
        BTreeSet::from([ids[f0].as_str(), ids[f1].as_str()])
    );
    for p in &back {
        let i = index_of[&p.message.message_id];
        assert_eq!(p.attempt, 1, "resent {i}: attempts reset");
        assert_eq!(p.message.reconsume_times, 0);
        assert_eq!(p.message.topic, TOPIC);
        assert_eq!(p.message.properties, message(i).properties, "resent {i}");
        support::ack(&broker, GROUP, &p.receipt_handle).await;
        let steps = trace_steps(&broker, &p.message.message_id, &retry).await;
        assert_eq!(steps.last(), Some(&(TraceKind::Stored, 0)), "{steps:?}");
    }
    // A selection with one id that is not a dead letter is refused as a whole.
    let good = (0..MESSAGES).find(|i| !failing.contains(i)).unwrap();
    let e = broker
        .dead_letters()
        .resend(
            GROUP,
            DlqSelection::Ids(vec![ids[f2].clone(), ids[good].clone()]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::MessageNotFound(id) if *id == ids[good]),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let (_, none) = pop_batch(
        &broker,
        GROUP,
        TOPIC,
        32,
        INVISIBLE,
        Duration::from_millis(500),
    )
    .await;
    assert!(none.is_empty(), "a refused resend delivered {none:?}");
    // All: every dead letter once more.
    assert_eq!(
        broker
            .dead_letters()
            .resend(GROUP, DlqSelection::All)
            .await
            .unwrap(),
        FAILING
    );
    let back = pop_exactly(&broker, GROUP, TOPIC, FAILING).await;
    let back_idx: BTreeSet<usize> = back
        .iter()
        .map(|p| index_of[&p.message.message_id])
        .collect();
    assert_eq!(back_idx, failing);
    for p in &back {
        assert_eq!(p.attempt, 1);
        support::ack(&broker, GROUP, &p.receipt_handle).await;
    }

    // Purge: empty, for good.
    broker.dead_letters().purge(GROUP).unwrap();
    assert!(dlq_all(&broker, GROUP).await.is_empty());
    let e = broker
        .dead_letters()
        .resend(GROUP, DlqSelection::Ids(vec![ids[f3].clone()]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MessageNotFound(_)), "{e:?}");
    assert_eq!(
        broker
            .dead_letters()
            .resend(GROUP, DlqSelection::All)
            .await
            .unwrap(),
        0
    );

    // A later dead letter lands in the purged DLQ, alone.
    let late = support::send_ok(&broker, message(MESSAGES)).await;
    index_of.insert(late.message_id.clone(), MESSAGES);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempts = 0;
    while dlq_all(&broker, GROUP).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the late message was not dead-lettered"
        );
        let (_, got) = pop_batch(
            &broker,
            GROUP,
            TOPIC,
            32,
            INVISIBLE,
            Duration::from_millis(500),
        )
        .await;
        for p in got {
            assert_eq!(p.message.message_id, late.message_id, "{p:?}");
            attempts += 1;
            assert_eq!(p.attempt, attempts);
        }
    }
    assert_eq!(attempts, MAX_ATTEMPTS);
    let dlq = dlq_all(&broker, GROUP).await;
    assert_eq!(
        dlq.iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        vec![late.message_id.as_str()]
    );
    broker.shutdown().unwrap();
    drop(broker);

    // After a restart: still only the late dead letter; the purged ones stay gone.
    let broker = support::open(&config);
    let dlq = dlq_all(&broker, GROUP).await;
    assert_eq!(
        dlq.iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        vec![late.message_id.as_str()],
        "DLQ after a restart"
    );
    let (_, none) = pop_batch(
        &broker,
        GROUP,
        TOPIC,
        32,
        INVISIBLE,
        Duration::from_millis(500),
    )
    .await;
    assert!(none.is_empty(), "delivered after the restart: {none:?}");
    broker.shutdown().unwrap();
}

/// Pops until exactly `n` messages arrived (10 s at most), without acknowledging them.
pub(crate) async fn pop_exactly(
    broker: &Broker,
    group: &str,
    topic: &str,
    n: usize,
) -> Vec<PoppedMessage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} delivered: {out:?}",
            out.len()
        );
        let (_, got) = pop_batch(
            broker,
            group,
            topic,
            32,
            Duration::from_secs(30),
            Duration::from_millis(500),
        )
        .await;
        out.extend(got);
    }
    assert_eq!(out.len(), n, "{out:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_nack_retries_after_the_given_delay_or_the_backoff() {
    let dir = support::memory_tempdir();
    let broker = support::open(&time::config(dir.path(), FlushMode::Async));
    broker.topics().create(TopicConfig::new("nack", 1)).unwrap();
    broker.groups().create(group("nack-group")).unwrap();
    let g = "nack-group";
    let a = support::send_ok(&broker, Message::new("nack", "a").with_key("a")).await;
    let b = support::send_ok(&broker, Message::new("nack", "b").with_key("b")).await;
    let c = support::send_ok(&broker, Message::new("nack", "c").with_key("c")).await;
    let long = Duration::from_secs(30);
    let first = pop_exactly(&broker, g, "nack", 3).await;
    let handle = |id: &str| {
        first
            .iter()
            .find(|p| p.message.message_id == id)
            .unwrap()
            .receipt_handle
            .clone()
    };
    let nacked_at = support::now_ms();
    broker
        .consumer()
        .nack(g, &handle(&a.message_id), Some(Duration::from_millis(600)))
        .await
        .unwrap();
    broker
        .consumer()
        .nack(g, &handle(&b.message_id), None)
        .await
        .unwrap();
    support::ack(&broker, g, &handle(&c.message_id)).await;
    // The first handles are stale now.
    let e = broker
        .consumer()
        .nack(g, &handle(&a.message_id), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidReceiptHandle(_)), "{e:?}");

    let mut back: BTreeMap<String, (i64, PoppedMessage)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while back.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "nacked messages not back: {back:?}"
        );
        let (at, got) = pop_batch(&broker, g, "nack", 8, long, Duration::from_secs(2)).await;
        for p in got {
            assert!(
                p.message.message_id != c.message_id,
                "acknowledged c came back"
            );
            assert!(back.insert(p.message.message_id.clone(), (at, p)).is_none());
        }
    }
    let (a_at, a2) = &back[&a.message_id];
    let (b_at, b2) = &back[&b.message_id];
    let (a_delay, b_delay) = (a_at - nacked_at, b_at - nacked_at);
    println!(
        "nack: explicit 600 ms delay -> back after {a_delay} ms; no delay (backoff of attempt 1, \
         {} ms) -> back after {b_delay} ms",
        RETRY_BACKOFF_MS[0]
    );
    assert!(
        (600..=600 * 12 / 10 + RETRY_SLACK_MS).contains(&a_delay),
        "{a_delay}"
    );
    let b_want = RETRY_BACKOFF_MS[0];
    assert!(
        (b_want..=b_want * 12 / 10 + RETRY_SLACK_MS).contains(&b_delay),
        "{b_delay}"
    );
    assert_eq!((a2.attempt, b2.attempt), (2, 2));
    assert_eq!(a2.message.keys, vec!["a".to_owned()]);

    // A zero delay: at once.
    let t = support::now_ms();
    broker
        .consumer()
        .nack(g, &a2.receipt_handle, Some(Duration::ZERO))
        .await
        .unwrap();
    let (at, got) = pop_batch(&broker, g, "nack", 8, long, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].message.message_id, a.message_id);
    assert_eq!(got[0].attempt, 3);
    println!("nack: zero delay -> back after {} ms", at - t);
    assert!(at - t <= 500, "{}", at - t);
    // At the last attempt a nack dead-letters it (and it is not delivered again).
    broker
        .consumer()
        .nack(g, &got[0].receipt_handle, Some(Duration::from_millis(100)))
        .await
        .unwrap();
    let dlq = dlq_all(&broker, g).await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].message_id, a.message_id);
    assert_eq!(dlq[0].reconsume_times, 3);
    support::ack(&broker, g, &b2.receipt_handle).await;
    let (_, none) = pop_batch(&broker, g, "nack", 8, long, Duration::from_millis(800)).await;
    assert!(none.is_empty(), "{none:?}");

    // FIFO: a nack redelivers in place after the delay, before the rest of its group.
    let mut fifo = TopicConfig::new("nack-fifo", 1);
    fifo.message_type = MessageType::Fifo;
    broker.topics().create(fifo).unwrap();
    let f0 = support::send_ok(&broker, Message::new("nack-fifo", "f0").with_group("mg")).await;
    let f1 = support::send_ok(&broker, Message::new("nack-fifo", "f1").with_group("mg")).await;
    let (_, got) = pop_batch(&broker, g, "nack-fifo", 8, long, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1, "one at a time per message group: {got:?}");
    assert_eq!(got[0].message.message_id, f0.message_id);
    let t = support::now_ms();
    broker
        .consumer()
        .nack(g, &got[0].receipt_handle, Some(Duration::from_millis(400)))
        .await
        .unwrap();
    let (at, got) = pop_batch(&broker, g, "nack-fifo", 8, long, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].message.message_id, f0.message_id,
        "the nacked head comes first"
    );
    assert_eq!(got[0].attempt, 2);
    println!(
        "nack: FIFO head with a 400 ms delay -> back in place after {} ms",
        at - t
    );
    assert!(
        (400..=400 * 12 / 10 + RETRY_SLACK_MS).contains(&(at - t)),
        "{}",
        at - t
    );
    support::ack(&broker, g, &got[0].receipt_handle).await;
    let (_, got) = pop_batch(&broker, g, "nack-fifo", 8, long, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].message.message_id, f1.message_id);
    assert_eq!(got[0].attempt, 1);
    broker.shutdown().unwrap();
}

/// Retries survive a clean restart: a retry waiting in the schedule comes back on time, a
/// message in flight comes back at once with its attempt counted on, and both still end in the
/// DLQ exactly once after the maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_retries_survive_a_clean_restart_and_dead_letter_once() {
    let dir = support::memory_tempdir();
    let config = time::config(dir.path(), FlushMode::Async);
    let g = "restart-group";
    let (waiting, inflight, nacked_at);
    {
        let broker = support::open(&config);
        broker.topics().create(TopicConfig::new("rt", 2)).unwrap();
        broker.groups().create(group(g)).unwrap();
        waiting = support::send_ok(&broker, Message::new("rt", "waiting").with_key("w")).await;
        inflight = support::send_ok(&broker, Message::new("rt", "inflight").with_key("i")).await;
        let got = pop_exactly(&broker, g, "rt", 2).await;
        let w = got
            .iter()
            .find(|p| p.message.message_id == waiting.message_id)
            .unwrap();
        nacked_at = support::now_ms();
        broker
            .consumer()
            .nack(g, &w.receipt_handle, Some(Duration::from_millis(1500)))
            .await
            .unwrap();
        broker.shutdown().unwrap();
    }
    let broker = support::open(&config);
    let opened = support::now_ms();
    // Attempts so far: 1 each. Deliver until both are dead letters, never acknowledging.
    let mut attempts: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while dlq_all(&broker, g).await.len() < 2 {
        assert!(Instant::now() < deadline, "not dead-lettered: {attempts:?}");
        let (at, got) = pop_batch(&broker, g, "rt", 8, INVISIBLE, Duration::from_millis(500)).await;
        for p in got {
            attempts
                .entry(p.message.message_id.clone())
                .or_default()
                .push((p.attempt, at));
        }
    }
    let w = &attempts[&waiting.message_id];
    let i = &attempts[&inflight.message_id];
    println!(
        "retries across a restart: the nacked retry (due {} ms after the nack) came back {} ms \
         after the nack; the in-flight one {} ms after the reopen",
        1500,
        w[0].1 - nacked_at,
        i[0].1 - opened
    );
    assert_eq!(w.iter().map(|a| a.0).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(i.iter().map(|a| a.0).collect::<Vec<_>>(), vec![2, 3]);
    assert!(w[0].1 - nacked_at >= 1500, "the retry came back early");
    assert!(
        w[0].1 - nacked_at.max(opened) <= 1500 + 1000,
        "the retry came back late"
    );
    assert!(
        i[0].1 - opened <= 1000,
        "the in-flight message did not come back at once"
    );
    let dlq = dlq_all(&broker, g).await;
    let mut ids: Vec<&str> = dlq.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![waiting.message_id.as_str(), inflight.message_id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "each dead-lettered once");
    assert!(dlq.iter().all(|m| m.reconsume_times == MAX_ATTEMPTS));
    let (_, none) = pop_batch(&broker, g, "rt", 8, INVISIBLE, Duration::from_millis(800)).await;
    assert!(none.is_empty(), "{none:?}");
    broker.shutdown().unwrap();
}
