//! Process tests of `rocketgate admin`: the real binary against a real `rocketgate standalone`
//! (broker, gateways and its embedded NameServer on ephemeral ports), every command run as a
//! child process bounded in time, its `--json` output parsed and checked against what the
//! server holds. Also: exit codes and the one-line errors for an unreachable server, an unknown
//! topic and bad flags. Every server started here is stopped by the test (SIGTERM at the end,
//! kill on drop if the test fails first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Output;

use base64::Engine;
use serde_json::Value;
use support::{admin_json, run, standalone};

/// The admin tool aimed at one node.
struct Admin {
    grpc: String,
    namesrv: String,
}

impl Admin {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--broker", &self.grpc, "--namesrv", &self.namesrv];
        all.extend_from_slice(args);
        all
    }

    /// `admin --json ARGS`, which must succeed.
    fn json(&self, args: &[&str]) -> Value {
        admin_json(&self.args(args))
    }

    /// `admin ARGS` (no `--json`), whatever the outcome.
    fn raw(&self, args: &[&str]) -> Output {
        let mut all = vec!["admin"];
        all.extend(self.args(args));
        run(&all)
    }

    /// Polls `admin --json ARGS` until `done` holds (bounded).
    fn until(&self, args: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        support::poll_until(support::WAIT, what, || {
            last = self.json(args);
            done(&last).then(|| last.clone())
        })
        .unwrap_or_else(|| panic!("{what}: {last}"))
    }
}

/// The one stderr line of a failed run, checked for shape.
fn error_line(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(
        lines[0].starts_with("rocketgate admin: error: "),
        "{stderr}"
    );
    lines[0].to_owned()
}

fn queue<'a>(lags: &'a Value, topic: &str, queue_id: u64) -> &'a Value {
    lags.as_array()
        .unwrap()
        .iter()
        .find(|l| l["topic"] == topic && l["queue_id"] == queue_id)
        .unwrap_or_else(|| panic!("no lag for {topic}/{queue_id}: {lags}"))
}

