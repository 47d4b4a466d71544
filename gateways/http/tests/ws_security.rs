//! WebSocket security: with `auth.enabled` the upgrade needs credentials (a header, or
//! `?access_token=` as browsers send them) and every subscribe / publish / ack frame is asked
//! of the core, refused with an error frame on a connection that stays open; a cross-site
//! upgrade is refused by default; a client that never reads is disconnected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{start_secured, start_with, Server, ADMIN, APP, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/ws?query` with these extra headers; the refusal's status when refused.
async fn open(s: &Server, query: &str, headers: &[(&'static str, String)]) -> Result<Ws, u16> {
    let mut req = format!("ws://{}/v1/ws{query}", s.addr)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("the upgrade is answered in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

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

fn basic((ak, sk): (&str, &str)) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ak}:{sk}"))
    )
}

#[tokio::test]
async fn the_upgrade_needs_credentials_and_every_frame_is_authorized() {
    let s = start_secured(|_, _| {}).await;
    for t in ["orders", "secret"] {
        s.broker
            .topics()
            .create(rocketgate_core::TopicConfig::new(t, 1))
            .unwrap();
    }
    let entries = serde_json::from_value(json!([
        {"resources": ["Topic:orders", "Group:billing"], "actions": ["Pub", "Sub"], "decision": "Allow"}
    ]))
    .unwrap();
    s.broker.auth().set_policy(APP.0, entries).unwrap();
    let token = s.broker.auth().issue_token(APP.0, None).unwrap().token;

    // Refused before the upgrade: nothing, a bad token, a wrong secret.
    assert_eq!(open(&s, "", &[]).await.err(), Some(401));
    assert_eq!(
        open(&s, "?access_token=rgt_nope", &[]).await.err(),
        Some(401)
    );
    let wrong = basic((APP.0, "not-the-secret"));
    assert_eq!(
        open(&s, "", &[("authorization", wrong)]).await.err(),
        Some(401)
    );
    // Accepted: a bearer header, Basic, or the query parameter browsers can send.
    let bearer = format!("Bearer {token}");
    open(&s, "", &[("authorization", bearer)]).await.unwrap();
    open(&s, "", &[("authorization", basic(ADMIN))])
        .await
        .unwrap();
    let mut ws = open(&s, &format!("?access_token={token}"), &[])
        .await
        .unwrap();

    // Frames: refused ones answer error frames, the connection stays.
    send(&mut ws, json!({"type": "subscribe", "subscription": "a", "group": "billing", "topic": "secret", "credits": 4})).await;
    let f = next(&mut ws).await;
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{f}"
    );
    send(&mut ws, json!({"type": "subscribe", "subscription": "b", "group": "other", "topic": "orders", "credits": 4})).await;
    let f = next(&mut ws).await;
    assert_eq!(f["code"], "forbidden", "{f}");
    send(
        &mut ws,
        json!({"type": "publish", "request_id": "p1", "topic": "secret", "message": {"body": "x"}}),
    )
    .await;
    let f = next(&mut ws).await;
    assert_eq!(
        (f["code"].as_str(), f["request_id"].as_str()),
        (Some("forbidden"), Some("p1")),
        "{f}"
    );
    // The group does not exist yet: creating it on first use needs `Create` on it.
    let subscribe = json!({"type": "subscribe", "subscription": "ok", "group": "billing", "topic": "orders", "credits": 4});
    send(&mut ws, subscribe.clone()).await;
    let f = next(&mut ws).await;
    assert_eq!(
        (f["code"].as_str(), f["subscription"].as_str()),
        (Some("forbidden"), Some("ok")),
        "{f}"
    );
    assert!(s.broker.groups().get("billing").is_err());
    let entries = serde_json::from_value(json!([
        {"resources": ["Topic:orders", "Group:billing"], "actions": ["Pub", "Sub"], "decision": "Allow"},
        {"resources": ["Group:billing"], "actions": ["Create"], "decision": "Allow"}
    ]))
    .unwrap();
    s.broker.auth().set_policy(APP.0, entries).unwrap();
    send(&mut ws, subscribe).await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    send(&mut ws, json!({"type": "publish", "request_id": "p2", "topic": "orders", "message": {"body": "hello"}})).await;
    let mut acked = false;
    while !acked {
        let f = next(&mut ws).await;
        match f["type"].as_str() {
            Some("reply") if f["request_id"] == "p2" => {}
            Some("message") => {
                let handle = f["receipt_handle"].as_str().unwrap();
                send(&mut ws, json!({"type": "ack", "request_id": "a1", "subscription": "ok", "receipt_handle": handle})).await;
            }
            Some("reply") if f["request_id"] == "a1" => acked = true,
            _ => panic!("unexpected {f}"),
        }
    }
    // A handle of a topic the user may not read is refused on its subscription.
    let mut admin = open(&s, "", &[("authorization", basic(ADMIN))])
        .await
        .unwrap();
    send(
        &mut admin,
        json!({"type": "publish", "request_id": "p", "topic": "secret", "message": {"body": "s"}}),
    )
    .await;
    assert_eq!(next(&mut admin).await["type"], "reply");
    send(&mut admin, json!({"type": "subscribe", "subscription": "s", "group": "billing", "topic": "secret", "credits": 1})).await;
    assert_eq!(next(&mut admin).await["type"], "subscribed");
    let m = next(&mut admin).await;
    let handle = m["receipt_handle"].as_str().unwrap();
    send(
        &mut ws,
        json!({"type": "ack", "request_id": "a2", "subscription": "ok", "receipt_handle": handle}),
    )
    .await;
    let f = next(&mut ws).await;
    assert_eq!(
        (f["code"].as_str(), f["request_id"].as_str()),
        (Some("forbidden"), Some("a2")),
        "{f}"
    );
    // A policy taken away ends a live subscription at its next delivery.
    s.broker.auth().set_policy(APP.0, Vec::new()).unwrap();
    let m = rocketgate_core::Message::new("orders", b"after".to_vec());
    s.broker.producer().send(m.into()).await.unwrap();
    let f = next(&mut ws).await;
    assert_eq!(
        (
            f["type"].as_str(),
            f["subscription"].as_str(),
            f["code"].as_str()
        ),
        (Some("error"), Some("ok"), Some("forbidden")),
        "{f}"
    );
    s.stop().await;
}

