//! MQTT on the core's one identity model (`auth.enabled`): clients log in as the core's users
//! (access key / secret key, or a token as the password) over TCP and WebSocket, refused with
//! "not authorized" / "bad user name or password", never "server unavailable"; the gateway's
//! own `[mqtt.users]` are refused beside the core's authentication.

use std::time::Duration;

use rocketgate_core::auth::UserKind;
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::v5::mqttbytes::v5::LastWill as Will5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as Code5, Packet as Packet5, PubAckReason, SubscribeReasonCode as SubCode5,
};
use rumqttc::v5::mqttbytes::QoS as Qos5;
use tokio::sync::mpsc;

use crate::support::*;

/// The v5 CONNACK code a rumqttc v5 client of `id` with `login` gets.
async fn connack_v5(port: u16, id: &str, login: Option<(&str, &str)>) -> Code5 {
    let mut o = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", port);
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
    tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(a))) => {
                    return a.code
                }
                Ok(_) => {}
                Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => return code,
                Err(e) => panic!("v5 connect of {id}: {e}"),
            }
        }
    })
    .await
    .expect("a v5 CONNACK within 10 s")
}

/// The 3.1.1 CONNACK code a rumqttc client over WebSocket gets.
async fn connack_ws(ws_port: u16, id: &str, login: (&str, &str)) -> rumqttc::ConnectReturnCode {
    let url = format!("ws://127.0.0.1:{ws_port}/mqtt");
    let mut o = rumqttc::MqttOptions::new(id, url, ws_port);
    o.set_transport(rumqttc::Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(login.0, login.1);
    let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
    tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => return a.code,
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
                Err(e) => panic!("WebSocket connect of {id}: {e}"),
            }
        }
    })
    .await
    .expect("a CONNACK over WebSocket within 10 s")
}

#[tokio::test]
async fn clients_log_in_as_core_users_with_a_secret_or_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_auth_broker(dir.path());
    broker
        .auth()
        .create_user("dev1", "dev1-secret", UserKind::Normal)
        .unwrap();
    let token = broker.auth().issue_token("dev1", None).unwrap();
    let s = Server::with_broker(broker.clone(), MqttConfig::default()).await;
    // 3.1.1: no credentials → 5 (not authorized); wrong ones → 4; never 3 (unavailable).
    assert_eq!(connack_v4(s.port, "a", None).await, 5, "anonymous");
    assert_eq!(
        connack_v4(s.port, "a", Some(("dev1", "wrong-secret"))).await,
        4
    );
    assert_eq!(
        connack_v4(s.port, "a", Some(("ghost", "dev1-secret"))).await,
        4
    );
    assert_eq!(
        connack_v4(s.port, "a", Some(("dev1", "dev1-secret"))).await,
        0
    );
    // A token as the password, with the token user's access key (or no name) as the username.
    let tok = token.token.as_str();
    assert_eq!(connack_v4(s.port, "a", Some(("dev1", tok))).await, 0);
    assert_eq!(connack_v4(s.port, "a", Some(("", tok))).await, 0);
    assert_eq!(
        connack_v4(s.port, "a", Some(("root", tok))).await,
        4,
        "another name"
    );
    // v5: 0x87 / 0x86.
    assert_eq!(connack_v5(s.port, "b", None).await, Code5::NotAuthorized);
    assert_eq!(
        connack_v5(s.port, "b", Some(("dev1", "nope-nope"))).await,
        Code5::BadUserNamePassword
    );
    assert_eq!(
        connack_v5(s.port, "b", Some(("dev1", "dev1-secret"))).await,
        Code5::Success
    );
    assert_eq!(
        connack_v5(s.port, "b", Some(("dev1", tok))).await,
        Code5::Success
    );
    // WebSocket, the same users.
    assert_eq!(
        connack_ws(s.ws_port, "c", ("dev1", "wrong-secret")).await,
        rumqttc::ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(
        connack_ws(s.ws_port, "c", ("dev1", "dev1-secret")).await,
        rumqttc::ConnectReturnCode::Success
    );
    // A revoked token, a disabled user: refused like a wrong secret.
    broker.auth().revoke_token(&token.info.id).unwrap();
    assert_eq!(
        connack_v4(s.port, "a", Some(("dev1", tok))).await,
        4,
        "revoked"
    );
    broker
        .auth()
        .update_user(
            "dev1",
            rocketgate_core::auth::UserUpdate {
                status: Some(rocketgate_core::auth::UserStatus::Disabled),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        connack_v4(s.port, "a", Some(("dev1", "dev1-secret"))).await,
        4
    );
    s.stop().await;
}

#[tokio::test]
async fn the_gateway_s_own_users_are_refused_beside_the_core_s_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_auth_broker(dir.path());
    for config in [
        MqttConfig {
            users: [("dev".to_owned(), "secret".to_owned())].into(),
            ..MqttConfig::default()
        },
        MqttConfig {
            allow_anonymous: Some(true),
            ..MqttConfig::default()
        },
    ] {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = tokio::time::timeout(
            WAIT,
            rocketgate_gateway_mqtt::serve(Some(tcp), None, broker.clone(), config, async {}),
        )
        .await
        .expect("refused at once");
        let err = served.unwrap_err().to_string();
        assert!(err.contains("auth.enabled") && !err.contains('\n'), "{err}");
    }
}

