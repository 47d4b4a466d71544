//! Pop / ack / visibility (the simple consumer) on the real store:
//! - a popped message that is not acknowledged comes back once its invisible time (1 s) has
//!   passed, not before, with attempt 2; no other pop of the group sees it meanwhile;
//! - an acknowledged message never comes back (a pop waiting well past the invisible time);
//! - after `change_invisible_duration` the old handle is refused with `InvalidReceiptHandle`
//!   and the new one works; a stale handle of a redelivered message is refused too;
//! - a handle presented by another group, a garbled one, an empty one, a truncated one and a
//!   too long one are refused with `InvalidReceiptHandle` (kind `InvalidArgument`), for `ack`,
//!   `ack_batch` and `change_invisible_duration`, and none of them disturbs the message.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rocketgate_core::{Broker, Error, ErrorKind, Message, PoppedMessage, TopicConfig};

use crate::support;

const GROUP: &str = "simple";

fn assert_bad_handle(e: &Error, what: &str) {
    assert!(
        matches!(e, Error::InvalidReceiptHandle(_)),
        "{what}: expected InvalidReceiptHandle, got {e:?}"
    );
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidArgument,
        "{what}: kind of {e:?}"
    );
}

async fn ack_err(broker: &Broker, group: &str, handle: &str, what: &str) {
    let r = support::within(
        support::CALL_TIMEOUT,
        what,
        broker.consumer().ack(group, handle),
    )
    .await;
    match r {
        Ok(()) => panic!("{what}: ack accepted"),
        Err(e) => assert_bad_handle(&e, what),
    }
}

fn body(p: &PoppedMessage) -> String {
    String::from_utf8_lossy(&p.message.body).into_owned()
}

#[tokio::test]
async fn consume_pop_redelivers_after_invisible_time_and_never_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new("redeliver", 2))
        .unwrap();
    let sent = support::send_ok(&broker, Message::new("redeliver", "only")).await;
    let second = Duration::from_secs(1);

    let popped_at = Instant::now();
    let first = support::pop(
        &broker,
        support::pop_req(GROUP, "redeliver", 8, second, Duration::ZERO),
    )
    .await;
    assert_eq!(first.len(), 1, "{first:?}");
    let m1 = &first[0];
    assert_eq!(m1.message.message_id, sent.message_id);
    assert_eq!(m1.attempt, 1);
    let now = support::now_ms();
    assert!(
        (now + 900..=now + 1100).contains(&m1.invisible_until_ms),
        "invisible until {} at {now}",
        m1.invisible_until_ms
    );

    // Meanwhile nobody else of the group gets it (a pop that waits 300 ms finds nothing).
    let none = support::pop(
        &broker,
        support::pop_req(GROUP, "redeliver", 8, second, Duration::from_millis(300)),
    )
    .await;
    assert!(none.is_empty(), "delivered twice while invisible: {none:?}");

    // A long poll is woken when the invisible time ends: back with attempt 2, after >= 1 s.
    let again = support::pop(
        &broker,
        support::pop_req(GROUP, "redeliver", 8, second, Duration::from_secs(5)),
    )
    .await;
    let after = popped_at.elapsed();
    println!("redelivered after {after:?} (invisible time {second:?})");
    assert_eq!(again.len(), 1, "{again:?}");
    let m2 = &again[0];
    assert_eq!(m2.message.message_id, sent.message_id);
    assert_eq!(m2.attempt, 2);
    assert_eq!(body(m2), "only");
    assert!(after >= second, "redelivered after {after:?}");
    assert!(
        after < second + Duration::from_secs(2),
        "redelivered after {after:?}"
    );
    assert!(support::now_ms() >= m1.invisible_until_ms);
    // The first handle is stale now.
    ack_err(
        &broker,
        GROUP,
        &m1.receipt_handle,
        "ack with the handle of attempt 1",
    )
    .await;

    support::ack(&broker, GROUP, &m2.receipt_handle).await;
    ack_err(
        &broker,
        GROUP,
        &m2.receipt_handle,
        "second ack of one handle",
    )
    .await;
    // Never again: a pop waiting 2.5 s (well past the 1 s invisible time) finds nothing.
    let t = Instant::now();
    let never = support::pop(
        &broker,
        support::pop_req(GROUP, "redeliver", 8, second, Duration::from_millis(2500)),
    )
    .await;
    assert!(
        never.is_empty(),
        "acknowledged message came back: {never:?}"
    );
    assert!(t.elapsed() >= Duration::from_millis(2500));
    let lag = broker.consumer().lag(GROUP, "redeliver").unwrap();
    assert!(
        lag.iter()
            .all(|l| l.pop_unacked == 0 && l.pop_inflight == 0),
        "{lag:?}"
    );
    broker.shutdown().unwrap();
}

