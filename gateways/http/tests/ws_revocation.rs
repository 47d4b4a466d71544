//! Revocation reaches open WebSockets (`/v1/ws`, `auth.enabled`): a socket opened with a token
//! is closed when the token is revoked (through the REST admin API) or expires, one opened
//! with Basic credentials when its user is disabled — each with an `error` frame saying why
//! and close code 1008 — while the other sockets stay open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{start_secured, Server, ADMIN, APP, WAIT};
use futures_util::{SinkExt, StreamExt};
use rocketgate_core::auth::{UserStatus, UserUpdate};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a revocation may take to reach a socket.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

async fn open(s: &Server, query: &str, authorization: Option<String>) -> Ws {
    let mut req = format!("ws://{}/v1/ws{query}", s.addr)
        .into_client_request()
        .unwrap();
    if let Some(a) = authorization {
        req.headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("the upgrade is answered in time")
        .unwrap();
    ws
}

fn basic((ak, sk): (&str, &str)) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ak}:{sk}"))
    )
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next text frame within [`WAIT`].
async fn next(ws: &mut Ws) -> Value {
    loop {
        let f = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        match f {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The frames up to the close, within [`CLOSE_WITHIN`]: the text frames, the close code and
/// its reason.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, u16, String) {
    let mut texts = Vec::new();
    tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => texts.push(serde_json::from_str(t.as_str()).unwrap()),
                Some(Ok(Message::Close(Some(c)))) => {
                    return (texts, u16::from(c.code), c.reason.to_string())
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    panic!("closed without a close code after {texts:?}")
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the socket is closed within 5 s")
}

/// Asserts the socket is closed because its credentials stopped being valid, for `why`.
async fn assert_revoked(ws: &mut Ws, why: &str) {
    let (texts, code, reason) = until_closed(ws).await;
    assert_eq!(code, 1008, "policy violation: {reason}");
    assert_eq!(reason, why);
    let last = texts.last().expect("an error frame before the close");
    assert_eq!(
        (
            last["type"].as_str(),
            last["code"].as_str(),
            last["detail"].as_str()
        ),
        (Some("error"), Some("unauthenticated"), Some(why)),
        "{last}"
    );
}

/// A server where `app` may publish and consume `orders` as `billing` (and create the group).
async fn server() -> Server {
    let s = start_secured(|_, _| {}).await;
    s.broker
        .topics()
        .create(rocketgate_core::TopicConfig::new("orders", 1))
        .unwrap();
    let entries = serde_json::from_value(json!([
        {"resources": ["Topic:orders", "Group:billing"], "actions": ["Pub", "Sub", "Create"], "decision": "Allow"}
    ]))
    .unwrap();
    s.broker.auth().set_policy(APP.0, entries).unwrap();
    s
}

#[tokio::test]
async fn revoking_the_token_or_disabling_the_user_closes_their_sockets() {
    let s = server().await;
    let issued = s.broker.auth().issue_token(APP.0, None).unwrap();
    let mut by_token = open(&s, &format!("?access_token={}", issued.token), None).await;
    let mut by_secret = open(&s, "", Some(basic(APP))).await;
    let mut admin = open(&s, "", Some(basic(ADMIN))).await;
    send(&mut by_token, json!({"type": "subscribe", "subscription": "s", "group": "billing", "topic": "orders", "credits": 4})).await;
    assert_eq!(next(&mut by_token).await["type"], "subscribed");

    // The token revoked by an administrator over REST: its socket is closed, with why.
    let r = s
        .http
        .delete(s.url(&format!("/v1/auth/tokens/{}", issued.info.id)))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_revoked(&mut by_token, "credentials revoked").await;

    // The socket of the same user's secret stays and works.
    let publish =
        json!({"type": "publish", "request_id": "p", "topic": "orders", "message": {"body": "x"}});
    send(&mut by_secret, publish.clone()).await;
    assert_eq!(next(&mut by_secret).await["type"], "reply");

    // The user disabled: its other socket is closed; the administrator's stays.
    s.broker
        .auth()
        .update_user(
            APP.0,
            UserUpdate {
                status: Some(UserStatus::Disabled),
                ..UserUpdate::default()
            },
        )
        .unwrap();
    assert_revoked(&mut by_secret, "user disabled").await;
    send(&mut admin, publish).await;
    assert_eq!(next(&mut admin).await["type"], "reply");
    s.stop().await;
}

#[tokio::test]
async fn a_short_lived_token_closes_its_socket_at_its_expiry() {
    let s = server().await;
    let issued = s
        .broker
        .auth()
        .issue_token(APP.0, Some(Duration::from_secs(2)))
        .unwrap();
    let mut ws = open(&s, &format!("?access_token={}", issued.token), None).await;
    send(
        &mut ws,
        json!({"type": "publish", "request_id": "p", "topic": "orders", "message": {"body": "x"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "reply");
    assert_revoked(&mut ws, "credentials expired").await;
    // Not before its time, by the broker's clock.
    assert!(s.broker.now_ms() >= issued.info.expires_ms);
    s.stop().await;
}