/// A v5 client on a raw socket, with rumqttc's v5 codec: rumqttc's own v5 event loop ends at
/// a refused SUBACK or PUBACK, which is what these tests look at.
pub(crate) struct Raw5 {
    sock: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    pkid: u16,
}

impl Raw5 {
    async fn send(&mut self, p: Packet5) {
        use tokio::io::AsyncWriteExt;
        let mut b = bytes::BytesMut::new();
        p.write(&mut b).unwrap();
        self.sock.write_all(&b).await.unwrap();
    }

    /// The next packet, `None` when the server closed the connection; within [`WAIT`].
    async fn recv(&mut self) -> Option<Packet5> {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(WAIT, async {
            loop {
                match Packet5::read(&mut self.buf, None) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("undecodable packet from the server: {e:?}"),
                }
                if self.sock.read_buf(&mut self.buf).await.ok()? == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("a packet or a close within 10 s")
    }

    /// The next packet `pick` accepts (incoming QoS 1 publishes acknowledged on the way).
    async fn next<T>(&mut self, mut pick: impl FnMut(&Packet5) -> Option<T>) -> T {
        loop {
            let p = self.recv().await.expect("connection open");
            if let Packet5::Publish(m) = &p {
                if m.qos == Qos5::AtLeastOnce {
                    let ack = rumqttc::v5::mqttbytes::v5::PubAck::new(m.pkid, None);
                    self.send(Packet5::PubAck(ack)).await;
                }
            }
            if let Some(v) = pick(&p) {
                return v;
            }
        }
    }

    fn next_pkid(&mut self) -> u16 {
        self.pkid += 1;
        self.pkid
    }
}

/// A v5 client `id` logged in with `login` (and `will`), and its CONNACK code.
async fn v5_with(port: u16, id: &str, login: (&str, &str), will: Option<Will5>) -> (Raw5, Code5) {
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut c = Raw5 {
        sock,
        buf: bytes::BytesMut::new(),
        pkid: 0,
    };
    let connect = rumqttc::v5::mqttbytes::v5::Connect {
        keep_alive: 30,
        client_id: id.into(),
        clean_start: true,
        properties: None,
    };
    let login = rumqttc::v5::mqttbytes::v5::Login::new(login.0, login.1);
    c.send(Packet5::Connect(connect, will, Some(login))).await;
    let code = match c.recv().await {
        Some(Packet5::ConnAck(a)) => a.code,
        other => panic!("{id}: {other:?}"),
    };
    (c, code)
}

/// A v5 client `id` logged in with `login`, connected.
pub(crate) async fn v5(port: u16, id: &str, login: (&str, &str)) -> Raw5 {
    let (c, code) = v5_with(port, id, login, None).await;
    assert_eq!(code, Code5::Success, "{id} connects");
    c
}

pub(crate) async fn suback5(c: &mut Raw5, filter: &str) -> SubCode5 {
    let pkid = c.next_pkid();
    let mut s = rumqttc::v5::mqttbytes::v5::Subscribe::new(
        rumqttc::v5::mqttbytes::v5::Filter::new(filter, Qos5::AtLeastOnce),
        None,
    );
    s.pkid = pkid;
    c.send(Packet5::Subscribe(s)).await;
    c.next(|p| match p {
        Packet5::SubAck(a) if a.pkid == pkid => Some(a.return_codes[0]),
        _ => None,
    })
    .await
}

pub(crate) async fn puback5(c: &mut Raw5, topic: &str, retain: bool) -> PubAckReason {
    let pkid = c.next_pkid();
    let mut p = rumqttc::v5::mqttbytes::v5::Publish::new(topic, Qos5::AtLeastOnce, "x", None);
    p.pkid = pkid;
    p.retain = retain;
    c.send(Packet5::Publish(p)).await;
    c.next(|p| match p {
        Packet5::PubAck(a) if a.pkid == pkid => Some(a.reason),
        _ => None,
    })
    .await
}

/// The MQTT topic of the next message the client receives.
async fn message5(c: &mut Raw5) -> String {
    c.next(|p| match p {
        Packet5::Publish(m) => Some(String::from_utf8_lossy(&m.topic).into_owned()),
        _ => None,
    })
    .await
}

/// Fails if a message arrives within `ms` (the waiting is the point).
pub(crate) async fn no_message5(c: &mut Raw5, ms: u64) {
    let got = tokio::time::timeout(Duration::from_millis(ms), message5(c)).await;
    assert!(got.is_err(), "unexpected message {got:?}");
}

/// A 3.1.1 client (rumqttc), connected; its incoming packets arrive on the channel, which
/// closes when the server closes the connection.
struct Client4 {
    client: rumqttc::AsyncClient,
    rx: mpsc::UnboundedReceiver<rumqttc::Packet>,
    h: tokio::task::JoinHandle<()>,
}

impl Drop for Client4 {
    fn drop(&mut self) {
        self.h.abort();
    }
}

impl Client4 {
    async fn connect(port: u16, id: &str, login: (&str, &str)) -> Self {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        o.set_credentials(login.0, login.1);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut el) = rumqttc::AsyncClient::new(o, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let h = tokio::spawn(async move {
            while let Ok(e) = el.poll().await {
                if let rumqttc::Event::Incoming(p) = e {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
            }
        });
        let mut c = Self { client, rx, h };
        assert!(
            c.next(|p| matches!(p, rumqttc::Packet::ConnAck(_)).then_some(()))
                .await
                .is_some(),
            "{id} connects"
        );
        c
    }

    /// The next packet `pick` accepts, `None` when the connection closed; within [`WAIT`].
    async fn next<T>(&mut self, mut pick: impl FnMut(rumqttc::Packet) -> Option<T>) -> Option<T> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(v) = pick(self.rx.recv().await?) {
                    return Some(v);
                }
            }
        })
        .await
        .expect("a packet or a close within 10 s")
    }

    async fn suback(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        self.next(|p| match p {
            rumqttc::Packet::SubAck(a) => Some(a.return_codes),
            _ => None,
        })
        .await
        .expect("SUBACK")
    }

    /// Waits (bounded) for the server to close the connection.
    async fn closed(&mut self) {
        assert!(self.next(|_| None::<()>).await.is_none(), "closed");
    }
}

