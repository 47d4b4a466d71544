use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::QoS;

use crate::support::*;

#[tokio::test]
async fn persistent_session_gets_offline_messages_after_reconnect_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, _rx, h) = client_v4(s.port, "dev-p", false, |_| {}).await;
    assert!(!c.connack.session_present, "a new session");
    c.subscribed("cmd/dev-p", QoS::AtLeastOnce).await;
    c.disconnect().await.unwrap();
    ended(h).await;
    let (p, _r, hp) = client_v4(s.port, "pusher", true, |_| {}).await;
    p.published("cmd/dev-p", QoS::AtLeastOnce, false, "while-offline")
        .await;
    // Reconnect: the session is present and the offline message arrives.
    let (c, mut rx, h) = client_v4(s.port, "dev-p", false, |_| {}).await;
    assert!(c.connack.session_present, "the session was kept");
    assert_eq!(&recv(&mut rx).await.payload[..], b"while-offline");
    // rumqttc acknowledges it: once the core has it acknowledged, the session leaves.
    eventually("the offline message acknowledged in the core", || async {
        let lag = s.broker.consumer().lag("mqtt-dev-p", "cmd").ok()?;
        lag.iter().all(|q| q.pop_unacked == 0).then_some(())
    })
    .await;
    c.disconnect().await.unwrap();
    ended(h).await;
    p.published("cmd/dev-p", QoS::AtLeastOnce, false, "before-restart")
        .await;
    hp.abort();
    // Restart the broker and the gateway on the same directory.
    let broker = s.stop().await;
    broker.shutdown().unwrap();
    drop(broker);
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, mut rx, h) = client_v4(s.port, "dev-p", false, |_| {}).await;
    assert!(
        c.connack.session_present,
        "the session survived the restart"
    );
    assert_eq!(&recv(&mut rx).await.payload[..], b"before-restart");
    // The subscription itself survived too (and `while-offline`, acknowledged, does not come
    // again: it would arrive before this one).
    let (p, _r, hp) = client_v4(s.port, "pusher2", true, |_| {}).await;
    p.published("cmd/dev-p", QoS::AtLeastOnce, false, "after-restart")
        .await;
    assert_eq!(&recv(&mut rx).await.payload[..], b"after-restart");
    c.disconnect().await.unwrap();
    h.abort();
    hp.abort();
    s.stop().await;
}

#[tokio::test]
async fn unacked_messages_are_redelivered_with_dup_after_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, mut rx, h) = client_v4(s.port, "slow", false, |o| {
        o.set_manual_acks(true);
    })
    .await;
    c.subscribed("jobs/slow", QoS::AtLeastOnce).await;
    let (p, _r, hp) = client_v4(s.port, "pj", true, |_| {}).await;
    p.publish("jobs/slow", QoS::AtLeastOnce, false, "job")
        .await
        .unwrap();
    let first = recv(&mut rx).await;
    assert!(!first.dup);
    h.abort(); // abrupt: never acknowledged
    drop(c);
    let (c, mut rx, h) = client_v4(s.port, "slow", false, |_| {}).await;
    assert!(c.connack.session_present);
    let again = recv(&mut rx).await;
    assert_eq!(&again.payload[..], b"job");
    assert!(again.dup, "a retransmission carries DUP");
    c.disconnect().await.unwrap();
    h.abort();
    hp.abort();
    s.stop().await;
}

#[tokio::test]
async fn retained_messages_survive_a_restart_and_an_empty_one_clears() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (p, _r, hp) = client_v4(s.port, "rp", true, |_| {}).await;
    p.published("home/light", QoS::AtLeastOnce, true, "on")
        .await;
    p.published("home/door", QoS::AtLeastOnce, true, "closed")
        .await;
    hp.abort();
    let broker = s.stop().await;
    broker.shutdown().unwrap();
    drop(broker);
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, mut rx, h) = client_v4(s.port, "rs", true, |_| {}).await;
    c.subscribed("home/+", QoS::AtLeastOnce).await;
    let mut got = [recv(&mut rx).await, recv(&mut rx).await];
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(got[0].topic, "home/door");
    assert_eq!(&got[1].payload[..], b"on");
    assert!(got.iter().all(|m| m.retain));
    // Clear one.
    let (p, _r, hp) = client_v4(s.port, "rp2", true, |_| {}).await;
    p.published("home/light", QoS::AtLeastOnce, true, "").await;
    let live = recv(&mut rx).await; // delivered live, as any publish
    assert_eq!((live.topic.as_str(), live.payload.len()), ("home/light", 0));
    let (c2, mut rx2, h2) = client_v4(s.port, "rs2", true, |_| {}).await;
    c2.subscribed("home/#", QoS::AtLeastOnce).await;
    let only = recv(&mut rx2).await;
    assert_eq!(only.topic, "home/door");
    nothing(&mut rx2, 500).await; // the cleared one does not follow: waiting is the point
    for h in [h, hp, h2] {
        h.abort();
    }
    s.stop().await;
}

#[tokio::test]
async fn a_slow_subscriber_is_bounded_and_the_core_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = MqttConfig {
        max_inflight: 8,
        max_queued_messages: 40,
        ..MqttConfig::default()
    };
    let s = Server::start(dir.path(), config).await;
    let (c, mut rx, h) = client_v4(s.port, "slowpoke", true, |o| {
        o.set_manual_acks(true);
    })
    .await;
    c.subscribed("flood/#", QoS::AtLeastOnce).await;
    let (p, _r, hp) = client_v4(s.port, "flooder", true, |_| {}).await;
    for i in 0..500 {
        p.publish(format!("flood/{}", i % 7), QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    // Every publish stored, and the first max_inflight sent...
    eventually("the 500 publishes stored", || async {
        let info = s.broker.topics().describe("flood").await.ok()?;
        (info.queues.iter().map(|q| q.max - q.min).sum::<u64>() == 500).then_some(())
    })
    .await;
    for _ in 0..8 {
        recv(&mut rx).await;
    }
    // ...and nothing more while none is acknowledged (waiting is the point).
    nothing(&mut rx, 500).await;
    let inflight: u64 = s
        .broker
        .consumer()
        .lag("mqtt-slowpoke", "flood")
        .unwrap()
        .iter()
        .map(|q| q.pop_inflight)
        .sum();
    assert!(inflight <= 8 + 40, "popped from the core: {inflight}");
    // The core keeps the rest: all 500 are there, none acknowledged.
    let unacked: u64 = s
        .broker
        .consumer()
        .lag("mqtt-slowpoke", "flood")
        .unwrap()
        .iter()
        .map(|q| q.pop_unacked)
        .sum();
    assert_eq!(unacked, 500);
    h.abort();
    hp.abort();
    s.stop().await;
}
