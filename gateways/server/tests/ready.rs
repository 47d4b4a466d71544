//! `rocketgate standalone` says `ready` (its log line, then the ready file) only once every
//! endpoint accepts connections and serves them: the node's `listening` line of each endpoint
//! and the MQTT gateway's "retained messages loaded" line (it loads them before it accepts) are
//! logged before `ready`, and every endpoint answers right after the ready file appears. Started on a fresh
//! directory, then on one whose MQTT gateway takes a while to start: an upgrade from a version
//! that kept retained messages in the topic `mqtt_sys_retained`, imported once at start with
//! one durable KV write per record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use support::{admin_json, standalone, Node};

/// How long an endpoint may take to answer once the node said `ready`. A serving endpoint
/// answers in milliseconds: 5 s is a generous bound for a loaded machine (the order of the log
/// lines, checked too, does not depend on timing).
const AT_ONCE: Duration = Duration::from_secs(5);

/// An MQTT 3.1.1 CONNECT (clean session, client id `rd`).
const CONNECT: [u8; 16] = [
    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'r', b'd',
];

/// Leaves in `data` what an earlier version's MQTT gateway left: `n` retained messages in
/// its old topic `mqtt_sys_retained`.
fn old_retained_topic(data: &Path, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = rocketgate_core::Config::default();
        config.store.data_dir = data.to_path_buf();
        let broker = rocketgate_core::Broker::open(config).unwrap();
        // The gateway's topics and properties are reserved to it in core.
        let old = broker.as_caller(rocketgate_core::Caller::gateway(
            rocketgate_core::Gateway::Mqtt,
        ));
        let topic = "mqtt_sys_retained";
        old.topics()
            .create(rocketgate_core::TopicConfig::new(topic, 1))
            .unwrap();
        for i in 0..n {
            let mut m = rocketgate_core::Message::new(topic, format!("r{i}"));
            m.properties.insert("mqttTopic".into(), format!("kept/{i}"));
            old.producer().send(m.into()).await.unwrap();
        }
        drop(old);
        broker.close().await.unwrap();
    });
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(AT_ONCE)).unwrap();
    s
}

fn read_exact(s: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut b = vec![0; n];
    s.read_exact(&mut b)
        .unwrap_or_else(|e| panic!("{what}: no answer within {AT_ONCE:?}: {e}"));
    b
}

/// MQTT over TCP: CONNECT answered by CONNACK 0 at once.
fn mqtt_answers(addr: &str) {
    let mut s = connect(addr);
    s.write_all(&CONNECT).unwrap();
    assert_eq!(read_exact(&mut s, 4, "mqtt CONNACK"), [0x20, 2, 0, 0]);
}

/// MQTT over WebSocket: the upgrade, then CONNECT in a masked binary frame answered by
/// CONNACK 0 at once.
fn mqtt_ws_answers(addr: &str) {
    let mut s = connect(addr);
    let upgrade = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_exact(&mut s, 1, "mqtt_ws upgrade"));
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | CONNECT.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(CONNECT.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    assert_eq!(
        read_exact(&mut s, 6, "mqtt_ws CONNACK"),
        [0x82, 4, 0x20, 2, 0, 0]
    );
}

/// Checks the order of the log and that every endpoint answers.
fn ready_after_every_endpoint(node: &Node) {
    let log = node.log_text();
    let ready = log
        .find("rocketgate standalone ready")
        .unwrap_or_else(|| panic!("no ready line:\n{log}"));
    for line in [
        "listening endpoint=nameserver ",
        "listening endpoint=grpc ",
        "listening endpoint=mqtt ",
        "listening endpoint=mqtt_ws ",
        "MQTT retained messages loaded",
    ] {
        let at = log
            .find(line)
            .unwrap_or_else(|| panic!("no {line:?} line:\n{log}"));
        assert!(at < ready, "{line:?} logged after `ready`:\n{log}");
    }
    mqtt_answers(&node.endpoint("mqtt"));
    mqtt_ws_answers(&node.endpoint("mqtt_ws"));
    let (status, body) = support::http(&node.endpoint("http"), "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    let info = admin_json(&["--broker", &node.endpoint("grpc"), "broker", "info"]);
    assert!(info.to_string().contains("broker"), "{info}");
    let mut ns = connect(&node.endpoint("nameserver"));
    // The HTTP/2 preface: a gRPC server answers with its SETTINGS frame (type 4).
    ns.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    assert_eq!(read_exact(&mut ns, 9, "nameserver SETTINGS")[3], 4);
}

#[test]
fn standalone_says_ready_only_once_every_endpoint_accepts_connections() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "data", &[]);
    ready_after_every_endpoint(&node);
    let (status, _) = node.terminate();
    assert!(status.success());

    let dir = tempfile::tempdir().unwrap();
    old_retained_topic(&dir.path().join("data"), 1000);
    let node = standalone(dir.path(), "data", &[]);
    ready_after_every_endpoint(&node);
    assert!(
        node.log_text().contains("retained=1000"),
        "the old retained messages were imported:\n{}",
        node.log_text()
    );
    let (status, _) = node.terminate();
    assert!(status.success());
}
