//! RC (the official Rust SDK 5.0.0) against the gateway: producer start (known and unknown
//! topic), send / batch send, receive + ack, the long poll (ends before RC's deadline with
//! RC's defaults, wakes on a send), a gRPC message seen through the core `Broker` API, bad
//! input (reserved property key, body over the limit, garbled receipt handle) and shutdown.
//!
//! Every scenario judges by what was delivered or stored; see `grpc_sdk` for the harness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rocketgate_core::PullStatus;
use rocketgate_gateway_grpc::MessagingConfig;
use rocketmq::error::{ClientError, ErrorKind};
use rocketmq::model::common::Endpoints;
use rocketmq::model::message::{AckMessageEntry, Message, MessageBuilder, MessageView};
use rocketmq::Producer;

use crate::grpc_sdk::{
    self as h, ack, call, receive, receive_n, shutdown_consumer, shutdown_producer, tag,
    GrpcServer, DELAY_TOPIC, FIFO_TOPIC, NORMAL_TOPIC,
};
use crate::support;

/// Invisible duration of the receives here.
const INVISIBLE: Duration = Duration::from_secs(15);

/// The code name RC put in an error's context (`Server` errors carry the body Status code).
pub fn code(e: &ClientError) -> Option<&str> {
    e.context()
        .iter()
        .find(|(k, _)| *k == "code")
        .map(|(_, v)| v.as_str())
}

/// Asserts that `r` is an error that the server reported in the response body Status with
/// `expected` (not a gRPC transport error, which RC reports as `ClientInternal`).
pub fn assert_server_error<T: std::fmt::Debug>(
    r: Result<T, ClientError>,
    expected: &str,
    what: &str,
) {
    match r {
        Ok(v) => panic!("{what}: succeeded ({v:?}), expected {expected}"),
        Err(e) => {
            assert_eq!(
                e.kind(),
                &ErrorKind::Server,
                "{what}: not a body Status error: {e}"
            );
            assert_eq!(code(&e), Some(expected), "{what}: wrong code: {e}");
        }
    }
}

/// Sends one message and returns the id RC generated for it with the receipt's id.
async fn send(p: &Producer, mut m: impl Message) -> (String, String) {
    let id = m.take_message_id();
    let receipt = call("send", p.send(m))
        .await
        .unwrap_or_else(|e| panic!("send {id}: {e}"));
    (id, receipt.message_id().to_owned())
}

fn normal(tag_: &str, body: &str) -> impl Message {
    MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag(tag_)
        .set_body(body.as_bytes().to_vec())
        .build()
        .unwrap()
}

