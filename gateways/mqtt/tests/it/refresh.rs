//! The record refresh: live retained messages and persistent-session records are rewritten
//! before the CommitLog retention deletes their segment, and what was cleared stays cleared.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rocketgate_core::{Broker, Config, Message, StoredMessage, TopicConfig};
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::QoS;

use crate::support::*;

const RETAINED: &str = "mqtt_sys_retained";
const SESSIONS: &str = "mqtt_sys_sessions";
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

/// Rewrite records whose copy is a second old, checking every 100 ms.
fn fast_refresh() -> MqttConfig {
    MqttConfig {
        record_refresh_age_ms: 1000,
        record_refresh_interval_ms: 100,
        ..MqttConfig::default()
    }
}

/// Every readable record of a one-queue system topic, in log order (entries whose segment
/// was deleted read as nothing until the queue minimum catches up: probe each one).
async fn records(broker: &Broker, topic: &str) -> Vec<StoredMessage> {
    let q = broker.topics().queue_offsets(topic, 0).await.unwrap();
    let mut out = Vec::new();
    for o in q.min..q.max {
        let r = broker.consumer().pull(topic, 0, o, 1).await.unwrap();
        out.extend(r.messages.into_iter().filter(|m| m.queue_offset == o));
    }
    out
}

fn retained_of<'a>(all: &'a [StoredMessage], t: &str) -> Vec<&'a StoredMessage> {
    all.iter()
        .filter(|m| m.properties.get("mqttTopic").map(String::as_str) == Some(t))
        .collect()
}

fn session_of<'a>(
    all: &'a [StoredMessage],
    id: &str,
) -> Vec<(&'a StoredMessage, serde_json::Value)> {
    all.iter()
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.body).ok()?;
            (v["client_id"] == id).then_some((m, v))
        })
        .collect()
}

/// Polls `check` every 50 ms for at most 10 s.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

async fn fill(broker: &Broker, bytes: usize) -> i64 {
    if broker.topics().config("filler").is_err() {
        broker
            .topics()
            .create(TopicConfig::new("filler", 1))
            .unwrap();
    }
    let mut last = 0;
    for _ in 0..bytes / 1000 {
        let r = broker
            .producer()
            .send(Message::new("filler", vec![7u8; 1000]).into())
            .await
            .unwrap();
        last = r.store_timestamp_ms;
    }
    last
}

