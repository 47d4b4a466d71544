use std::time::Duration;

use bytes::Bytes;
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, oneshot};

use crate::support::*;

async fn client_v5(
    port: u16,
    id: &str,
    tweak: impl FnOnce(&mut MqttOptions),
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<Publish>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    tweak(&mut o);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut ready = Some(ready_tx);
    let h = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
    (client, rx, h)
}

#[tokio::test]
async fn v5_properties_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (sub, mut rx, h) = client_v5(s.port, "v5sub", |_| {}).await;
    let props = rumqttc::v5::mqttbytes::v5::SubscribeProperties {
        id: Some(7),
        user_properties: Vec::new(),
    };
    sub.subscribe_with_properties("req/#", QoS::AtLeastOnce, props)
        .await
        .unwrap();
    settle().await;
    let (p, _r, hp) = client_v5(s.port, "v5pub", |_| {}).await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(600),
        response_topic: Some("resp/1".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02corr")),
        user_properties: vec![("tenant".into(), "acme".into())],
        content_type: Some("text/plain".into()),
        ..PublishProperties::default()
    };
    p.publish_with_properties("req/a", QoS::AtLeastOnce, false, "hi", props)
        .await
        .unwrap();
    let got = recv(&mut rx).await;
    let gp = got.properties.expect("properties");
    assert_eq!(gp.payload_format_indicator, Some(1));
    assert!(gp
        .message_expiry_interval
        .is_some_and(|e| e > 590 && e <= 600));
    assert_eq!(gp.response_topic.as_deref(), Some("resp/1"));
    assert_eq!(gp.correlation_data.as_deref(), Some(&b"\x01\x02corr"[..]));
    assert_eq!(gp.content_type.as_deref(), Some("text/plain"));
    assert!(gp
        .user_properties
        .contains(&("tenant".into(), "acme".into())));
    assert_eq!(gp.subscription_identifiers, vec![7]);
    // User properties are message properties in the core.
    let info = s.broker.topics().describe("req").await.unwrap();
    let mut seen = false;
    for q in info.queues {
        for m in s
            .broker
            .consumer()
            .pull("req", q.queue_id, 0, 10)
            .await
            .unwrap()
            .messages
        {
            seen |= m.properties.get("tenant").map(String::as_str) == Some("acme");
        }
    }
    assert!(seen);
    h.abort();
    hp.abort();
    s.stop().await;
}

