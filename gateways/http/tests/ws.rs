//! WebSocket end to end with a Rust client (tokio-tungstenite) against the real gateway:
//! subscribe / ack / nack / publish, cross-protocol delivery (REST ↔ WebSocket ↔ core API),
//! credit-based flow control under 100,000 published messages (with RSS reported), bad frames
//! closing with the right code while other connections keep working, origin checks, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{start, start_with, Server, WAIT};
use futures_util::{SinkExt, StreamExt};
use rocketgate_core::{Message as CoreMessage, PopRequest};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &Server) -> Ws {
    let url = format!("ws://{}/v1/ws", s.addr);
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next JSON frame within `wait` (None on timeout); pings are skipped.
async fn next_within(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let f = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match f.unwrap() {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn next(ws: &mut Ws) -> Value {
    next_within(ws, WAIT).await.expect("a frame in time")
}

/// Reads until the close frame; returns its code and reason.
async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        let f = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame or the close within 10 s");
        match f {
            Some(Ok(Message::Close(Some(c)))) => return (u16::from(c.code), c.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => return (0, String::new()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("read error before close: {e}"),
        }
    }
}

async fn topic(s: &Server, name: &str) {
    let (st, v) = s
        .post("/v1/topics", json!({"name": name, "queue_count": 2}))
        .await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn subscribe_ack_nack_publish_and_cross_protocol() {
    let s = start().await;
    topic(&s, "live").await;
    let mut ws = connect(&s).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": "s1", "group": "wsg", "topic": "live",
               "filter": "*", "credits": 10, "invisible_ms": 2000, "request_id": "r0"}),
    )
    .await;
    let v = next(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["subscription"].as_str()),
        (Some("subscribed"), Some("s1"))
    );

    // REST → WebSocket.
    let (st, p) = s
        .post("/v1/topics/live/messages", json!({"body": "from-rest"}))
        .await;
    assert_eq!(st, 200);
    let m = next(&mut ws).await;
    assert_eq!(m["type"], "message");
    assert_eq!(m["body"], "from-rest");
    assert_eq!(m["message_id"], p["message_id"]);
    send(
        &mut ws,
        json!({"type": "ack", "subscription": "s1", "receipt_handle": m["receipt_handle"], "request_id": "r1"}),
    )
    .await;
    let v = next(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["request_id"].as_str()),
        (Some("reply"), Some("r1")),
        "{v}"
    );

    // Nack → redelivered with attempt 2.
    s.post("/v1/topics/live/messages", json!({"body": "again"}))
        .await;
    let m = next(&mut ws).await;
    assert_eq!(m["body"], "again");
    send(
        &mut ws,
        json!({"type": "nack", "subscription": "s1", "receipt_handle": m["receipt_handle"], "delay_ms": 0, "request_id": "r2"}),
    )
    .await;
    let mut redelivered = None;
    for _ in 0..3 {
        let v = next(&mut ws).await;
        if v["type"] == "message" {
            redelivered = Some(v);
            break;
        }
        assert_eq!(v["request_id"], "r2", "{v}");
    }
    let m = redelivered.unwrap();
    assert_eq!(
        (m["body"].as_str(), m["attempt"].as_u64()),
        (Some("again"), Some(2))
    );
    send(
        &mut ws,
        json!({"type": "ack", "subscription": "s1", "receipt_handle": m["receipt_handle"]}),
    )
    .await;

    // Errors of valid commands answer error frames and keep the connection.
    send(&mut ws, json!({"type": "ack", "subscription": "s1", "receipt_handle": "forged", "request_id": "r3"})).await;
    let v = next(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("invalid_receipt_handle"))
    );
    send(
        &mut ws,
        json!({"type": "credit", "subscription": "nope", "credits": 1, "request_id": "r4"}),
    )
    .await;
    let v = next(&mut ws).await;
    assert_eq!(v["code"], "unknown_subscription");
    send(&mut ws, json!({"type": "subscribe", "subscription": "s2", "group": "wsg", "topic": "missing", "credits": 1})).await;
    let v = next(&mut ws).await;
    assert_eq!(v["code"], "topic_not_found");

    // WebSocket publish → a reply, then REST receive and the core API see it.
    send(
        &mut ws,
        json!({"type": "publish", "request_id": "p1", "topic": "live", "message": {"body": "from-ws", "tag": "W"}}),
    )
    .await;
    let mut reply = None;
    let mut echoed = false;
    for _ in 0..3 {
        let v = next(&mut ws).await;
        if v["type"] == "reply" {
            reply = Some(v);
        } else if v["type"] == "message" {
            // Our own subscription gets it too; release it for the others.
            assert_eq!(v["body"], "from-ws");
            echoed = true;
            send(
                &mut ws,
                json!({"type": "ack", "subscription": "s1", "receipt_handle": v["receipt_handle"]}),
            )
            .await;
        }
        if reply.is_some() && echoed {
            break;
        }
    }
    let reply = reply.unwrap();
    let id = reply["result"]["message_id"].as_str().unwrap().to_owned();
    let (st, r) = s
        .post(
            "/v1/groups/rest-g/receive",
            json!({"topic": "live", "max": 8, "wait_ms": 1000}),
        )
        .await;
    assert_eq!(st, 200);
    assert!(
        r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["message_id"] == id.as_str()),
        "{r}"
    );
    let popped = s
        .broker
        .consumer()
        .pop(PopRequest {
            group: "core-g".into(),
            topic: "live".into(),
            filter: None,
            max: 8,
            invisible: Duration::from_secs(5),
            wait: Duration::from_millis(500),
        })
        .await
        .unwrap();
    assert!(
        popped.iter().any(|p| p.message.message_id == id),
        "WebSocket → core"
    );
    let rest_id = p["message_id"].as_str().unwrap();
    assert!(
        popped.iter().any(|m| m.message.message_id == rest_id),
        "REST → core"
    );
    // Core API → WebSocket.
    s.broker
        .producer()
        .send(CoreMessage::new("live", "from-core").into())
        .await
        .unwrap();
    let m = next(&mut ws).await;
    assert_eq!(m["body"], "from-core");

    // Shutdown closes the connection with 1001.
    let stop = tokio::spawn(s.stop());
    assert_eq!(close_of(&mut ws).await.0, 1001);
    tokio::time::timeout(WAIT, stop)
        .await
        .expect("the server stops")
        .unwrap();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_credits_gets_at_most_its_credits() {
    const CREDITS: usize = 5;
    const TOTAL: usize = 100_000;
    let s = start().await;
    topic(&s, "flood").await;
    let mut ws = connect(&s).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": "slow", "group": "slow-g", "topic": "flood", "credits": CREDITS}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "subscribed");
    let before = rss_kib();
    let started = std::time::Instant::now();
    // 100,000 messages over REST batches of 250 (100-byte bodies), 4 publishers.
    let body = "x".repeat(100);
    let mut publishers = Vec::new();
    for _ in 0..4 {
        let http = s.http.clone();
        let url = s.url("/v1/topics/flood/messages/batch");
        let batch = json!({"messages": vec![json!({"body": body}); 250]});
        publishers.push(tokio::spawn(async move {
            for _ in 0..TOTAL / 250 / 4 {
                let r = http.post(&url).json(&batch).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
            }
        }));
    }
    let mut received = 0;
    let published = std::sync::atomic::AtomicBool::new(false);
    // The client keeps reading (and so answering the server's pings) until the flood is
    // published and nothing more arrives.
    let reader = async {
        loop {
            match next_within(&mut ws, Duration::from_millis(500)).await {
                Some(v) => {
                    assert_eq!(v["type"], "message", "{v}");
                    received += 1;
                }
                None if published.load(std::sync::atomic::Ordering::Acquire) => break,
                None => {}
            }
        }
    };
    let publish = async {
        let results = futures_util::future::join_all(publishers).await;
        published.store(true, std::sync::atomic::Ordering::Release);
        results
    };
    let (_, results) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(reader, publish)
    })
    .await
    .expect("the flood is published within 120 s");
    for r in results {
        r.unwrap();
    }
    // Quiet for a while after the flood: still nothing beyond the credits (waiting is the
    // point).
    while let Some(v) = next_within(&mut ws, Duration::from_millis(1000)).await {
        assert_eq!(v["type"], "message");
        received += 1;
    }
    let after = rss_kib();
    let (_, t) = s.get("/v1/topics/flood").await;
    let stored: u64 = t["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["max_offset"].as_u64().unwrap())
        .sum();
    println!(
        "published {stored} messages in {:?}; the credit-less client received {received}; \
         RSS {before} KiB before, {after} KiB after (+{} KiB)",
        started.elapsed(),
        after.saturating_sub(before)
    );
    assert_eq!(stored, TOTAL as u64);
    assert_eq!(received, CREDITS, "exactly its credits");
    // Granting more delivers more.
    send(
        &mut ws,
        json!({"type": "credit", "subscription": "slow", "credits": 3}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(next(&mut ws).await["type"], "message");
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_frames_close_with_a_code_and_others_are_unaffected() {
    let s = start_with(|_, h| h.ws_max_frame_bytes = 4096).await;
    topic(&s, "t").await;
    let mut good = connect(&s).await;

    let mut a = connect(&s).await;
    a.send(Message::text("{not json")).await.unwrap();
    let (code, reason) = close_of(&mut a).await;
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.starts_with("malformed frame"), "{reason}");

    let mut b = connect(&s).await;
    send(&mut b, json!({"type": "warp", "x": 1})).await;
    assert_eq!(close_of(&mut b).await.0, 1007);

    let mut c = connect(&s).await;
    c.send(Message::binary(vec![1_u8, 2, 3])).await.unwrap();
    assert_eq!(close_of(&mut c).await.0, 1003);

    let mut d = connect(&s).await;
    let _ = d.send(Message::text("x".repeat(10_000))).await;
    let (code, reason) = close_of(&mut d).await;
    assert_eq!(code, 1009, "{reason}");

    // The first connection still works.
    send(
        &mut good,
        json!({"type": "publish", "request_id": "ok", "topic": "t", "message": {"body": "still here"}}),
    )
    .await;
    let v = next(&mut good).await;
    assert_eq!(
        (v["type"].as_str(), v["request_id"].as_str()),
        (Some("reply"), Some("ok")),
        "{v}"
    );
    // Too many credits is an error frame, not a close.
    send(&mut good, json!({"type": "subscribe", "subscription": "x", "group": "g", "topic": "t", "credits": 1_000_000})).await;
    assert_eq!(next(&mut good).await["code"], "too_many_credits");
    // A plain GET is a problem, not a crash.
    let (st, v) = s.get("/v1/ws").await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("websocket_upgrade_required"))
    );
    s.stop().await;
}

#[tokio::test]
async fn origins_are_checked_when_configured() {
    let s = start_with(|_, h| h.allowed_origins = vec!["http://good.example".into()]).await;
    let connect_from = |origin: &'static str| {
        let mut req = format!("ws://{}/v1/ws", s.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    match connect_from("http://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let (mut ws, _) = connect_from("http://good.example").await.unwrap();
    ws.close(None).await.unwrap();
    s.stop().await;
}
