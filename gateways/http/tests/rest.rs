//! REST end to end: the real gateway on 127.0.0.1:0 over a real broker, called with reqwest.
//! Every endpoint, delays, transactions with a callback server, retry → DLQ → resend, bad
//! input, and the OpenAPI document validated against real answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{eventually, start, start_with, Server, MAX_BODY, WAIT};
use serde_json::{json, Value};

async fn topic(s: &Server, name: &str, queues: u32, kind: &str) {
    let (st, v) = s
        .post(
            "/v1/topics",
            json!({"name": name, "queue_count": queues, "message_type": kind}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

async fn receive(s: &Server, group: &str, topic: &str, max: usize, wait_ms: u64) -> Vec<Value> {
    let (st, v) = s
        .post(
            &format!("/v1/groups/{group}/receive"),
            json!({"topic": topic, "max": max, "wait_ms": wait_ms, "invisible_ms": 1000}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn publish_receive_ack_nack_invisibility_and_offsets() {
    let s = start().await;
    topic(&s, "orders", 2, "NORMAL").await;

    // One message as JSON, one raw with headers, one base64, a batch.
    let (st, one) = s
        .post(
            "/v1/topics/orders/messages",
            json!({"body": "hello", "tag": "A", "keys": ["k1"], "properties": {"p": "1"}}),
        )
        .await;
    assert_eq!(st, 200, "{one}");
    assert!(one["message_id"].is_string());
    let r = s
        .http
        .post(s.url("/v1/topics/orders/messages"))
        .header("content-type", "application/octet-stream")
        .header("rg-tag", "B")
        .header("rg-keys", "k2, k3")
        .header("rg-property-color", "red")
        .body(vec![0xff_u8, 0, 1])
        .send()
        .await
        .unwrap();
    let (st, raw) = common::answer(r).await;
    assert_eq!(st, 200, "{raw}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"\x00bin");
    let (st, _) = s
        .post(
            "/v1/topics/orders/messages",
            json!({"body": b64, "body_encoding": "base64"}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, batch) = s
        .post(
            "/v1/topics/orders/messages/batch",
            json!({"messages": [{"body": "b1"}, {"body": "b2", "tag": "A"}]}),
        )
        .await;
    assert_eq!(st, 200, "{batch}");
    assert_eq!(batch["messages"].as_array().unwrap().len(), 2);

    // Query by id, key, time, trace.
    let id = one["message_id"].as_str().unwrap();
    let (st, m) = s.get(&format!("/v1/messages/{id}")).await;
    assert_eq!((st, m["body"].as_str()), (200, Some("hello")));
    let (st, m) = s
        .get(&format!(
            "/v1/messages/{}",
            raw["message_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 200);
    assert_eq!(m["body_encoding"], "base64");
    assert_eq!(m["properties"]["color"], "red");
    assert_eq!(m["keys"], json!(["k2", "k3"]));
    let (st, found) = s.get("/v1/topics/orders/messages?key=k1").await;
    assert_eq!(st, 200);
    assert_eq!(found["messages"][0]["message_id"], one["message_id"]);
    let (st, found) = s.get("/v1/topics/orders/messages?max=3").await;
    assert_eq!(st, 200);
    assert_eq!(found["messages"].as_array().unwrap().len(), 3);
    assert_eq!(found["truncated"], true);
    let (st, trace) = s.get(&format!("/v1/messages/{id}/trace")).await;
    assert_eq!(
        (st, trace["steps"][0]["kind"].as_str()),
        (200, Some("STORED"))
    );

    // Receive all five, ack one, ack a batch, nack one, change invisibility of one.
    let got = eventually(|| async {
        let m = receive(&s, "g1", "orders", 16, 500).await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    let mut got = got;
    while got.len() < 5 {
        got.extend(receive(&s, "g1", "orders", 16, 500).await);
    }
    assert_eq!(got.len(), 5);
    let h = |i: usize| got[i]["receipt_handle"].as_str().unwrap().to_owned();
    let (st, v) = s
        .post("/v1/groups/g1/ack", json!({"receipt_handle": h(0)}))
        .await;
    assert_eq!(st, 200, "{v}");
    // A well-formed handle the broker never issued fails alone; a malformed one fails the
    // request (the document states the syntax).
    let forged = "A".repeat(80);
    let (st, v) = s
        .post(
            "/v1/groups/g1/ack",
            json!({"receipt_handles": [h(1), "garbage"]}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_receipt_handle"))
    );
    let (st, v) = s
        .post(
            "/v1/groups/g1/ack",
            json!({"receipt_handles": [h(1), forged]}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["results"][0]["ok"], true);
    assert_eq!(v["results"][1]["ok"], false);
    assert_eq!(v["results"][1]["code"], "invalid_receipt_handle");
    let (st, _) = s
        .post(
            "/v1/groups/g1/nack",
            json!({"receipt_handle": h(2), "delay_ms": 0}),
        )
        .await;
    assert_eq!(st, 204);
    let (st, v) = s
        .post(
            "/v1/groups/g1/invisibility",
            json!({"receipt_handle": h(3), "invisible_ms": 60000}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = s
        .post(
            "/v1/groups/g1/ack",
            json!({"receipt_handle": v["receipt_handle"]}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .post("/v1/groups/g1/dead-letter", json!({"receipt_handle": h(4)}))
        .await;
    assert_eq!(st, 204);
    // The nacked one comes back.
    let again = eventually(|| async {
        let m = receive(&s, "g1", "orders", 16, 500).await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(again[0]["message_id"], got[2]["message_id"]);
    assert_eq!(again[0]["attempt"], 2);
    let (st, _) = s
        .post(
            "/v1/groups/g1/ack",
            json!({"receipt_handle": again[0]["receipt_handle"]}),
        )
        .await;
    assert_eq!(st, 200);

    // Group views.
    let (st, v) = s.get("/v1/groups/g1").await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.get("/v1/groups/g1/lag?topic=orders").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total"], 0, "{v}");
    let (st, v) = s.get("/v1/groups/g1/clients").await;
    assert_eq!((st, v["clients"].is_array()), (200, true));
    let (st, v) = s.get("/v1/groups/g1/retry-policy").await;
    assert_eq!((st, v["max_delivery_attempts"].as_u64()), (200, Some(16)));
    let (st, v) = s.get("/v1/groups").await;
    assert_eq!(st, 200);
    assert!(v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "g1"));

    // Offset-style consumer: pull, commit, get, reset.
    let (st, p) = s
        .get("/v1/groups/pullers/topics/orders/queues/0/messages?offset=0&max=10")
        .await;
    assert_eq!(st, 200, "{p}");
    let next = p["next_offset"].as_u64().unwrap();
    assert!(next > 0);
    let (st, _) = s
        .put(
            "/v1/groups/pullers/topics/orders/queues/0/offset",
            json!({"offset": next}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, o) = s.get("/v1/groups/pullers/topics/orders/offsets").await;
    assert_eq!(st, 200);
    assert_eq!(o["offsets"][0]["offset"], next);
    let (st, p) = s
        .get("/v1/groups/pullers/topics/orders/queues/0/messages?wait_ms=100")
        .await;
    assert_eq!((st, p["status"].as_str()), (200, Some("NO_NEW_MESSAGE")));
    let (st, o) = s
        .post(
            "/v1/groups/pullers/topics/orders/offsets/reset",
            json!({"timestamp_ms": 0}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(o["offsets"][0]["offset"], 0);

    // Topics: list, describe, route, update, delete.
    let (st, v) = s.get("/v1/topics").await;
    assert_eq!(st, 200);
    assert!(v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "orders"));
    let (st, v) = s.get("/v1/topics/orders").await;
    assert_eq!(st, 200);
    assert_eq!(v["queues"].as_array().unwrap().len(), 2);
    let (st, v) = s.get("/v1/topics/orders/route").await;
    assert_eq!(
        (st, v["queues"][0]["permission"].as_str()),
        (200, Some("READ_WRITE"))
    );
    let (st, v) = s
        .patch(
            "/v1/topics/orders",
            json!({"queue_count": 3, "writable": false}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["queue_count"].as_u64(), v["writable"].as_bool()),
        (Some(3), Some(false))
    );
    let (st, v) = s
        .post("/v1/topics/orders/messages", json!({"body": "x"}))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("permission_denied")));
    let (st, _) = s.delete("/v1/groups/pullers").await;
    assert_eq!(st, 204);
    let (st, _) = s.delete("/v1/topics/orders").await;
    assert_eq!(st, 204);
    let (st, v) = s.get("/v1/topics/orders").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("topic_not_found")));
    s.stop().await;
}

#[tokio::test]
async fn delay_and_scheduled_cancel() {
    let s = start().await;
    topic(&s, "later", 1, "DELAY").await;
    let (st, v) = s
        .post(
            "/v1/topics/later/messages",
            json!({"body": "soon", "delay_ms": 1500}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["deliver_at_ms"].is_i64());
    let (st, c) = s
        .post(
            "/v1/topics/later/messages",
            json!({"body": "never", "delay_level": 2}),
        )
        .await;
    assert_eq!(st, 200);
    eventually(|| async {
        let (st, p) = s.get("/v1/scheduled").await;
        assert_eq!(st, 200);
        (p["pending"].as_u64() == Some(2)).then_some(())
    })
    .await;
    let (st, list) = s.get("/v1/scheduled").await;
    assert_eq!(st, 200, "{list}");
    let listed: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![
            v["message_id"].as_str().unwrap(),
            c["message_id"].as_str().unwrap()
        ]
    );
    assert_eq!(list["messages"][0]["topic"], "later");
    assert!(list["messages"][0]["deliver_at_ms"].is_i64());
    let (st, _) = s
        .delete(&format!(
            "/v1/scheduled/{}",
            c["message_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 204);
    let (_, list) = s.get("/v1/scheduled").await;
    assert_eq!(
        list["messages"].as_array().unwrap().len(),
        1,
        "cancelled ones are not listed"
    );
    let (st, v) = s.delete("/v1/scheduled/nope").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("message_not_found")));
    // Not visible at once; visible after the delay.
    assert!(receive(&s, "dg", "later", 4, 0).await.is_empty());
    let started = std::time::Instant::now();
    let got = eventually(|| async {
        let m = receive(&s, "dg", "later", 4, 1000).await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"], "soon");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (st, _) = s
        .post(
            "/v1/groups/dg/ack",
            json!({"receipt_handle": got[0]["receipt_handle"]}),
        )
        .await;
    assert_eq!(st, 200);
    // The cancelled one never comes: waiting past its time (delay level 2: 2 s) is the point.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(receive(&s, "dg", "later", 4, 300).await.is_empty());
    s.stop().await;
}

/// A callback server answering a fixed action, counting calls.
async fn callback_server(
    action: &'static str,
) -> (
    String,
    Arc<AtomicUsize>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    use axum::routing::post;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/check",
        post(move |axum::Json(v): axum::Json<Value>| {
            let c = c.clone();
            async move {
                assert!(v["transaction_id"].is_string());
                assert!(v["message"]["body"].is_string());
                let n = c.fetch_add(1, Ordering::SeqCst);
                if action == "flaky" {
                    if n == 0 {
                        return (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(json!({})),
                        );
                    }
                    return (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"action": "commit"})),
                    );
                }
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({"action": action})),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/check", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(async move {
        axum::serve(l, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (url, calls, tx, join)
}

#[tokio::test]
async fn transactions_commit_rollback_and_callback_check_back() {
    let s = start_with(|_, h| {
        h.allow_callbacks = true;
        h.callback_allowed_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    topic(&s, "tx", 1, "TRANSACTION").await;
    let half =
        |body: &str, group: &str| json!({"producer_group": group, "message": {"body": body}});
    // Explicit commit and rollback.
    let (st, a) = s.post("/v1/topics/tx/transactions", half("a", "pg0")).await;
    assert_eq!(st, 200, "{a}");
    let (st, b) = s.post("/v1/topics/tx/transactions", half("b", "pg0")).await;
    assert_eq!(st, 200);
    assert!(receive(&s, "tg", "tx", 4, 0).await.is_empty());
    let (st, _) = s
        .post(
            &format!(
                "/v1/transactions/{}/commit",
                a["transaction_id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, 204);
    let (st, v) = s
        .post(
            &format!(
                "/v1/transactions/{}/commit",
                a["transaction_id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("transaction_resolved"))
    );
    let (st, _) = s
        .post(
            &format!(
                "/v1/transactions/{}/rollback",
                b["transaction_id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, 204);
    let (st, v) = s
        .post("/v1/transactions/unknown-id/commit", json!({}))
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("unknown_transaction")));

    // Check-back through callbacks: commit (after one 500, retried), rollback, unknown.
    let (commit_url, commit_calls, stop1, j1) = callback_server("flaky").await;
    let (rollback_url, rollback_calls, stop2, j2) = callback_server("rollback").await;
    let (unknown_url, unknown_calls, stop3, j3) = callback_server("unknown").await;
    for (g, url) in [
        ("pg1", &commit_url),
        ("pg2", &rollback_url),
        ("pg3", &unknown_url),
    ] {
        let (st, v) = s
            .put(&format!("/v1/producers/{g}/callback"), json!({"url": url}))
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = s.get("/v1/producers/pg1/callback").await;
    assert_eq!((st, v["url"].as_str()), (200, Some(commit_url.as_str())));
    let (st, v) = s
        .put("/v1/producers/pg9/callback", json!({"url": "ftp://x"}))
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_argument")));
    s.post(
        "/v1/topics/tx/transactions",
        half("committed-by-callback", "pg1"),
    )
    .await;
    s.post(
        "/v1/topics/tx/transactions",
        half("rolled-back-by-callback", "pg2"),
    )
    .await;
    s.post("/v1/topics/tx/transactions", half("unknown", "pg3"))
        .await;
    let got = eventually(|| async {
        let m = receive(&s, "tg", "tx", 4, 1000).await;
        m.iter()
            .find(|m| m["body"] == "committed-by-callback")
            .cloned()
    })
    .await;
    assert_eq!(got["body"], "committed-by-callback");
    eventually(|| async {
        (rollback_calls.load(Ordering::SeqCst) >= 1 && unknown_calls.load(Ordering::SeqCst) >= 2)
            .then_some(())
    })
    .await;
    assert!(
        commit_calls.load(Ordering::SeqCst) >= 2,
        "retried after the 500"
    );
    // Only the committed ones were delivered: nothing else becomes visible meanwhile (waiting
    // is the point).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = receive(&s, "tg", "tx", 8, 300).await;
    assert!(rest.iter().all(|m| m["body"] == "a"), "{rest:?}");
    let (st, _) = s.delete("/v1/producers/pg3/callback").await;
    assert_eq!(st, 204);
    let (st, _) = s.delete("/v1/producers/pg3/callback").await;
    assert_eq!(st, 404);
    for stop in [stop1, stop2, stop3] {
        let _ = stop.send(());
    }
    for j in [j1, j2, j3] {
        tokio::time::timeout(WAIT, j)
            .await
            .expect("the callback server stops")
            .unwrap();
    }
    s.stop().await;
}

#[tokio::test]
async fn retry_to_dlq_and_resend() {
    let s = start().await;
    topic(&s, "work", 1, "NORMAL").await;
    let (st, v) = s
        .post(
            "/v1/groups",
            json!({"name": "strict", "max_delivery_attempts": 5}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = s
        .put(
            "/v1/groups/strict/retry-policy",
            json!({"max_delivery_attempts": 2}),
        )
        .await;
    assert_eq!(
        (st, v["max_delivery_attempts"].as_u64()),
        (200, Some(2)),
        "{v}"
    );
    let (st, v) = s
        .put(
            "/v1/groups/strict/retry-policy",
            json!({"max_delivery_attempts": 0}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_argument")));
    let (st, v) = s.post("/v1/groups", json!({"name": "strict"})).await;
    assert_eq!((st, v["code"].as_str()), (409, Some("group_exists")));
    let (_, sent) = s
        .post("/v1/topics/work/messages", json!({"body": "poison"}))
        .await;
    let id = sent["message_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let m = eventually(|| async {
            let m = receive(&s, "strict", "work", 1, 1000).await;
            m.into_iter().next()
        })
        .await;
        let (st, _) = s
            .post(
                "/v1/groups/strict/nack",
                json!({"receipt_handle": m["receipt_handle"], "delay_ms": 0}),
            )
            .await;
        assert_eq!(st, 204);
    }
    let dead = eventually(|| async {
        let (st, v) = s.get("/v1/groups/strict/dlq").await;
        assert_eq!(st, 200, "{v}");
        let m = v["messages"].as_array().unwrap().clone();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(dead[0]["message_id"], id.as_str());
    let (st, v) = s
        .get(&format!("/v1/groups/strict/dlq?message_id={id}"))
        .await;
    assert_eq!((st, v["messages"].as_array().unwrap().len()), (200, 1));
    let (st, v) = s
        .post(
            "/v1/groups/strict/dlq/resend",
            json!({"message_ids": ["not-there"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("message_not_found")));
    let (st, v) = s
        .post("/v1/groups/strict/dlq/resend", json!({"message_ids": [id]}))
        .await;
    assert_eq!((st, v["resent"].as_u64()), (200, Some(1)));
    let back = eventually(|| async {
        let m = receive(&s, "strict", "work", 1, 1000).await;
        m.into_iter().next()
    })
    .await;
    assert_eq!(back["message_id"], id.as_str());
    assert_eq!(back["attempt"], 1);
    let (st, v) = s
        .post("/v1/groups/strict/dlq/resend", json!({"all": true}))
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = s.delete("/v1/groups/strict/dlq").await;
    assert_eq!(st, 204);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_answers_problems_and_writes_nothing() {
    let s = start().await;
    topic(&s, "t", 1, "NORMAL").await;
    let post_raw = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut r = s.http.post(s.url(path)).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r
    };
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            post_raw(
                "/v1/topics/t/messages",
                Some("application/json"),
                b"{not json".to_vec(),
            ),
            400,
            "invalid_json",
        ),
        (
            post_raw(
                "/v1/topics/t/messages",
                Some("application/json"),
                br#"{"body":"x","bogus":1}"#.to_vec(),
            ),
            400,
            "invalid_json",
        ),
        (
            post_raw("/v1/topics/t/messages", Some("image/png"), b"x".to_vec()),
            415,
            "unsupported_media_type",
        ),
        (
            post_raw("/v1/groups/g/receive", None, br#"{"topic":"t"}"#.to_vec()),
            415,
            "unsupported_media_type",
        ),
        (
            post_raw(
                "/v1/topics/nope/messages",
                Some("application/json"),
                br#"{"body":"x"}"#.to_vec(),
            ),
            404,
            "topic_not_found",
        ),
        (
            post_raw(
                "/v1/topics/t/messages",
                Some("application/json"),
                vec![b' '; MAX_BODY + 1],
            ),
            413,
            "payload_too_large",
        ),
        (
            post_raw(
                "/v1/topics/t/messages",
                Some("application/octet-stream"),
                vec![b'x'; 64 << 10 | 1],
            ),
            400,
            "body_too_large",
        ),
        (
            post_raw(
                "/v1/topics/t/messages",
                Some("application/json"),
                br#"{"body":"!!!","body_encoding":"base64"}"#.to_vec(),
            ),
            400,
            "invalid_base64",
        ),
        (
            post_raw(
                "/v1/groups/g/ack",
                Some("application/json"),
                br#"{"receipt_handle":"forged"}"#.to_vec(),
            ),
            400,
            "invalid_receipt_handle",
        ),
        (
            post_raw(
                "/v1/groups/g/receive",
                Some("application/json"),
                br#"{"topic":"t","wait_ms":999999}"#.to_vec(),
            ),
            400,
            "wait_too_long",
        ),
        (
            post_raw(
                "/v1/groups/g/receive",
                Some("application/json"),
                br#"{"topic":"nope"}"#.to_vec(),
            ),
            404,
            "topic_not_found",
        ),
        (
            post_raw(
                "/v1/topics/t/messages",
                Some("application/json"),
                br#"{"body":"x","delay_level":99}"#.to_vec(),
            ),
            400,
            "invalid_argument",
        ),
        (
            post_raw(
                "/v1/topics",
                Some("application/json"),
                br#"{"name":"t"}"#.to_vec(),
            ),
            409,
            "topic_exists",
        ),
        (
            post_raw(
                "/v1/topics",
                Some("application/json"),
                br#"{"name":"bad name!"}"#.to_vec(),
            ),
            400,
            "invalid_argument",
        ),
    ];
    for (req, status, code) in cases {
        let (st, v) = common::answer(req.send().await.unwrap()).await;
        assert_eq!((st, v["code"].as_str()), (status, Some(code)), "{v}");
    }
    // A batch with one bad message stores none of them.
    let (st, v) = s
        .post(
            "/v1/topics/t/messages/batch",
            json!({"messages": [{"body": "ok"}, {"body": "%%", "body_encoding": "base64"}]}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_base64")),
        "{v}"
    );
    let (st, v) = s
        .post(
            "/v1/topics/t/messages/batch",
            json!({"messages": [{"body": "ok"}, {"body": "x", "delay_level": 42}]}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .post("/v1/topics/t/messages/batch", json!({"messages": []}))
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_batch_size")));
    let (st, v) = s.get("/v1/topics/t").await;
    assert_eq!(st, 200);
    assert_eq!(v["queues"][0]["max_offset"], 0, "nothing was written: {v}");
    // Unknown group (no auto-creation would 404; here: an unknown group's lag).
    let (st, v) = s.get("/v1/groups/nobody").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("group_not_found")));
    let (st, v) = s.get("/v1/groups/nobody/lag").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("group_not_found")));
    let (st, v) = s.get("/v1/topics/t/messages?max=abc").await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_query")));
    let (st, v) = s.get("/no/such/route").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("no_route")));
    let (st, v) = s.delete("/v1/topics").await;
    assert_eq!((st, v["code"].as_str()), (405, Some("method_not_allowed")));
    // The server still serves.
    let (st, _) = s.get("/healthz").await;
    assert_eq!(st, 200);
    s.stop().await;
}

#[tokio::test]
async fn limits_in_flight_and_timeouts() {
    let s = start_with(|_, h| {
        h.max_in_flight = 1;
        h.max_wait_ms = 1_000;
        h.request_timeout_ms = 1_500;
    })
    .await;
    topic(&s, "t", 1, "NORMAL").await;
    // One long poll holds the only slot: the next request answers 429.
    let slow = {
        let http = s.http.clone();
        let url = s.url("/v1/groups/g/receive");
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"topic": "t", "wait_ms": 1000}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let (st, v) = eventually(|| async {
        let (st, v) = s.get("/v1/topics").await;
        (st == 429).then_some((st, v))
    })
    .await;
    assert_eq!((st, v["code"].as_str()), (429, Some("too_many_requests")));
    assert_eq!(
        tokio::time::timeout(WAIT, slow)
            .await
            .expect("the long poll ends")
            .unwrap(),
        200
    );
    // A request that takes longer than `request_timeout_ms` (its client announces a body and
    // then sends only part of it) is answered 503 `request_timeout`, and its slot is freed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let started = std::time::Instant::now();
    raw.write_all(
        b"POST /v1/topics/t/messages HTTP/1.1\r\nhost: 127.0.0.1\r\n\
          content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"body\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("request_timeout") {
        let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
            .await
            .expect("an answer before the test's own deadline")
            .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "not before the request timeout: {:?}",
        started.elapsed()
    );
    let (st, _) = s.get("/v1/topics").await;
    assert_eq!(st, 200, "the timed-out request gave its slot back");
    s.stop().await;
}

#[tokio::test]
async fn health_ready_metrics() {
    let s = start().await;
    for p in ["/healthz", "/readyz", "/health"] {
        let (st, v) = s.get(p).await;
        assert_eq!((st, v["status"].as_str()), (200, Some("ok")), "{p}");
    }
    topic(&s, "m", 1, "NORMAL").await;
    s.post("/v1/topics/m/messages", json!({"body": "x"})).await;
    receive(&s, "mg", "m", 1, 500).await;
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "rocketgate_http_requests_total",
        "rocketgate_http_request_seconds",
        "rocketgate_connections_active{gateway=\"http\"}",
        "rocketgate_messages_in_total",
        "rocketgate_consumer_lag{group=\"mg\",topic=\"m\"} 1",
        "rocketgate_scheduled_pending 0",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    s.stop().await;
}

/// Resolves `#/components/schemas/<name>` against the whole document and validates `value`.
fn validate(doc: &Value, name: &str, value: &Value) {
    let mut root = doc.clone();
    root["$ref"] = json!(format!("#/components/schemas/{name}"));
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {name}: {e}"));
    let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{name} does not validate {value}: {errors:?}"
    );
}

#[tokio::test]
async fn openapi_lists_every_route_and_its_schemas_validate_answers() {
    let s = start().await;
    let (st, doc) = s.get("/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("post", "/v1/topics/{topic}/messages"),
        ("get", "/v1/topics/{topic}/messages"),
        ("post", "/v1/topics/{topic}/messages/batch"),
        ("post", "/v1/topics/{topic}/transactions"),
        ("post", "/v1/transactions/{id}/commit"),
        ("post", "/v1/transactions/{id}/rollback"),
        ("put", "/v1/producers/{group}/callback"),
        ("get", "/v1/producers/{group}/callback"),
        ("delete", "/v1/producers/{group}/callback"),
        ("post", "/v1/groups/{group}/receive"),
        ("post", "/v1/groups/{group}/ack"),
        ("post", "/v1/groups/{group}/nack"),
        ("post", "/v1/groups/{group}/invisibility"),
        ("post", "/v1/groups/{group}/dead-letter"),
        (
            "get",
            "/v1/groups/{group}/topics/{topic}/queues/{queue}/messages",
        ),
        ("get", "/v1/groups/{group}/topics/{topic}/offsets"),
        (
            "put",
            "/v1/groups/{group}/topics/{topic}/queues/{queue}/offset",
        ),
        ("post", "/v1/groups/{group}/topics/{topic}/offsets/reset"),
        ("post", "/v1/topics"),
        ("get", "/v1/topics"),
        ("get", "/v1/topics/{topic}"),
        ("patch", "/v1/topics/{topic}"),
        ("delete", "/v1/topics/{topic}"),
        ("get", "/v1/topics/{topic}/route"),
        ("post", "/v1/groups"),
        ("get", "/v1/groups"),
        ("get", "/v1/groups/{group}"),
        ("delete", "/v1/groups/{group}"),
        ("get", "/v1/groups/{group}/lag"),
        ("get", "/v1/groups/{group}/clients"),
        ("get", "/v1/groups/{group}/retry-policy"),
        ("put", "/v1/groups/{group}/retry-policy"),
        ("get", "/v1/groups/{group}/dlq"),
        ("delete", "/v1/groups/{group}/dlq"),
        ("post", "/v1/groups/{group}/dlq/resend"),
        ("get", "/v1/messages/{id}"),
        ("get", "/v1/messages/{id}/trace"),
        ("get", "/v1/scheduled"),
        ("delete", "/v1/scheduled/{id}"),
        ("get", "/v1/ws"),
        ("get", "/v1/auth/users"),
        ("post", "/v1/auth/users"),
        ("get", "/v1/auth/users/{access_key}"),
        ("patch", "/v1/auth/users/{access_key}"),
        ("delete", "/v1/auth/users/{access_key}"),
        ("get", "/v1/auth/users/{access_key}/policy"),
        ("put", "/v1/auth/users/{access_key}/policy"),
        ("post", "/v1/auth/users/{access_key}/tokens"),
        ("get", "/v1/auth/users/{access_key}/tokens"),
        ("get", "/v1/auth/tokens"),
        ("delete", "/v1/auth/tokens/{id}"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    let mut listed = 0;
    for (_, item) in paths {
        listed += ["get", "put", "post", "patch", "delete"]
            .iter()
            .filter(|m| item.get(**m).is_some())
            .count();
    }
    for (m, p) in expected {
        let op = &doc["paths"][p][m];
        assert!(op.is_object(), "{m} {p} missing from the document");
        assert!(
            op["responses"]["default"].is_object(),
            "{m} {p} has no problem response"
        );
    }
    assert_eq!(
        listed,
        expected.len(),
        "the document lists exactly the routes"
    );

    // Real answers validate against their schemas.
    let (_, t) = s
        .post(
            "/v1/topics",
            json!({"name": "v", "queue_count": 1, "message_type": "MIXED"}),
        )
        .await;
    validate(&doc, "TopicView", &t);
    let (_, p) = s
        .post("/v1/topics/v/messages", json!({"body": "x", "tag": "T"}))
        .await;
    validate(&doc, "Published", &p);
    let (_, b) = s
        .post(
            "/v1/topics/v/messages/batch",
            json!({"messages": [{"body": "y"}]}),
        )
        .await;
    validate(&doc, "PublishedBatch", &b);
    let (_, r) = s
        .post(
            "/v1/groups/vg/receive",
            json!({"topic": "v", "max": 2, "wait_ms": 1000}),
        )
        .await;
    validate(&doc, "Received", &r);
    let (_, l) = s.get("/v1/topics").await;
    validate(&doc, "TopicList", &l);
    let (_, g) = s.get("/v1/groups/vg").await;
    validate(&doc, "GroupView", &g);
    let (_, lag) = s.get("/v1/groups/vg/lag").await;
    validate(&doc, "Lag", &lag);
    let (_, m) = s
        .get(&format!(
            "/v1/messages/{}",
            p["message_id"].as_str().unwrap()
        ))
        .await;
    validate(&doc, "MessageView", &m);
    let (_, pulled) = s
        .get("/v1/groups/vg/topics/v/queues/0/messages?offset=0")
        .await;
    validate(&doc, "Pulled", &pulled);
    let (_, f) = s.get("/v1/topics/v/messages").await;
    validate(&doc, "Found", &f);
    s.post(
        "/v1/topics/v/messages",
        json!({"body": "later", "delay_ms": 60000}),
    )
    .await;
    let (_, sch) = s.get("/v1/scheduled").await;
    assert_eq!(sch["messages"].as_array().unwrap().len(), 1);
    validate(&doc, "Scheduled", &sch);
    let (_, problem) = s.get("/v1/topics/none").await;
    validate(&doc, "Problem", &problem);
    let docs = s.http.get(s.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("/openapi.json"));
    s.stop().await;
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(|_, h| {
        h.max_wait_ms = 300;
        h.request_timeout_ms = 600;
        h.ws_ping_interval_ms = 200;
        h.idle_timeout_ms = 1000;
    })
    .await;
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut trickle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for conn in [&mut silent, &mut trickle] {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
    }
    let took = started.elapsed();
    // Not before the idle timeout (1 s); the upper bound is generous (5×), only to tell an
    // idle close from none.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Others are served meanwhile and after.
    let (st, _) = s.get("/healthz").await;
    assert_eq!(st, 200);
    s.stop().await;
}

#[tokio::test]
async fn callback_registrations_survive_a_restart() {
    // Checked back 1.5 s after it was stored: after the restart below.
    let s = start_with(|c, h| {
        c.transaction.check_first_ms = 1_500;
        h.allow_callbacks = true;
        h.callback_allowed_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    topic(&s, "tx", 1, "TRANSACTION").await;
    let (url, calls, stop, join) = callback_server("commit").await;
    let (st, v) = s
        .put("/v1/producers/pg-durable/callback", json!({"url": url}))
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .post(
            "/v1/topics/tx/transactions",
            json!({"producer_group": "pg-durable", "message": {"body": "after-restart"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let s = s.restart().await;
    let (st, v) = s.get("/v1/producers/pg-durable/callback").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["url"], url.as_str());
    let got = eventually(|| async {
        let m = receive(&s, "tg", "tx", 4, 1000).await;
        m.iter().find(|m| m["body"] == "after-restart").cloned()
    })
    .await;
    assert_eq!(got["body"], "after-restart");
    assert!(calls.load(Ordering::SeqCst) >= 1);

    // Removed: gone after the next restart too.
    let (st, _) = s.delete("/v1/producers/pg-durable/callback").await;
    assert_eq!(st, 204);
    let s = s.restart().await;
    let (st, _) = s.get("/v1/producers/pg-durable/callback").await;
    assert_eq!(st, 404);
    let _ = stop.send(());
    tokio::time::timeout(WAIT, join)
        .await
        .expect("the callback server stops")
        .unwrap();
    s.stop().await;
}