#[tokio::test]
async fn receive_maximum_of_the_client_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (sub, mut rx, h) = client_v5(s.port, "rm", |o| {
        o.set_receive_maximum(Some(1));
        o.set_manual_acks(true);
    })
    .await;
    sub.subscribe("rm/#", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    let (p, _r, hp) = client_v5(s.port, "rmp", |_| {}).await;
    for i in 0..3 {
        p.publish(format!("rm/{i}"), QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    let first = recv(&mut rx).await;
    nothing(&mut rx, 700).await; // window of one, unacknowledged
    sub.ack(&first).await.unwrap();
    let second = recv(&mut rx).await;
    assert_ne!(first.topic, second.topic);
    nothing(&mut rx, 300).await;
    sub.ack(&second).await.unwrap();
    let _third = recv(&mut rx).await;
    h.abort();
    hp.abort();
    s.stop().await;
}

#[tokio::test]
async fn no_local_and_assigned_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (c, mut rx, h) = client_v5(s.port, "", |_| {}).await;
    let f = rumqttc::v5::mqttbytes::v5::Filter {
        path: "chat/#".into(),
        qos: QoS::AtLeastOnce,
        nolocal: true,
        preserve_retain: false,
        retain_forward_rule: rumqttc::v5::mqttbytes::v5::RetainForwardRule::OnEverySubscribe,
    };
    c.subscribe_many(vec![f]).await.unwrap();
    settle().await;
    c.publish("chat/room", QoS::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    nothing(&mut rx, 500).await;
    let (p, _r, hp) = client_v5(s.port, "other", |_| {}).await;
    p.publish("chat/room", QoS::AtLeastOnce, false, "theirs")
        .await
        .unwrap();
    assert_eq!(&recv(&mut rx).await.payload[..], b"theirs");
    h.abort();
    hp.abort();
    s.stop().await;
}

fn raw_v5_connect(id: &str, will: Option<(u32, &str)>, expiry: u32) -> Vec<u8> {
    use rumqttc::v5::mqttbytes::v5::{ConnectProperties, LastWill, LastWillProperties};
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(expiry);
    let c = rumqttc::v5::mqttbytes::v5::Connect {
        keep_alive: 30,
        client_id: id.into(),
        clean_start: true,
        properties: Some(props),
    };
    let will = will.map(|(delay, topic)| LastWill {
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        message: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Some(LastWillProperties {
            delay_interval: Some(delay),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    });
    let mut b = bytes::BytesMut::new();
    c.write(&will, &None, &mut b).unwrap();
    b.to_vec()
}

#[tokio::test]
async fn will_delay_session_expiry_and_packet_too_large() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = MqttConfig {
        max_packet_size: 1024,
        ..MqttConfig::default()
    };
    let s = Server::start(dir.path(), config).await;
    let (w, mut rx, h) = client_v5(s.port, "watch5", |_| {}).await;
    w.subscribe("lwt/#", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .unwrap();
        sock.write_all(&raw_v5_connect("delayed", Some((1, "lwt/delayed")), 5))
            .await
            .unwrap();
        let mut ack = [0u8; 3];
        sock.read_exact(&mut ack).await.unwrap();
        assert_eq!(ack[0], 0x20);
        // A subscription so that the session has a consumer group.
        let mut sub = bytes::BytesMut::new();
        rumqttc::v5::mqttbytes::v5::Subscribe::new(
            rumqttc::v5::mqttbytes::v5::Filter::new("x/y", QoS::AtLeastOnce),
            None,
        )
        .write(&mut sub)
        .unwrap();
        sock.write_all(&sub).await.unwrap();
        settle().await;
    } // dropped abruptly
    nothing(&mut rx, 600).await; // will delay 1 s
    let got = recv(&mut rx).await;
    assert_eq!(got.topic, Bytes::from_static(b"lwt/delayed"));
    // Session expiry 5 s: the session's group is gone a little after.
    assert!(s.broker.groups().get("mqtt-delayed").is_ok());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.broker.groups().get("mqtt-delayed").is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session did not expire"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A packet over the maximum packet size: DISCONNECT 0x95, then closed.
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    let mut bytes = raw_v5_connect("big", None, 0);
    bytes.extend_from_slice(&[0x30, 0x80, 0x10]); // remaining length 2048
    sock.write_all(&bytes).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), sock.read_to_end(&mut all))
        .await
        .expect("closed within 1 s")
        .unwrap();
    assert!(
        all.windows(2).any(|w| w[0] == 0xe0) && all.contains(&0x95),
        "{all:02x?}"
    );
    h.abort();
    s.stop().await;
}

#[tokio::test]
async fn incoming_topic_aliases_resolve_and_bad_ones_disconnect() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (w, mut rx, h) = client_v5(s.port, "alias-sub", |_| {}).await;
    w.subscribe("al/#", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    let mut bytes = raw_v5_connect("aliaser", None, 0);
    // PUBLISH QoS 1 "al/1", id 1, topic alias 1; then topic "" with alias 1, id 2.
    bytes.extend_from_slice(&[
        0x32, 13, 0, 4, b'a', b'l', b'/', b'1', 0, 1, 3, 0x23, 0, 1, b'a',
    ]);
    bytes.extend_from_slice(&[0x32, 9, 0, 0, 0, 2, 3, 0x23, 0, 1, b'b']);
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    sock.write_all(&bytes).await.unwrap();
    for body in [&b"a"[..], b"b"] {
        let got = recv(&mut rx).await;
        assert_eq!(got.topic, Bytes::from_static(b"al/1"));
        assert_eq!(&got.payload[..], body);
    }
    // An unknown alias with an empty topic is a protocol error.
    sock.write_all(&[0x32, 9, 0, 0, 0, 3, 3, 0x23, 0, 9, b'c'])
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), sock.read_to_end(&mut all))
        .await
        .expect("closed within 1 s")
        .unwrap();
    assert!(all.contains(&0x82), "{all:02x?}");
    h.abort();
    s.stop().await;
}

#[tokio::test]
async fn outgoing_topic_aliases_are_resolved_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    let (sub, mut rx, h) = client_v5(s.port, "alias-out", |o| {
        o.set_topic_alias_max(Some(2));
    })
    .await;
    sub.subscribe("ao/#", QoS::AtLeastOnce).await.unwrap();
    settle().await;
    let (p, _r, hp) = client_v5(s.port, "alias-pub", |_| {}).await;
    for t in ["ao/1", "ao/2", "ao/3", "ao/1", "ao/2", "ao/3"] {
        p.publish(t, QoS::AtLeastOnce, false, t.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let mut aliased = 0;
    for _ in 0..6 {
        let got = recv(&mut rx).await;
        assert_eq!(
            &got.topic[..],
            &got.payload[..],
            "topic restored from its alias"
        );
        aliased += usize::from(got.properties.and_then(|p| p.topic_alias).is_some());
    }
    assert_eq!(
        aliased, 4,
        "two aliases, each used twice; ao/3 never aliased"
    );
    h.abort();
    hp.abort();
    s.stop().await;
}