/// Brief §5 #1, #2: `start()` with a known topic succeeds quickly; with an unknown one it
/// fails (TOPIC_NOT_FOUND from QueryRoute), without a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_producer_start_known_and_unknown_topic() {
    let server = GrpcServer::start().await;
    let t = Instant::now();
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let took = t.elapsed();
    println!("producer start took {took:?}");
    // Generous bound (the SDK's own start deadline is 3 s per call).
    assert!(took < Duration::from_secs(10), "start took {took:?}");

    let mut option = rocketmq::conf::ProducerOption::default();
    option.set_topics(vec!["no_such_topic"]);
    let mut bad = Producer::new(option, server.client_option()).unwrap();
    let r = call("start with no_such_topic", bad.start()).await;
    assert_server_error(r, "TOPIC_NOT_FOUND", "start with [no_such_topic]");
    // The failed producer still shuts down cleanly (its session is open).
    let _ = call("shutdown of the failed producer", bad.shutdown()).await;

    // The good one still works.
    let (id, receipt_id) = send(&p, normal("test_tag", "after a failed start")).await;
    assert_eq!(receipt_id, id);
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #3, #5: a normal send returns the client's id; a SimpleConsumer with a TAG
/// filter receives it with the same id, body, tag and topic, delivery attempt 1 and a
/// receipt handle; the ack succeeds and a second receive is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_send_receive_ack() {
    let server = GrpcServer::start().await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let c = server
        .consumer("SimpleConsumerGroup", &[NORMAL_TOPIC])
        .await;

    let (id, receipt_id) = send(&p, normal("test_tag", "hello world")).await;
    assert_eq!(receipt_id, id, "receipt id is not the client-generated id");
    assert_eq!(id.len(), 34, "RC ids are 34 characters: {id}");
    // Another tag, which the filter must skip.
    send(&p, normal("other_tag", "filtered out")).await;

    let got = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("test_tag"),
        1,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    let m = &got[0].1;
    assert_eq!(m.message_id(), id);
    assert_eq!(m.body(), b"hello world");
    assert_eq!(m.tag(), Some("test_tag"));
    assert_eq!(m.topic(), NORMAL_TOPIC);
    assert_eq!(m.delivery_attempt(), 1, "first delivery");
    assert!(!AckMessageEntry::receipt_handle(m).is_empty());
    assert!(!m.born_host().is_empty(), "born host");
    let now = h::now_secs();
    assert!(
        (now - 60..=now).contains(&m.born_timestamp()),
        "born timestamp {} (now {now})",
        m.born_timestamp()
    );
    ack(&c, m).await;

    let again = receive(&c, NORMAL_TOPIC, &tag("test_tag"), 32, INVISIBLE).await;
    assert!(
        again.is_empty(),
        "acked message delivered again: {:?}",
        h::ids(&again)
    );
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #4: `batch_send` of 3 messages gives 3 receipts, in order, with the client ids;
/// all three are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_batch_send_three() {
    let server = GrpcServer::start().await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let mut messages = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut m = normal("batch", &format!("batch-{i}"));
        ids.push(m.take_message_id());
        messages.push(m);
    }
    let receipts = call("batch_send", p.batch_send(messages))
        .await
        .unwrap_or_else(|e| panic!("batch_send: {e}"));
    let got: Vec<String> = receipts.iter().map(|r| r.message_id().to_owned()).collect();
    assert_eq!(got, ids, "receipts not one per message in order");
    for (i, id) in ids.iter().enumerate() {
        let stored = support::within(
            support::CALL_TIMEOUT,
            "message_by_id",
            server.broker.queries().by_id(id),
        )
        .await
        .unwrap_or_else(|e| panic!("message {id} of the batch not stored: {e}"));
        assert_eq!(&stored.body[..], format!("batch-{i}").as_bytes());
    }
    shutdown_producer(p).await;
    server.stop().await;
}

/// Task item 8: a message sent over gRPC is readable through the core API (`message_by_id`
/// and a pull) with its tag, keys, properties, body and born host/time; and received by RC
/// with its keys and properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_message_readable_through_core() {
    let server = GrpcServer::start().await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let c = server.consumer("CoreViewGroup", &[NORMAL_TOPIC]).await;
    let props = HashMap::from([("color", "red"), ("size", "L")]);
    let m = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag("core_tag")
        .set_keys(vec!["k1", "k2"])
        .set_properties(props.clone())
        .set_body(b"through the core".to_vec())
        .build()
        .unwrap();
    let sent_at = support::now_ms();
    let (id, _) = send(&p, m).await;

    let stored = support::within(
        support::CALL_TIMEOUT,
        "message_by_id",
        server.broker.queries().by_id(&id),
    )
    .await
    .unwrap_or_else(|e| panic!("message_by_id({id}): {e}"));
    println!("stored: {stored:?}");
    assert_eq!(stored.message_id, id);
    assert_eq!(stored.topic, NORMAL_TOPIC);
    assert_eq!(stored.tag.as_deref(), Some("core_tag"));
    assert_eq!(stored.keys, vec!["k1".to_owned(), "k2".to_owned()]);
    for (k, v) in &props {
        assert_eq!(
            stored.properties.get(*k).map(String::as_str),
            Some(*v),
            "property {k} (all: {:?})",
            stored.properties
        );
    }
    assert_eq!(&stored.body[..], b"through the core");
    assert_eq!(stored.message_group, None);
    assert!(
        stored.born_host.as_deref().is_some_and(|h| !h.is_empty()),
        "born host {:?}",
        stored.born_host
    );
    // RC stamps whole seconds.
    assert!(
        (sent_at - 61_000..=sent_at + 1000).contains(&stored.born_timestamp_ms),
        "born time {} (sent at {sent_at})",
        stored.born_timestamp_ms
    );

    let pulled = support::within(
        support::CALL_TIMEOUT,
        "pull",
        server
            .broker
            .consumer()
            .pull(NORMAL_TOPIC, stored.queue_id, stored.queue_offset, 1),
    )
    .await
    .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(pulled.status, PullStatus::Found);
    let pm = &pulled.messages[0];
    assert_eq!(pm.message_id, id);
    assert_eq!(pm.tag, stored.tag);
    assert_eq!(pm.keys, stored.keys);
    assert_eq!(pm.properties, stored.properties);

    let got = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("*"),
        1,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    let v = &got[0].1;
    assert_eq!(v.message_id(), id);
    assert_eq!(v.keys(), ["k1".to_owned(), "k2".to_owned()]);
    for (k, val) in &props {
        assert_eq!(
            v.properties().get(*k).map(String::as_str),
            Some(*val),
            "received property {k} (all: {:?})",
            v.properties()
        );
    }
    ack(&c, v).await;
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// A received message with its receipt handle replaced (the `AckMessageEntry` trait is
/// public, so any handle can be sent).
struct GarbledHandle(MessageView);

