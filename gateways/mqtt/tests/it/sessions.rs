use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::QoS;

use crate::support::*;

#[tokio::test]
async fn persistent_session_gets_offline_messages_after_reconnect_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, _rx, h) = client_v4(s.port, "dev-p", false, |_| {}).await;
    c.subscribe("cmd/dev-p", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    c.disconnect().await.unwrap();
    let _ = h.await;
    let (p, _r, hp) = client_v4(s.port, "pusher", true, |_| {}).await;
    p.publish("cmd/dev-p", QoS::AtLeastOnce, false, "while-offline")
        .await
        .unwrap();
    settle().await;
    // Reconnect: the session is present and the offline message arrives.
    let (c, mut rx, h) = client_v4(s.port, "dev-p", false, |_| {}).await;
    assert_eq!(&recv(&mut rx).await.payload[..], b"while-offline");
    settle().await;
    c.disconnect().await.unwrap();
    let _ = h.await;
    p.publish("cmd/dev-p", QoS::AtLeastOnce, false, "before-restart")
        .await
        .unwrap();
    settle().await;
    hp.abort();
    // Restart the broker and the gateway on the same directory.
    let broker = s.stop().await;
    broker.shutdown().unwrap();
    drop(broker);
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, mut rx, h) = client_v4(s.port, "dev-p", false, |_| {}).await;
    assert_eq!(&recv(&mut rx).await.payload[..], b"before-restart");
    nothing(&mut rx, 500).await;
    // The subscription itself survived too.
    let (p, _r, hp) = client_v4(s.port, "pusher2", true, |_| {}).await;
    p.publish("cmd/dev-p", QoS::AtLeastOnce, false, "after-restart")
        .await
        .unwrap();
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
    c.subscribe("jobs/slow", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    let (p, _r, hp) = client_v4(s.port, "pj", true, |_| {}).await;
    p.publish("jobs/slow", QoS::AtLeastOnce, false, "job")
        .await
        .unwrap();
    let first = recv(&mut rx).await;
    assert!(!first.dup);
    h.abort(); // abrupt: never acknowledged
    drop(c);
    let (c, mut rx, h) = client_v4(s.port, "slow", false, |_| {}).await;
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
    p.publish("home/light", QoS::AtLeastOnce, true, "on")
        .await
        .unwrap();
    p.publish("home/door", QoS::AtLeastOnce, true, "closed")
        .await
        .unwrap();
    settle().await;
    hp.abort();
    let broker = s.stop().await;
    broker.shutdown().unwrap();
    drop(broker);
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, mut rx, h) = client_v4(s.port, "rs", true, |_| {}).await;
    c.subscribe("home/+", QoS::AtLeastOnce).await.unwrap();
    let mut got = [recv(&mut rx).await, recv(&mut rx).await];
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(got[0].topic, "home/door");
    assert_eq!(&got[1].payload[..], b"on");
    assert!(got.iter().all(|m| m.retain));
    // Clear one.
    let (p, _r, hp) = client_v4(s.port, "rp2", true, |_| {}).await;
    p.publish("home/light", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let _ = recv(&mut rx).await; // delivered live, as any publish
    let (c2, mut rx2, h2) = client_v4(s.port, "rs2", true, |_| {}).await;
    c2.subscribe("home/#", QoS::AtLeastOnce).await.unwrap();
    let only = recv(&mut rx2).await;
    assert_eq!(only.topic, "home/door");
    nothing(&mut rx2, 500).await;
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
    c.subscribe("flood/#", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    let (p, _r, hp) = client_v4(s.port, "flooder", true, |_| {}).await;
    for i in 0..500 {
        p.publish(format!("flood/{}", i % 7), QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let mut got = 0;
    while rx.try_recv().is_ok() {
        got += 1;
    }
    assert_eq!(got, 8, "only max_inflight unacknowledged messages are sent");
    let inflight: u64 = s
        .broker
        .consumer()
        .lag("mqtt-slowpoke", "flood")
        .unwrap()
        .iter()
        .map(|q| q.pop_inflight)
        .sum();
    assert!(inflight <= 8 + 40, "popped from the core: {inflight}");
    h.abort();
    hp.abort();
    s.stop().await;
}
