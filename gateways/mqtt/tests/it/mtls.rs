//! Client certificates as MQTT logins (`auth.enabled`, MQTT over TLS and secure WebSocket with
//! `client_auth = optional`, a CA made here): a CONNECT without password over a connection
//! whose certificate verified is the user the certificate names — allowed what its policy
//! allows, refused the rest; no certificate and no password is refused; a password wins over
//! the certificate; a certificate of another CA fails the handshake.

use std::time::Duration;

use rocketgate_core::auth::{Action, Decision, PolicyEntry, UserKind};
use rocketgate_core::TopicConfig;
use rocketgate_gateway_kit::test_ca::{Issued, TestCa};
use rocketgate_gateway_kit::tls::{ClientAuth, TlsAcceptor, TlsSettings};
use rocketgate_gateway_kit::{ready, shutdown, Gateway};
use rocketgate_gateway_mqtt::{MqttConfig, MqttGateway};
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{self as r5, mqttbytes::QoS as Qos5};
use rumqttc::TlsConfiguration;

use crate::support::*;

fn acceptor(server: &Issued, ca: &TestCa, alpn: &[u8]) -> TlsAcceptor {
    TlsAcceptor::new(
        TlsSettings {
            cert: server.cert.clone(),
            key: server.key.clone(),
            client_ca: Some(ca.ca_pem.clone()),
            client_auth: ClientAuth::Optional,
            handshake_timeout: Duration::from_secs(5),
        },
        &[alpn],
    )
    .unwrap()
}

/// The client side: trusts `ca`, presents `identity` if given.
fn tls(ca: &TestCa, identity: Option<&Issued>) -> TlsConfiguration {
    TlsConfiguration::Simple {
        ca: std::fs::read(&ca.ca_pem).unwrap(),
        alpn: None,
        client_auth: identity.map(|i| {
            (
                std::fs::read(&i.cert).unwrap(),
                std::fs::read(&i.key).unwrap(),
            )
        }),
    }
}

type Polled = Result<r5::Event, r5::ConnectionError>;

/// Polls until `pick` takes what it returned, within [`WAIT`].
async fn poll5<T>(el: &mut r5::EventLoop, mut pick: impl FnMut(Polled) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(v) = pick(el.poll().await) {
                return v;
            }
        }
    })
    .await
    .expect("the awaited event within 10 s")
}

/// A v5 client over TLS to `port` with `tls` and `login`: connected, or how it was refused
/// (`Err(None)`: not even a CONNACK, the handshake failed).
async fn connect5(
    port: u16,
    id: &str,
    tls: TlsConfiguration,
    login: Option<(&str, &str)>,
) -> Result<(r5::AsyncClient, r5::EventLoop), Option<ConnectReturnCode>> {
    let mut o = r5::MqttOptions::new(id, "127.0.0.1", port);
    o.set_transport(rumqttc::Transport::tls_with_config(tls));
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    let (c, mut el) = r5::AsyncClient::new(o, 10);
    let code = poll5(&mut el, |e| match e {
        Ok(r5::Event::Incoming(r5::Incoming::ConnAck(a))) => Some(Ok(a.code)),
        Ok(_) => None,
        Err(r5::ConnectionError::ConnectionRefused(code)) => Some(Ok(code)),
        Err(_) => Some(Err(None)),
    })
    .await?;
    match code {
        ConnectReturnCode::Success => Ok((c, el)),
        refused => Err(Some(refused)),
    }
}

