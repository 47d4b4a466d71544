//! Revocation reaches open MQTT connections (`auth.enabled`): disabling a user closes its
//! connections (v5: DISCONNECT 0x87 "not authorized"; 3.1.1: the socket closes), its old
//! credentials are refused while it is disabled, and its persistent sessions resume — with
//! what arrived meanwhile — once it is enabled again; a revoked token closes the connection it
//! opened (over WebSocket here), without publishing its will.

use std::time::Duration;

use rocketgate_core::auth::{Action, Decision, PolicyEntry, UserKind, UserStatus, UserUpdate};
use rocketgate_core::{Broker, TopicConfig};
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, ConnectReturnCode, DisconnectReasonCode};
use rumqttc::v5::{self as r5, mqttbytes::QoS as Qos5};
use rumqttc::QoS;

use crate::support::*;

/// How long a revocation may take to reach a connection.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// `dev1` / `dev1-secret`, who may publish and subscribe on the topic `t` through any group.
fn with_dev1(broker: &Broker) {
    broker.topics().create(TopicConfig::new("t", 1)).unwrap();
    let auth = broker.auth();
    auth.create_user("dev1", "dev1-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy(
        "dev1",
        vec![PolicyEntry {
            resources: vec!["Topic:t".parse().unwrap(), "Group:*".parse().unwrap()],
            actions: vec![Action::Pub, Action::Sub],
            decision: Decision::Allow,
            sources: Vec::new(),
        }],
    )
    .unwrap();
}

fn set_status(broker: &Broker, status: UserStatus) {
    let change = UserUpdate {
        status: Some(status),
        ..UserUpdate::default()
    };
    broker.auth().update_user("dev1", change).unwrap();
}

/// A persistent v5 session `id` (clean start off, expiry 1 h) logged in as `dev1`.
fn v5_session(port: u16, id: &str) -> (r5::AsyncClient, r5::EventLoop) {
    let mut o = r5::MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials("dev1", "dev1-secret");
    o.set_clean_start(false);
    o.set_keep_alive(Duration::from_secs(30));
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(3600);
    o.set_connect_properties(props);
    r5::AsyncClient::new(o, 10)
}

type Polled = Result<r5::Event, r5::ConnectionError>;

