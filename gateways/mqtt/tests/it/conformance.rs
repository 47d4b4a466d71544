//! Issue 19, the checks of the Eclipse paho interoperability suite and of libmosquitto runs
//! that failed before: topic names with an empty first level (`/TopicA`) for publish,
//! subscribe and wills; will topics refused with topic codes, never "server unavailable";
//! publishes to `$`-topics acknowledged (3.1.1) or refused with 0x87 (v5), in order, and never
//! stored; QoS 0 publishes right before a DISCONNECT all stored. Raw sockets where the exact
//! bytes matter, rumqttc for subscribers. Every wait has a deadline; nothing sleeps to
//! synchronise.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rocketgate_gateway_mqtt::topic::EMPTY_FIRST_LEVEL_TOPIC;
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::v5::mqttbytes::v5 as mq5;
use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::*;

/// A received message: (topic, payload, retain).
type Got = (String, Vec<u8>, bool);

/// A v4 subscriber of `filters` (QoS 1), returned once its SUBACK arrived.
async fn subscriber_v4(
    port: u16,
    id: &str,
    filters: &[&str],
) -> (
    rumqttc::AsyncClient,
    mpsc::UnboundedReceiver<Got>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    let h = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send((p.topic, p.payload.to_vec(), p.retain));
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a))) => {
                    let _ = acked_tx.send(a.return_codes);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let filters = filters
        .iter()
        .map(|f| rumqttc::SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce));
    client.subscribe_many(filters).await.unwrap();
    let codes = tokio::time::timeout(WAIT, acked.recv())
        .await
        .expect("SUBACK within 10 s")
        .unwrap();
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
        "{codes:?}"
    );
    (client, rx, h)
}

/// A v5 subscriber of `filter` (QoS 1), returned once its SUBACK arrived.
async fn subscriber_v5(
    port: u16,
    id: &str,
    filter: &str,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<Got>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    let h = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(mq5::Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let _ = tx.send((topic, p.payload.to_vec(), p.retain));
                }
                Ok(rumqttc::v5::Event::Incoming(mq5::Packet::SubAck(a))) => {
                    let _ = acked_tx.send(a.return_codes);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    client
        .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    let codes = tokio::time::timeout(WAIT, acked.recv())
        .await
        .expect("SUBACK within 10 s")
        .unwrap();
    assert!(
        matches!(codes[..], [mq5::SubscribeReasonCode::Success(_)]),
        "{codes:?}"
    );
    (client, rx, h)
}

fn qos5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// CONNECT bytes: clean session, `keep_alive` seconds, an optional will (topic, QoS 1).
fn connect(v5: bool, id: &str, keep_alive: u16, will: Option<(&str, &[u8])>) -> BytesMut {
    let mut b = BytesMut::new();
    if v5 {
        let c = mq5::Connect {
            keep_alive,
            client_id: id.into(),
            clean_start: true,
            properties: None,
        };
        let will = will.map(|(t, m)| {
            mq5::LastWill::new(t, m, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, None)
        });
        c.write(&will, &None, &mut b).unwrap();
    } else {
        let mut c = rumqttc::Connect::new(id);
        c.keep_alive = keep_alive;
        c.last_will = will.map(|(t, m)| rumqttc::LastWill::new(t, m, QoS::AtLeastOnce, false));
        c.write(&mut b).unwrap();
    }
    b
}

/// Appends a PUBLISH.
fn publish(out: &mut BytesMut, v5: bool, topic: &str, qos: QoS, pkid: u16, payload: &[u8]) {
    if v5 {
        let mut p = mq5::Publish::new(topic, qos5(qos), payload.to_vec(), None);
        p.pkid = pkid;
        p.write(out).unwrap();
    } else {
        let mut p = rumqttc::Publish::new(topic, qos, payload.to_vec());
        p.pkid = pkid;
        p.write(out).unwrap();
    }
}

/// Connects with `bytes` (a CONNECT) and returns the socket and the CONNACK's code.
async fn connected(port: u16, bytes: &[u8]) -> (TcpStream, Option<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let code = read_packet(&mut s).await.map(|(first, body)| {
        assert_eq!(first, 0x20, "CONNACK expected");
        body[1]
    });
    (s, code)
}

async fn recv_got(rx: &mut mpsc::UnboundedReceiver<Got>, within: Duration) -> Got {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("a message in time")
        .expect("subscriber running")
}

/// Receives `n` messages and returns their topics, sorted.
async fn topics(rx: &mut mpsc::UnboundedReceiver<Got>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(recv_got(rx, WAIT).await.0);
    }
    out.sort();
    out
}

