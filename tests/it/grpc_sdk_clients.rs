//! RC (the official Rust SDK 5.0.0) against the gateway, more client situations: tag filters
//! of three groups, a body close to RC's 4 MiB receive limit, an access URL (`localhost`)
//! other than the advertised endpoint (`127.0.0.1`), and two producers with two consumers
//! of one group (at-least-once, no duplicate first delivery).
//!
//! See `grpc_sdk` for the harness.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rocketmq::model::message::{Message, MessageBuilder};
use rocketmq::{Producer, SimpleConsumer};

use crate::grpc_sdk::{
    self as h, ack, call, receive, receive_n, shutdown_consumer, shutdown_producer, tag,
    GrpcServer, NORMAL_TOPIC,
};

/// Invisible duration of the receives here.
const INVISIBLE: Duration = Duration::from_secs(15);

async fn send(p: &Producer, tag_: &str, body: Vec<u8>) -> String {
    let mut m = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag(tag_)
        .set_body(body)
        .build()
        .unwrap();
    let id = m.take_message_id();
    let r = call("send", p.send(m))
        .await
        .unwrap_or_else(|e| panic!("send {id}: {e}"));
    assert_eq!(r.message_id(), id);
    id
}

/// Receives exactly the messages `want` (in any order) with `filter`, acks them, and checks
/// that a further receive is empty.
async fn expect_exactly(c: &SimpleConsumer, filter: &str, want: Vec<String>) {
    let got = receive_n(
        c,
        NORMAL_TOPIC,
        &tag(filter),
        want.len(),
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    let mut ids: Vec<String> = h::ids(got.iter().map(|(_, m)| m));
    ids.sort();
    let mut expected = want;
    expected.sort();
    assert_eq!(ids, expected, "filter {filter}");
    for (_, m) in &got {
        ack(c, m).await;
    }
    let more = receive(c, NORMAL_TOPIC, &tag(filter), 32, INVISIBLE).await;
    assert!(
        more.is_empty(),
        "filter {filter}: more messages {:?} (tags {:?})",
        h::ids(&more),
        more.iter().map(|m| m.tag()).collect::<Vec<_>>()
    );
}

/// Brief §5 #8: tags A, B and C. A receive with TAG `A` (group G1) gets only A, `*` (G2) all
/// three, `A||B` (G3) A and B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_tag_filters() {
    let server = GrpcServer::start().await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let g1 = server.consumer("G1", &[NORMAL_TOPIC]).await;
    let g2 = server.consumer("G2", &[NORMAL_TOPIC]).await;
    let g3 = server.consumer("G3", &[NORMAL_TOPIC]).await;
    let a = send(&p, "A", b"a".to_vec()).await;
    let b = send(&p, "B", b"b".to_vec()).await;
    let c = send(&p, "C", b"c".to_vec()).await;
    tokio::join!(
        expect_exactly(&g1, "A", vec![a.clone()]),
        expect_exactly(&g2, "*", vec![a.clone(), b.clone(), c.clone()]),
        expect_exactly(&g3, "A||B", vec![a.clone(), b.clone()]),
    );
    for c in [g1, g2, g3] {
        shutdown_consumer(c).await;
    }
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #20: a 3.5 MiB body is sent and received intact (RC decodes at most 4 MiB per
/// response frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_large_message() {
    let server = GrpcServer::start_with(|c| c.store.segment_size = 16 << 20).await;
    let p = server.producer(&[NORMAL_TOPIC]).await;
    let c = server.consumer("LargeGroup", &[NORMAL_TOPIC]).await;
    let body: Vec<u8> = (0..3_584 * 1024).map(|i| (i % 251) as u8).collect();
    let id = send(&p, "large", body.clone()).await;
    let got = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("large"),
        1,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    let m = &got[0].1;
    assert_eq!(m.message_id(), id);
    assert_eq!(m.body().len(), body.len());
    assert!(m.body() == body.as_slice(), "large body differs");
    ack(&c, m).await;
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #18: the access URL is `localhost:PORT` while routes advertise `127.0.0.1:PORT`,
/// so RC opens a second session (and Telemetry stream) per client. Send, receive, ack and
/// shutdown still work, and the gateway stops cleanly afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_access_url_other_than_advertised() {
    let server = GrpcServer::start().await;
    let mut option = server.client_option();
    option.set_access_url(format!("localhost:{}", server.addr.port()));
    let p = server.producer_with(&[NORMAL_TOPIC], option.clone()).await;
    let c = server
        .consumer_with("AliasGroup", &[NORMAL_TOPIC], option)
        .await;
    let id = send(&p, "alias", b"via localhost".to_vec()).await;
    let got = receive_n(
        &c,
        NORMAL_TOPIC,
        &tag("alias"),
        1,
        INVISIBLE,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(got[0].1.message_id(), id);
    ack(&c, &got[0].1).await;
    shutdown_consumer(c).await;
    shutdown_producer(p).await;
    server.stop().await;
}

/// Brief §5 #21, scaled down: 2 producers × 100 messages and 2 consumers of one group
/// receiving concurrently and acking everything. Every message is acknowledged, and no
/// message is delivered twice as a first delivery (a duplicate may only be a redelivery
/// after an invisibility expiry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_two_producers_two_consumers_one_group() {
    const PER_PRODUCER: usize = 100;
    let server = GrpcServer::start().await;
    let p1 = server.producer(&[NORMAL_TOPIC]).await;
    let p2 = server.producer(&[NORMAL_TOPIC]).await;
    let c1 = server.consumer("SharedGroup", &[NORMAL_TOPIC]).await;
    let c2 = server.consumer("SharedGroup", &[NORMAL_TOPIC]).await;

    async fn produce_all(p: &Producer, who: &str) -> Vec<String> {
        let mut ids = Vec::with_capacity(PER_PRODUCER);
        for i in 0..PER_PRODUCER {
            ids.push(send(p, "shared", format!("{who}-{i}").into_bytes()).await);
        }
        ids
    }

    // Message id → delivery attempts seen, over both consumers.
    let seen: Mutex<HashMap<String, Vec<i32>>> = Mutex::default();
    let acked: Mutex<HashMap<String, usize>> = Mutex::default();
    let total = 2 * PER_PRODUCER;
    async fn consume_all(
        c: &SimpleConsumer,
        seen: &Mutex<HashMap<String, Vec<i32>>>,
        acked: &Mutex<HashMap<String, usize>>,
        total: usize,
    ) {
        let start = Instant::now();
        while acked.lock().unwrap().len() < total {
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "acked {} of {total}",
                acked.lock().unwrap().len()
            );
            let batch = receive(c, NORMAL_TOPIC, &tag("shared"), 16, INVISIBLE).await;
            for m in &batch {
                seen.lock()
                    .unwrap()
                    .entry(m.message_id().to_owned())
                    .or_default()
                    .push(m.delivery_attempt());
            }
            for m in &batch {
                ack(c, m).await;
                *acked
                    .lock()
                    .unwrap()
                    .entry(m.message_id().to_owned())
                    .or_default() += 1;
            }
        }
    }

    let (ids1, ids2, (), ()) = tokio::join!(
        produce_all(&p1, "p1"),
        produce_all(&p2, "p2"),
        consume_all(&c1, &seen, &acked, total),
        consume_all(&c2, &seen, &acked, total),
    );
    let seen = seen.into_inner().unwrap();
    let acked = acked.into_inner().unwrap();
    for id in ids1.iter().chain(&ids2) {
        assert!(acked.contains_key(id), "{id} never acknowledged");
        let attempts = &seen[id];
        assert_eq!(
            attempts.iter().filter(|a| **a == 1).count(),
            1,
            "{id}: first delivery repeated: attempts {attempts:?}"
        );
    }
    assert_eq!(acked.len(), total, "acked ids that were never sent");
    let redelivered = seen.values().filter(|a| a.len() > 1).count();
    println!("{total} messages acked; {redelivered} redelivered");
    for c in [c1, c2] {
        shutdown_consumer(c).await;
    }
    for p in [p1, p2] {
        shutdown_producer(p).await;
    }
    server.stop().await;
}
