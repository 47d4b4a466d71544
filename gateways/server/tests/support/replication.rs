//! Replication test helpers: a master and slaves as real `rocketgate broker` processes with a
//! shared config file, the master's metrics, and REST publish / drain.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use super::{admin_json, http, poll_until, Node, WAIT};

pub const BROKER_EPHEMERAL: [&str; 8] = [
    "--grpc-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--mqtt-addr",
    "127.0.0.1:0",
    "--mqtt-ws-addr",
    "127.0.0.1:0",
];

/// A config file: `min_in_sync` and 16 MiB segments (the same on every node: the handshake
/// checks it), so 20 rounds of three nodes do not preallocate 60 GiB.
pub fn config(dir: &Path, min_in_sync: usize) -> String {
    let path = dir.join(format!("min{min_in_sync}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\nsegment_size = 16777216\n[replication]\nmin_in_sync_replicas = {min_in_sync}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

pub fn master(dir: &Path, name: &str, data: &Path, mode: &str, conf: &str) -> Node {
    let mut args = vec!["broker", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(&BROKER_EPHEMERAL);
    args.extend_from_slice(&[
        "--replication-addr",
        "127.0.0.1:0",
        "--replication-mode",
        mode,
        "--flush-mode",
        "SYNC",
        "--config",
        conf,
    ]);
    Node::start(dir, name, &args)
}

pub fn slave(dir: &Path, name: &str, data: &Path, id: &str, master_addr: &str) -> Node {
    let conf = config(dir, 1);
    let mut args = vec!["broker", "--data-dir", data.to_str().unwrap()];
    // Its read gateways (`replication.slave_reads`) on ephemeral ports.
    args.extend_from_slice(&BROKER_EPHEMERAL);
    args.extend_from_slice(&[
        "--broker-id",
        id,
        "--master-addr",
        master_addr,
        "--replication-addr",
        "127.0.0.1:0",
        "--flush-mode",
        "SYNC",
        "--config",
        &conf,
    ]);
    Node::start(dir, name, &args)
}

/// A slave that can be promoted by a switchover: its replication listener and (once it is the
/// master) every gateway on ephemeral ports, with `conf` (the master's policy).
pub fn promotable_slave(
    dir: &Path,
    name: &str,
    data: &Path,
    id: &str,
    master_addr: &str,
    mode: &str,
    conf: &str,
) -> Node {
    let mut args = vec!["broker", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(&BROKER_EPHEMERAL);
    args.extend_from_slice(&[
        "--broker-id",
        id,
        "--master-addr",
        master_addr,
        "--replication-addr",
        "127.0.0.1:0",
        "--replication-mode",
        mode,
        "--flush-mode",
        "SYNC",
        "--config",
        conf,
    ]);
    Node::start(dir, name, &args)
}

/// One HTTP/1.1 request; `None` when the connection fails (the server is gone).
pub fn try_http(address: &str, method: &str, path: &str, json: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

pub fn metric(web: &str, line_start: &str) -> Option<f64> {
    let (status, text) = try_http(web, "GET", "/metrics", "")?;
    (status == 200).then_some(())?;
    text.lines()
        .find(|l| l.starts_with(line_start))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

pub fn wait_in_sync(web: &str, replicas: usize) {
    let ok = poll_until(WAIT, "the in-sync set to be complete", || {
        (metric(web, "rocketgate_replication_in_sync_replicas ")? >= replicas as f64).then_some(())
    });
    assert!(ok.is_some(), "{}", http(web, "GET", "/metrics", None).1);
}

/// Every message of topic `orders` a new group receives from `web`: (body, message id).
pub fn drain(web: &str, group: &str) -> Vec<(String, String)> {
    receive_all(web, group, false)
}

/// Receives and acks from `orders` in `group` until nothing arrives for five polls: body →
/// deliveries.
pub fn drain_acked(web: &str, group: &str) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for (body, _) in receive_all(web, group, true) {
        *seen.entry(body).or_default() += 1;
    }
    seen
}

/// Receives from `orders` in `group` (acking each message when `ack`) until nothing arrives
/// for five polls: (body, message id) in delivery order.
fn receive_all(web: &str, group: &str, ack: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut empty = 0;
    let deadline = Instant::now() + WAIT * 2;
    while empty < 5 {
        assert!(Instant::now() < deadline, "draining took too long");
        let (status, body) = http(
            web,
            "POST",
            &format!("/v1/groups/{group}/receive"),
            Some(r#"{"topic":"orders","max":256,"wait_ms":200}"#),
        );
        assert_eq!(status, 200, "{body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        let messages = got["messages"].as_array().unwrap();
        if messages.is_empty() {
            empty += 1;
        }
        for m in messages {
            out.push((
                m["body"].as_str().unwrap().to_owned(),
                m["message_id"].as_str().unwrap().to_owned(),
            ));
            if ack {
                let handle = m["receipt_handle"].as_str().unwrap();
                let (s, b) = http(
                    web,
                    "POST",
                    &format!("/v1/groups/{group}/ack"),
                    Some(&format!(r#"{{"receipt_handle":"{handle}"}}"#)),
                );
                assert!((200..300).contains(&s), "{s} {b}");
            }
        }
    }
    out
}

/// Publishes `bodies` over REST to topic `orders`, each acknowledged.
pub fn publish(web: &str, bodies: impl IntoIterator<Item = String>) {
    for body in bodies {
        let (s, b) = http(
            web,
            "POST",
            "/v1/topics/orders/messages",
            Some(&format!(r#"{{"body":"{body}"}}"#)),
        );
        assert!((200..300).contains(&s), "{s} {b}");
    }
}

/// A `broker info` field of `node`'s broker.
pub fn info_field(node: &Node, field: &str) -> u64 {
    let info = admin_json(&["--broker", &node.endpoint("grpc"), "broker", "info"]);
    fn find(v: &serde_json::Value, field: &str) -> Option<u64> {
        match v {
            serde_json::Value::Object(m) => m
                .get(field)
                .and_then(serde_json::Value::as_u64)
                .or_else(|| m.values().find_map(|v| find(v, field))),
            serde_json::Value::Array(a) => a.iter().find_map(|v| find(v, field)),
            _ => None,
        }
    }
    find(&info, field).unwrap_or_else(|| panic!("no {field} in {info}"))
}