impl AckMessageEntry for GarbledHandle {
    fn topic(&self) -> String {
        AckMessageEntry::topic(&self.0)
    }
    fn message_id(&self) -> String {
        AckMessageEntry::message_id(&self.0)
    }
    fn receipt_handle(&self) -> String {
        "not-a-receipt-handle".into()
    }
    fn endpoints(&self) -> &Endpoints {
        AckMessageEntry::endpoints(&self.0)
    }
}

/// Brief §5 #19 and §1.2: `send` fails with the body Status code the brief names for a
/// reserved property key (`UNIQ_KEY`: ILLEGAL_MESSAGE_PROPERTY_KEY), a body over
/// `limits.max_body_bytes` (MESSAGE_BODY_TOO_LARGE), a tag with `|` (ILLEGAL_MESSAGE_TAG), an
/// unknown topic (TOPIC_NOT_FOUND), a delivery time past the longest delay
/// (ILLEGAL_DELIVERY_TIME) and a NORMAL message to a FIFO topic
/// (MESSAGE_PROPERTY_CONFLICT_WITH_TYPE); a garbled receipt handle makes `ack` fail with
/// INVALID_RECEIPT_HANDLE. Nothing refused is stored, and the clients keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_bad_input_is_refused_and_clients_keep_working() {
    const LIMIT: usize = 16 * 1024;
    let server = GrpcServer::start_with(|c| c.limits.max_body_bytes = LIMIT).await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let c = server.consumer("BadInputGroup", &[NORMAL_TOPIC]).await;

    let reserved = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag("bad")
        .set_properties(HashMap::from([("UNIQ_KEY", "x")]))
        .set_body(b"reserved key".to_vec())
        .build()
        .unwrap();
    let r = call("send with UNIQ_KEY", p.send(reserved)).await;
    assert_server_error(
        r,
        "ILLEGAL_MESSAGE_PROPERTY_KEY",
        "send with property UNIQ_KEY",
    );

    let big = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag("bad")
        .set_body(vec![b'x'; LIMIT + 1])
        .build()
        .unwrap();
    let r = call("send over the body limit", p.send(big)).await;
    assert_server_error(r, "MESSAGE_BODY_TOO_LARGE", "send of LIMIT + 1 bytes");

    let piped = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag("a|b")
        .set_body(b"pipe in tag".to_vec())
        .build()
        .unwrap();
    let r = call("send with tag a|b", p.send(piped)).await;
    assert_server_error(r, "ILLEGAL_MESSAGE_TAG", "send with tag `a|b`");

    let unknown = MessageBuilder::builder()
        .set_topic("no_such_topic")
        .set_body(b"nowhere".to_vec())
        .build()
        .unwrap();
    let r = call("send to no_such_topic", p.send(unknown)).await;
    assert_server_error(r, "TOPIC_NOT_FOUND", "send to no_such_topic");

    let too_late = MessageBuilder::delay_message_builder(
        DELAY_TOPIC,
        b"in 41 days".to_vec(),
        h::now_secs() + 41 * 24 * 3600,
    )
    .build()
    .unwrap();
    let r = call("delay send 41 days ahead", p.send(too_late)).await;
    assert_server_error(r, "ILLEGAL_DELIVERY_TIME", "delay message 41 days ahead");

    let wrong_type = MessageBuilder::builder()
        .set_topic(FIFO_TOPIC)
        .set_body(b"normal message to a FIFO topic".to_vec())
        .build()
        .unwrap();
    let r = call("normal send to the FIFO topic", p.send(wrong_type)).await;
    assert_server_error(
        r,
        "MESSAGE_PROPERTY_CONFLICT_WITH_TYPE",
        "NORMAL message to the FIFO topic",
    );

    // Exactly at the limit is fine, and the producer still works.
    let at_limit = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag("good")
        .set_body(vec![b'y'; LIMIT])
        .build()
        .unwrap();
    let (id, receipt_id) = send(&p, at_limit).await;
    assert_eq!(receipt_id, id);

    // Nothing of the refused sends was stored.
    let got = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("*"),
        1,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    let (_, m) = got.into_iter().next().unwrap();
    assert_eq!(m.message_id(), id);
    assert_eq!(m.body().len(), LIMIT);

    let garbled = GarbledHandle(m);
    let r = call("ack with a garbled handle", c.ack(&garbled)).await;
    assert_server_error(r, "INVALID_RECEIPT_HANDLE", "ack with a garbled handle");
    // The real handle still works.
    ack(&c, &garbled.0).await;

    let again = receive(&c, NORMAL_TOPIC, &tag("*"), 32, INVISIBLE).await;
    assert!(
        again.is_empty(),
        "refused or acked messages delivered: {:?}",
        h::ids(&again)
    );
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #15: `shutdown()` of a producer and of a consumer returns Ok, also for a
/// consumer that never received; afterwards the gateway stops promptly (the Telemetry
/// streams were closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_shutdown_returns_ok() {
    let server = GrpcServer::start().await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let idle = server.consumer("IdleGroup", &[NORMAL_TOPIC]).await;
    let c = server.consumer("ShutdownGroup", &[NORMAL_TOPIC]).await;
    send(&p, normal("bye", "before shutdown")).await;
    let got = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("bye"),
        1,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    ack(&c, &got[0].1).await;
    shutdown_producer(p).await;
    shutdown_consumer(c).await;
    shutdown_consumer(idle).await;
    server.stop().await;
}