#[test]
fn admin_runs_every_command_against_a_standalone_server() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "standalone", &[]);
    let admin = Admin {
        grpc: node.endpoint("grpc"),
        namesrv: node.endpoint("nameserver"),
    };
    let grpc = admin.grpc.clone();

    // Topics.
    let created = admin.json(&["topic", "create", "orders", "--queues", "4"]);
    let r = &created["results"][0];
    assert_eq!(r["broker"], grpc.as_str(), "{created}");
    assert_eq!(r["ok"], true, "{created}");
    assert_eq!(r["topic"]["name"], "orders", "{created}");
    assert_eq!(r["topic"]["queue_count"], 4, "{created}");
    assert_eq!(r["topic"]["message_type"], "NORMAL", "{created}");
    assert_eq!(r["topic"]["permission"], "rw", "{created}");

    let list = admin.json(&["topic", "list"]);
    let orders: Vec<&Value> = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "orders")
        .collect();
    assert_eq!(orders.len(), 1, "{list}");
    assert_eq!(orders[0]["queue_count"], 4, "{list}");
    assert_eq!(orders[0]["broker"], grpc.as_str(), "{list}");

    let status = admin.json(&["topic", "status", "orders"]);
    assert_eq!(status["topic"], "orders", "{status}");
    let queues = status["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 4, "{status}");
    assert!(
        queues
            .iter()
            .all(|q| q["max_offset"] == 0 && q["last_store_time"].is_null()),
        "{status}"
    );

    let updated = admin.json(&["topic", "update", "orders", "--queues", "6"]);
    assert_eq!(updated["results"][0]["ok"], true, "{updated}");
    assert_eq!(
        updated["results"][0]["topic"]["queue_count"], 6,
        "{updated}"
    );
    let status = admin.json(&["topic", "status", "orders"]);
    assert_eq!(status["queues"].as_array().unwrap().len(), 6, "{status}");

    let route = admin.until(&["topic", "route", "orders"], "route with 6 queues", |r| {
        r["queues"][0]["write_queues"] == 6
    });
    assert_eq!(route["topic"], "orders", "{route}");
    assert_eq!(route["queues"][0]["broker_name"], "broker-a", "{route}");
    assert_eq!(route["queues"][0]["permission"], "rw", "{route}");
    assert_eq!(route["brokers"][0]["cluster"], "DefaultCluster", "{route}");
    let member = &route["brokers"][0]["addresses"][0];
    assert_eq!(member["broker_id"], 0, "{route}");
    assert_eq!(member["role"], "master", "{route}");
    assert_eq!(member["endpoints"]["grpc"], grpc.as_str(), "{route}");

    // Messages: send, then find by id, key and time.
    let before_send = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let sent = admin.json(&[
        "message",
        "send",
        "orders",
        "hello admin",
        "--tag",
        "TagA",
        "--key",
        "order-1",
        "--key",
        "extra",
        "--queue",
        "1",
    ]);
    let id = sent["message_id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty(), "{sent}");
    assert_eq!(sent["queue_id"], 1, "{sent}");
    assert_eq!(sent["queue_offset"], 0, "{sent}");
    assert_eq!(sent["broker"], grpc.as_str(), "{sent}");

    // One set of conventions: a type in any case, printed as RocketMQ spells it; a delayed
    // message has no queue offset yet; a topic refuses another type in one clear line.
    let later = admin.json(&[
        "topic", "create", "later", "--queues", "1", "--type", "Delay",
    ]);
    assert_eq!(
        later["results"][0]["topic"]["message_type"], "DELAY",
        "{later}"
    );
    let delayed = admin.json(&["message", "send", "later", "soon", "--delay-level", "1"]);
    assert!(delayed["queue_offset"].is_null(), "{delayed}");
    assert!(delayed["deliver_at_ms"].as_i64().unwrap() > 0, "{delayed}");
    let human = admin.raw(&["message", "send", "later", "soon", "--deliver-at", "1h"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success(), "{text}");
    assert!(
        text.contains("gets its queue offset when it is delivered"),
        "{text}"
    );
    let out = admin.raw(&["message", "send", "later", "now"]);
    let line = error_line(&out, 1);
    assert!(
        line.contains("accepts DELAY messages, not NORMAL"),
        "{line}"
    );
    let out = admin.raw(&["message", "send", "orders", "soon", "--delay-level", "1"]);
    let line = error_line(&out, 1);
    assert!(
        line.contains("accepts NORMAL messages, not DELAY"),
        "{line}"
    );
    assert!(admin.json(&["topic", "delete", "later"])["results"][0]["ok"] == true);
    assert!(
        sent["store_time"].as_str().unwrap().ends_with('Z'),
        "{sent}"
    );

    let by_id = admin.json(&["message", "id", &id]);
    let m = &by_id["messages"][0];
    assert_eq!(m["message_id"], id.as_str(), "{by_id}");
    assert_eq!(m["topic"], "orders", "{by_id}");
    assert_eq!(m["queue_id"], 1, "{by_id}");
    assert_eq!(m["tag"], "TagA", "{by_id}");
    assert_eq!(m["keys"][0], "order-1", "{by_id}");
    assert_eq!(m["body"], "hello admin", "{by_id}");
    assert_eq!(
        m["body_base64"],
        base64::engine::general_purpose::STANDARD.encode("hello admin"),
        "{by_id}"
    );
    assert_eq!(m["body_size"], 11, "{by_id}");
    assert_eq!(m["broker"], grpc.as_str(), "{by_id}");

    let by_key = admin.until(
        &["message", "key", "orders", "order-1"],
        "indexed by key",
        |v| !v["messages"].as_array().unwrap().is_empty(),
    );
    assert_eq!(by_key["messages"][0]["message_id"], id.as_str(), "{by_key}");
    assert_eq!(by_key["truncated"], false, "{by_key}");

    let by_time = admin.json(&["message", "time", "orders", "--begin", "10m"]);
    let ids: Vec<&str> = by_time["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["message_id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()], "{by_time}");
    let later = admin.json(&["message", "time", "orders", "--begin", "now"]);
    assert!(later["messages"].as_array().unwrap().is_empty(), "{later}");

    // Pull + commit, then lag shows up for the messages sent after it.
    let pulled = admin.json(&[
        "message", "pull", "g1", "orders", "--queue", "1", "--commit",
    ]);
    assert_eq!(pulled["status"], "found", "{pulled}");
    assert_eq!(pulled["messages"][0]["message_id"], id.as_str(), "{pulled}");
    assert_eq!(pulled["next_offset"], 1, "{pulled}");
    assert_eq!(pulled["committed_offset"], 1, "{pulled}");
    for body in ["second", "third"] {
        admin.json(&["message", "send", "orders", body, "--queue", "1"]);
    }
    let groups = admin.json(&["group", "list"]);
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "g1" && g["broker"] == grpc.as_str()),
        "{groups}"
    );
    let g = admin.json(&["group", "status", "g1", "--topic", "orders"]);
    assert_eq!(g["group"], "g1", "{g}");
    let lag = queue(&g["lags"], "orders", 1);
    assert_eq!(lag["max_offset"], 3, "{g}");
    assert_eq!(lag["committed_offset"], 1, "{g}");
    assert_eq!(lag["pull_lag"], 2, "{g}");
    assert!(g["total_pull_lag"].as_u64().unwrap() >= 2, "{g}");
    assert!(g["brokers"][0]["clients"].is_array(), "{g}");

    // Offset reset to before the first send: queue 1 starts over.
    let reset = admin.json(&["offset", "reset", "g1", "orders", "--time", &before_send]);
    assert_eq!(reset["group"], "g1", "{reset}");
    let q1 = reset["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["queue_id"] == 1)
        .unwrap_or_else(|| panic!("{reset}"));
    assert_eq!(q1["offset"], 0, "{reset}");
    let g = admin.json(&["group", "status", "g1", "--topic", "orders"]);
    let lag = queue(&g["lags"], "orders", 1);
    assert_eq!(lag["committed_offset"], 0, "{g}");
    assert_eq!(lag["pull_lag"], 3, "{g}");

    // Dead letters of a group that never had any.
    let out = admin.raw(&["--json", "dlq", "list", "no-such-group"]);
    let line = error_line(&out, 1);
    assert!(line.contains("no-such-group"), "{line}");
    assert!(out.stdout.is_empty(), "nothing on stdout for a failure");

    // Cluster and broker.
    let clusters = admin.until(&["cluster", "list"], "broker-a registered", |v| {
        v.to_string().contains("broker-a")
    });
    let cluster = clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "DefaultCluster")
        .unwrap_or_else(|| panic!("{clusters}"));
    let b = &cluster["brokers"][0];
    assert_eq!(b["broker_name"], "broker-a", "{clusters}");
    assert_eq!(b["broker_id"], 0, "{clusters}");
    assert_eq!(b["role"], "master", "{clusters}");
    assert_eq!(b["endpoints"]["grpc"], grpc.as_str(), "{clusters}");
    assert!(
        b["last_heartbeat"].as_str().unwrap().ends_with('Z'),
        "{clusters}"
    );
    assert!(b["seconds_ago"].as_i64().unwrap() < 120, "{clusters}");

    let info = admin.json(&["broker", "info"]);
    let b = &info["brokers"][0];
    assert_eq!(b["broker"], grpc.as_str(), "{info}");
    assert_eq!(b["cluster"], "DefaultCluster", "{info}");
    assert_eq!(b["broker_name"], "broker-a", "{info}");
    assert_eq!(b["broker_id"], 0, "{info}");
    assert_eq!(b["role"], "master", "{info}");
    assert_eq!(b["endpoints"]["grpc"], grpc.as_str(), "{info}");
    assert!(b["topic_count"].as_u64().unwrap() >= 1, "{info}");
    assert!(b["log_end_offset"].as_u64().unwrap() > 0, "{info}");
    assert_eq!(b["recovered_after_crash"], false, "{info}");

    // Tables for people.
    let out = admin.raw(&["topic", "status", "orders"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text
        .lines()
        .find(|l| l.starts_with("broker"))
        .unwrap_or_else(|| panic!("{text}"));
    for column in [
        "queue",
        "min_offset",
        "max_offset",
        "messages",
        "last_store_time",
    ] {
        assert!(header.contains(column), "{column}: {text}");
    }
    assert!(text.contains(&grpc), "{text}");
    let out = admin.raw(&["message", "id", &id]);
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap_or_default();
    for column in ["broker", "message_id", "store_time", "tag", "keys", "body"] {
        assert!(header.contains(column), "{column}: {text}");
    }
    assert!(text.contains("hello admin"), "{text}");
    assert!(text.contains(&id), "{text}");

    // Two targets, one of them down: the answer of the other one, and exit 3.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = admin.raw(&["--json", "--broker", &down, "topic", "list"]);
    let line = error_line(&out, 3);
    assert!(line.contains(&down), "{line}");
    let partial: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        partial["topics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["broker"] == grpc.as_str()),
        "{partial}"
    );
    assert!(partial.to_string().contains("orders"), "{partial}");

    // Unknown topic; then delete ours and it is gone.
    let out = admin.raw(&["topic", "status", "no-such-topic"]);
    let line = error_line(&out, 1);
    assert!(line.contains("`no-such-topic`"), "{line}");
    assert!(line.contains(&grpc), "{line}");
    let deleted = admin.json(&["topic", "delete", "orders"]);
    assert_eq!(deleted["results"][0]["ok"], true, "{deleted}");
    let out = admin.raw(&["topic", "status", "orders"]);
    assert!(error_line(&out, 1).contains("`orders`"));

    let (status, _) = node.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn unreachable_servers_exit_3_with_one_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    for args in [
        vec!["admin", "--broker", &addr, "topic", "list"],
        vec!["admin", "--json", "--broker", &addr, "broker", "info"],
        vec!["admin", "--namesrv", &addr, "cluster", "list"],
        vec![
            "admin",
            "--namesrv",
            &addr,
            "--cluster",
            "DefaultCluster",
            "topic",
            "list",
        ],
    ] {
        let out = run(&args);
        let line = error_line(&out, 3);
        assert!(line.contains(&addr), "{args:?}: {line}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run(&["admin", "--broker", &addr, "topic", "list"]);
    assert_eq!(
        error_line(&out, 3),
        format!("rocketgate admin: error: cannot reach broker {addr}: connection refused")
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        vec!["admin", "topic", "create", "t", "--perm", "sometimes"],
        vec!["admin", "topic", "create", "t", "--type", "batch"],
        vec!["admin", "topic", "update", "t"],
        vec!["admin", "offset", "reset", "g", "t", "--time", "yesterday"],
        vec!["admin", "dlq", "resend", "g"],
        vec!["admin", "--broker", "no-port", "topic", "list"],
        vec![
            "admin",
            "--broker",
            "127.0.0.1:1",
            "--cluster",
            "c",
            "topic",
            "list",
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
