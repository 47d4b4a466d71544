use std::time::Duration;

use bytes::Bytes;
use rocketgate_gateway_mqtt::MqttConfig;
use std::future::Future;

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, Packet, PubAckReason, Publish, PublishProperties,
    SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ClientError, Event, MqttOptions};
use tokio::sync::{mpsc, oneshot};

use crate::support::*;

/// A v5 client (rumqttc) whose event loop runs in a task of its own; dereferences to the
/// `AsyncClient`. Incoming publishes go to the receiver [`client_v5`] returns; SUBACK and
/// PUBACK to `acks`, so that a test waits for the acknowledgement it is about.
struct Client5 {
    client: AsyncClient,
    /// The CONNACK of the connection.
    connack: ConnAck,
    acks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Packet>>,
}

impl std::ops::Deref for Client5 {
    type Target = AsyncClient;

    fn deref(&self) -> &AsyncClient {
        &self.client
    }
}

impl Client5 {
    /// Sends a SUBSCRIBE (`request`, one of the client's subscribe calls) and waits for its
    /// SUBACK, which must grant every filter: the subscriptions then read every later publish.
    async fn suback(&self, request: impl Future<Output = Result<(), ClientError>>) {
        let mut acks = self.acks.lock().await;
        while acks.try_recv().is_ok() {}
        request.await.unwrap();
        let codes = next_ack(&mut acks, "SUBACK", |p| match p {
            Packet::SubAck(a) => Some(a.return_codes),
            _ => None,
        })
        .await;
        assert!(
            codes
                .iter()
                .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
            "{codes:?}"
        );
    }