/// Brief §5 #6: with RC's default long-polling time (40 s, also its deadline) and the
/// gateway's default configuration, an empty receive returns `Ok(vec![])` within the
/// server's 20 s cap, well before RC's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_empty_receive_with_defaults_ends_before_deadline() {
    let server = GrpcServer::start_full(|_| {}, MessagingConfig::default()).await;
    let c = server.consumer("DefaultsGroup", &[NORMAL_TOPIC]).await;
    let t = Instant::now();
    let r = h::try_receive(
        &c,
        NORMAL_TOPIC,
        &tag("*"),
        32,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    let took = t.elapsed();
    println!("empty receive with the default poll cap took {took:?}");
    match r {
        Ok(v) => assert!(v.is_empty(), "messages on an empty topic: {:?}", h::ids(&v)),
        Err(e) => panic!("empty receive failed after {took:?}: {e}"),
    }
    assert!(took <= Duration::from_secs(21), "took {took:?}");
    shutdown_consumer(c).await;
    server.stop().await;
}

/// Brief §5 #7: a receive waiting on an empty topic returns a message sent 2 s later
/// within about 1 s of the send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_long_poll_wakes_on_send() {
    let server = GrpcServer::start().await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let c = server.consumer("WakeGroup", &[NORMAL_TOPIC]).await;
    let filter = tag("wake");
    let ((got, returned_at), (sent_at, id)) = tokio::join!(
        async {
            let got = receive(&c, NORMAL_TOPIC, &filter, 32, INVISIBLE).await;
            (got, Instant::now())
        },
        async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let sent_at = Instant::now();
            let (id, _) = send(&p, normal("wake", "wake up")).await;
            (sent_at, id)
        }
    );
    let woke_after = returned_at.saturating_duration_since(sent_at);
    assert_eq!(h::ids(&got), vec![id], "the waiting receive did not get it");
    println!("receive returned {woke_after:?} after the send started");
    assert!(
        woke_after < support::PROMPTLY,
        "receive returned {woke_after:?} after the send"
    );
    ack(&c, &got[0]).await;
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}
