//! Switchover (`admin broker switch`) with real processes: a SYNC master and two slaves under
//! REST load; the master hands over to slave 1 and follows it, slave 2 is redirected, the old
//! master restarted with its original configuration stays a slave (the role file), and a
//! second switch gives the role back. Every acknowledged message is on the final master
//! exactly once, and the window in which sends were refused is measured (printed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::replication::{config, drain, master, promotable_slave, try_http, wait_in_sync};
use support::{admin_json, http, poll_until, WAIT};

/// Where the load sends (the current master's HTTP address) and what it got.
#[derive(Clone, Default)]
struct Load {
    target: Arc<Mutex<String>>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    refused: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl Load {
    fn run(self) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !self.stop.load(Ordering::Relaxed) {
                i += 1;
                let body = format!("m{i}");
                let web = self.target.lock().unwrap().clone();
                let json = format!(r#"{{"body":"{body}"}}"#);
                match try_http(&web, "POST", "/v1/topics/orders/messages", &json) {
                    Some((s, _)) if (200..300).contains(&s) => {
                        self.acked.lock().unwrap().push((body, Instant::now()));
                    }
                    _ => {
                        *self.refused.lock().unwrap() += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        })
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` further sends were acknowledged.
    fn wait_more(&self, more: usize) {
        let goal = self.count() + more;
        let got = poll_until(WAIT, "acknowledged sends", || {
            (self.count() >= goal).then_some(())
        });
        assert!(
            got.is_some(),
            "only {} of {goal} acknowledged",
            self.count()
        );
    }

    /// The longest gap between consecutive acknowledgements after `from`.
    fn longest_gap_after(&self, from: Instant) -> Duration {
        let acked = self.acked.lock().unwrap();
        let times: Vec<Instant> = acked.iter().map(|(_, t)| *t).collect();
        times
            .windows(2)
            .filter(|w| w[1] >= from)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }
}

fn switch(grpc: &str, to: &str) -> serde_json::Value {
    admin_json(&["--broker", grpc, "broker", "switch", "--to", to])
}

/// The group's members in the NameServers' view: broker id → endpoints (protocol → address).
fn members(ns: &str) -> std::collections::BTreeMap<u64, serde_json::Value> {
    let list = admin_json(&["--namesrv", ns, "cluster", "list"]);
    fn walk(v: &serde_json::Value, out: &mut std::collections::BTreeMap<u64, serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(id), Some(e)) = (
                    m.get("broker_id").and_then(|i| i.as_u64()),
                    m.get("endpoints"),
                ) {
                    out.insert(id, e.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(&list, &mut out);
    out
}

/// Waits until the NameServers list ids 0, 1 and 2, with `master_grpc` as id 0's gRPC endpoint.
fn wait_members(ns: &str, master_grpc: &str) -> std::collections::BTreeMap<u64, serde_json::Value> {
    let got = poll_until(WAIT, "the NameServers' view of the group", || {
        let m = members(ns);
        (m.len() == 3 && m.get(&0).is_some_and(|e| e["grpc"] == master_grpc)).then_some(m)
    });
    got.unwrap_or_else(|| panic!("members: {:?}", members(ns)))
}

#[test]
fn a_switchover_hands_the_master_role_over_and_back_without_losing_or_repeating_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ns_node = support::Node::start(d, "ns", &["nameserver", "--listen", "127.0.0.1:0"]);
    let ns = ns_node.endpoint("nameserver");
    let conf = d.join("switch.toml");
    std::fs::write(
        &conf,
        format!(
            "[broker]\nnamesrv = [\"{ns}\"]\n[store]\nsegment_size = 16777216\n\
             [replication]\nmin_in_sync_replicas = 2\n"
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_owned();
    let mut m = master(d, "m", &d.join("m"), "SYNC", &conf);
    let repl_m = m.endpoint("replication");
    let (status, body) = http(
        &m.endpoint("http"),
        "POST",
        "/v1/topics",
        Some(r#"{"name":"orders"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let mut s1 = promotable_slave(d, "s1", &d.join("s1"), "1", &repl_m, "SYNC", &conf);
    let s2 = promotable_slave(d, "s2", &d.join("s2"), "2", &repl_m, "SYNC", &conf);
    wait_in_sync(&m.endpoint("http"), 3);
    // The NameServers list the master (id 0, its gateways) and both slaves (their replication
    // endpoints; no topic, so no client is routed to them).
    let view = wait_members(&ns, &m.endpoint("grpc"));
    assert_eq!(
        view[&1]["replication"],
        s1.endpoint("replication"),
        "{view:?}"
    );
    assert!(view[&2].get("grpc").is_none(), "{view:?}");

    let load = Load::default();
    *load.target.lock().unwrap() = m.endpoint("http");
    let worker = load.clone().run();
    load.wait_more(200);

    // 1. The master (found through the NameServers) hands over to slave 1 and follows it;
    //    slave 2 follows slave 1.
    let asked = Instant::now();
    let report = admin_json(&[
        "--namesrv",
        &ns,
        "broker",
        "switch",
        "--group",
        "broker-a",
        "--to",
        "1",
    ]);
    assert_eq!(report["promoted"], 1, "{report}");
    assert_eq!(report["old_master_follows_as"], 1, "{report}");
    s1.wait_mode("broker");
    m.wait_mode("slave");
    assert_eq!(report["new_master_grpc"], s1.endpoint("grpc"), "{report}");
    let view = wait_members(&ns, &s1.endpoint("grpc"));
    assert_eq!(
        view[&1]["replication"],
        m.endpoint("replication"),
        "{view:?}"
    );
    assert_eq!(m.ready["broker_id"], 1, "{}", m.ready);
    *load.target.lock().unwrap() = s1.endpoint("http");
    wait_in_sync(&s1.endpoint("http"), 3);
    load.wait_more(200);
    let first_gap = load.longest_gap_after(asked);
    let s2_log = s2.log_text();
    assert!(
        s2_log.contains("following the new master"),
        "slave 2 was not redirected:\n{s2_log}"
    );

    // 2. The old master, restarted with its original configuration (broker id 0, no
    //    master address), stays a slave of the new master: its role file says so.
    let (status, _) = m.terminate();
    assert!(status.success());
    let mut m = master(d, "m", &d.join("m"), "SYNC", &conf);
    assert_eq!(m.ready["mode"], "slave", "{}", m.ready);
    let log = m.log_text();
    assert!(log.contains("role from the role file"), "{log}");
    wait_in_sync(&s1.endpoint("http"), 3);
    load.wait_more(100);

    // 3. The role goes back: slave 1 (the old master) is promoted again.
    let asked = Instant::now();
    let report = switch(&s1.endpoint("grpc"), "1");
    assert_eq!(report["promoted"], 1, "{report}");
    m.wait_mode("broker");
    s1.wait_mode("slave");
    *load.target.lock().unwrap() = m.endpoint("http");
    wait_in_sync(&m.endpoint("http"), 3);
    load.wait_more(200);
    let second_gap = load.longest_gap_after(asked);
    load.stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();

    // Every acknowledged message is on the final master, exactly once.
    let acked: Vec<String> = load
        .acked
        .lock()
        .unwrap()
        .iter()
        .map(|(b, _)| b.clone())
        .collect();
    let got = drain(&m.endpoint("http"), "g");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (body, _) in &got {
        *seen.entry(body.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let lost: Vec<_> = acked
        .iter()
        .filter(|b| !seen.contains_key(b.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
    println!(
        "switchover: {} acknowledged, {} on the final master, 0 lost, 0 twice; {} sends \
         refused; longest gap between acknowledgements: {} ms (first switch), {} ms (back)",
        acked.len(),
        got.len(),
        *load.refused.lock().unwrap(),
        first_gap.as_millis(),
        second_gap.as_millis()
    );
    if std::env::var_os("RG_DEBUG_SWITCH").is_some() {
        eprintln!(
            "=== m\n{}\n=== s1\n{}\n=== s2\n{}",
            m.log_text(),
            s1.log_text(),
            s2.log_text()
        );
    }
    drop(s2);
    drop(s1);
    drop(m);
    drop(ns_node);
}

#[test]
fn a_switch_to_an_unknown_slave_is_refused_and_the_master_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = config(d, 1);
    let m = master(d, "m", &d.join("m"), "ASYNC", &conf);
    let web = m.endpoint("http");
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert_eq!(status, 201, "{body}");
    let out = support::run(&[
        "admin",
        "--broker",
        &m.endpoint("grpc"),
        "broker",
        "switch",
        "--to",
        "7",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broker 7 is not a slave following this master"),
        "{err}"
    );
    // Writes were never fenced.
    let (status, body) = http(
        &web,
        "POST",
        "/v1/topics/orders/messages",
        Some(r#"{"body":"still here"}"#),
    );
    assert!((200..300).contains(&status), "{status} {body}");
}
