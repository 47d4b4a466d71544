//! Retries and dead letters, continued: FIFO heads that are never acknowledged, and classic
//! pull consumers sending messages back (split from `time_retry.rs`; shared helpers live there).
#![allow(unused_imports)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rand::seq::index::sample;
use rocketgate_core::api::TraceKind;
use rocketgate_core::rules::PROP_RETRY_TOPIC;
use rocketgate_core::MessageType;
use rocketgate_core::{dlq_topic, group_retry_topic, retry_topic, DlqSelection};
use rocketgate_core::{
    Broker, Error, ErrorKind, FlushMode, GroupConfig, Message, PoppedMessage, StoredMessage,
    TopicConfig,
};
use rocketgate_tests::time::{self, RETRY_BACKOFF_MS};

use crate::support;
use crate::time_retry::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_fifo_head_never_acked_is_dead_lettered_and_releases_its_group() {
    fifo_head_dead_letter(Duration::from_millis(500), 1500).await;
}

/// The same with a consumer whose pops wait 5 s: the dead-lettering of the head frees the group,
/// which must wake the waiting pop (as an ack does) instead of leaving the next message to the
/// next pop call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_fifo_dead_lettered_head_wakes_a_long_polling_consumer() {
    fifo_head_dead_letter(Duration::from_secs(5), 1500).await;
}