#[tokio::test]
async fn consume_pop_receipt_handles_visibility_changes_and_bad_handles() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new("handles", 1))
        .unwrap();
    for i in 0..3 {
        support::send_ok(&broker, Message::new("handles", format!("m{i}"))).await;
    }
    let long = Duration::from_secs(30);
    let got = support::pop(
        &broker,
        support::pop_req(GROUP, "handles", 3, long, Duration::ZERO),
    )
    .await;
    assert_eq!(got.len(), 3, "{got:?}");
    let (a, b, c) = (&got[0], &got[1], &got[2]);

    // change_invisible_duration: the old handle dies, the new one works.
    let new_a = broker
        .consumer()
        .change_invisible_duration(GROUP, &a.receipt_handle, Duration::from_secs(60))
        .unwrap();
    assert_ne!(new_a, a.receipt_handle);
    ack_err(
        &broker,
        GROUP,
        &a.receipt_handle,
        "ack with the replaced handle",
    )
    .await;
    let e = broker
        .consumer()
        .change_invisible_duration(GROUP, &a.receipt_handle, long)
        .unwrap_err();
    assert_bad_handle(&e, "change_invisible_duration with the replaced handle");
    support::ack(&broker, GROUP, &new_a).await;
    ack_err(&broker, GROUP, &new_a, "ack after ack").await;
    let e = broker
        .consumer()
        .change_invisible_duration(GROUP, &new_a, long)
        .unwrap_err();
    assert_bad_handle(&e, "change_invisible_duration after ack");

    // Bad handles, each refused and none disturbing b.
    broker
        .groups()
        .create(rocketgate_core::GroupConfig::new("other"))
        .unwrap();
    let h = b.receipt_handle.as_str();
    let mut garbled: Vec<u8> = h.bytes().collect();
    let mid = garbled.len() / 2;
    garbled[mid] = if garbled[mid] == b'A' { b'B' } else { b'A' };
    let garbled = String::from_utf8(garbled).unwrap();
    let too_long = format!("{h}{}", "A".repeat(600));
    let truncated = &h[..h.len() - 3];
    let bad: [(&str, &str, &str); 7] = [
        ("other", h, "another group's handle"),
        ("auto-created", h, "another (auto-created) group's handle"),
        (GROUP, &garbled, "garbled handle"),
        (GROUP, "", "empty handle"),
        (GROUP, truncated, "truncated handle"),
        (GROUP, &too_long, "too long handle"),
        (GROUP, "not base64 at all!", "not a handle"),
    ];
    for (group, handle, what) in bad {
        ack_err(&broker, group, handle, what).await;
        let e = broker
            .consumer()
            .change_invisible_duration(group, handle, long)
            .unwrap_err();
        assert_bad_handle(&e, &format!("change_invisible_duration: {what}"));
    }
    // ack_batch: one result per handle, in order; the good ones are acknowledged.
    let results = support::within(
        support::CALL_TIMEOUT,
        "ack_batch",
        broker.consumer().ack_batch(GROUP, &["", h, &garbled, h]),
    )
    .await
    .unwrap();
    assert_eq!(results.len(), 4);
    assert_bad_handle(results[0].as_ref().unwrap_err(), "ack_batch: empty");
    assert!(results[1].is_ok(), "ack_batch: b: {:?}", results[1]);
    assert_bad_handle(results[2].as_ref().unwrap_err(), "ack_batch: garbled");
    assert_bad_handle(results[3].as_ref().unwrap_err(), "ack_batch: b twice");

    // A handle of one group does not work for another even for the same message: the other
    // group pops the same message independently.
    let theirs = support::pop(
        &broker,
        support::pop_req("other", "handles", 3, long, Duration::ZERO),
    )
    .await;
    assert_eq!(theirs.len(), 3, "{theirs:?}");
    let theirs_c = theirs
        .iter()
        .find(|p| p.message.message_id == c.message.message_id)
        .unwrap();
    ack_err(
        &broker,
        GROUP,
        &theirs_c.receipt_handle,
        "the other group's handle of c",
    )
    .await;
    support::ack(&broker, GROUP, &c.receipt_handle).await;
    support::ack(&broker, "other", &theirs_c.receipt_handle).await;

    // Our group has nothing left; the other group still has two in flight.
    let ours = broker.consumer().lag(GROUP, "handles").unwrap();
    assert_eq!(
        (ours[0].pop_unacked, ours[0].pop_inflight),
        (0, 0),
        "{ours:?}"
    );
    let other = broker.consumer().lag("other", "handles").unwrap();
    assert_eq!(
        (other[0].pop_unacked, other[0].pop_inflight),
        (2, 2),
        "{other:?}"
    );
    let ids: BTreeSet<&str> = theirs
        .iter()
        .map(|p| p.message.message_id.as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    broker.shutdown().unwrap();
}

/// Four consumers popping one normal topic concurrently (long invisible time, so nothing is
/// redelivered): every message is delivered exactly once, and all acks succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_pop_concurrent_consumers_get_each_message_once() {
    const COUNT: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new("shared", 4))
        .unwrap();
    for i in 0..COUNT {
        support::send_ok(&broker, Message::new("shared", i.to_string())).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..4 {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = support::pop(
                    &broker,
                    support::pop_req(
                        GROUP,
                        "shared",
                        1 + c * 5,
                        Duration::from_secs(60),
                        Duration::from_millis(300),
                    ),
                )
                .await;
                if batch.is_empty() {
                    return got;
                }
                for p in batch {
                    assert_eq!(p.attempt, 1);
                    support::ack(&broker, GROUP, &p.receipt_handle).await;
                    got.push(body(&p).parse::<usize>().unwrap());
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut per_task = Vec::new();
    for t in tasks {
        let got = support::within(Duration::from_secs(60), "consumers", t)
            .await
            .unwrap();
        per_task.push(got.len());
        all.extend(got);
    }
    println!(
        "{COUNT} messages by 4 concurrent consumers in {:?}: {per_task:?}",
        started.elapsed()
    );
    let distinct: BTreeSet<usize> = all.iter().copied().collect();
    assert_eq!(all.len(), COUNT, "deliveries");
    assert_eq!(distinct, (0..COUNT).collect::<BTreeSet<_>>());
    broker.shutdown().unwrap();
}
