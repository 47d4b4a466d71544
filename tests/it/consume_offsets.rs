//! Committed offsets, lag and resetting offsets by time:
//! - `lag()` reports, per queue, the max offset, the committed offset and `max - committed` for
//!   pull consumers, and the unacknowledged and in-flight counts of pop consumers, which drop to
//!   0 once everything is acknowledged;
//! - `reset_offset_to_time` moves the committed offset of every queue to the first message
//!   stored at or after the time (the queue's max when there is none, its min for time 0), and a
//!   pull from there starts with that message.

use std::time::Duration;

use rocketgate_core::{Message, QueueLag, QueueSelector, SendReceipt, SendRequest, TopicConfig};

use crate::support;

fn to_queue(topic: &str, q: u32, body: String) -> SendRequest {
    SendRequest::new(Message::new(topic, body), QueueSelector::Queue(q))
}

/// Waits until the dispatcher has published every message sent so far to the ConsumeQueues of
/// `topic`: `lag()` reads the queues as published (like `describe_topic`) and does not wait.
async fn settle(broker: &rocketgate_core::Broker, topic: &str, queues: u32) {
    for q in 0..queues {
        support::within(
            support::CALL_TIMEOUT,
            "queue_offsets",
            broker.topics().queue_offsets(topic, q),
        )
        .await
        .unwrap();
    }
}

fn totals(lag: &[QueueLag]) -> (u64, u64, u64) {
    lag.iter().fold((0, 0, 0), |(p, u, i), l| {
        (p + l.pull_lag, u + l.pop_unacked, i + l.pop_inflight)
    })
}

#[tokio::test]
async fn consume_offsets_lag_of_pull_and_pop_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new("lagged", 2))
        .unwrap();
    for i in 0..10 {
        for q in 0..2 {
            support::send_ok(&broker, to_queue("lagged", q, format!("{q}:{i}"))).await;
        }
    }
    settle(&broker, "lagged", 2).await;
    // Pull consumer: nothing committed yet, then partial and full commits.
    broker
        .groups()
        .create(rocketgate_core::GroupConfig::new("pull-lag"))
        .unwrap();
    let lag = broker.consumer().lag("pull-lag", "lagged").unwrap();
    assert_eq!(lag.len(), 2);
    for (q, l) in lag.iter().enumerate() {
        assert_eq!(l.queue_id, q as u32);
        assert_eq!(l.max_offset, 10);
        assert_eq!(l.committed, None);
        assert_eq!(l.pull_lag, 10, "{l:?}");
    }
    let r = support::pull_group(
        &broker,
        support::pull_req("pull-lag", "lagged", 0, 0, 4, Duration::ZERO),
    )
    .await;
    assert_eq!(r.next_offset, 4);
    broker
        .consumer()
        .commit_offset("pull-lag", "lagged", 0, 4)
        .unwrap();
    broker
        .consumer()
        .commit_offset("pull-lag", "lagged", 1, 10)
        .unwrap();
    assert_eq!(
        broker
            .consumer()
            .committed_offset("pull-lag", "lagged", 0)
            .unwrap(),
        Some(4)
    );
    let lag = broker.consumer().lag("pull-lag", "lagged").unwrap();
    println!("pull lag: {lag:?}");
    assert_eq!((lag[0].committed, lag[0].pull_lag), (Some(4), 6));
    assert_eq!((lag[1].committed, lag[1].pull_lag), (Some(10), 0));
    // New messages raise the lag.
    support::send_ok(&broker, to_queue("lagged", 1, "1:10".into())).await;
    settle(&broker, "lagged", 2).await;
    let lag = broker.consumer().lag("pull-lag", "lagged").unwrap();
    assert_eq!((lag[1].max_offset, lag[1].pull_lag), (11, 1));

    // Pop consumer: unacked counts everything not acknowledged, in flight what is popped.
    broker
        .groups()
        .create(rocketgate_core::GroupConfig::new("pop-lag"))
        .unwrap();
    assert_eq!(
        totals(&broker.consumer().lag("pop-lag", "lagged").unwrap()),
        (21, 21, 0)
    );
    let long = Duration::from_secs(60);
    let first = support::pop(
        &broker,
        support::pop_req("pop-lag", "lagged", 7, long, Duration::ZERO),
    )
    .await;
    assert_eq!(first.len(), 7);
    let (_, unacked, inflight) = totals(&broker.consumer().lag("pop-lag", "lagged").unwrap());
    assert_eq!((unacked, inflight), (21, 7));
    for p in &first[..3] {
        support::ack(&broker, "pop-lag", &p.receipt_handle).await;
    }
    let lag = broker.consumer().lag("pop-lag", "lagged").unwrap();
    println!("pop lag after 7 pops and 3 acks: {lag:?}");
    let (_, unacked, inflight) = totals(&lag);
    assert_eq!((unacked, inflight), (18, 4));
    // Per queue, in-flight counts match what was popped from that queue.
    for l in &lag {
        let popped = first[3..]
            .iter()
            .filter(|p| p.message.queue_id == l.queue_id)
            .count() as u64;
        assert_eq!(l.pop_inflight, popped, "{l:?}");
    }
    // Acknowledge everything: both counts drop to 0.
    for p in &first[3..] {
        support::ack(&broker, "pop-lag", &p.receipt_handle).await;
    }
    loop {
        let got = support::pop(
            &broker,
            support::pop_req("pop-lag", "lagged", 5, long, Duration::ZERO),
        )
        .await;
        if got.is_empty() {
            break;
        }
        let handles: Vec<&str> = got.iter().map(|p| p.receipt_handle.as_str()).collect();
        let results = broker
            .consumer()
            .ack_batch("pop-lag", &handles)
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    let lag = broker.consumer().lag("pop-lag", "lagged").unwrap();
    println!("pop lag after acknowledging everything: {lag:?}");
    assert_eq!(totals(&lag).1, 0, "{lag:?}");
    assert_eq!(totals(&lag).2, 0, "{lag:?}");
    // The two groups do not see each other's progress.
    assert_eq!(
        totals(&broker.consumer().lag("pull-lag", "lagged").unwrap()),
        (7, 21, 0)
    );
    broker.shutdown().unwrap();
}