#[tokio::test]
async fn with_auth_off_the_upgrade_needs_nothing() {
    let s = start_with(|_, _| {}).await;
    let mut ws = open(&s, "", &[]).await.unwrap();
    send(
        &mut ws,
        json!({"type": "publish", "request_id": "p", "topic": "nope", "message": {"body": "x"}}),
    )
    .await;
    let f = next(&mut ws).await;
    assert_eq!(f["code"], "topic_not_found", "{f}");
    s.stop().await;
}

/// The value of a counter series in `/metrics`, 0 when absent.
async fn counter(s: &Server, series: &str) -> f64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_with_bounded_memory() {
    let s = start_with(|_, h| {
        h.ws_outbound_bytes = 256 << 10;
        h.ws_write_timeout_ms = 500;
        // Pings must not be what ends the connection: only the stuck writes may.
        h.ws_ping_interval_ms = 20_000;
        h.idle_timeout_ms = 60_000;
    })
    .await;
    s.broker
        .topics()
        .create(rocketgate_core::TopicConfig::new("flood", 1))
        .unwrap();
    let series = "rocketgate_ws_closed_total{code=\"write_timeout\"}";
    let before = counter(&s, series).await;
    // A client with a small receive buffer that subscribes and then never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    let req = format!("ws://{}/v1/ws", s.addr)
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream))
        .await
        .unwrap()
        .unwrap();
    let subscribe = json!({"type": "subscribe", "subscription": "s", "group": "g", "topic": "flood", "credits": 1000});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    let body = "x".repeat(32 << 10);
    for _ in 0..400 {
        let m = rocketgate_core::Message::new("flood", body.clone().into_bytes());
        s.broker.producer().send(m.into()).await.unwrap();
    }
    // The server gives up on the stuck writes (the event, with a deadline)...
    common::eventually(|| async { (counter(&s, series).await > before).then_some(()) }).await;
    // ...and closes the connection: reading now reaches its end, not an endless stream.
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(f) = ws.next().await {
            if f.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server closed the connection");
    s.stop().await;
}