fn policy(broker: &rocketgate_core::Broker, user: &str, json: &str) {
    broker
        .auth()
        .create_user(user, &format!("{user}-secret"), UserKind::Normal)
        .unwrap();
    broker
        .auth()
        .set_policy(user, serde_json::from_str(json).unwrap())
        .unwrap();
}

#[tokio::test]
async fn publish_subscribe_and_the_will_are_authorized_by_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_auth_broker(dir.path());
    policy(
        &broker,
        "app",
        r#"[{"resources": ["Topic:allowed", "Group:mqtt-*"], "actions": ["Pub", "Sub"], "decision": "Allow"}]"#,
    );
    policy(
        &broker,
        "nogroup",
        r#"[{"resources": ["Topic:allowed"], "actions": ["Pub", "Sub"], "decision": "Allow"}]"#,
    );
    let s = Server::with_broker(broker.clone(), MqttConfig::default()).await;
    let app = ("app", "app-secret");
    // v5: SUBACK 0x87 per filter, PUBACK 0x87, nothing stored.
    let mut c = v5(s.port, "app5", app).await;
    let ok = SubCode5::Success(Qos5::AtLeastOnce);
    assert_eq!(suback5(&mut c, "allowed/#").await, ok);
    assert_eq!(suback5(&mut c, "other/#").await, SubCode5::NotAuthorized);
    assert_eq!(
        suback5(&mut c, "#").await,
        SubCode5::NotAuthorized,
        "every topic"
    );
    assert_eq!(
        puback5(&mut c, "other/x", false).await,
        PubAckReason::NotAuthorized
    );
    assert!(
        broker.topics().config("other").is_err(),
        "nothing was stored"
    );
    assert_eq!(
        puback5(&mut c, "allowed/x", false).await,
        PubAckReason::Success
    );
    assert_eq!(message5(&mut c).await, "allowed/x");
    // The group the subscription reads through needs Sub too.
    let mut ng = v5(s.port, "ng", ("nogroup", "nogroup-secret")).await;
    assert_eq!(suback5(&mut ng, "allowed/#").await, SubCode5::NotAuthorized);
    // 3.1.1: SUBACK 0x80; a refused PUBLISH (QoS 1, and QoS 0 too) closes the connection.
    let mut c4 = Client4::connect(s.port, "app4", app).await;
    assert_eq!(
        c4.suback("other/#").await,
        [rumqttc::SubscribeReasonCode::Failure]
    );
    c4.client
        .publish("other/x", rumqttc::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    c4.closed().await;
    let mut c4 = Client4::connect(s.port, "app4", app).await;
    c4.client
        .publish("other/x", rumqttc::QoS::AtMostOnce, false, "x")
        .await
        .unwrap();
    c4.closed().await;
    assert!(
        broker.topics().config("other").is_err(),
        "nothing was stored"
    );
    // A will the user may not publish: CONNACK 5 / 0x87; one it may: accepted.
    let will = |topic: &str| {
        let mut c = rumqttc::Connect::new("willing");
        c.set_login("app", "app-secret");
        c.last_will = Some(rumqttc::LastWill::new(
            topic,
            "bye",
            rumqttc::QoS::AtLeastOnce,
            false,
        ));
        c
    };
    assert_eq!(connack_raw(s.port, will("other/w")).await, 5);
    assert_eq!(connack_raw(s.port, will("allowed/w")).await, 0);
    let will5 = |topic: &str| Some(Will5::new(topic, "bye", Qos5::AtLeastOnce, false, None));
    let (_w, code) = v5_with(s.port, "willing5", app, will5("other/w")).await;
    assert_eq!(code, Code5::NotAuthorized);
    let (_w, code) = v5_with(s.port, "willing5", app, will5("allowed/w")).await;
    assert_eq!(code, Code5::Success);
    s.stop().await;
}