#[tokio::test]
async fn consume_offsets_reset_to_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    // Queues 0-2 get messages before and after the reset time, queue 3 only before, queue 4
    // none at all.
    broker
        .topics()
        .create(TopicConfig::new("timed", 5))
        .unwrap();
    let mut before: Vec<SendReceipt> = Vec::new();
    for i in 0..12 {
        let q = i % 4;
        before.push(support::send_ok(&broker, to_queue("timed", q, format!("before {i}"))).await);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = support::now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut after: Vec<SendReceipt> = Vec::new();
    for i in 0..9 {
        let q = i % 3;
        after.push(support::send_ok(&broker, to_queue("timed", q, format!("after {i}"))).await);
    }
    assert!(before.iter().all(|r| r.store_timestamp_ms < t));
    assert!(after.iter().all(|r| r.store_timestamp_ms >= t));
    let first_after = |q: u32| {
        after
            .iter()
            .filter(|r| r.queue_id == q)
            .filter_map(|r| r.queue_offset)
            .min()
    };
    let info = broker.topics().describe("timed").await.unwrap();
    let max = |q: u32| info.queues[q as usize].max;

    broker
        .consumer()
        .commit_offset("resetter", "timed", 0, 1)
        .unwrap();
    let out = broker
        .consumer()
        .reset_offset_to_time("resetter", "timed", t)
        .await
        .unwrap();
    println!("reset_offset_to_time({t}) returned {out:?}");
    assert_eq!(out.len(), 5);
    for (q, o) in out.iter().enumerate() {
        assert_eq!(o.queue_id, q as u32);
    }
    for q in 0..5 {
        let want = first_after(q).unwrap_or_else(|| max(q));
        let got = broker
            .consumer()
            .committed_offset("resetter", "timed", q)
            .unwrap();
        assert_eq!(got, Some(want), "queue {q}");
    }
    assert_eq!(
        broker
            .consumer()
            .committed_offset("resetter", "timed", 3)
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        broker
            .consumer()
            .committed_offset("resetter", "timed", 4)
            .unwrap(),
        Some(0)
    );
    // Pulling from the reset offsets yields exactly the messages after the time.
    let mut pulled = Vec::new();
    for q in 0..5 {
        let from = broker
            .consumer()
            .committed_offset("resetter", "timed", q)
            .unwrap()
            .unwrap();
        let r = support::pull_group(
            &broker,
            support::pull_req("resetter", "timed", q, from, 64, Duration::ZERO),
        )
        .await;
        pulled.extend(r.messages.into_iter().map(|m| m.message_id));
    }
    let mut want: Vec<String> = after.iter().map(|r| r.message_id.clone()).collect();
    pulled.sort();
    want.sort();
    assert_eq!(pulled, want);

    // Time 0: every queue's min; a time after everything: every queue's max.
    broker
        .consumer()
        .reset_offset_to_time("resetter", "timed", 0)
        .await
        .unwrap();
    for q in 0..5 {
        assert_eq!(
            broker
                .consumer()
                .committed_offset("resetter", "timed", q)
                .unwrap(),
            Some(0)
        );
    }
    broker
        .consumer()
        .reset_offset_to_time("resetter", "timed", support::now_ms() + 60_000)
        .await
        .unwrap();
    for q in 0..5 {
        assert_eq!(
            broker
                .consumer()
                .committed_offset("resetter", "timed", q)
                .unwrap(),
            Some(max(q)),
            "queue {q}"
        );
    }
    broker.shutdown().unwrap();
}