/// A FIFO topic with two message groups; the consumer pops with `wait` and never acknowledges
/// the head of group `stuck`. The group's next message must be popped within `bound_ms` of the
/// head's last invisible time.
async fn fifo_head_dead_letter(wait: Duration, bound_ms: i64) {
    let dir = support::memory_tempdir();
    let broker = support::open(&time::config(dir.path(), FlushMode::Async));
    let mut topic = TopicConfig::new("fifo-dlq", 1);
    topic.message_type = MessageType::Fifo;
    broker.topics().create(topic).unwrap();
    broker.groups().create(group("fifo-group")).unwrap();
    let g = "fifo-group";
    let mut order: HashMap<String, (&str, usize)> = HashMap::new();
    for i in 0..4 {
        for mg in ["stuck", "free"] {
            let r = support::send_ok(
                &broker,
                Message::new("fifo-dlq", format!("{mg}-{i}")).with_group(mg),
            )
            .await;
            order.insert(r.message_id, (mg, i));
        }
    }
    let head = order
        .iter()
        .find(|(_, v)| **v == ("stuck", 0))
        .map(|(k, _)| k.clone())
        .unwrap();

    // A long-polling consumer that never acknowledges the head of `stuck`.
    let (mut stuck_seen, mut free_seen) = (Vec::new(), Vec::new());
    let mut head_deliveries: Vec<(u32, i64)> = Vec::new();
    let mut free_done_with_head_at = None;
    let mut released_at = None;
    let started = Instant::now();
    while stuck_seen.len() < 3 || free_seen.len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "FIFO group blocked: stuck {stuck_seen:?}, free {free_seen:?}, head deliveries \
             {head_deliveries:?}"
        );
        let (at, got) = pop_batch(&broker, g, "fifo-dlq", 8, INVISIBLE, wait).await;
        for p in got {
            let (mg, i) = order[&p.message.message_id];
            if p.message.message_id == head {
                assert_eq!(
                    p.attempt as usize,
                    head_deliveries.len() + 1,
                    "head attempt"
                );
                assert!(p.attempt <= MAX_ATTEMPTS, "head attempt {}", p.attempt);
                head_deliveries.push((p.attempt, p.invisible_until_ms));
                continue;
            }
            assert_eq!(p.attempt, 1, "{mg}-{i} redelivered");
            if mg == "stuck" {
                assert_eq!(
                    head_deliveries.len(),
                    MAX_ATTEMPTS as usize,
                    "stuck-{i} released before its head was dead-lettered"
                );
                released_at.get_or_insert(at);
                stuck_seen.push(i);
            } else {
                free_seen.push(i);
                if free_seen.len() == 4 {
                    free_done_with_head_at = Some(head_deliveries.len());
                }
            }
            support::ack(&broker, g, &p.receipt_handle).await;
        }
    }
    assert_eq!(free_seen, vec![0, 1, 2, 3], "the other group, in order");
    assert_eq!(
        stuck_seen,
        vec![1, 2, 3],
        "the stuck group, in order after its head"
    );
    assert!(
        free_done_with_head_at < Some(MAX_ATTEMPTS as usize),
        "the other group finished only after the head was dead-lettered: {free_done_with_head_at:?}"
    );
    assert_eq!(
        head_deliveries.iter().map(|d| d.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let last_expiry = head_deliveries[2].1;
    let released_after = released_at.unwrap() - last_expiry;
    println!(
        "fifo: head dead-lettered after attempts 1..3; next message of its group popped \
         {released_after} ms after the head's last invisible time ended (pops wait {wait:?})"
    );
    assert!(
        released_after <= bound_ms,
        "the group's next message came {released_after} ms after its head expired for the last time"
    );
    let dlq = dlq_all(&broker, g).await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].message_id, head);
    assert_eq!(dlq[0].reconsume_times, MAX_ATTEMPTS);
    assert_eq!(dlq[0].message_group.as_deref(), Some("stuck"));
    assert_eq!(
        trace_steps(&broker, &head, "-").await,
        vec![(TraceKind::Stored, 0), (TraceKind::DeadLettered, 3)],
        "FIFO retries in place"
    );
    broker.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_send_back_retries_through_the_group_retry_topic_then_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&time::config(dir.path(), FlushMode::Async));
    broker
        .topics()
        .create(TopicConfig::new("classic", 2))
        .unwrap();
    broker.groups().create(group("classic-group")).unwrap();
    let g = "classic-group";
    let sent = support::send_ok(
        &broker,
        Message::new("classic", "x")
            .with_key("cx")
            .with_property("p", "1"),
    )
    .await;
    let retry = group_retry_topic(g);
    let pulled = support::pull_group(
        &broker,
        support::pull_req(g, "classic", sent.queue_id, 0, 8, Duration::from_secs(1)),
    )
    .await;
    assert_eq!(pulled.messages.len(), 1);

    // Send back from the topic with delay level 1 (1 s).
    let t = support::now_ms();
    broker
        .consumer()
        .send_back(
            g,
            "classic",
            sent.queue_id,
            sent.queue_offset.unwrap(),
            Some(1),
        )
        .await
        .unwrap();
    let r = support::pull_group(
        &broker,
        support::pull_req(g, &retry, 0, 0, 8, Duration::from_secs(5)),
    )
    .await;
    let after = support::now_ms() - t;
    assert_eq!(r.messages.len(), 1, "{r:?}");
    let m = &r.messages[0];
    println!("send_back: delay level 1 (1000 ms) -> in {retry} after {after} ms");
    assert!((1000..=1000 + 1000).contains(&after), "{after}");
    assert_eq!(
        (&m.message_id, m.reconsume_times, &m.keys),
        (&sent.message_id, 1, &vec!["cx".to_owned()])
    );
    assert_eq!(
        m.properties.get(PROP_RETRY_TOPIC).map(String::as_str),
        Some("classic")
    );
    assert_eq!(m.properties.get("p").map(String::as_str), Some("1"));

    // Again from the retry topic, no level: the backoff of attempt 2.
    let t = support::now_ms();
    broker
        .consumer()
        .send_back(g, &retry, 0, m.queue_offset, None)
        .await
        .unwrap();
    let r = support::pull_group(
        &broker,
        support::pull_req(g, &retry, 0, m.queue_offset + 1, 8, Duration::from_secs(5)),
    )
    .await;
    let after = support::now_ms() - t;
    assert_eq!(r.messages.len(), 1, "{r:?}");
    let m2 = &r.messages[0];
    println!(
        "send_back: backoff of attempt 2 ({} ms) -> back after {after} ms",
        RETRY_BACKOFF_MS[1]
    );
    assert!(
        (RETRY_BACKOFF_MS[1]..=RETRY_BACKOFF_MS[1] * 12 / 10 + RETRY_SLACK_MS).contains(&after),
        "{after}"
    );
    assert_eq!(m2.reconsume_times, 2);
    assert_eq!(
        m2.properties.get(PROP_RETRY_TOPIC).map(String::as_str),
        Some("classic")
    );

    // The third delivery is the last: sent back, it is dead-lettered at once.
    broker
        .consumer()
        .send_back(g, &retry, 0, m2.queue_offset, None)
        .await
        .unwrap();
    let dlq = dlq_all(&broker, g).await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].message_id, sent.message_id);
    assert_eq!(dlq[0].reconsume_times, 3);
    assert_eq!(
        dlq[0].properties.get(PROP_RETRY_TOPIC).map(String::as_str),
        Some("classic")
    );
    let r = support::pull_group(
        &broker,
        support::pull_req(
            g,
            &retry,
            0,
            m2.queue_offset + 1,
            8,
            Duration::from_millis(500),
        ),
    )
    .await;
    assert!(r.messages.is_empty(), "{r:?}");
    // Resent to its original topic (any queue), attempts reset.
    assert_eq!(
        broker
            .dead_letters()
            .resend(g, DlqSelection::All)
            .await
            .unwrap(),
        1
    );
    let mut all = support::drain_topic(&broker, "classic", 2).await;
    assert_eq!(all.len(), 2, "{all:?}");
    all.retain(|m| Some(m.queue_offset) != sent.queue_offset || m.queue_id != sent.queue_id);
    assert_eq!(all[0].message_id, sent.message_id);
    assert_eq!(all[0].reconsume_times, 0);
    assert_eq!(all[0].properties.get(PROP_RETRY_TOPIC), None);
    assert_eq!(all[0].properties.get("p").map(String::as_str), Some("1"));
    broker.shutdown().unwrap();
}

/// `send_back` of a message right after its `send` returned: the message is stored, yet
/// `send_back` reads the queue without waiting for the dispatcher (`pull`, `message_by_id`,
/// `query_by_key`, `dlq_resend` and `cancel_scheduled` all call `Store::catch_up` first for
/// read-your-writes), so it may answer `MessageNotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_send_back_right_after_send_finds_the_message() {
    let dir = support::memory_tempdir();
    let broker = support::open(&time::config(dir.path(), FlushMode::Async));
    broker
        .topics()
        .create(TopicConfig::new("sb-now", 1))
        .unwrap();
    broker.groups().create(group("sb-now-group")).unwrap();
    let mut failures = Vec::new();
    for i in 0..20 {
        let r = support::send_ok(&broker, Message::new("sb-now", format!("{i}"))).await;
        if let Err(e) = broker
            .consumer()
            .send_back(
                "sb-now-group",
                "sb-now",
                r.queue_id,
                r.queue_offset.unwrap(),
                None,
            )
            .await
        {
            failures.push((i, e));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 20 refused: {failures:?}",
        failures.len()
    );
    broker.shutdown().unwrap();
}
