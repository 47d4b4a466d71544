//! Reads from a slave (issue 15), with real processes: a master and a slave serving reads on
//! its own gRPC and HTTP gateways (`replication.slave_reads`, on by default). The slave lists
//! what the master created (its tables follow the replicated KV store), serves pulls by offset
//! and the admin CLI's reads, refuses writes (and the scheduled-message list, whose timer state
//! lives on the master) with the protocol's "not the master" error, and takes offset commits:
//! while the master lives they reach it through the replication reports; after the master's
//! `kill -9` the slave still serves pulls and commits, and a promoted slave starts with the
//! offsets committed on it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::replication::{config, master, slave, BROKER_EPHEMERAL};
use support::{admin_json, http, poll_until, Node, WAIT};

fn ok(status: u16, body: &str) {
    assert!((200..300).contains(&status), "{status} {body}");
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The committed offset of `group` on queue 0 of `orders`, as `web` answers.
fn committed(web: &str, group: &str) -> Option<u64> {
    let (s, b) = http(
        web,
        "GET",
        &format!("/v1/groups/{group}/topics/orders/offsets"),
        None,
    );
    ok(s, &b);
    json(&b)["offsets"][0]["offset"].as_u64()
}

/// Bodies pulled from queue 0 of `orders` at `offset`.
fn pull(web: &str, offset: u64) -> Vec<String> {
    let (s, b) = http(
        web,
        "GET",
        &format!("/v1/groups/g/topics/orders/queues/0/messages?offset={offset}&max=32"),
        None,
    );
    ok(s, &b);
    json(&b)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

/// A refused write: the status and the error code of the REST answer.
fn refused(web: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let (s, b) = http(web, method, path, Some(body));
    let code = serde_json::from_str::<serde_json::Value>(&b)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| b.clone());
    (s, code)
}

#[test]
fn a_slave_serves_reads_refuses_writes_and_forwards_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), 1);
    let (mdata, sdata) = (dir.path().join("m"), dir.path().join("s"));
    let mut m = master(dir.path(), "master", &mdata, "async", &conf);
    let web = m.endpoint("http");
    let mut sl = slave(dir.path(), "slave", &sdata, "1", &m.endpoint("replication"));
    let sweb = sl.wait_endpoint("http");
    let sgrpc = sl.endpoint("grpc");

    let (s, b) = http(
        &web,
        "POST",
        "/v1/topics",
        Some(r#"{"name":"orders","queue_count":1}"#),
    );
    ok(s, &b);
    let (s, b) = http(&web, "POST", "/v1/groups", Some(r#"{"name":"g"}"#));
    ok(s, &b);
    let sent: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    for body in &sent {
        let (s, b) = http(
            &web,
            "POST",
            "/v1/topics/orders/messages",
            Some(&format!(r#"{{"body":"{body}"}}"#)),
        );
        ok(s, &b);
    }

    // The slave's tables follow the master's KV changes; its queues its CommitLog.
    let caught_up = poll_until(WAIT, "the slave to serve the messages", || {
        let (s, _) = http(&sweb, "GET", "/v1/topics/orders", None);
        (s == 200 && pull(&sweb, 0).len() == 5).then_some(())
    });
    assert!(caught_up.is_some(), "{}", sl.log_text());
    assert_eq!(pull(&sweb, 0), sent);
    assert_eq!(pull(&sweb, 3), sent[3..]);
    // The admin CLI reads through the slave's gRPC gateway too.
    let topics = admin_json(&["--broker", &sgrpc, "topic", "list"]);
    assert!(topics.to_string().contains("orders"), "{topics}");
    let pulled = admin_json(&[
        "--broker", &sgrpc, "message", "pull", "g", "orders", "--queue", "0", "--offset", "1",
        "--max", "16",
    ]);
    assert_eq!(pulled["messages"].as_array().unwrap().len(), 4, "{pulled}");

    // Writes go to the master: refused in REST's terms, nothing changes.
    for (method, path, body) in [
        ("POST", "/v1/topics/orders/messages", r#"{"body":"x"}"#),
        ("POST", "/v1/topics", r#"{"name":"other"}"#),
        (
            "POST",
            "/v1/groups/g/receive",
            r#"{"topic":"orders","max":1,"wait_ms":0}"#,
        ),
        ("DELETE", "/v1/topics/orders", ""),
        ("GET", "/v1/scheduled", ""),
    ] {
        let (status, code) = refused(&sweb, method, path, body);
        assert_eq!(
            (status, code.as_str()),
            (503, "not_leader"),
            "{method} {path}"
        );
    }
    assert_eq!(pull(&sweb, 0), sent);

    // A topic created on the master appears on the slave.
    let (s, b) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"later"}"#));
    ok(s, &b);
    let listed = poll_until(WAIT, "the new topic on the slave", || {
        (http(&sweb, "GET", "/v1/topics/later", None).0 == 200).then_some(())
    });
    assert!(listed.is_some());

    // An offset committed on the slave reaches the master with the replication reports.
    let (s, b) = http(
        &sweb,
        "PUT",
        "/v1/groups/g/topics/orders/queues/0/offset",
        Some(r#"{"offset":2}"#),
    );
    ok(s, &b);
    assert_eq!(committed(&sweb, "g"), Some(2));
    let forwarded = poll_until(WAIT, "the master to take the slave's offset", || {
        (committed(&web, "g") == Some(2)).then_some(())
    });
    assert!(forwarded.is_some(), "{}", sl.log_text());

    // The master's machine dies: the slave goes on serving reads and commits.
    m.kill9();
    assert_eq!(pull(&sweb, 2), sent[2..]);
    let (s, b) = http(
        &sweb,
        "PUT",
        "/v1/groups/g/topics/orders/queues/0/offset",
        Some(r#"{"offset":4}"#),
    );
    ok(s, &b);
    assert_eq!(committed(&sweb, "g"), Some(4));
    let (status, code) = refused(
        &sweb,
        "POST",
        "/v1/topics/orders/messages",
        r#"{"body":"y"}"#,
    );
    assert_eq!((status, code.as_str()), (503, "not_leader"));

    // Promoted (restarted as the master on its copy), it starts with that offset.
    let (status, _) = sl.terminate();
    assert!(status.success(), "the slave did not stop cleanly");
    let mut args = vec!["broker", "--data-dir", sdata.to_str().unwrap()];
    args.extend_from_slice(&BROKER_EPHEMERAL);
    args.extend_from_slice(&["--replication-addr", "127.0.0.1:0", "--config", &conf]);
    let promoted = Node::start(dir.path(), "promoted", &args);
    let pweb = promoted.endpoint("http");
    assert_eq!(committed(&pweb, "g"), Some(4), "{}", promoted.log_text());
    assert_eq!(pull(&pweb, 4), sent[4..]);
    assert!(
        !sdata.join("config").join("slave-offsets.json").exists(),
        "the slave's offsets were committed and their file removed"
    );
    let _ = promoted.terminate();
}

/// A `Report` is bounded: more than 1,024 forwarded offsets is refused as a bad request, and
/// an offset the master cannot take (an unknown topic) is answered as not committed.
#[test]
fn a_report_carries_at_most_1024_offsets_and_unknown_ones_are_not_committed() {
    use rocketgate_proto::cluster::v1 as pb;

    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), 1);
    let m = master(dir.path(), "master", &dir.path().join("m"), "async", &conf);
    let repl = m.endpoint("replication");
    let report = |n: usize| pb::ReplicaReport {
        broker: Some(pb::BrokerIdentity {
            cluster: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 1,
        }),
        written: 0,
        flushed: 0,
        kv_sequence: 0,
        offsets: (0..n)
            .map(|i| pb::SlaveOffset {
                group: "g".into(),
                topic: "no-such-topic".into(),
                queue_id: i as u32,
                offset: 1,
            })
            .collect(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = tokio::time::timeout(
            WAIT,
            pb::replication_client::ReplicationClient::connect(format!("http://{repl}")),
        )
        .await
        .unwrap()
        .unwrap();
        let refused = client.report(report(1025)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        let answer = client.report(report(3)).await.unwrap().into_inner();
        assert_eq!(answer.offsets_committed, 0);
    });
}
