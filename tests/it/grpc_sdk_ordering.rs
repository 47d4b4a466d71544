//! RC (the official Rust SDK 5.0.0) against the gateway, where time and order matter: FIFO
//! message groups, delay messages, and the invisibility expiry of unacknowledged messages
//! up to the dead-letter queue.
//!
//! FIFO-ness is a property of the topic in the core (a FIFO topic is popped in message-group
//! order by every group), so `FifoGroup` needs no setup of its own. Each scenario judges by
//! what was delivered and when; see `grpc_sdk` for the harness.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rocketgate_core::GroupConfig;
use rocketmq::model::message::{AckMessageEntry, Message, MessageBuilder};

use crate::grpc_sdk::{
    self as h, ack, call, receive, receive_n, shutdown_consumer, shutdown_producer, tag,
    GrpcServer, DELAY_TOPIC, FIFO_TOPIC, NORMAL_TOPIC,
};
use crate::grpc_sdk_basic::assert_server_error;
use crate::support;

/// Brief §5 #10: 3 message groups × 4 messages, sent interleaved to `fifo_test`, are
/// received by a consumer of `FifoGroup` in send order per group. While a group's messages
/// are unacknowledged, none of its later messages is delivered, but a message of another
/// group is. Everything is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_fifo_groups_in_send_order() {
    const GROUPS: [&str; 3] = ["g-a", "g-b", "g-c"];
    const PER_GROUP: usize = 4;
    let server = GrpcServer::start().await;
    let p = server.producer(&[FIFO_TOPIC]).await;
    let c = server.consumer("FifoGroup", &[FIFO_TOPIC]).await;

    // Send order, per message group: the ids.
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..PER_GROUP {
        for g in GROUPS {
            let id = send_fifo(&p, g, i).await;
            sent.entry(g.to_owned()).or_default().push(id);
        }
    }

    // Received so far, per message group, in delivery order.
    let mut received: BTreeMap<String, Vec<String>> = BTreeMap::new();

    // First batch: the heads (at least), left unacknowledged.
    let first = receive(&c, FIFO_TOPIC, &tag("*"), 32, Duration::from_secs(20)).await;
    assert!(!first.is_empty(), "nothing received from {FIFO_TOPIC}");
    for m in &first {
        record(&mut received, m);
    }
    let in_flight: BTreeSet<String> = first
        .iter()
        .filter_map(|m| m.message_group().map(str::to_owned))
        .collect();

    // Another group's message is delivered while those are in flight; nothing later of the
    // groups in flight is. (Heads of groups not in the first batch may come too.)
    let other = send_fifo(&p, "g-d", 0).await;
    sent.insert("g-d".into(), vec![other.clone()]);
    let mut second = Vec::new();
    let start = Instant::now();
    while !second
        .iter()
        .any(|m: &rocketmq::model::message::MessageView| m.message_id() == other)
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "g-d's message not delivered while other groups are in flight"
        );
        let batch = receive(&c, FIFO_TOPIC, &tag("*"), 32, Duration::from_secs(20)).await;
        for m in &batch {
            let g = m.message_group().unwrap_or_default();
            assert!(
                !in_flight.contains(g),
                "{}: message of group {g} delivered while an earlier one is unacknowledged",
                m.message_id()
            );
            record(&mut received, m);
        }
        second.extend(batch);
    }
    for m in first.iter().chain(&second) {
        ack(&c, m).await;
    }

    // The rest, acknowledging each batch before the next receive.
    let total: usize = sent.values().map(Vec::len).sum();
    let start = Instant::now();
    while received.values().map(Vec::len).sum::<usize>() < total {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "received {received:?} of {sent:?}"
        );
        let batch = receive(&c, FIFO_TOPIC, &tag("*"), 32, Duration::from_secs(20)).await;
        for m in &batch {
            record(&mut received, m);
        }
        for m in &batch {
            ack(&c, m).await;
        }
    }
    assert_eq!(received, sent, "per-group delivery order");
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// Sends message `index` of a FIFO message group (body `<group>:<index>`); returns its id.
async fn send_fifo(p: &rocketmq::Producer, group: &str, index: usize) -> String {
    let mut m = MessageBuilder::fifo_message_builder(
        FIFO_TOPIC,
        format!("{group}:{index}").into_bytes(),
        group,
    )
    .build()
    .unwrap();
    let id = m.take_message_id();
    let r = call("fifo send", p.send(m))
        .await
        .unwrap_or_else(|e| panic!("send {group}:{index}: {e}"));
    assert_eq!(r.message_id(), id);
    id
}

