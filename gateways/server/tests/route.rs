//! `GET /v1/topics/{topic}/route` and `rocketgate admin topic route` agree (issue 23): one
//! NameServer and two brokers of the real binary on 127.0.0.1 with ephemeral ports; the REST
//! route asked of either broker lists the broker groups, queue counts and members the admin
//! tool prints from the NameServer, each queue with the REST endpoint of the broker that
//! serves it, also for a topic the asked broker does not serve at all. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{admin_json, poll_until, run, Node};

fn broker_config(dir: &Path, name: &str, namesrv: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\ndata_dir = \"{data}\"\nsegment_size = 4194304\n\
             [broker]\ncluster = \"RouteCluster\"\nname = \"{name}\"\nnamesrv = [\"{namesrv}\"]\n\
             heartbeat_interval_ms = 200\nrpc_timeout_ms = 500\n\
             [grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [mqtt]\nenabled = false\n",
            data = dir.join(name).display(),
        ),
    )
    .unwrap();
    path
}

/// Broker name → queue count, from the admin tool's route.
fn admin_groups(route: &Value) -> BTreeMap<String, u64> {
    route["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let n = q["read_queues"]
                .as_u64()
                .unwrap()
                .max(q["write_queues"].as_u64().unwrap());
            (q["broker_name"].as_str().unwrap().to_owned(), n)
        })
        .collect()
}

/// Broker name → queue count, from the REST route.
fn rest_groups(route: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for q in route["queues"].as_array().unwrap() {
        *out.entry(q["broker_name"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    out
}

fn rest_route(broker: &Node, topic: &str) -> Value {
    let (status, body) = support::http(
        &broker.endpoint("http"),
        "GET",
        &format!("/v1/topics/{topic}/route"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The members of each group (broker name → [(id, role, endpoints)]), in either answer.
fn members(route: &Value) -> BTreeMap<String, Value> {
    route["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["broker_name"].as_str().unwrap().to_owned(),
                b["addresses"].clone(),
            )
        })
        .collect()
}

#[test]
fn the_rest_route_lists_what_the_admin_route_lists() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Node::start(
        dir.path(),
        "ns",
        &["nameserver", "--nameserver-addr", "127.0.0.1:0"],
    );
    let namesrv = ns.endpoint("nameserver");
    let conf_a = broker_config(dir.path(), "broker-a", &namesrv);
    let conf_b = broker_config(dir.path(), "broker-b", &namesrv);
    let a = Node::start(
        dir.path(),
        "broker-a",
        &["broker", "--config", conf_a.to_str().unwrap()],
    );
    let b = Node::start(
        dir.path(),
        "broker-b",
        &["broker", "--config", conf_b.to_str().unwrap()],
    );

    // `orders` on both brokers (2 queues each), `solo` on broker-b only (3 queues).
    admin_json(&[
        "--broker",
        &a.endpoint("grpc"),
        "topic",
        "create",
        "orders",
        "--queues",
        "2",
    ]);
    for (topic, queues) in [("orders", "2"), ("solo", "3")] {
        admin_json(&[
            "--broker",
            &b.endpoint("grpc"),
            "topic",
            "create",
            topic,
            "--queues",
            queues,
        ]);
    }
    let expected = [
        (
            "orders",
            BTreeMap::from([("broker-a".to_owned(), 2), ("broker-b".to_owned(), 2)]),
        ),
        ("solo", BTreeMap::from([("broker-b".to_owned(), 3)])),
    ];
    for (topic, groups) in expected {
        let admin = poll_until(
            Duration::from_secs(15),
            "the admin route of every group",
            || {
                let out = run(&[
                    "admin",
                    "--json",
                    "--namesrv",
                    &namesrv,
                    "topic",
                    "route",
                    topic,
                ]);
                let r: Value = serde_json::from_slice(&out.stdout).ok()?;
                (out.status.success() && admin_groups(&r) == groups).then_some(r)
            },
        )
        .unwrap_or_else(|| panic!("{topic}: the NameServer never routed {groups:?}"));
        for asked in [&a, &b] {
            let rest = rest_route(asked, topic);
            assert_eq!(rest["source"], "nameserver", "{rest}");
            assert_eq!(rest_groups(&rest), admin_groups(&admin), "{rest}\n{admin}");
            assert_eq!(members(&rest), members(&admin), "{rest}\n{admin}");
            for q in rest["queues"].as_array().unwrap() {
                let serving = match q["broker_name"].as_str().unwrap() {
                    "broker-a" => &a,
                    _ => &b,
                };
                assert_eq!(
                    q["endpoint"].as_str(),
                    Some(format!("http://{}", serving.endpoint("http")).as_str()),
                    "{rest}"
                );
                assert_eq!(q["permission"], "READ_WRITE", "{rest}");
            }
        }
    }
    // Unknown everywhere: 404 on REST as on the NameServer.
    let (status, body) = support::http(&a.endpoint("http"), "GET", "/v1/topics/none/route", None);
    assert_eq!(status, 404, "{body}");

    for node in [a, b, ns] {
        let (status, _) = node.terminate();
        assert!(status.success());
    }
}
