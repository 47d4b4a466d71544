//! Retained messages and persistent sessions live in the core's KV store: they survive the
//! CommitLog retention deleting every old segment and a restart, and an upgrade imports the
//! latest records of the old system topics once.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rocketgate_core::{Broker, Caller, Config, Gateway, Message, TopicConfig};
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::QoS;

use crate::support::*;

const SEGMENT: u64 = 4096;

/// Tiny segments, one-hour retention checked every 100 ms: a segment goes away as soon as its
/// file is older than an hour (the test backdates files instead of waiting).
fn open_small(dir: &Path) -> Broker {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = SEGMENT;
    c.store.retention_hours = 1;
    c.store.clean_interval_ms = 100;
    c.consumer.min_invisible_ms = 100;
    c.store.disk_max_used_ratio = 0.99;
    Broker::open(c).unwrap()
}

fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.parent().and_then(|x| x.file_name()) == Some("commitlog".as_ref()) {
                if let Some(base) = p.file_name().and_then(|n| n.to_str()?.parse::<u64>().ok()) {
                    out.push((base, p));
                }
            }
        }
    }
    out.sort();
    out
}

async fn fill(broker: &Broker, bytes: usize) {
    if broker.topics().config("filler").is_err() {
        broker
            .topics()
            .create(TopicConfig::new("filler", 1))
            .unwrap();
    }
    for _ in 0..bytes / 1000 {
        broker
            .producer()
            .send(Message::new("filler", vec![7u8; 1000]).into())
            .await
            .unwrap();
    }
}

/// Backdates every CommitLog segment but the newest by five days, reopens the broker and
/// waits until retention deleted them all.
async fn age_out_every_old_segment(dir: &Path) -> Broker {
    let all = segments(dir);
    let (cutoff, _) = all.last().unwrap().clone();
    let old = SystemTime::now() - Duration::from_secs(5 * 24 * 3600);
    for (_, path) in &all[..all.len() - 1] {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(old).unwrap();
    }
    assert!(all.len() >= 3, "the test wrote several segments");
    let broker = open_small(dir);
    eventually("retention to delete the old segments", || async {
        segments(dir)
            .first()
            .is_some_and(|(b, _)| *b >= cutoff)
            .then_some(())
    })
    .await;
    broker
}

#[tokio::test]
async fn retained_and_sessions_survive_retention_deleting_every_old_segment_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_broker(open_small(dir.path()), MqttConfig::default()).await;
    let b = s.broker.clone();
    let (p, _prx, hp) = client_v4(s.port, "setter", true, |_| {}).await;
    p.published("news/kept", QoS::AtLeastOnce, true, "kept")
        .await;
    p.published("news/gone", QoS::AtLeastOnce, true, "soon-cleared")
        .await;
    let (c, _rx, h) = client_v4(s.port, "dev-r", false, |_| {}).await;
    c.subscribed("cmd/dev-r", QoS::AtLeastOnce).await;
    c.disconnect().await.unwrap();
    ended(h).await;
    p.published("news/gone", QoS::AtLeastOnce, true, "").await;
    hp.abort();
    assert_eq!(b.kv().len("mqtt.retained"), 1);
    assert!(b.kv().get("mqtt.sessions", b"dev-r").unwrap().is_some());
    // Everything written so far goes into segments that retention will delete.
    fill(&b, 4 * SEGMENT as usize).await;
    let broker = s.stop().await;
    broker.shutdown().unwrap();
    drop((broker, b));

    let broker = age_out_every_old_segment(dir.path()).await;
    let s = Server::with_broker(broker, MqttConfig::default()).await;
    let (v, mut vrx, hv) = client_v4(s.port, "viewer", true, |_| {}).await;
    v.subscribed("news/#", QoS::AtLeastOnce).await;
    let got = recv(&mut vrx).await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("news/kept", &b"kept"[..])
    );
    assert!(got.retain);
    nothing(&mut vrx, 500).await; // the cleared one does not follow: waiting is the point
                                  // The persistent session's subscription survived too.
    let (c, mut rx, h) = client_v4(s.port, "dev-r", false, |_| {}).await;
    assert!(c.connack.session_present);
    let (p, _prx, hp) = client_v4(s.port, "pusher", true, |_| {}).await;
    p.published("cmd/dev-r", QoS::AtLeastOnce, false, "after-retention")
        .await;
    assert_eq!(&recv(&mut rx).await.payload[..], b"after-retention");
    c.disconnect().await.unwrap();
    for x in [h, hp, hv] {
        x.abort();
    }
    s.stop().await;
}

