//! Publish/subscribe, headers, queue groups, request/reply and UNSUB with a maximum, with
//! `async-nats`.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rocketgate_nats::NatsConfig;

use crate::support::{Server, WAIT};

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within 10 s")
        .expect("subscription open")
}

/// Nothing more arrives within `d`.
async fn quiet(sub: &mut async_nats::Subscriber, d: Duration) {
    if let Ok(Some(m)) = tokio::time::timeout(d, sub.next()).await {
        panic!("unexpected message on {}: {:?}", m.subject, m.payload);
    }
}

#[tokio::test]
async fn a_subscriber_gets_what_is_published_after_it_with_subject_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), NatsConfig::default()).await;
    let publisher = server.client().await;
    // Stored before anyone subscribed: a plain SUB reads from now on.
    publisher
        .publish("orders.old", "before".into())
        .await
        .unwrap();
    crate::support::barrier(&publisher).await;

    let subscriber = server.client().await;
    let mut all = subscriber.subscribe("orders.>").await.unwrap();
    let mut eu = subscriber.subscribe("orders.eu.*").await.unwrap();
    crate::support::barrier(&subscriber).await;

    publisher
        .publish("orders.eu.new", "one".into())
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "m-2");
    headers.insert("Color", "blue");
    publisher
        .publish_with_headers("orders.us.new", headers, "two".into())
        .await
        .unwrap();
    crate::support::barrier(&publisher).await;

    // Order is kept per subject (one queue per subject), not across subjects.
    let mut two = vec![next(&mut all).await, next(&mut all).await];
    two.sort_by(|a, b| a.subject.cmp(&b.subject));
    let m = two.remove(0);
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("orders.eu.new", &b"one"[..])
    );
    let m = two.remove(0);
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("orders.us.new", &b"two"[..])
    );
    let h = m.headers.expect("headers");
    assert_eq!(h.get("Color").map(|v| v.as_str()), Some("blue"));
    assert_eq!(
        h.get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str()),
        Some("m-2")
    );
    let m = next(&mut eu).await;
    assert_eq!(m.subject.as_str(), "orders.eu.new");
    quiet(&mut eu, Duration::from_millis(300)).await;
    quiet(&mut all, Duration::from_millis(100)).await;

    // Stored in the RocketMQ topic of the first token, with the subject and the key.
    let q = server
        .broker
        .queries()
        .by_key("orders", "m-2", 0, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].properties["natsSubject"], "orders.us.new");
    drop((publisher, subscriber));
    server.stop().await;
}

#[tokio::test]
async fn a_queue_group_shares_the_messages_and_a_plain_subscriber_sees_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), NatsConfig::default()).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let c = server.client().await;
        let s = c.queue_subscribe("jobs.*", "workers".into()).await.unwrap();
        crate::support::barrier(&c).await;
        members.push((c, s));
    }
    let watcher = server.client().await;
    let mut all = watcher.subscribe("jobs.*").await.unwrap();
    crate::support::barrier(&watcher).await;

    let publisher = server.client().await;
    let n = 60;
    for i in 0..n {
        publisher
            .publish(format!("jobs.j{}", i % 7), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    crate::support::barrier(&publisher).await;

    let mut got = HashSet::new();
    let mut per_member = vec![0usize; members.len()];
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n}",
            got.len()
        );
        for (i, (_, s)) in members.iter_mut().enumerate() {
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), s.next()).await {
                assert!(
                    got.insert(m.payload.clone()),
                    "delivered twice: {:?}",
                    m.payload
                );
                per_member[i] += 1;
            }
        }
    }
    assert!(
        per_member.iter().filter(|c| **c > 0).count() >= 2,
        "load-balanced: {per_member:?}"
    );
    for _ in 0..n {
        next(&mut all).await;
    }
    quiet(&mut all, Duration::from_millis(200)).await;
    drop((members, watcher, publisher));
    server.stop().await;
}

#[tokio::test]
async fn request_reply_works_across_clients_and_no_responders_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), NatsConfig::default()).await;
    let responder = server.client().await;
    let mut service = responder.subscribe("svc.echo").await.unwrap();
    crate::support::barrier(&responder).await;
    let r = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                let mut body = b"echo: ".to_vec();
                body.extend_from_slice(&m.payload);
                r.publish(reply, body.into()).await.unwrap();
                r.flush().await.unwrap();
            }
        }
    });
    let requester = server.client().await;
    for i in 0..3 {
        let answer = tokio::time::timeout(
            WAIT,
            requester.request("svc.echo", Bytes::from(format!("hi {i}"))),
        )
        .await
        .expect("an answer within 10 s")
        .unwrap();
        assert_eq!(answer.payload, Bytes::from(format!("echo: hi {i}")));
    }
    let started = tokio::time::Instant::now();
    let err = tokio::time::timeout(WAIT, requester.request("nobody.home", "x".into()))
        .await
        .expect("an answer within 10 s")
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    task.abort();
    drop((responder, requester));
    server.stop().await;
}

#[tokio::test]
async fn unsubscribe_after_a_maximum_delivers_exactly_that_many() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), NatsConfig::default()).await;
    let c = server.client().await;
    let mut sub = c.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(2).await.unwrap();
    crate::support::barrier(&c).await;
    for i in 0..5 {
        c.publish("limited", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    crate::support::barrier(&c).await;
    assert_eq!(&next(&mut sub).await.payload[..], b"0");
    assert_eq!(&next(&mut sub).await.payload[..], b"1");
    let end = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("ends within 10 s");
    assert!(end.is_none(), "the subscription ended after 2");
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn a_queue_group_keeps_what_arrives_while_it_has_no_member() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), NatsConfig::default()).await;
    let c = server.client().await;
    let mut member = c
        .queue_subscribe("tasks.*", "durable".into())
        .await
        .unwrap();
    crate::support::barrier(&c).await;
    member.unsubscribe().await.unwrap();
    crate::support::barrier(&c).await;
    c.publish("tasks.a", "while away".into()).await.unwrap();
    crate::support::barrier(&c).await;
    let mut back = c
        .queue_subscribe("tasks.*", "durable".into())
        .await
        .unwrap();
    let m = next(&mut back).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("tasks.a", &b"while away"[..])
    );
    drop(c);
    server.stop().await;
}
