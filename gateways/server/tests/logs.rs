//! The log tells the story (issue 23): the real binary's stderr at the default level has one
//! `listening` line per endpoint (no library duplicates) before one `ready` line, for
//! `standalone` and for `nameserver`; an MQTT login refused and one accepted (and its
//! disconnect) each leave an info line with the client id and the client's address; an HTTP
//! connection leaves an `opened` and a `closed` line (connections, not requests); `--help`
//! says that `--log` overrides `RUST_LOG`. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::{poll_until, run, standalone, Node, WAIT};

/// An MQTT 3.1.1 CONNECT (clean session) of `client` with a username and password.
fn connect_packet(client: &str, user: &str, password: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    for field in [client, user, password] {
        body.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
    packet.extend(body);
    packet
}

/// Logs in as `client` and returns the CONNACK's return code and the socket.
fn mqtt_login(addr: &str, client: &str, password: &str) -> (u8, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&connect_packet(client, "u", password)).unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)
        .unwrap_or_else(|e| panic!("no CONNACK for {client} within {WAIT:?}: {e}"));
    assert_eq!(connack[..2], [0x20, 2], "{connack:?}");
    (connack[3], s)
}

/// Waits for a log line with every one of `parts`; returns it.
fn line_with(node: &Node, parts: &[&str]) -> String {
    poll_until(WAIT, &format!("a log line with {parts:?}"), || {
        node.log_text()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no log line with {parts:?}:\n{}", node.log_text()))
}

/// One `listening` line per endpoint of the ready file, all before the one `ready` line, and
/// none of the gateways' own listening lines at the default level.
fn listening_then_ready(node: &Node, ready: &str) {
    let log = node.log_text();
    let at = log
        .find(ready)
        .unwrap_or_else(|| panic!("no {ready:?} line:\n{log}"));
    assert_eq!(log.matches(ready).count(), 1, "{log}");
    let endpoints = node.ready["endpoints"].as_object().unwrap();
    assert!(!endpoints.is_empty());
    let listening = log.lines().filter(|l| l.contains(" listening ")).count();
    assert_eq!(listening, endpoints.len(), "one line per endpoint:\n{log}");
    for (protocol, address) in endpoints {
        let line = format!(
            "listening endpoint={protocol} address={}",
            address.as_str().unwrap()
        );
        let pos = log
            .find(&line)
            .unwrap_or_else(|| panic!("no {line:?}:\n{log}"));
        assert!(pos < at, "{line:?} after {ready:?}:\n{log}");
    }
    for duplicate in ["addr=Some(", "MQTT listening", "gRPC gateway listening"] {
        assert!(!log.contains(duplicate), "{duplicate:?} logged:\n{log}");
    }
}

#[test]
fn connections_logins_and_endpoints_are_logged_at_info() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rocketgate.toml");
    std::fs::write(
        &config,
        "[mqtt]\nallow_anonymous = false\n\n[mqtt.users]\nu = \"right-password\"\n",
    )
    .unwrap();
    let node = standalone(dir.path(), "data", &["--config", config.to_str().unwrap()]);
    listening_then_ready(&node, "rocketgate standalone ready");
    let mqtt = node.endpoint("mqtt");

    // A refused login: 3.1.1 return code 4 (bad user name or password), and a line.
    let (code, bad) = mqtt_login(&mqtt, "bad-login-1", "wrong");
    assert_eq!(code, 4);
    let peer = bad.local_addr().unwrap();
    let line = line_with(&node, &["MQTT authentication failed", "client=bad-login-1"]);
    assert!(line.contains(&format!("peer={peer}")), "{line}");
    assert!(line.contains(" INFO "), "{line}");
    assert!(!line.contains("wrong"), "no password in the log: {line}");
    drop(bad);

    // An accepted login, then DISCONNECT.
    let (code, mut good) = mqtt_login(&mqtt, "good-login-1", "right-password");
    assert_eq!(code, 0);
    let peer = good.local_addr().unwrap();
    let line = line_with(&node, &["MQTT client connected", "client=good-login-1"]);
    assert!(line.contains(&format!("peer={peer}")), "{line}");
    good.write_all(&[0xE0, 0]).unwrap();
    let line = line_with(&node, &["MQTT client disconnected", "client=good-login-1"]);
    assert!(line.contains(&format!("peer={peer}")), "{line}");
    assert!(line.contains("end=Normal"), "{line}");

    // HTTP: a connection with one request is two lines, none per request.
    let (status, _) = support::http(&node.endpoint("http"), "GET", "/healthz", None);
    assert_eq!(status, 200);
    line_with(&node, &["HTTP connection opened", "peer=127.0.0.1:"]);
    line_with(&node, &["HTTP connection closed", "requests=1"]);
    assert!(
        !node.log_text().contains("/healthz"),
        "no per-request line:\n{}",
        node.log_text()
    );

    let (status, _) = node.terminate();
    assert!(status.success());
}

#[test]
fn the_nameserver_says_ready_after_its_listening_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        "ns",
        &["nameserver", "--nameserver-addr", "127.0.0.1:0"],
    );
    listening_then_ready(&node, "rocketgate nameserver ready");
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[test]
fn log_flag_help_names_rust_log() {
    for command in ["standalone", "broker", "nameserver"] {
        let out = run(&[command, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        let log = help
            .split("--log")
            .nth(1)
            .unwrap_or_else(|| panic!("{command} --help has no --log:\n{help}"));
        assert!(
            log.split("--").next().unwrap_or("").contains("RUST_LOG"),
            "{command} --help: --log does not mention RUST_LOG:\n{help}"
        );
    }
}
