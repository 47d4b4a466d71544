//! Replication with real processes (phase 2a, ASYNC): a master `rocketgate broker` with
//! replication on, a slave (`--broker-id 1 --master-addr`) following it over the network; the
//! slave catches up, survives its own restart mid-stream, and after a `kill -9` of the master
//! its data directory opened as a master (a manual promotion) serves every acknowledged
//! message exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::{http, poll_until, Node, WAIT};

const EPHEMERAL: [&str; 8] = [
    "--grpc-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--mqtt-addr",
    "127.0.0.1:0",
    "--mqtt-ws-addr",
    "127.0.0.1:0",
];

fn master(dir: &Path, name: &str, data: &Path) -> Node {
    let mut args = vec!["broker", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(&EPHEMERAL);
    args.extend_from_slice(&["--replication-addr", "127.0.0.1:0"]);
    Node::start(dir, name, &args)
}

fn slave(dir: &Path, name: &str, data: &Path, master_addr: &str) -> Node {
    let args = [
        "broker",
        "--data-dir",
        data.to_str().unwrap(),
        "--broker-id",
        "1",
        "--master-addr",
        master_addr,
        "--replication-addr",
        "127.0.0.1:0",
    ];
    Node::start(dir, name, &args)
}

fn send(web: &str, from: usize, to: usize) {
    for i in from..to {
        let (status, body) = http(
            web,
            "POST",
            "/v1/topics/orders/messages",
            Some(&format!(r#"{{"body":"order {i}"}}"#)),
        );
        assert!((200..300).contains(&status), "{status} {body}");
    }
}

/// The master's CommitLog end, from `rocketgate admin broker info`.
fn master_end(node: &Node) -> u64 {
    let info = support::admin_json(&["--broker", &node.endpoint("grpc"), "broker", "info"]);
    fn find(v: &serde_json::Value) -> Option<u64> {
        match v {
            serde_json::Value::Object(m) => m
                .get("log_end_offset")
                .and_then(serde_json::Value::as_u64)
                .or_else(|| m.values().find_map(find)),
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    find(&info).unwrap_or_else(|| panic!("no log_end_offset in {info}"))
}

/// The last log end the slave logged as caught up.
fn slave_end(node: &Node) -> Option<u64> {
    let text = node.log_text();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("replica caught up"))?;
    let at = line.find("log_end=")? + "log_end=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn wait_caught_up(m: &Node, s: &Node) {
    let end = master_end(m);
    let reached = poll_until(WAIT, "the slave to reach the master's end", || {
        slave_end(s).filter(|&e| e >= end)
    });
    assert!(
        reached.is_some(),
        "the slave did not reach {end}:\n{}",
        s.log_text()
    );
}

#[test]
fn a_slave_follows_catches_up_after_a_restart_and_is_promoted_after_the_master_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (mdata, sdata) = (dir.path().join("m"), dir.path().join("s"));
    let mut m = master(dir.path(), "master", &mdata);
    let web = m.endpoint("http");
    let repl = m.endpoint("replication");
    let (status, body) = http(
        &web,
        "POST",
        "/v1/topics",
        Some(r#"{"name":"orders","queue_count":2}"#),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    send(&web, 0, 40);

    let s = slave(dir.path(), "slave", &sdata, &repl);
    wait_caught_up(&m, &s);

    // Restarted mid-stream: stopped while the master keeps writing, then it catches up.
    send(&web, 40, 60);
    let (status, _) = s.terminate();
    assert!(status.success(), "the slave did not stop cleanly");
    send(&web, 60, 100);
    let s = slave(dir.path(), "slave2", &sdata, &repl);
    wait_caught_up(&m, &s);
    // The master exports the slave's lag from its reports: none once it caught up.
    let lag = poll_until(WAIT, "the master's lag metric of slave 1 at 0", || {
        let (status, text) = http(&web, "GET", "/metrics", None);
        (status == 200
            && text.lines().any(|l| {
                l.starts_with("rocketgate_replication_lag_bytes{slave=\"1\"}") && l.ends_with(" 0")
            }))
        .then_some(())
    });
    assert!(lag.is_some(), "{}", http(&web, "GET", "/metrics", None).1);

    // The master dies; the slave is stopped and its directory opened as a master.
    m.kill9();
    let (status, _) = s.terminate();
    assert!(status.success(), "the slave did not stop cleanly");
    let promoted = master(dir.path(), "promoted", &sdata);
    let log = promoted.log_text();
    assert!(log.contains("replication master term"), "{log}");
    let web = promoted.endpoint("http");
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let done = poll_until(WAIT, "every message from the promoted slave", || {
        let (status, body) = http(
            &web,
            "POST",
            "/v1/groups/billing/receive",
            Some(r#"{"topic":"orders","max":32,"wait_ms":200}"#),
        );
        assert_eq!(status, 200, "{body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        for msg in got["messages"].as_array().unwrap() {
            total += 1;
            seen.insert(msg["body"].as_str().unwrap().to_owned());
        }
        (seen.len() >= 100).then_some(())
    });
    assert!(done.is_some(), "got {} of 100", seen.len());
    assert_eq!(total, 100, "a message was delivered twice");
    let want: BTreeSet<String> = (0..100).map(|i| format!("order {i}")).collect();
    assert_eq!(seen, want);
}

#[test]
fn a_broker_of_another_group_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path(), "master", &dir.path().join("m"));
    let repl = m.endpoint("replication");
    let data = dir.path().join("x");
    let out = std::process::Command::new(support::BIN)
        .args([
            "broker",
            "--data-dir",
            data.to_str().unwrap(),
            "--broker-id",
            "1",
            "--master-addr",
            &repl,
            "--replication-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env("ROCKETGATE_CONFIG", {
            let path = dir.path().join("other.toml");
            std::fs::write(&path, "[broker]\nname = \"broker-b\"\n").unwrap();
            path
        })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out;
    let status = support::exited(&mut child, WAIT).expect("the slave did not exit");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("not of this group"), "{err}");
}

/// Starts `rocketgate ARGS` with the cluster secret `secret` in its environment.
fn with_secret(dir: &Path, name: &str, args: &[&str], secret: &str) -> Node {
    let ready = dir.join(format!("{name}.ready"));
    let log = dir.join(format!("{name}.log"));
    let child = std::process::Command::new(support::BIN)
        .args(args)
        .args(["--ready-file", ready.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("ROCKETGATE_CLUSTER_SECRET", secret)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Node::adopt(child, &ready, log)
}

#[test]
fn with_a_cluster_secret_only_a_slave_that_signs_with_it_follows() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "the-cluster-secret-0123456789";
    let mdata = dir.path().join("m");
    let mut args = vec!["broker", "--data-dir", mdata.to_str().unwrap()];
    args.extend_from_slice(&EPHEMERAL);
    args.extend_from_slice(&["--replication-addr", "127.0.0.1:0"]);
    let m = with_secret(dir.path(), "master", &args, secret);
    let (web, repl) = (m.endpoint("http"), m.endpoint("replication"));
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert!((200..300).contains(&status), "{status} {body}");
    send(&web, 0, 10);

    let slave_args = |data: &Path| {
        vec![
            "broker".to_owned(),
            "--data-dir".to_owned(),
            data.to_str().unwrap().to_owned(),
            "--broker-id".to_owned(),
            "1".to_owned(),
            "--master-addr".to_owned(),
            repl.clone(),
            "--replication-addr".to_owned(),
            "127.0.0.1:0".to_owned(),
        ]
    };
    let forged_data = dir.path().join("forged");
    let forged_args = slave_args(&forged_data);
    let forged_args: Vec<&str> = forged_args.iter().map(String::as_str).collect();
    let forged = with_secret(
        dir.path(),
        "forged",
        &forged_args,
        "another-secret-0123456789",
    );
    let refused = poll_until(WAIT, "the forged slave's refusal", || {
        forged
            .log_text()
            .contains("not this cluster's secret")
            .then_some(())
    });
    assert!(refused.is_some(), "{}", forged.log_text());
    assert!(!forged.log_text().contains("replica caught up"));

    let good_data = dir.path().join("good");
    let good_args = slave_args(&good_data);
    let good_args: Vec<&str> = good_args.iter().map(String::as_str).collect();
    let good = with_secret(dir.path(), "good", &good_args, secret);
    wait_caught_up(&m, &good);
}

#[test]
fn with_tls_on_the_slave_follows_over_tls() {
    use rocketgate_gateway_kit::test_ca::TestCa;
    let dir = tempfile::tempdir().unwrap();
    let mdata = dir.path().join("m");
    // Data written in plain first (the REST client here speaks plain HTTP), then TLS on.
    let m = master(dir.path(), "plain", &mdata);
    let web = m.endpoint("http");
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert!((200..300).contains(&status), "{status} {body}");
    send(&web, 0, 10);
    let (status, _) = m.terminate();
    assert!(status.success());

    let ca = TestCa::new(dir.path(), "root").unwrap();
    let cert = ca.server("node").unwrap();
    let conf = dir.path().join("tls.toml");
    std::fs::write(&conf, format!("[tls]\nca = \"{}\"\n", ca.ca_pem.display())).unwrap();
    let tls = [
        "--config",
        conf.to_str().unwrap(),
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
    ];
    let mut args = vec!["broker", "--data-dir", mdata.to_str().unwrap()];
    args.extend_from_slice(&EPHEMERAL);
    args.extend_from_slice(&["--replication-addr", "127.0.0.1:0"]);
    args.extend_from_slice(&tls);
    let m = Node::start(dir.path(), "master", &args);
    let repl = m.endpoint("replication");
    let sdata = dir.path().join("s");
    let mut args = vec![
        "broker",
        "--data-dir",
        sdata.to_str().unwrap(),
        "--broker-id",
        "1",
        "--master-addr",
        &repl,
        "--replication-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(&tls);
    let s = Node::start(dir.path(), "slave", &args);
    let end = master_end_at_ready(&m);
    assert!(end > 0);
    let reached = poll_until(WAIT, "the slave to reach the master's end", || {
        slave_end(&s).filter(|&e| e >= end)
    });
    assert!(reached.is_some(), "{}", s.log_text());
}

/// The master's CommitLog end at open, from its `ready` line (`rocketgate admin` has no TLS).
fn master_end_at_ready(node: &Node) -> u64 {
    let text = node.log_text();
    let line = text.lines().find(|l| l.contains("ready")).unwrap();
    let at = line.find("log_end=").unwrap() + "log_end=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