/// Records a FIFO delivery: the message's body must be `<group>:<index>` with the next
/// index of its message group, and it must be a first delivery.
fn record(received: &mut BTreeMap<String, Vec<String>>, m: &rocketmq::model::message::MessageView) {
    let group = m
        .message_group()
        .unwrap_or_else(|| panic!("{}: no message group", m.message_id()))
        .to_owned();
    let next = received.get(&group).map_or(0, Vec::len);
    assert_eq!(
        String::from_utf8_lossy(m.body()),
        format!("{group}:{next}"),
        "{group}: out of order (received so far: {received:?})"
    );
    assert_eq!(m.delivery_attempt(), 1, "{}: redelivered", m.message_id());
    received
        .entry(group)
        .or_default()
        .push(m.message_id().to_owned());
}

/// Brief §5 #11 (with 3 s instead of 15 s): a delay message for now + 3 s is not delivered
/// before its time, then within about a second of it, with its delivery timestamp. One with
/// a time in the past is delivered at once (pitfall 27).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_delay_message_on_time() {
    let server = GrpcServer::start().await;
    let p = server.producer(&[DELAY_TOPIC]).await;
    let c = server.consumer("DelayGroup", &[DELAY_TOPIC]).await;

    // A delivery time in the past: delivered at once.
    let past = h::now_secs() - 10;
    let mut m = MessageBuilder::delay_message_builder(DELAY_TOPIC, b"overdue".to_vec(), past)
        .build()
        .unwrap();
    let past_id = m.take_message_id();
    call("delay send in the past", p.send(m))
        .await
        .unwrap_or_else(|e| panic!("delay send in the past: {e}"));
    let sent = Instant::now();
    let got = receive_n(
        &c,
        DELAY_TOPIC,
        &tag("*"),
        1,
        Duration::from_secs(15),
        Duration::from_secs(10),
    )
    .await;
    let (at, m) = &got[0];
    assert_eq!(m.message_id(), past_id);
    assert!(
        at.duration_since(sent) < support::PROMPTLY,
        "overdue delay message took {:?}",
        at.duration_since(sent)
    );
    ack(&c, m).await;

    let at = h::now_secs() + 3;
    let mut m = MessageBuilder::delay_message_builder(DELAY_TOPIC, b"later".to_vec(), at)
        .build()
        .unwrap();
    let id = m.take_message_id();
    let r = call("delay send", p.send(m))
        .await
        .unwrap_or_else(|e| panic!("delay send: {e}"));
    assert_eq!(r.message_id(), id);

    let deadline = Instant::now() + Duration::from_secs(15);
    let (arrived_ms, m) = loop {
        assert!(Instant::now() < deadline, "delay message not delivered");
        let got = receive(&c, DELAY_TOPIC, &tag("*"), 32, Duration::from_secs(15)).await;
        let now = support::now_ms();
        if let Some(m) = got.into_iter().next() {
            break (now, m);
        }
    };
    let due_ms = at * 1000;
    println!(
        "delay message due at {due_ms}, received at {arrived_ms} ({:+} ms)",
        arrived_ms - due_ms
    );
    assert_eq!(m.message_id(), id);
    assert!(
        arrived_ms >= due_ms,
        "delivered {} ms early",
        due_ms - arrived_ms
    );
    // Generous bound (see support::PROMPTLY): a delivery that works is milliseconds late.
    assert!(
        arrived_ms <= due_ms + support::PROMPTLY.as_millis() as i64,
        "delivered {} ms late",
        arrived_ms - due_ms
    );
    assert_eq!(m.delivery_timestamp(), Some(at), "delivery timestamp");
    assert_eq!(m.delivery_attempt(), 1);
    ack(&c, &m).await;
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #9 and task item 7: two messages received with a 10 s invisible duration and
/// not acknowledged come back no earlier than 10 s later, with delivery attempt 2 and new
/// receipt handles. An ack with the old handle fails (INVALID_RECEIPT_HANDLE), with the new
/// one succeeds. The other one, unacknowledged again, reaches the group's last attempt (2,
/// set through the core's `GroupConfig`): it lands in the dead-letter queue and is not
/// delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_invisibility_expiry_then_dead_letter() {
    const GROUP: &str = "RetryGroup";
    const INVISIBLE: Duration = Duration::from_secs(10);
    let server = GrpcServer::start().await;
    let mut g = GroupConfig::new(GROUP);
    g.max_delivery_attempts = 2;
    server
        .broker
        .groups()
        .create(g)
        .unwrap_or_else(|e| panic!("create group {GROUP}: {e}"));
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let c = server.consumer(GROUP, &[NORMAL_TOPIC]).await;

    let mut ids = Vec::new();
    for body in ["acked-on-retry", "dead-letter"] {
        let mut m = MessageBuilder::builder()
            .set_topic(NORMAL_TOPIC)
            .set_tag("retry")
            .set_body(body.as_bytes().to_vec())
            .build()
            .unwrap();
        ids.push(m.take_message_id());
        call("send", p.send(m))
            .await
            .unwrap_or_else(|e| panic!("send {body}: {e}"));
    }
    let (acked_id, dead_id) = (ids[0].clone(), ids[1].clone());

    let started = Instant::now();
    let first = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("retry"),
        2,
        INVISIBLE,
        Duration::from_secs(15),
    )
    .await;
    let mut first_ids = h::ids(first.iter().map(|(_, m)| m));
    first_ids.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(first_ids, want);
    for (_, m) in &first {
        assert_eq!(m.delivery_attempt(), 1, "{}", m.message_id());
    }

    let second = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("retry"),
        2,
        INVISIBLE,
        Duration::from_secs(25),
    )
    .await;
    for (at, m) in &second {
        let (first_at, old) = first
            .iter()
            .find(|(_, o)| o.message_id() == m.message_id())
            .unwrap_or_else(|| panic!("{}: not one of the first delivery", m.message_id()));
        let after = at.duration_since(started);
        println!(
            "{} redelivered {after:?} after the first receive",
            m.message_id()
        );
        assert!(
            after >= INVISIBLE,
            "{}: redelivered after {after:?}, before its invisible time",
            m.message_id()
        );
        assert!(
            at.duration_since(*first_at) <= INVISIBLE + Duration::from_secs(3),
            "{}: redelivered {:?} after its first delivery",
            m.message_id(),
            at.duration_since(*first_at)
        );
        assert_eq!(m.delivery_attempt(), 2, "{}", m.message_id());
        assert_eq!(m.topic(), NORMAL_TOPIC);
        assert_eq!(m.body(), old.body());
        assert_ne!(
            AckMessageEntry::receipt_handle(m),
            AckMessageEntry::receipt_handle(old),
            "{}: same receipt handle on redelivery",
            m.message_id()
        );
    }

    // The old handle of the first message is stale now; the new one works.
    let (_, old) = first
        .iter()
        .find(|(_, m)| m.message_id() == acked_id)
        .unwrap();
    let r = call("ack with the old handle", c.ack(old)).await;
    assert_server_error(r, "INVALID_RECEIPT_HANDLE", "ack with the old handle");
    let (redelivered_at, new) = second
        .iter()
        .find(|(_, m)| m.message_id() == acked_id)
        .unwrap();
    ack(&c, new).await;

    // The second one is not acknowledged: after its last attempt it is dead-lettered.
    let dead_at = *redelivered_at + INVISIBLE;
    let found = loop {
        let r = support::within(
            support::CALL_TIMEOUT,
            "dlq_list",
            server.broker.dead_letters().list(GROUP, 0, 32),
        )
        .await
        .unwrap_or_else(|e| panic!("dlq_list({GROUP}): {e}"));
        if let Some(m) = r.messages.iter().find(|m| m.message_id == dead_id) {
            assert!(
                r.messages.iter().all(|m| m.message_id != acked_id),
                "the acknowledged message was dead-lettered"
            );
            break m.clone();
        }
        assert!(
            Instant::now() < dead_at + Duration::from_secs(5),
            "{dead_id} not in the DLQ of {GROUP} 5 s after its last invisible time ended \
             (DLQ: {:?})",
            r.messages.iter().map(|m| &m.message_id).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(&found.body[..], b"dead-letter");
    assert_eq!(found.tag.as_deref(), Some("retry"));

    let after = receive(&c, NORMAL_TOPIC, &tag("retry"), 32, INVISIBLE).await;
    assert!(
        after.is_empty(),
        "delivered after being acked or dead-lettered: {:?}",
        after
            .iter()
            .map(|m| (m.message_id(), m.delivery_attempt()))
            .collect::<Vec<_>>()
    );
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}