/// Messages stored in the RocketMQ topic `topic` (0 when it does not exist).
async fn stored_count(s: &Server, topic: &str) -> u64 {
    match s.broker.topics().describe(topic).await {
        Ok(info) => info.queues.iter().map(|q| q.max - q.min).sum(),
        Err(_) => 0,
    }
}

/// The MQTT topics (property `mqttTopic`) of every message of the RocketMQ topic `topic`.
async fn mqtt_topics_in(s: &Server, topic: &str) -> Vec<String> {
    let info = s.broker.topics().describe(topic).await.unwrap();
    let mut out = Vec::new();
    for q in info.queues {
        let r = s
            .broker
            .consumer()
            .pull(topic, q.queue_id, q.min, 100)
            .await
            .unwrap();
        for m in r.messages {
            out.push(m.properties.get("mqttTopic").cloned().unwrap_or_default());
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_will_on_slash_topic_reaches_its_subscriber_when_the_client_goes_silent() {
    // paho interop `test_will_message`, 3.1.1 and 5.0: keep-alive 5 s, a will on `/TopicA`,
    // then silence on an open socket; the keep-alive (1.5 × 5 s) ends it and the will goes
    // out. A will client that drops its socket sends its will at once.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (_c4, mut rx4, h4) = subscriber_v4(s.port, "will-sub4", &["/TopicA", "/+/b"]).await;
    let (_c5, mut rx5, h5) = subscriber_v5(s.port, "will-sub5", "/TopicA").await;

    let started = Instant::now();
    let will4 = connect(
        false,
        "will-4",
        5,
        Some(("/TopicA", b"v4 not disconnected")),
    );
    let (_silent4, code) = connected(s.port, &will4).await;
    assert_eq!(code, Some(0), "3.1.1 CONNACK with a will on /TopicA");
    let will5 = connect(true, "will-5", 5, Some(("/TopicA", b"v5 not disconnected")));
    let (_silent5, code) = connected(s.port, &will5).await;
    assert_eq!(code, Some(0), "5.0 CONNACK with a will on /TopicA");
    let dropped = connect(false, "will-dropped", 60, Some(("/a/b", b"dropped")));
    let (sock, code) = connected(s.port, &dropped).await;
    assert_eq!(code, Some(0));
    drop(sock);

    let got = recv_got(&mut rx4, WAIT).await;
    assert_eq!(got, ("/a/b".into(), b"dropped".to_vec(), false));
    // The keep-alive ends them 7.5 s after their CONNECT: a generous bound.
    let within = Duration::from_secs(40);
    let mut v4_got = vec![recv_got(&mut rx4, within).await.1];
    v4_got.push(recv_got(&mut rx4, within).await.1);
    v4_got.sort();
    assert_eq!(
        v4_got,
        vec![
            b"v4 not disconnected".to_vec(),
            b"v5 not disconnected".to_vec()
        ]
    );
    let mut v5_got = vec![recv_got(&mut rx5, within).await];
    v5_got.push(recv_got(&mut rx5, within).await);
    v5_got.sort();
    assert_eq!(
        v5_got,
        vec![
            ("/TopicA".into(), b"v4 not disconnected".to_vec(), false),
            ("/TopicA".into(), b"v5 not disconnected".to_vec(), false),
        ]
    );
    // Sent by the keep-alive, not before.
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    h4.abort();
    h5.abort();
    s.stop().await;
}

#[tokio::test]
async fn names_with_an_empty_first_level_are_published_subscribed_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    // Exact filters first: their topics exist before the wildcard ones subscribe.
    let (_f, mut plain, hf) = subscriber_v4(s.port, "slash-plain", &["TopicA"]).await;
    let (_a, mut exact, ha) = subscriber_v4(s.port, "slash-exact", &["/TopicA"]).await;
    let (_b, mut plus_b, hb) = subscriber_v4(s.port, "slash-plus-b", &["/+/b"]).await;
    let (_c, mut slash_all, hc) = subscriber_v5(s.port, "slash-all", "/#").await;
    let (_d, mut plus_topic, hd) = subscriber_v4(s.port, "slash-plus", &["+/TopicA"]).await;
    let (_e, mut all, he) = subscriber_v4(s.port, "slash-hash", &["#"]).await;

    // 3.1.1 and 5.0 publishers, QoS 1: acknowledged with success, in order.
    let (mut p4, code) = connected(s.port, &connect(false, "slash-pub4", 30, None)).await;
    assert_eq!(code, Some(0));
    let mut out = BytesMut::new();
    publish(&mut out, false, "/TopicA", QoS::AtLeastOnce, 1, b"a");
    publish(&mut out, false, "/a/b", QoS::AtLeastOnce, 2, b"b");
    publish(&mut out, false, "TopicA", QoS::AtLeastOnce, 3, b"c");
    p4.write_all(&out).await.unwrap();
    for pkid in 1u8..=3 {
        assert_eq!(read_packet(&mut p4).await, Some((0x40, vec![0, pkid])));
    }
    let (mut p5, code) = connected(s.port, &connect(true, "slash-pub5", 30, None)).await;
    assert_eq!(code, Some(0));
    let mut out = BytesMut::new();
    publish(&mut out, true, "/", QoS::AtLeastOnce, 1, b"d");
    p5.write_all(&out).await.unwrap();
    let (first, body) = read_packet(&mut p5).await.unwrap();
    assert_eq!(first, 0x40);
    assert!(
        body == [0, 1] || body[..3] == [0, 1, 0],
        "PUBACK success: {body:?}"
    );

    assert_eq!(topics(&mut exact, 1).await, ["/TopicA"]);
    assert_eq!(topics(&mut plus_b, 1).await, ["/a/b"]);
    assert_eq!(topics(&mut slash_all, 3).await, ["/", "/TopicA", "/a/b"]);
    assert_eq!(topics(&mut plus_topic, 1).await, ["/TopicA"]);
    assert_eq!(
        topics(&mut all, 4).await,
        ["/", "/TopicA", "/a/b", "TopicA"]
    );
    assert_eq!(topics(&mut plain, 1).await, ["TopicA"]);
    // The core keeps them in one topic, the MQTT topic in the property.
    assert_eq!(
        mqtt_topics_in(&s, EMPTY_FIRST_LEVEL_TOPIC).await,
        ["/", "/TopicA", "/a/b"]
    );

    // Retained on `/TopicA/r`: a later subscriber of `/TopicA/#` gets it with retain set.
    let mut out = BytesMut::new();
    let mut p = rumqttc::Publish::new("/TopicA/r", QoS::AtLeastOnce, b"kept".to_vec());
    p.pkid = 4;
    p.retain = true;
    p.write(&mut out).unwrap();
    p4.write_all(&out).await.unwrap();
    assert_eq!(read_packet(&mut p4).await, Some((0x40, vec![0, 4])));
    let (_g, mut late, hg) = subscriber_v4(s.port, "slash-late", &["/TopicA/#"]).await;
    assert_eq!(
        recv_got(&mut late, WAIT).await,
        ("/TopicA/r".into(), b"kept".to_vec(), true)
    );
    for h in [ha, hb, hc, hd, he, hf, hg] {
        h.abort();
    }
    s.stop().await;
}

#[tokio::test]
async fn will_topics_are_refused_with_topic_codes_never_server_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    // A name the server cannot map: 3.1.1 gets 5 (not authorized), v5 0x90.
    let (_, code) = connected(s.port, &connect(false, "w1", 30, Some(("a.b/c", b"x")))).await;
    assert_eq!(code, Some(5));
    let (_, code) = connected(s.port, &connect(true, "w2", 30, Some(("a.b/c", b"x")))).await;
    assert_eq!(code, Some(0x90));
    // A malformed one: 3.1.1 closes without CONNACK (MQTT-3.1.4-1), v5 0x90.
    let (_, code) = connected(s.port, &connect(false, "w3", 30, Some(("a/+", b"x")))).await;
    assert_eq!(code, None);
    let (_, code) = connected(s.port, &connect(true, "w4", 30, Some(("a/+", b"x")))).await;
    assert_eq!(code, Some(0x90));
    // Reserved: accepted (the will is dropped when it goes out, like such a publish).
    for v5 in [false, true] {
        let (_, code) = connected(s.port, &connect(v5, "w5", 30, Some(("$SYS/x", b"x")))).await;
        assert_eq!(code, Some(0));
    }
    s.stop().await;
}

#[tokio::test]
async fn dollar_publishes_are_acknowledged_in_order_and_never_stored() {
    // paho interop `test_dollar_topics` (3.1.1): a QoS 1 publish to `$TopicA/B` is
    // acknowledged, and a subscriber of `+/+` and `#` gets nothing of it.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    s.broker
        .topics()
        .create(rocketgate_core::TopicConfig::new("TopicA", 4))
        .unwrap();
    let (_c, mut rx, h) = subscriber_v4(s.port, "dollar-sub", &["+/+", "#"]).await;
    for v5 in [false, true] {
        let (mut p, code) = connected(s.port, &connect(v5, "dollar-pub", 30, None)).await;
        assert_eq!(code, Some(0));
        let mut out = BytesMut::new();
        publish(&mut out, v5, "TopicA/B", QoS::AtLeastOnce, 1, b"before");
        publish(&mut out, v5, "$TopicA/B", QoS::AtLeastOnce, 2, b"$1");
        publish(&mut out, v5, "$TopicA/B", QoS::ExactlyOnce, 3, b"$2");
        publish(&mut out, v5, "$TopicA/B", QoS::AtMostOnce, 0, b"$0");
        publish(&mut out, v5, "mqtt_sys_x/y", QoS::AtLeastOnce, 4, b"sys");
        publish(&mut out, v5, "TopicA/C", QoS::AtLeastOnce, 5, b"after");
        p.write_all(&out).await.unwrap();
        // In PUBLISH order: 3.1.1 success for all; v5 0x87 for the reserved ones.
        let refused = if v5 { Some(0x87) } else { None };
        let ok = |pkid: u8, body: &[u8]| body == [0, pkid] || body == [0, pkid, 0];
        let (first, body) = read_packet(&mut p).await.expect("PUBACK 1");
        assert!(first == 0x40 && ok(1, &body), "{first:02x} {body:?}");
        let reserved = [(0x40, 2u8), (0x50, 3), (0x40, 4)];
        for (kind, pkid) in reserved {
            let (first, body) = read_packet(&mut p).await.expect("an acknowledgement");
            assert_eq!(first, kind, "v5 {v5}: {body:?}");
            assert_eq!(body[..2], [0, pkid]);
            assert_eq!(body.get(2).copied(), refused, "v5 {v5}: pkid {pkid}");
        }
        let (first, body) = read_packet(&mut p).await.expect("PUBACK 5");
        assert!(first == 0x40 && ok(5, &body), "{first:02x} {body:?}");
        if !v5 {
            // The QoS 2 exchange completes.
            p.write_all(&[0x62, 2, 0, 3]).await.unwrap();
            assert_eq!(read_packet(&mut p).await, Some((0x70, vec![0, 3])));
        }
        // Still connected.
        p.write_all(&[0xc0, 0]).await.unwrap();
        assert_eq!(read_packet(&mut p).await, Some((0xd0, vec![])));
        // The subscriber gets the two others, once each (`+/+` and `#` overlap), and nothing
        // of the reserved ones.
        assert_eq!(topics(&mut rx, 2).await, ["TopicA/B", "TopicA/C"]);
    }
    assert_eq!(stored_count(&s, "TopicA").await, 4);
    assert_eq!(stored_count(&s, "mqtt_sys_x").await, 0);
    h.abort();
    s.stop().await;
}

/// Sends CONNECT, `n` QoS 0 publishes to `topic` and a DISCONNECT in one write, then waits
/// for the server to close the connection.
async fn burst_then_disconnect(port: u16, v5: bool, topic: &str, n: usize) {
    let mut out = connect(v5, &format!("burst-{v5}"), 30, None);
    for i in 0..n {
        publish(
            &mut out,
            v5,
            topic,
            QoS::AtMostOnce,
            0,
            format!("m{i}").as_bytes(),
        );
    }
    out.extend_from_slice(&[0xe0, 0]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest))
        .await
        .expect("closed after DISCONNECT")
        .unwrap();
    assert_eq!(rest[0], 0x20, "CONNACK first");
}

