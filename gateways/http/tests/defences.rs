//! Browser and connection defences of the HTTP gateway, each from a probe finding of issue 14:
//! a foreign `Host` (DNS rebinding) is refused, cross-origin WebSocket upgrades and writes
//! (`text/plain` publish without a preflight) are refused unless allowed, no CORS headers are
//! sent; a request head that trickles in is cut at `http.header_timeout_ms` however often a
//! byte arrives, and an oversized head is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{answer, start_with, Server, WAIT};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn topic(s: &Server, name: &str) {
    let (st, v) = s
        .post("/v1/topics", json!({"name": name, "queue_count": 1}))
        .await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn a_foreign_host_is_refused_before_anything_happens() {
    let s = start_with(|_, h| h.allowed_hosts = vec!["broker.example".into()]).await;
    topic(&s, "t").await;
    // The finding: a DELETE whose Host is the attacker's name (DNS rebinding) answered 204.
    let r = s
        .http
        .delete(s.url("/v1/topics/t"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    let (st, body) = answer(r).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (421, Some("host_not_allowed")),
        "{body}"
    );
    let (st, _) = s.get("/v1/topics/t").await;
    assert_eq!(st, 200, "the topic is still there");
    let port = s.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "broker.example".to_owned(),
    ] {
        let r = s
            .http
            .get(s.url("/v1/topics/t"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    s.stop().await;
}

async fn upgrade_from(s: &Server, origin: &str) -> u16 {
    let mut req = format!("ws://{}/v1/ws", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
    {
        Ok((mut ws, r)) => {
            ws.close(None).await.unwrap();
            r.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn websockets_are_same_origin_unless_allowed() {
    let s = start_with(|_, _| {}).await;
    // The finding: an upgrade with Origin: http://evil.example succeeded.
    assert_eq!(upgrade_from(&s, "http://evil.example").await, 403);
    assert_eq!(upgrade_from(&s, "null").await, 403);
    assert_eq!(upgrade_from(&s, &format!("http://{}", s.addr)).await, 101);
    assert_eq!(
        upgrade_from(&s, &format!("http://localhost:{}", s.addr.port())).await,
        403,
        "a page of localhost is another origin than 127.0.0.1"
    );
    s.stop().await;
    let s = start_with(|_, h| h.allowed_origins = vec!["https://app.example".into()]).await;
    assert_eq!(upgrade_from(&s, "https://app.example").await, 101);
    assert_eq!(upgrade_from(&s, "http://evil.example").await, 403);
    s.stop().await;
}

#[tokio::test]
async fn a_cross_site_text_plain_publish_is_refused_and_no_cors_headers_are_sent() {
    let s = start_with(|_, _| {}).await;
    topic(&s, "t").await;
    let publish = |origin: Option<String>| {
        let mut r = s
            .http
            .post(s.url("/v1/topics/t/messages"))
            .header("content-type", "text/plain")
            .body("from a page");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    // The finding: a page anywhere could publish with a simple (no-preflight) request.
    let (st, body) = answer(publish(Some("http://evil.example".into())).await.unwrap()).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("origin_not_allowed")),
        "{body}"
    );
    let (st, _) = answer(publish(Some(format!("http://{}", s.addr))).await.unwrap()).await;
    assert_eq!(st, 200, "same origin");
    let (st, _) = answer(publish(None).await.unwrap()).await;
    assert_eq!(st, 200, "curl sends no Origin");
    // Reads from another origin are not refused, but carry no CORS header, so a page of that
    // origin cannot read them; neither does a preflight answer one.
    let r = s
        .http
        .get(s.url("/v1/topics"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r
        .headers()
        .keys()
        .any(|k| k.as_str().starts_with("access-control-")));
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/topics/t/messages"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r
        .headers()
        .keys()
        .any(|k| k.as_str().starts_with("access-control-")));
    s.stop().await;
}

/// Whether the server closed `conn` (EOF or reset) within `within`, reading what it sends.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_trickling_request_head_is_cut_at_the_header_timeout() {
    let s = start_with(|_, h| h.header_timeout_ms = 1_000).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(64)
    );
    // The attack: one byte at a time, each well within the idle timeout (60 s), the whole
    // head far beyond the header timeout. The pause between bytes is the subject of the test.
    let started = tokio::time::Instant::now();
    let (mut rd, mut wr) = conn.split();
    let trickle = async {
        for b in head.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if text.starts_with("HTTP/1.1 200") {
                        return false;
                    }
                }
            }
        }
    };
    let outcome = tokio::time::timeout(WAIT, async {
        tokio::select! {
            c = closed => c,
            () = trickle => false,
        }
    })
    .await;
    assert_eq!(outcome, Ok(true), "the server closes the connection");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let s = start_with(|_, h| h.max_header_bytes = 16 << 10).await;
    let r = s
        .http
        .get(s.url("/healthz"))
        .header("x-big", "a".repeat(32 << 10))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    for _ in 0..64 {
        if conn
            .write_all(format!("X-Pad: {}\r\n", "b".repeat(1000)).as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    assert!(
        closed_within(&mut conn, WAIT).await,
        "the server refuses a head over the limit and closes"
    );
    s.stop().await;
}