#[tokio::test]
async fn retained_and_sessions_outlive_deleted_segments_and_cleared_stays_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_broker(open_small(dir.path()), fast_refresh()).await;
    let b = s.broker.clone();
    let (p, _prx, hp) = client_v4(s.port, "setter", true, |_| {}).await;
    p.publish("news/kept", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    p.publish("news/gone", QoS::AtLeastOnce, true, "soon-cleared")
        .await
        .unwrap();
    let (c, _rx, h) = client_v4(s.port, "dev-r", false, |_| {}).await;
    c.subscribe("cmd/dev-r", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    c.disconnect().await.unwrap();
    let _ = h.await;
    // news/gone gets a refreshed copy, then is cleared.
    wait_until("a refreshed copy of news/gone", || async {
        retained_of(&records(&b, RETAINED).await, "news/gone").len() >= 2
    })
    .await;
    p.publish("news/gone", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    wait_until("the clear of news/gone", || async {
        retained_of(&records(&b, RETAINED).await, "news/gone")
            .last()
            .is_some_and(|m| m.body.is_empty())
    })
    .await;
    hp.abort();
    // Push the originals into closed segments, then wait for copies stored after that.
    let t1 = fill(&b, 3 * SEGMENT as usize).await;
    wait_until("refreshed copies after the filler", || async {
        let r = records(&b, RETAINED).await;
        let ss = records(&b, SESSIONS).await;
        retained_of(&r, "news/kept")
            .iter()
            .any(|m| m.store_timestamp_ms > t1)
            && session_of(&ss, "dev-r")
                .iter()
                .any(|(m, _)| m.store_timestamp_ms > t1)
    })
    .await;
    let broker = s.stop().await;
    // The cleared topic was never rewritten after its clear.
    let all = records(&broker, RETAINED).await;
    let gone = retained_of(&all, "news/gone");
    assert!(
        gone.last().unwrap().body.is_empty(),
        "a cleared topic was rewritten"
    );
    let kept = retained_of(&all, "news/kept");
    let sess_all = records(&broker, SESSIONS).await;
    let sess = session_of(&sess_all, "dev-r");
    let (first_kept, last_kept) = (
        kept[0].physical_offset,
        kept.last().unwrap().physical_offset,
    );
    let (first_sess, last_sess) = (
        sess[0].0.physical_offset,
        sess.last().unwrap().0.physical_offset,
    );
    assert_eq!(sess.last().unwrap().1["deleted"], false);
    broker.shutdown().unwrap();
    drop(broker);

    // Age every segment that ends before the newest copies by five days.
    let newest = last_kept.min(last_sess);
    let old = SystemTime::now() - Duration::from_secs(5 * 24 * 3600);
    let mut cutoff = 0;
    for (base, path) in segments(dir.path()) {
        if base + SEGMENT <= newest {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(old).unwrap();
            cutoff = base + SEGMENT;
        }
    }
    assert!(
        first_kept < cutoff && first_sess < cutoff && gone.last().unwrap().physical_offset < cutoff,
        "the original records are in the aged segments"
    );
    let broker = open_small(dir.path());
    wait_until("retention to delete the aged segments", || async {
        segments(dir.path())
            .first()
            .is_some_and(|(b, _)| *b >= cutoff)
    })
    .await;
    // Only the refreshed copies are left in the log.
    let all = records(&broker, RETAINED).await;
    assert!(all.iter().all(|m| m.physical_offset >= cutoff));
    assert!(retained_of(&all, "news/gone").is_empty());
    assert!(!retained_of(&all, "news/kept").is_empty());
    let ss = records(&broker, SESSIONS).await;
    assert!(ss.iter().all(|m| m.physical_offset >= cutoff));

    let s = Server::with_broker(broker, MqttConfig::default()).await;
    let (v, mut vrx, hv) = client_v4(s.port, "viewer", true, |_| {}).await;
    v.subscribe("news/#", QoS::AtLeastOnce).await.unwrap();
    let got = recv(&mut vrx).await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("news/kept", &b"kept"[..])
    );
    assert!(got.retain);
    nothing(&mut vrx, 500).await;
    // The persistent session's subscription survived too.
    let (c, mut rx, h) = client_v4(s.port, "dev-r", false, |_| {}).await;
    let (p, _prx, hp) = client_v4(s.port, "pusher", true, |_| {}).await;
    p.publish("cmd/dev-r", QoS::AtLeastOnce, false, "after-retention")
        .await
        .unwrap();
    assert_eq!(&recv(&mut rx).await.payload[..], b"after-retention");
    c.disconnect().await.unwrap();
    for x in [h, hp, hv] {
        x.abort();
    }
    s.stop().await;
}

#[tokio::test]
async fn refresh_never_rewrites_a_cleared_topic_or_an_ended_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_broker(open_small(dir.path()), fast_refresh()).await;
    let b = s.broker.clone();
    let (p, _prx, hp) = client_v4(s.port, "setter", true, |_| {}).await;
    p.publish("st/a", QoS::AtLeastOnce, true, "a")
        .await
        .unwrap();
    p.publish("st/b", QoS::AtLeastOnce, true, "b")
        .await
        .unwrap();
    let (c, _rx, h) = client_v4(s.port, "tmp", false, |_| {}).await;
    c.subscribe("cmd/tmp", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    c.disconnect().await.unwrap();
    let _ = h.await;
    wait_until("refreshed copies", || async {
        retained_of(&records(&b, RETAINED).await, "st/b").len() >= 2
            && session_of(&records(&b, SESSIONS).await, "tmp").len() >= 3
    })
    .await;
    // Clear st/b and end the session (a clean connect of the same client id).
    p.publish("st/b", QoS::AtLeastOnce, true, "").await.unwrap();
    let (c, _rx, h) = client_v4(s.port, "tmp", true, |_| {}).await;
    c.disconnect().await.unwrap();
    let _ = h.await;
    hp.abort();
    let ended = rocketgate_core::now_ms();
    // Let more rounds run: st/a is rewritten at least twice after that.
    wait_until("two more rounds", || async {
        retained_of(&records(&b, RETAINED).await, "st/a")
            .iter()
            .filter(|m| m.store_timestamp_ms > ended)
            .count()
            >= 2
    })
    .await;
    let broker = s.stop().await;
    let all = records(&broker, RETAINED).await;
    assert!(retained_of(&all, "st/b").last().unwrap().body.is_empty());
    let sess_all = records(&broker, SESSIONS).await;
    let sess = session_of(&sess_all, "tmp");
    assert_eq!(sess.last().unwrap().1["deleted"], true);
    broker.shutdown().unwrap();
    drop(broker);
    // After a restart only st/a is retained.
    let s = Server::with_broker(open_small(dir.path()), fast_refresh()).await;
    let (v, mut vrx, hv) = client_v4(s.port, "viewer", true, |_| {}).await;
    v.subscribe("st/#", QoS::AtLeastOnce).await.unwrap();
    let got = recv(&mut vrx).await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("st/a", &b"a"[..]));
    nothing(&mut vrx, 500).await;
    hv.abort();
    s.stop().await;
}