#[tokio::test]
async fn a_clean_start_ends_a_session_durably() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_broker(open_small(dir.path()), MqttConfig::default()).await;
    let (c, _rx, h) = client_v4(s.port, "tmp", false, |_| {}).await;
    c.subscribed("cmd/tmp", QoS::AtLeastOnce).await;
    c.disconnect().await.unwrap();
    ended(h).await;
    assert!(s
        .broker
        .kv()
        .get("mqtt.sessions", b"tmp")
        .unwrap()
        .is_some());
    let (c, _rx, h) = client_v4(s.port, "tmp", true, |_| {}).await;
    assert!(!c.connack.session_present, "a clean start ends the session");
    c.disconnect().await.unwrap();
    ended(h).await;
    eventually("the session record deleted", || async {
        s.broker
            .kv()
            .get("mqtt.sessions", b"tmp")
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let broker = s.stop().await;
    broker.shutdown().unwrap();
    drop(broker);
    // Durably: gone after a restart too, and the client finds no session.
    let s = Server::with_broker(open_small(dir.path()), MqttConfig::default()).await;
    assert_eq!(s.broker.kv().get("mqtt.sessions", b"tmp").unwrap(), None);
    let (c, _rx, h) = client_v4(s.port, "tmp", false, |_| {}).await;
    assert!(!c.connack.session_present, "no session after the restart");
    c.disconnect().await.unwrap();
    ended(h).await;
    let broker = s.stop().await;
    broker.shutdown().unwrap();
}

async fn send_old(broker: &Broker, topic: &str, body: &str, mqtt_topic: Option<&str>) {
    let mut m = Message::new(topic, body.to_owned());
    if let Some(t) = mqtt_topic {
        m.properties.insert("mqttTopic".into(), t.into());
    }
    broker.producer().send(m.into()).await.unwrap();
}

#[tokio::test]
async fn an_upgrade_imports_the_old_system_topics_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_small(dir.path());
    // What an earlier version of the gateway wrote: its topics and properties are reserved
    // to the MQTT gateway in core.
    let old = broker.as_caller(Caller::gateway(Gateway::Mqtt));
    for t in ["mqtt_sys_retained", "mqtt_sys_sessions"] {
        old.topics().create(TopicConfig::new(t, 1)).unwrap();
    }
    send_old(&old, "mqtt_sys_retained", "A0", Some("old/a")).await;
    send_old(&old, "mqtt_sys_retained", "A", Some("old/a")).await;
    send_old(&old, "mqtt_sys_retained", "B", Some("old/b")).await;
    send_old(&old, "mqtt_sys_retained", "", Some("old/b")).await;
    let record = |id: &str, deleted: bool| {
        format!(
            r#"{{"client_id":"{id}","subscriptions":{{"cmd/{id}":{{"filter":"cmd/{id}","qos":1}}}},"expiry_secs":null,"deleted":{deleted}}}"#
        )
    };
    send_old(&old, "mqtt_sys_sessions", &record("legacy", false), None).await;
    send_old(&old, "mqtt_sys_sessions", &record("ended", false), None).await;
    send_old(&old, "mqtt_sys_sessions", &record("ended", true), None).await;

    let s = Server::with_broker(broker, MqttConfig::default()).await;
    let (v, mut vrx, hv) = client_v4(s.port, "viewer", true, |_| {}).await;
    v.subscribed("old/#", QoS::AtLeastOnce).await;
    let got = recv(&mut vrx).await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("old/a", &b"A"[..]));
    nothing(&mut vrx, 500).await; // old/b was cleared: waiting is the point
    let kv = s.broker.kv();
    assert!(kv.get("mqtt.sessions", b"legacy").unwrap().is_some());
    assert_eq!(kv.get("mqtt.sessions", b"ended").unwrap(), None);
    assert_eq!(kv.len("mqtt.meta"), 2, "both imports are marked");
    let (c, mut rx, h) = client_v4(s.port, "legacy", false, |_| {}).await;
    assert!(c.connack.session_present, "the imported session");
    let (p, _prx, hp) = client_v4(s.port, "pusher", true, |_| {}).await;
    p.published("cmd/legacy", QoS::AtLeastOnce, false, "hello")
        .await;
    assert_eq!(&recv(&mut rx).await.payload[..], b"hello");
    c.disconnect().await.unwrap();
    // Clear old/a: the old topic still holds it, but it is not imported again.
    p.published("old/a", QoS::AtLeastOnce, true, "").await;
    for x in [h, hp, hv] {
        x.abort();
    }
    let broker = s.stop().await;
    let s = Server::with_broker(broker, MqttConfig::default()).await;
    let (v, mut vrx, hv) = client_v4(s.port, "viewer", true, |_| {}).await;
    v.subscribed("old/#", QoS::AtLeastOnce).await;
    // Retained messages are sent right after the SUBACK: none (waiting is the point).
    nothing(&mut vrx, 500).await;
    hv.abort();
    s.stop().await;
}