/// Polls a v5 event loop until `pick` takes what it returned, within `within`.
async fn poll5<T>(
    el: &mut r5::EventLoop,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(Polled) -> Option<T>,
) -> T {
    tokio::time::timeout(within, async {
        loop {
            if let Some(v) = pick(el.poll().await) {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
}

fn incoming(e: Polled) -> Option<r5::mqttbytes::v5::Packet> {
    match e {
        Ok(r5::Event::Incoming(p)) => Some(p),
        Ok(_) => None,
        Err(e) => panic!("v5 client: {e}"),
    }
}

#[tokio::test]
async fn disabling_a_user_disconnects_it_and_its_sessions_resume_once_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_auth_broker(dir.path());
    with_dev1(&broker);
    let s = Server::with_broker(broker.clone(), MqttConfig::default()).await;
    let login = |o: &mut rumqttc::MqttOptions| {
        o.set_credentials("dev1", "dev1-secret");
    };

    // A v5 and a 3.1.1 persistent session, each subscribed to `t/#`.
    let (c5, mut el5) = v5_session(s.port, "v5-dev");
    let ack = poll5(&mut el5, WAIT, "CONNACK", |e| match incoming(e)? {
        r5::Incoming::ConnAck(a) => Some(a),
        _ => None,
    })
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    c5.subscribe("t/#", Qos5::AtLeastOnce).await.unwrap();
    poll5(&mut el5, WAIT, "SUBACK", |e| match incoming(e)? {
        r5::Incoming::SubAck(_) => Some(()),
        _ => None,
    })
    .await;
    let (c4, _rx4, h4) = client_v4(s.port, "v4-dev", false, login).await;
    c4.subscribed("t/#", QoS::AtLeastOnce).await;

    // Disabled: the v5 client is told "not authorized", the 3.1.1 one's socket closes.
    set_status(&broker, UserStatus::Disabled);
    let reason = poll5(&mut el5, CLOSE_WITHIN, "DISCONNECT", |e| match e {
        Err(r5::ConnectionError::MqttState(r5::StateError::ServerDisconnect {
            reason_code,
            ..
        })) => Some(reason_code),
        Err(e) => panic!("v5 client ended otherwise: {e}"),
        Ok(_) => None,
    })
    .await;
    assert_eq!(reason, DisconnectReasonCode::NotAuthorized);
    tokio::time::timeout(CLOSE_WITHIN, h4)
        .await
        .expect("the 3.1.1 connection is closed within 5 s")
        .unwrap();
    drop((c5, el5, c4));

    // The old credentials are refused while the user is disabled.
    assert_eq!(
        connack_v4(s.port, "v4-dev", Some(("dev1", "dev1-secret"))).await,
        4
    );
    let (_c5, mut el5) = v5_session(s.port, "v5-dev");
    let refused = poll5(&mut el5, WAIT, "a refusal", |e| match e {
        Err(r5::ConnectionError::ConnectionRefused(code)) => Some(code),
        other => panic!("expected a refused CONNECT: {other:?}"),
    })
    .await;
    assert_eq!(refused, ConnectReturnCode::BadUserNamePassword);

    // Meanwhile a message for both sessions.
    let (root, _r, hr) = client_v4(s.port, "pusher", true, |o| {
        o.set_credentials("root", "root-secret");
    })
    .await;
    root.published("t/x", QoS::AtLeastOnce, false, "while-disabled")
        .await;
    hr.abort();

    // Enabled again: both sessions are present and get what arrived meanwhile.
    set_status(&broker, UserStatus::Enabled);
    let (_c5, mut el5) = v5_session(s.port, "v5-dev");
    let ack = poll5(&mut el5, WAIT, "CONNACK", |e| match incoming(e)? {
        r5::Incoming::ConnAck(a) => Some(a),
        _ => None,
    })
    .await;
    assert!(ack.session_present, "v5 session resumed");
    let got = poll5(&mut el5, WAIT, "the offline message", |e| {
        match incoming(e)? {
            r5::Incoming::Publish(p) => Some(p.payload),
            _ => None,
        }
    })
    .await;
    assert_eq!(&got[..], b"while-disabled");
    let (c4, mut rx4, h4) = client_v4(s.port, "v4-dev", false, login).await;
    assert!(c4.connack.session_present, "3.1.1 session resumed");
    assert_eq!(&recv(&mut rx4).await.payload[..], b"while-disabled");
    h4.abort();
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_token_closes_its_connection_without_its_will() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_auth_broker(dir.path());
    with_dev1(&broker);
    let token = broker.auth().issue_token("dev1", None).unwrap();
    let s = Server::with_broker(broker.clone(), MqttConfig::default()).await;
    let (root, mut seen, hr) = client_v4(s.port, "watcher", true, |o| {
        o.set_credentials("root", "root-secret");
    })
    .await;
    root.subscribed("t/#", QoS::AtLeastOnce).await;

    // 3.1.1 over WebSocket, the token as the password, a will on `t/will`.
    let url = format!("ws://127.0.0.1:{}/mqtt", s.ws_port);
    let mut o = rumqttc::MqttOptions::new("tok-dev", url, s.ws_port);
    o.set_transport(rumqttc::Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials("", token.token.as_str());
    o.set_last_will(rumqttc::LastWill::new(
        "t/will",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
    let connected = tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => return a.code,
                Ok(_) => {}
                Err(e) => panic!("WebSocket connect: {e}"),
            }
        }
    })
    .await
    .expect("CONNACK within 10 s");
    assert_eq!(connected, rumqttc::ConnectReturnCode::Success);

    broker.auth().revoke_token(&token.info.id).unwrap();
    tokio::time::timeout(CLOSE_WITHIN, async { while el.poll().await.is_ok() {} })
        .await
        .expect("the connection is closed within 5 s");
    // No will: it would be published by an identity that no longer holds.
    nothing(&mut seen, 500).await;
    hr.abort();
    s.stop().await;
}
