//! The NATS gateway of the real `rocketgate standalone` binary (`--nats-addr`): NATS clients
//! (`async-nats`) exchange messages with MQTT (rumqttc) and REST clients through the same
//! RocketMQ topics, and `/metrics` counts NATS with `gateway="nats"`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::{http, standalone, WAIT};

async fn next_nats(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a NATS message in time")
        .expect("subscription open")
}

/// Handled by the server: everything `c` sent before is in place (a round trip to itself).
async fn barrier(c: &async_nats::Client) {
    let inbox = c.new_inbox();
    let mut s = c.subscribe(inbox.clone()).await.unwrap();
    c.publish(inbox, "b".into()).await.unwrap();
    next_nats(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mqtt_and_rest_clients_share_topics_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "nats", &["--nats-addr", "127.0.0.1:0"]);
    let nats_addr = node.endpoint("nats");
    let web = node.endpoint("http");
    let nats = tokio::time::timeout(WAIT, async_nats::connect(format!("nats://{nats_addr}")))
        .await
        .unwrap()
        .unwrap();

    // MQTT subscriber, then a NATS publish: MQTT sees it under the topic (no MQTT topic name).
    let mqtt_addr: std::net::SocketAddr = node.endpoint("mqtt").parse().unwrap();
    let mut options = MqttOptions::new("xp-mqtt", mqtt_addr.ip().to_string(), mqtt_addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (mqtt, mut events) = AsyncClient::new(options, 64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (subacked, mut suback) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = events.poll().await {
            match e {
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send((p.topic.clone(), p.payload));
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = subacked.send(());
                }
                _ => {}
            }
        }
    });
    mqtt.subscribe("xp/#", QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(WAIT, suback.recv())
        .await
        .unwrap()
        .unwrap();
    nats.publish("xp.from.nats", "n1".into()).await.unwrap();
    barrier(&nats).await;
    let (topic, payload) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((topic.as_str(), &payload[..]), ("xp", &b"n1"[..]));

    // MQTT and REST publish, a NATS subscriber receives with sensible subjects.
    let mut xp_all = nats.subscribe("xp.>").await.unwrap();
    let mut xp_bare = nats.subscribe("xp").await.unwrap();
    barrier(&nats).await;
    mqtt.publish("xp/from/mqtt", QoS::AtLeastOnce, false, "m1")
        .await
        .unwrap();
    let m = next_nats(&mut xp_all).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("xp.from.mqtt", &b"m1"[..])
    );
    let (status, body) = http(
        &web,
        "POST",
        "/v1/topics/xp/messages",
        Some(r#"{"body":"r1","properties":{"Color":"red"}}"#),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let m = next_nats(&mut xp_bare).await;
    assert_eq!((m.subject.as_str(), &m.payload[..]), ("xp", &b"r1"[..]));
    assert_eq!(
        m.headers.unwrap().get("Color").map(|v| v.as_str()),
        Some("red")
    );

    // NATS publish with headers, a REST consumer reads subject and headers as properties.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Color", "green");
    nats.publish_with_headers("xp.to.rest", h, "n2".into())
        .await
        .unwrap();
    barrier(&nats).await;
    let (status, body) = http(
        &web,
        "POST",
        "/v1/groups/xp-rest/receive",
        Some(r#"{"topic":"xp","max":32,"wait_ms":1000}"#),
    );
    assert_eq!(status, 200, "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    let found = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["properties"]["natsSubject"] == "xp.to.rest")
        .unwrap_or_else(|| panic!("the NATS message over REST: {got}"));
    assert_eq!(found["properties"]["Color"], "green", "{found}");

    let (status, metrics) = http(&web, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("rocketgate_publishes_received_total{gateway=\"nats\"}"),
        "{metrics}"
    );
    drop(nats);
    let _ = mqtt.disconnect().await;
    node.terminate();
}