/// Waits (with a generous deadline) until `topic` holds `n` messages; returns what it holds.
async fn until_stored(s: &Server, topic: &str, n: u64) -> u64 {
    let what = format!("{n} messages in {topic}");
    eventually_within(Duration::from_secs(30), &what, || async {
        (stored_count(s, topic).await >= n).then_some(())
    })
    .await;
    stored_count(s, topic).await
}

#[tokio::test]
async fn qos0_publishes_right_before_a_disconnect_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let n = 20_000;
    burst_then_disconnect(s.port, false, "burst4/x", n).await;
    burst_then_disconnect(s.port, true, "burst5/x", n).await;
    assert_eq!(until_stored(&s, "burst4", n as u64).await, n as u64);
    assert_eq!(until_stored(&s, "burst5", n as u64).await, n as u64);

    // libmosquitto (mosquitto_pub -l: one QoS 0 publish per line, then DISCONNECT).
    let Some(bin) = tool(
        "/usr/bin/mosquitto_pub",
        "apt-get install -y mosquitto-clients",
    ) else {
        s.stop().await;
        return;
    };
    let lines: String = (0..n).map(|i| format!("line {i}\n")).collect();
    let port = s.port.to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "burstm/x",
        "-q",
        "0",
        "-l",
    ];
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("mosquitto_pub ends within 30 s")
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(until_stored(&s, "burstm", n as u64).await, n as u64);
    s.stop().await;
}