#[tokio::test]
async fn two_devices_cannot_read_or_write_each_other_s_subtree() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_auth_broker(dir.path());
    // One user for the whole fleet; `${clientid}` keeps each device in its own subtree.
    policy(
        &broker,
        "fleet",
        r#"[{"resources": ["MqttTopic:devices/${clientid}/#", "Group:mqtt-*"], "actions": ["Pub", "Sub"], "decision": "Allow"}]"#,
    );
    let s = Server::with_broker(broker.clone(), MqttConfig::default()).await;
    let fleet = ("fleet", "fleet-secret");
    let ok = SubCode5::Success(Qos5::AtLeastOnce);
    let mut d1 = v5(s.port, "d1", fleet).await;
    let mut d2 = v5(s.port, "d2", fleet).await;
    assert_eq!(suback5(&mut d1, "devices/d1/#").await, ok);
    assert_eq!(suback5(&mut d2, "devices/d2/#").await, ok);
    for f in ["devices/d2/#", "devices/+/cmd", "devices/#", "#"] {
        assert_eq!(suback5(&mut d1, f).await, SubCode5::NotAuthorized, "{f}");
    }
    assert_eq!(
        puback5(&mut d1, "devices/d2/cmd", false).await,
        PubAckReason::NotAuthorized
    );
    assert_eq!(
        puback5(&mut d1, "devices/d1/temp", false).await,
        PubAckReason::Success
    );
    assert_eq!(message5(&mut d1).await, "devices/d1/temp");
    assert_eq!(
        puback5(&mut d2, "devices/d2/temp", false).await,
        PubAckReason::Success
    );
    assert_eq!(message5(&mut d2).await, "devices/d2/temp");
    // What d2 published and received, d1 did not (both live in the RocketMQ topic `devices`).
    no_message5(&mut d1, 300).await;
    // 3.1.1 devices: SUBACK 0x80 for another device's subtree.
    let mut d3 = Client4::connect(s.port, "d3", fleet).await;
    assert_eq!(
        d3.suback("devices/d1/#").await,
        [rumqttc::SubscribeReasonCode::Failure]
    );
    assert_eq!(
        d3.suback("devices/d3/#").await,
        [rumqttc::SubscribeReasonCode::Success(
            rumqttc::QoS::AtLeastOnce
        )]
    );
    s.stop().await;
}

#[tokio::test]
async fn a_wildcard_subscription_reads_only_the_topics_it_may() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_auth_broker(dir.path());
    policy(
        &broker,
        "ops",
        r#"[{"resources": ["Topic:*", "Group:mqtt-*"], "actions": ["Sub"], "decision": "Allow"},
            {"resources": ["Topic:secret"], "actions": ["All"], "decision": "Deny"}]"#,
    );
    let s = Server::with_broker(broker.clone(), MqttConfig::default()).await;
    let mut root = v5(s.port, "root", ("root", "root-secret")).await;
    // A retained message in each topic, before the subscription.
    for t in ["secret/r", "public/r"] {
        assert_eq!(puback5(&mut root, t, true).await, PubAckReason::Success);
    }
    let mut ops = v5(s.port, "ops", ("ops", "ops-secret")).await;
    let ok = SubCode5::Success(Qos5::AtLeastOnce);
    assert_eq!(suback5(&mut ops, "#").await, ok);
    assert_eq!(
        message5(&mut ops).await,
        "public/r",
        "the retained message it may read"
    );
    assert_eq!(suback5(&mut ops, "secret/#").await, SubCode5::NotAuthorized);
    for t in ["secret/x", "public/x"] {
        assert_eq!(puback5(&mut root, t, false).await, PubAckReason::Success);
    }
    assert_eq!(message5(&mut ops).await, "public/x");
    no_message5(&mut ops, 300).await;
    s.stop().await;
}
