//! One set of conventions over REST: a publish answers a queue offset only when the message is
//! in its queue, a topic takes only its own message type, and enum values are read in any
//! case and written in one spelling. WebSocket publishes answer as REST ones do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{start, start_with, Server, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn topic(s: &Server, name: &str, kind: &str) -> Value {
    let (st, v) = s
        .post(
            "/v1/topics",
            json!({"name": name, "queue_count": 1, "message_type": kind}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v
}

fn half(body: &str) -> Value {
    json!({"producer_group": "pg", "message": {"body": body}})
}

#[tokio::test]
async fn a_publish_answers_a_queue_offset_only_when_the_message_is_in_its_queue() {
    let s = start().await;
    topic(&s, "n", "NORMAL").await;
    topic(&s, "d", "DELAY").await;
    topic(&s, "tx", "TRANSACTION").await;
    for i in 0..2 {
        let (st, v) = s
            .post("/v1/topics/n/messages", json!({"body": format!("m{i}")}))
            .await;
        assert_eq!((st, v["queue_offset"].as_u64()), (200, Some(i)), "{v}");
    }
    let (st, d) = s
        .post(
            "/v1/topics/d/messages",
            json!({"body": "later", "delay_ms": 60_000}),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    assert!(d["queue_offset"].is_null(), "{d}");
    assert!(d["deliver_at_ms"].is_i64(), "{d}");
    // Raw publish with a delay header: the same answer.
    let raw = s
        .http
        .post(s.url("/v1/topics/d/messages"))
        .header("content-type", "text/plain")
        .header("rg-delay-ms", "60000")
        .body("raw later")
        .send()
        .await
        .unwrap();
    let (st, r) = common::answer(raw).await;
    assert_eq!(st, 200, "{r}");
    assert!(r["queue_offset"].is_null(), "{r}");
    let (st, h) = s.post("/v1/topics/tx/transactions", half("h")).await;
    assert_eq!(st, 200, "{h}");
    assert!(h["queue_offset"].is_null(), "{h}");
    assert!(h["transaction_id"].is_string(), "{h}");
    // The scheduled message is found by its id.
    let (st, list) = s.get("/v1/scheduled").await;
    assert_eq!(st, 200, "{list}");
    let id = d["message_id"].as_str().unwrap();
    let listed = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"));
    // It has no offset in its queue until it is delivered (the timer queue's is not one).
    assert!(listed["queue_offset"].is_null(), "{listed}");
    assert!(listed["deliver_at_ms"].is_i64(), "{listed}");
    s.stop().await;
}

#[tokio::test]
async fn a_topic_takes_only_its_message_type() {
    let s = start().await;
    for (name, kind) in [
        ("n", "NORMAL"),
        ("f", "FIFO"),
        ("d", "DELAY"),
        ("tx", "TRANSACTION"),
        ("m", "MIXED"),
    ] {
        topic(&s, name, kind).await;
    }
    let plain = json!({"body": "x"});
    let grouped = json!({"body": "x", "message_group": "g"});
    let delayed = json!({"body": "x", "delay_ms": 60_000});
    for (t, accepts) in [
        ("n", "normal"),
        ("f", "fifo"),
        ("d", "delay"),
        ("tx", "transaction"),
        ("m", "all"),
    ] {
        let sends = [
            (
                "normal",
                s.post(&format!("/v1/topics/{t}/messages"), plain.clone())
                    .await,
            ),
            (
                "fifo",
                s.post(&format!("/v1/topics/{t}/messages"), grouped.clone())
                    .await,
            ),
            (
                "delay",
                s.post(&format!("/v1/topics/{t}/messages"), delayed.clone())
                    .await,
            ),
            (
                "transaction",
                s.post(&format!("/v1/topics/{t}/transactions"), half("h"))
                    .await,
            ),
        ];
        for (kind, (st, v)) in sends {
            if accepts == "all" || accepts == kind {
                assert_eq!(st, 200, "{kind} into {t}: {v}");
            } else {
                assert_eq!(
                    (st, v["code"].as_str()),
                    (400, Some("message_type_mismatch")),
                    "{kind} into {t}: {v}"
                );
                let detail = v["detail"].as_str().unwrap();
                assert!(detail.contains("accepts"), "{detail}");
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn the_type_check_can_be_relaxed() {
    let s = start_with(|c, _| c.limits.topic_message_type_check = false).await;
    topic(&s, "tx", "TRANSACTION").await;
    let (st, v) = s
        .post("/v1/topics/tx/messages", json!({"body": "plain"}))
        .await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn enum_values_are_read_in_any_case_and_written_in_one() {
    let s = start().await;
    for (name, kind) in [("a", "transaction"), ("b", "Fifo"), ("c", "mIxEd")] {
        let v = topic(&s, name, kind).await;
        assert_eq!(
            v["message_type"].as_str().unwrap(),
            kind.to_ascii_uppercase(),
            "{v}"
        );
    }
    let (st, v) = s
        .patch("/v1/topics/a", json!({"message_type": "delay"}))
        .await;
    assert_eq!(
        (st, v["message_type"].as_str()),
        (200, Some("DELAY")),
        "{v}"
    );
    let (st, v) = s
        .post(
            "/v1/topics/c/messages",
            json!({"body": "aGk=", "body_encoding": "BASE64"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .post(
            "/v1/groups/g/receive",
            json!({"topic": "c", "filter": {"kind": "tag", "expression": "*"}, "wait_ms": 1000}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["messages"][0]["body"], "hi", "{v}");
    let (st, v) = s
        .post(
            "/v1/groups/g/receive",
            json!({"topic": "c", "filter": {"kind": "sql92", "expression": "a > 1"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .post("/v1/topics", json!({"name": "z", "message_type": "fifo2"}))
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_json")), "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("NORMAL, FIFO, DELAY, TRANSACTION, MIXED"),
        "{detail}"
    );
    s.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends a frame and returns the next text frame, within [`WAIT`].
async fn ask(ws: &mut Ws, frame: Value) -> Value {
    ws.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let f = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = f {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn a_websocket_publish_answers_as_rest_does() {
    let s = start().await;
    topic(&s, "d", "DELAY").await;
    let url = format!("ws://{}/v1/ws", s.addr);
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap();
    let v = ask(
        &mut ws,
        json!({"type": "publish", "request_id": "later", "topic": "d",
        "message": {"body": "x", "delay_ms": 60_000}}),
    )
    .await;
    assert_eq!(v["type"], "reply", "{v}");
    assert!(v["result"]["queue_offset"].is_null(), "{v}");
    assert!(v["result"]["deliver_at_ms"].is_i64(), "{v}");
    let v = ask(
        &mut ws,
        json!({"type": "publish", "request_id": "now", "topic": "d",
        "message": {"body": "x"}}),
    )
    .await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("message_type_mismatch")),
        "{v}"
    );
    s.stop().await;
}