#[tokio::test]
async fn a_verified_client_certificate_is_the_login_of_a_connect_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server = ca.server("mqtt").unwrap();
    let app = ca.client("app", "app").unwrap();
    let stranger = TestCa::new(dir.path(), "stranger")
        .unwrap()
        .client("mallory", "app")
        .unwrap();
    let broker = open_auth_broker(&dir.path().join("data"));
    for t in ["allowed", "secret"] {
        broker.topics().create(TopicConfig::new(t, 1)).unwrap();
    }
    broker
        .auth()
        .create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    broker
        .auth()
        .set_policy(
            "app",
            vec![PolicyEntry {
                resources: vec!["Topic:allowed".parse().unwrap(), "Group:*".parse().unwrap()],
                actions: vec![Action::Pub, Action::Sub],
                decision: Decision::Allow,
                sources: Vec::new(),
            }],
        )
        .unwrap();
    let gateway = MqttGateway::new(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        MqttConfig::default(),
    )
    .with_tls(
        Some(acceptor(&server, &ca, b"mqtt")),
        Some(acceptor(&server, &ca, b"http/1.1")),
    );
    let bound = Box::new(gateway).bind().await.unwrap();
    let endpoints = bound.endpoints();
    let (port, ws_port) = (endpoints[0].address.port(), endpoints[1].address.port());
    let (trigger, stop) = shutdown::channel();
    let (accepting, accepted) = ready::channel();
    let serving = tokio::spawn(bound.serve(broker.clone(), stop, accepting));
    assert!(tokio::time::timeout(WAIT, accepted.wait()).await.unwrap());

    // The certificate of `app`, no username or password: `app`, allowed `allowed/…`.
    let (c, mut el) = connect5(port, "cert-app", tls(&ca, Some(&app)), None)
        .await
        .expect("the certificate logs in");
    c.subscribe("allowed/#", Qos5::AtLeastOnce).await.unwrap();
    poll5(&mut el, |e| match e {
        Ok(r5::Event::Incoming(r5::Incoming::SubAck(_))) => Some(()),
        Ok(_) => None,
        Err(e) => panic!("subscribe: {e}"),
    })
    .await;
    c.publish("allowed/x", Qos5::AtLeastOnce, false, "hi")
        .await
        .unwrap();
    let got = poll5(&mut el, |e| match e {
        Ok(r5::Event::Incoming(r5::Incoming::Publish(p))) => Some(p.payload),
        Ok(_) => None,
        Err(e) => panic!("publish: {e}"),
    })
    .await;
    assert_eq!(&got[..], b"hi");
    // ...and refused what its policy does not allow.
    c.publish("secret/x", Qos5::AtLeastOnce, false, "no")
        .await
        .unwrap();
    let refused = poll5(&mut el, |e| match e {
        Err(r5::ConnectionError::MqttState(r5::StateError::PubAckFail { reason })) => Some(reason),
        Err(e) => panic!("publish refused otherwise: {e}"),
        Ok(_) => None,
    })
    .await;
    assert_eq!(refused, PubAckReason::NotAuthorized);
    drop((c, el));
    let (c, mut el) = connect5(port, "cert-app", tls(&ca, Some(&app)), None)
        .await
        .unwrap();
    c.subscribe("secret/#", Qos5::AtLeastOnce).await.unwrap();
    let refused = poll5(&mut el, |e| match e {
        Err(r5::ConnectionError::MqttState(r5::StateError::SubFail { reason })) => Some(reason),
        Err(e) => panic!("subscribe refused otherwise: {e}"),
        Ok(_) => None,
    })
    .await;
    assert_eq!(refused, SubscribeReasonCode::NotAuthorized);
    drop((c, el));

    // The certificate's own name as the username, without password: the same login.
    assert!(
        connect5(port, "named", tls(&ca, Some(&app)), Some(("app", "")))
            .await
            .is_ok()
    );
    // No certificate and no password: not authorized.
    let r = connect5(port, "anon", tls(&ca, None), None).await.err();
    assert_eq!(r, Some(Some(ConnectReturnCode::NotAuthorized)));
    // A password wins over the certificate; another name needs its password.
    let r = connect5(
        port,
        "pw",
        tls(&ca, Some(&app)),
        Some(("app", "wrong-secret")),
    )
    .await
    .err();
    assert_eq!(r, Some(Some(ConnectReturnCode::BadUserNamePassword)));
    let r = connect5(port, "other", tls(&ca, Some(&app)), Some(("root", "")))
        .await
        .err();
    assert_eq!(r, Some(Some(ConnectReturnCode::BadUserNamePassword)));
    // The same name from another CA does not get through the handshake.
    let r = connect5(port, "mallory", tls(&ca, Some(&stranger)), None)
        .await
        .err();
    assert_eq!(r, Some(None), "a certificate of another CA is refused");

    // Secure WebSocket, 3.1.1: the certificate logs in there too.
    let url = format!("wss://127.0.0.1:{ws_port}/mqtt");
    let mut o = rumqttc::MqttOptions::new("wss-app", url, ws_port);
    o.set_transport(rumqttc::Transport::wss_with_config(tls(&ca, Some(&app))));
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    let connack = tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => return a.code,
                Ok(_) => {}
                Err(e) => panic!("wss connect: {e}"),
            }
        }
    })
    .await
    .expect("a CONNACK over wss within 10 s");
    assert_eq!(connack, rumqttc::ConnectReturnCode::Success);
    c.publish("allowed/y", rumqttc::QoS::AtLeastOnce, false, "over wss")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("wss publish: {e}"),
            }
        }
    })
    .await
    .expect("a PUBACK over wss within 10 s");
    drop((c, el));

    trigger.trigger();
    tokio::time::timeout(WAIT, serving)
        .await
        .expect("the gateway stops within 10 s")
        .unwrap()
        .unwrap();
    broker.shutdown().unwrap();
}
