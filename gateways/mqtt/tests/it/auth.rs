//! MQTT on the core's one identity model (`auth.enabled`): clients log in as the core's users
//! (access key / secret key, or a token as the password) over TCP and WebSocket, refused with
//! "not authorized" / "bad user name or password", never "server unavailable"; the gateway's
//! own `[mqtt.users]` are refused beside the core's authentication.

use std::time::Duration;

use rocketgate_core::auth::UserKind;
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as Code5;

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
