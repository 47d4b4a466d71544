//! A topic deleted and re-created on a master, with real processes (issue 15's bug): a SYNC
//! master (`min_in_sync_replicas = 2`, so every send below is acknowledged only once the slave
//! has it) and its slave. The topic is created, written, consumed by a group, deleted,
//! re-created and written again: the slave stays connected (no `replication stream broken`
//! loop), its log end reaches the master's and its reads show only the re-created topic. After a `kill -9` of the master and the slave's
//! promotion, the new master serves the re-created topic with exactly the messages sent after
//! the re-creation, to a new group and to the group that consumed the old topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use support::replication::{config, drain_acked, info_field, master, metric, slave, wait_in_sync};
use support::{http, poll_until, WAIT};

fn ok(status: u16, body: &str) {
    assert!((200..300).contains(&status), "{status} {body}");
}

/// Publishes `n` bodies `"{prefix} {i}"` to `orders`, each acknowledged.
fn publish(web: &str, prefix: &str, n: usize) {
    support::replication::publish(web, (0..n).map(|i| format!("{prefix} {i}")));
}

fn once_each(prefix: &str, n: usize) -> BTreeMap<String, usize> {
    (0..n).map(|i| (format!("{prefix} {i}"), 1)).collect()
}

#[test]
fn a_recreated_topic_replicates_and_survives_the_masters_death() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = config(d, 2);
    let (mdata, sdata) = (d.join("m"), d.join("s"));
    let mut m = master(d, "master", &mdata, "sync", &conf);
    let web = m.endpoint("http");
    let mut sl = slave(d, "slave", &sdata, "1", &m.endpoint("replication"));
    wait_in_sync(&web, 2);

    let create = || {
        let (s, b) = http(
            &web,
            "POST",
            "/v1/topics",
            Some(r#"{"name":"orders","queue_count":4}"#),
        );
        ok(s, &b);
    };
    create();
    publish(&web, "old", 20);
    assert_eq!(drain_acked(&web, "g"), once_each("old", 20));

    // Deleted, re-created, written; then once more.
    for round in ["new", "newest"] {
        let (s, b) = http(&web, "DELETE", "/v1/topics/orders", None);
        ok(s, &b);
        create();
        publish(&web, round, 12);
    }

    // The slave stayed connected and has everything the master wrote.
    let end = info_field(&m, "log_end_offset");
    let caught_up = poll_until(WAIT, "the slave's lag to reach 0", || {
        let lag = metric(&web, "rocketgate_replication_lag_bytes{slave=\"1\"}")?;
        (lag == 0.0).then_some(())
    });
    assert!(caught_up.is_some(), "{}", sl.log_text());
    wait_in_sync(&web, 2);
    assert!(end > 0);
    let slave_log = sl.log_text();
    assert!(
        !slave_log.contains("replication stream broken"),
        "{slave_log}"
    );

    // The slave's reads show the re-created topic only.
    let sweb = sl.wait_endpoint("http");
    let on_slave = poll_until(WAIT, "the slave to serve the re-created topic", || {
        let (s, b) = http(&sweb, "GET", "/v1/topics/orders", None);
        (s == 200 && queued(&b) == 12).then_some(())
    });
    assert!(
        on_slave.is_some(),
        "{:?}",
        http(&sweb, "GET", "/v1/topics/orders", None)
    );

    // The master dies; the slave is promoted.
    m.kill9();
    let (status, _) = sl.terminate();
    assert!(status.success());
    let promoted = master(d, "promoted", &sdata, "async", &config(d, 1));
    let pweb = promoted.endpoint("http");
    assert!(info_field(&promoted, "log_end_offset") >= end);
    assert_eq!(drain_acked(&pweb, "fresh"), once_each("newest", 12));
    assert_eq!(drain_acked(&pweb, "g"), once_each("newest", 12));
    // Queue offsets continue from the re-created topic's.
    publish(&pweb, "after", 4);
    let (s, b) = http(&pweb, "GET", "/v1/topics/orders", None);
    ok(s, &b);
    assert_eq!(queued(&b), 16, "{b}");
}

/// The sum of a described topic's queue end offsets.
fn queued(topic_json: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(topic_json).map_or(0, |t| {
        t["queues"].as_array().map_or(0, |qs| {
            qs.iter().filter_map(|q| q["max_offset"].as_u64()).sum()
        })
    })
}
