//! Bad input over a raw socket: each gets `-ERR` in NATS's words, the connection ends where
//! NATS ends it, and nothing is stored.

use rocketgate_nats::NatsConfig;

use crate::support::{stored, Raw, Server};

fn small() -> NatsConfig {
    NatsConfig {
        max_payload: 1024,
        max_subscriptions: 5,
        max_control_line: 256,
        ..NatsConfig::default()
    }
}

#[tokio::test]
async fn info_advertises_the_limits_and_verbose_mode_acknowledges_after_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), small()).await;
    let mut raw = Raw::connect(&server.addr).await;
    let info: serde_json::Value = serde_json::from_str(&raw.info["INFO ".len()..]).unwrap();
    assert_eq!(info["max_payload"], 1024);
    assert_eq!(info["headers"], true);
    assert_eq!(info["auth_required"], false);
    assert_eq!(info["proto"], 1);
    raw.send(b"CONNECT {\"verbose\":true}\r\n").await;
    assert_eq!(raw.line().await, "+OK");
    raw.send(b"PUB v.x 3\r\nabc\r\n").await;
    assert_eq!(raw.line().await, "+OK");
    assert_eq!(stored(&server.broker, "v").await, 1, "stored before +OK");
    raw.send(b"SUB v.> 1\r\nUNSUB 1\r\nPING\r\n").await;
    assert_eq!(raw.line().await, "+OK");
    assert_eq!(raw.line().await, "+OK");
    assert_eq!(raw.line().await, "PONG");
    server.stop().await;
}

#[tokio::test]
async fn protocol_violations_end_the_connection_with_nats_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), small()).await;
    let cases: &[(&[u8], &str)] = &[
        (b"FOO bar\r\n", "-ERR 'Unknown Protocol Operation'"),
        (b"PUB big 2000\r\n", "-ERR 'Maximum Payload Violation'"),
        (
            b"PUB bad 3\r\nabcdef\r\n",
            "-ERR 'Unknown Protocol Operation'",
        ),
        (b"PUB bad x\r\n", "-ERR 'Unknown Protocol Operation'"),
        (b"CONNECT {oops\r\n", "-ERR 'Invalid Client Protocol'"),
    ];
    for (input, want) in cases {
        let mut raw = Raw::connected(&server.addr, "{}").await;
        raw.send(input).await;
        let rest = raw.until_closed().await;
        assert_eq!(
            rest,
            format!("{want}\r\n"),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // A control line with no end in sight.
    let mut raw = Raw::connected(&server.addr, "{}").await;
    raw.send(&[b'P'; 400]).await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Maximum Control Line Exceeded'\r\n"
    );
    for t in ["big", "bad"] {
        assert_eq!(stored(&server.broker, t).await, 0, "{t}");
    }
    server.stop().await;
}

#[tokio::test]
async fn illegal_subjects_are_refused_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), small()).await;
    let mut raw = Raw::connected(&server.addr, "{}").await;
    for (op, want) in [
        (
            &b"PUB a:b.c 1\r\nx\r\n"[..],
            "-ERR 'Invalid Publish Subject'",
        ),
        (b"PUB a.*.c 1\r\nx\r\n", "-ERR 'Invalid Publish Subject'"),
        (b"PUB a..c 1\r\nx\r\n", "-ERR 'Invalid Publish Subject'"),
        (
            b"PUB $JS.API.INFO 1\r\nx\r\n",
            "-ERR 'Invalid Publish Subject'",
        ),
        (
            b"PUB ok.x bad:reply 1\r\nx\r\n",
            "-ERR 'Invalid Publish Subject'",
        ),
        (b"SUB a.>.c 1\r\n", "-ERR 'Invalid Subject'"),
        (b"SUB bad%topic 1\r\n", "-ERR 'Invalid Subject'"),
        (b"SUB ok.x bad*queue 1\r\n", "-ERR 'Invalid Subject'"),
    ] {
        raw.send(op).await;
        assert_eq!(raw.line().await, want, "{:?}", String::from_utf8_lossy(op));
        raw.send(b"PING\r\n").await;
        assert_eq!(raw.line().await, "PONG");
    }
    assert_eq!(stored(&server.broker, "ok").await, 0);
    assert_eq!(stored(&server.broker, "a").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_sub_flood_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), small()).await;
    let mut raw = Raw::connected(&server.addr, "{}").await;
    let mut flood = String::new();
    for i in 0..50 {
        flood.push_str(&format!("SUB flood.s{i} {i}\r\n"));
    }
    flood.push_str("PING\r\n");
    raw.send(flood.as_bytes()).await;
    for _ in 5..50 {
        assert_eq!(raw.line().await, "-ERR 'Maximum Subscriptions Exceeded'");
    }
    assert_eq!(raw.line().await, "PONG");
    // Re-using a sid replaces, it does not count twice.
    raw.send(b"SUB flood.other 1\r\nPING\r\n").await;
    assert_eq!(raw.line().await, "PONG");
    server.stop().await;
}

#[tokio::test]
async fn nothing_but_ping_before_connect_and_connect_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        NatsConfig {
            connect_timeout_ms: 300,
            ..small()
        },
    )
    .await;
    let mut raw = Raw::connect(&server.addr).await;
    raw.send(b"PING\r\n").await;
    assert_eq!(raw.line().await, "PONG");
    raw.send(b"PUB early 1\r\nx\r\n").await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );
    let mut raw = Raw::connect(&server.addr).await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authentication Timeout'\r\n"
    );
    assert_eq!(stored(&server.broker, "early").await, 0);
    server.stop().await;
}