    /// Sends a QoS 1 PUBLISH (`request`, one of the client's publish calls) and returns the
    /// reason of its PUBACK. (Matches the next PUBACK: use it for every QoS 1 publish of the
    /// client.)
    async fn puback(&self, request: impl Future<Output = Result<(), ClientError>>) -> PubAckReason {
        let mut acks = self.acks.lock().await;
        while acks.try_recv().is_ok() {}
        request.await.unwrap();
        next_ack(&mut acks, "PUBACK", |p| match p {
            Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await
    }
}

/// The next acknowledgement `pick` accepts, within [`WAIT`].
async fn next_ack<T>(
    acks: &mut mpsc::UnboundedReceiver<Packet>,
    what: &str,
    mut pick: impl FnMut(Packet) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let p = acks.recv().await.expect("client event loop running");
            if let Some(v) = pick(p) {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

async fn client_v5(
    port: u16,
    id: &str,
    tweak: impl FnOnce(&mut MqttOptions),
) -> (
    Client5,
    mpsc::UnboundedReceiver<Publish>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    tweak(&mut o);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut ready = Some(ready_tx);
    let h = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(a);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(Event::Incoming(p @ (Packet::SubAck(_) | Packet::PubAck(_)))) => {
                    let _ = acks_tx.send(p);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let connack = tokio::time::timeout(WAIT, ready_rx)
        .await
        .expect("CONNACK within 10 s")
        .unwrap();
    let client = Client5 {
        client,
        connack,
        acks: tokio::sync::Mutex::new(acks),
    };
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
    sub.suback(sub.subscribe_with_properties("req/#", QoS::AtLeastOnce, props))
        .await;
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
    let reason = p
        .puback(p.publish_with_properties("req/a", QoS::AtLeastOnce, false, "hi", props))
        .await;
    assert_eq!(reason, PubAckReason::Success);
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
    sub.suback(sub.subscribe("rm/#", QoS::AtLeastOnce)).await;
    let (p, _r, hp) = client_v5(s.port, "rmp", |_| {}).await;
    for i in 0..3 {
        p.publish(format!("rm/{i}"), QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    let first = recv(&mut rx).await;
    // A window of one, unacknowledged: nothing more (waiting is the point).
    nothing(&mut rx, 700).await;
    sub.ack(&first).await.unwrap();
    let second = recv(&mut rx).await;
    assert_ne!(first.topic, second.topic);
    nothing(&mut rx, 300).await; // again a window of one
    sub.ack(&second).await.unwrap();
    let third = recv(&mut rx).await;
    let mut topics = [&first.topic, &second.topic, &third.topic].map(|t| t.to_vec());
    topics.sort();
    assert_eq!(topics, [&b"rm/0"[..], b"rm/1", b"rm/2"].map(<[u8]>::to_vec));
    h.abort();
    hp.abort();
    s.stop().await;
}

#[tokio::test]
async fn no_local_and_assigned_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    // An empty client id: the CONNACK assigns one, and the session lives under it.
    let (c, mut rx, h) = client_v5(s.port, "", |_| {}).await;
    assert_eq!(c.connack.code, ConnectReturnCode::Success);
    let assigned = c
        .connack
        .properties
        .as_ref()
        .and_then(|p| p.assigned_client_identifier.clone())
        .expect("the CONNACK carries the assigned client identifier");
    assert!(!assigned.is_empty());
    let f = rumqttc::v5::mqttbytes::v5::Filter {
        path: "chat/#".into(),
        qos: QoS::AtLeastOnce,
        nolocal: true,
        preserve_retain: false,
        retain_forward_rule: rumqttc::v5::mqttbytes::v5::RetainForwardRule::OnEverySubscribe,
    };
    c.suback(c.subscribe_many(vec![f])).await;
    let group = rocketgate_gateway_mqtt::topic::session_group(&assigned);
    assert!(
        s.broker.groups().get(&group).is_ok(),
        "the subscription reads with the group of the assigned id, {group}"
    );
    // A second client gets another id.
    let (other, _orx, ho) = client_v5(s.port, "", |_| {}).await;
    let other_id = other
        .connack
        .properties
        .as_ref()
        .and_then(|p| p.assigned_client_identifier.clone());
    assert!(
        other_id.as_ref().is_some_and(|o| *o != assigned),
        "{other_id:?} vs {assigned}"
    );
    // No local: its own publish is stored (acknowledged) but not sent back to it; one of
    // another client on the same topic, stored after it in the same queue, is.
    let reason = c
        .puback(c.publish("chat/room", QoS::AtLeastOnce, false, "mine"))
        .await;
    assert_eq!(reason, PubAckReason::Success);
    let (p, _r, hp) = client_v5(s.port, "other", |_| {}).await;
    let reason = p
        .puback(p.publish("chat/room", QoS::AtLeastOnce, false, "theirs"))
        .await;
    assert_eq!(reason, PubAckReason::Success);
    assert_eq!(&recv(&mut rx).await.payload[..], b"theirs");
    h.abort();
    ho.abort();
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
    w.suback(w.subscribe("lwt/#", QoS::AtLeastOnce)).await;
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    sock.write_all(&raw_v5_connect("delayed", Some((1, "lwt/delayed")), 5))
        .await
        .unwrap();
    let (first, body) = read_packet(&mut sock).await.expect("a CONNACK");
    assert_eq!((first, body[1]), (0x20, 0), "CONNACK success: {body:02x?}");
    // A subscription so that the session has a consumer group.
    let mut sub = bytes::BytesMut::new();
    rumqttc::v5::mqttbytes::v5::Subscribe::new(
        rumqttc::v5::mqttbytes::v5::Filter::new("x/y", QoS::AtLeastOnce),
        None,
    )
    .write(&mut sub)
    .unwrap();
    sock.write_all(&sub).await.unwrap();
    let (first, body) = read_packet(&mut sock).await.expect("a SUBACK");
    assert_eq!(first, 0x90, "{body:02x?}");
    assert_eq!(body.last(), Some(&1), "QoS 1 granted: {body:02x?}");
    assert!(s.broker.groups().get("mqtt-delayed").is_ok());
    let dropped = std::time::Instant::now();
    drop(sock); // abruptly
                // The will goes out after its delay of 1 s, not before.
    let got = recv(&mut rx).await;
    assert_eq!(got.topic, Bytes::from_static(b"lwt/delayed"));
    let will_after = dropped.elapsed();
    assert!(will_after >= Duration::from_millis(950), "{will_after:?}");
    // Session expiry 5 s: the session's group is gone after it, not before (the deadline is
    // generous: 30 s).
    eventually_within(Duration::from_secs(30), "the session to expire", || async {
        s.broker.groups().get("mqtt-delayed").is_err().then_some(())
    })
    .await;
    let expired_after = dropped.elapsed();
    assert!(
        expired_after >= Duration::from_millis(4_950),
        "{expired_after:?}"
    );
    // A packet over the maximum packet size: DISCONNECT 0x95, then closed.
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    let mut bytes = raw_v5_connect("big", None, 0);
    bytes.extend_from_slice(&[0x30, 0x80, 0x10]); // remaining length 2048
    sock.write_all(&bytes).await.unwrap();
    let mut all = Vec::new();
    // (Closed at once; the bound is generous.)
    tokio::time::timeout(WAIT, sock.read_to_end(&mut all))
        .await
        .expect("closed")
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
    w.suback(w.subscribe("al/#", QoS::AtLeastOnce)).await;
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
    // (Closed at once; the bound is generous.)
    tokio::time::timeout(WAIT, sock.read_to_end(&mut all))
        .await
        .expect("closed")
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
    sub.suback(sub.subscribe("ao/#", QoS::AtLeastOnce)).await;
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

/// An MQTT publish is a NORMAL message: a topic of another type (FIFO, DELAY, TRANSACTION)
/// refuses it with 0x90 and retains nothing; a MIXED topic takes it. (Raw v5 packets: rumqttc
/// ends its event loop on a negative PUBACK.)
#[tokio::test]
async fn a_typed_topic_refuses_plain_publishes_with_0x90() {
    use crate::auth::{no_message5, puback5, suback5, v5};
    use rocketgate_core::{MessageType, TopicConfig};
    let dir = tempfile::tempdir().unwrap();
    // The raw client logs in: the super user of an authenticating broker.
    let s = Server::with_broker(open_auth_broker(dir.path()), MqttConfig::default()).await;
    for (name, t) in [
        ("orders", MessageType::Fifo),
        ("later", MessageType::Delay),
        ("any", MessageType::Mixed),
    ] {
        s.broker
            .topics()
            .create(TopicConfig::new(name, 1).with_type(t))
            .unwrap();
    }
    let mut c = v5(s.port, "typed", ("root", "root-secret")).await;
    for topic in ["orders/1", "later/x"] {
        assert_eq!(
            puback5(&mut c, topic, true).await,
            PubAckReason::TopicNameInvalid,
            "{topic}"
        );
    }
    assert_eq!(puback5(&mut c, "any/1", false).await, PubAckReason::Success);
    // Nothing was retained for the refused publishes: a new subscription gets none.
    let mut sub = v5(s.port, "typed-sub", ("root", "root-secret")).await;
    assert!(matches!(
        suback5(&mut sub, "orders/#").await,
        SubscribeReasonCode::Success(_)
    ));
    no_message5(&mut sub, 300).await;
    s.stop().await;
}
