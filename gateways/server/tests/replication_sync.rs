//! T3a and T3b of RELIABILITY.md with real processes: a master and two slaves (`SYNC_FLUSH`
//! everywhere), load from the official RocketMQ 5 SDK, MQTT QoS 1 and REST together; the master
//! is killed (`kill -9`) at a random moment and its data directory deleted (the machine is
//! gone); a slave is promoted and the other follows it.
//!
//! - T3a, SYNC replication with `min_in_sync_replicas = 2`: every acknowledged message is on
//!   the promoted slave, each exactly once in its log, and a consumer group continues from
//!   its acknowledgements. `RG_T3_ROUNDS` rounds (default 2; the acceptance run uses 20).
//! - T3b, ASYNC replication: what is lost is counted and printed; every message acknowledged
//!   more than a second before the kill survives (the loss window is the replication lag).
//! - SYNC refusals: with too few slaves in sync a write is refused (REST 503) and nothing is
//!   acknowledged; once the slave is back in sync writes are taken again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use support::replication::{
    config, drain, info_field, master, metric, publish, slave, try_http, wait_in_sync,
};
use support::{http, poll_until, Node, WAIT};

/// Bodies acknowledged to a client, with when.
#[derive(Clone, Default)]
struct Acked(Arc<Mutex<Vec<(String, Instant)>>>);

impl Acked {
    fn push(&self, body: String) {
        self.0.lock().unwrap().push((body, Instant::now()));
    }
    fn all(&self) -> Vec<(String, Instant)> {
        self.0.lock().unwrap().clone()
    }
}

/// REST publishes until `stop` or the server is gone.
fn rest_load(web: String, round: usize, stop: Arc<AtomicBool>, acked: Acked) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = format!("rest {round} {i}");
        i += 1;
        match try_http(
            &web,
            "POST",
            "/v1/topics/orders/messages",
            &format!(r#"{{"body":"{body}"}}"#),
        ) {
            Some((s, _)) if (200..300).contains(&s) => acked.push(body),
            Some(_) => {}
            None => return,
        }
    }
}

/// MQTT QoS 1 publishes (at most 16 in flight) until `stop` or the connection breaks; a body
/// counts as acknowledged on its PUBACK.
fn mqtt_load(addr: String, round: usize, stop: Arc<AtomicBool>, acked: Acked) {
    use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut opts = MqttOptions::new(format!("t3-{round}"), host, port.parse().unwrap());
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_inflight(16);
    let (client, mut connection) = Client::new(opts, 16);
    let queued: Arc<Mutex<std::collections::VecDeque<String>>> = Arc::default();
    let events = {
        let queued = queued.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut inflight: BTreeMap<u16, String> = BTreeMap::new();
            for event in connection.iter() {
                match event {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(body) = queued.lock().unwrap().pop_front() {
                            inflight.insert(pkid, body);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(body) = inflight.remove(&ack.pkid) {
                            acked.push(body);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = format!("mqtt {round} {i}");
        queued.lock().unwrap().push_back(body.clone());
        match client.try_publish("orders/mqtt", QoS::AtLeastOnce, false, body.into_bytes()) {
            Ok(()) => i += 1,
            Err(_) => {
                queued.lock().unwrap().pop_back();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let _ = client.disconnect();
    let deadline = Instant::now() + WAIT;
    while !events.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends with the official SDK (8 in flight) until `stop` or sends keep failing.
fn sdk_load(grpc: String, round: usize, stop: Arc<AtomicBool>, acked: Acked) {
    use rocketmq::conf::{ClientOption, ProducerOption};
    use rocketmq::model::message::MessageBuilder;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut po = ProducerOption::default();
        po.set_topics(vec!["orders"]);
        let mut co = ClientOption::default();
        co.set_access_url(&grpc);
        co.set_enable_tls(false);
        let mut p = rocketmq::Producer::new(po, co).unwrap();
        tokio::time::timeout(WAIT, p.start())
            .await
            .expect("producer start timed out")
            .expect("producer start");
        let p = Arc::new(p);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (p, stop, acked) = (p.clone(), stop.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                let mut failures = 0;
                while !stop.load(Ordering::Relaxed) && failures < 3 {
                    let body = format!("sdk {round} {t} {i}");
                    i += 1;
                    let m = MessageBuilder::builder()
                        .set_topic("orders")
                        .set_body(body.clone().into_bytes())
                        .build()
                        .unwrap();
                    match tokio::time::timeout(Duration::from_secs(10), p.send(m)).await {
                        Ok(Ok(_)) => acked.push(body),
                        _ => failures += 1,
                    }
                }
            }));
        }
        for t in tasks {
            let _ = tokio::time::timeout(WAIT, t).await;
        }
    });
}

struct Outcome {
    acked: usize,
    lost: Vec<String>,
    lost_old: Vec<String>,
}

/// One round: start the group, consume and acknowledge a first batch, load from three
/// protocols, kill the master at a random moment, delete its data, promote slave 1, let slave
/// 2 follow it, and compare what was acknowledged with what the promoted slave has.
fn round(dir: &Path, round: usize, mode: &str) -> Outcome {
    let conf = config(dir, if mode == "sync" { 2 } else { 1 });
    let mdata = dir.join(format!("m{round}"));
    let (s1data, s2data) = (
        dir.join(format!("s1-{round}")),
        dir.join(format!("s2-{round}")),
    );
    let mut m = master(dir, &format!("master{round}"), &mdata, mode, &conf);
    let (web, repl) = (m.endpoint("http"), m.endpoint("replication"));
    let (status, body) = http(
        &web,
        "POST",
        "/v1/topics",
        Some(r#"{"name":"orders","queue_count":4}"#),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    let s1 = slave(dir, &format!("s1-{round}"), &s1data, "1", &repl);
    let s2 = slave(dir, &format!("s2-{round}"), &s2data, "2", &repl);
    wait_in_sync(&web, 3);

    // A consumer group takes and acknowledges a first batch before the load.
    let early = Acked::default();
    for i in 0..10 {
        let body = format!("early {round} {i}");
        let (s, b) = http(
            &web,
            "POST",
            "/v1/topics/orders/messages",
            Some(&format!(r#"{{"body":"{body}"}}"#)),
        );
        assert!((200..300).contains(&s), "{s} {b}");
        early.push(body);
    }
    let mut taken = BTreeSet::new();
    let ok = poll_until(WAIT, "the billing group to take the first batch", || {
        let (status, body) = http(
            &web,
            "POST",
            "/v1/groups/billing/receive",
            Some(r#"{"topic":"orders","max":32,"wait_ms":200}"#),
        );
        assert_eq!(status, 200, "{body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        for msg in got["messages"].as_array().unwrap() {
            let handle = msg["receipt_handle"].as_str().unwrap();
            let (s, b) = http(
                &web,
                "POST",
                "/v1/groups/billing/ack",
                Some(&format!(r#"{{"receipt_handle":"{handle}"}}"#)),
            );
            assert!((200..300).contains(&s), "{s} {b}");
            taken.insert(msg["body"].as_str().unwrap().to_owned());
        }
        (taken.len() >= 10).then_some(())
    });
    assert!(ok.is_some(), "took {taken:?}");
    // The acks are KV changes, streamed before any later record: a caught-up slave has them.
    wait_in_sync(&web, 3);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Acked::default();
    let loads = vec![
        {
            let (web, stop, acked) = (web.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || rest_load(web, round, stop, acked))
        },
        {
            let (mqtt, stop, acked) = (m.endpoint("mqtt"), stop.clone(), acked.clone());
            std::thread::spawn(move || mqtt_load(mqtt, round, stop, acked))
        },
        {
            let (grpc, stop, acked) = (m.endpoint("grpc"), stop.clone(), acked.clone());
            std::thread::spawn(move || sdk_load(grpc, round, stop, acked))
        },
    ];
    let load_ms = rand::thread_rng().gen_range(1500..3000);
    std::thread::sleep(Duration::from_millis(load_ms)); // the moment of the crash is random
    m.kill9();
    let killed_at = Instant::now();
    std::fs::remove_dir_all(&mdata).unwrap();
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        let deadline = Instant::now() + WAIT * 2;
        while !l.is_finished() {
            assert!(Instant::now() < deadline, "a load thread did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        l.join().unwrap();
    }

    // Switch: slave 1 becomes the master, slave 2 follows it.
    let (status, _) = s1.terminate();
    assert!(status.success(), "slave 1 did not stop cleanly");
    let (status, _) = s2.terminate();
    assert!(status.success(), "slave 2 did not stop cleanly");
    let promoted = master(dir, &format!("promoted{round}"), &s1data, mode, &conf);
    let web = promoted.endpoint("http");
    let s2 = slave(
        dir,
        &format!("s2b-{round}"),
        &s2data,
        "2",
        &promoted.endpoint("replication"),
    );
    wait_in_sync(&web, 2);

    // The group continues from its acknowledgements.
    let again = drain(&web, "billing");
    let repeated: Vec<_> = again.iter().filter(|(b, _)| taken.contains(b)).collect();
    assert!(
        repeated.is_empty(),
        "acknowledged before the crash, delivered again: {repeated:?}"
    );

    let all = drain(&web, "audit");
    let mut ids = BTreeSet::new();
    for (body, id) in &all {
        assert!(
            ids.insert(id.clone()),
            "message {id} ({body}) twice in the log"
        );
    }
    let have: BTreeSet<&str> = all.iter().map(|(b, _)| b.as_str()).collect();
    let acked_all: Vec<(String, Instant)> = early.all().into_iter().chain(acked.all()).collect();
    let lost: Vec<String> = acked_all
        .iter()
        .filter(|(b, _)| !have.contains(b.as_str()))
        .map(|(b, _)| b.clone())
        .collect();
    let lost_old = acked_all
        .iter()
        .filter(|(b, at)| !have.contains(b.as_str()) && killed_at - *at > Duration::from_secs(1))
        .map(|(b, _)| b.clone())
        .collect();
    let per: BTreeMap<&str, usize> = acked_all.iter().fold(BTreeMap::new(), |mut m, (b, _)| {
        *m.entry(b.split(' ').next().unwrap()).or_default() += 1;
        m
    });
    println!(
        "round {round} ({mode}): load {load_ms} ms, acknowledged {} {per:?}, on the promoted \
         slave {}, lost {}",
        acked_all.len(),
        all.len(),
        lost.len()
    );
    assert!(
        per.len() == 4,
        "every protocol got acknowledgements: {per:?}"
    );
    drop(s2);
    drop(promoted);
    for d in [&s1data, &s2data] {
        std::fs::remove_dir_all(d).unwrap();
    }
    Outcome {
        acked: acked_all.len(),
        lost,
        lost_old,
    }
}

fn rounds(default: usize) -> usize {
    std::env::var("RG_T3_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn t3a_sync_replication_loses_nothing_acknowledged_when_the_master_machine_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = 0;
    for r in 0..rounds(2) {
        let o = round(dir.path(), r, "sync");
        assert!(
            o.lost.is_empty(),
            "round {r}: acknowledged but lost: {:?}",
            o.lost
        );
        acked += o.acked;
    }
    println!("T3a: {acked} acknowledged messages, 0 lost");
}

#[test]
fn t3b_async_replication_loses_at_most_the_replication_lag() {
    let dir = tempfile::tempdir().unwrap();
    let (mut acked, mut lost) = (0, 0);
    for r in 0..rounds(1) {
        let o = round(dir.path(), r, "async");
        assert!(
            o.lost_old.is_empty(),
            "round {r}: acknowledged more than 1 s before the crash and lost: {:?}",
            o.lost_old
        );
        acked += o.acked;
        lost += o.lost.len();
    }
    println!("T3b: {acked} acknowledged messages, {lost} lost (ASYNC window)");
}

#[test]
fn sync_refuses_writes_without_enough_in_sync_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), 2);
    let m = master(dir.path(), "master", &dir.path().join("m"), "sync", &conf);
    let web = m.endpoint("http");
    // Creating a topic is metadata (KV), not a send: taken.
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = http(
        &web,
        "POST",
        "/v1/topics/orders/messages",
        Some(r#"{"body":"alone"}"#),
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("min_in_sync_replicas"), "{body}");

    let s = slave(
        dir.path(),
        "slave",
        &dir.path().join("s"),
        "1",
        &m.endpoint("replication"),
    );
    wait_in_sync(&web, 2);
    // `admin broker info` shows the mode and the in-sync set.
    let info = support::admin_json(&["--broker", &m.endpoint("grpc"), "broker", "info"]);
    let r = &info["brokers"][0]["replication"];
    assert_eq!(r["mode"], "SYNC", "{info}");
    assert_eq!(r["min_in_sync_replicas"], 2, "{info}");
    assert_eq!(r["in_sync_replicas"], 2, "{info}");
    assert_eq!(r["slaves"][0]["broker_id"], 1, "{info}");
    assert_eq!(r["slaves"][0]["in_sync"], true, "{info}");
    let (status, body) = http(
        &web,
        "POST",
        "/v1/topics/orders/messages",
        Some(r#"{"body":"with a slave"}"#),
    );
    assert!((200..300).contains(&status), "{status} {body}");

    // The slave goes away: out of the set at once (its stream closes), writes refused again.
    let (status, _) = s.terminate();
    assert!(status.success());
    let refused = poll_until(WAIT, "a refusal after the slave left", || {
        let (status, _) = http(
            &web,
            "POST",
            "/v1/topics/orders/messages",
            Some(r#"{"body":"after"}"#),
        );
        (status == 503).then_some(())
    });
    assert!(refused.is_some());
    assert_eq!(
        metric(&web, "rocketgate_replication_in_sync_replicas "),
        Some(1.0)
    );
}

#[test]
fn an_old_master_rejoins_as_a_slave_and_its_unreplicated_tail_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), 1);
    let (mdata, sdata) = (dir.path().join("m"), dir.path().join("s"));
    let mut m = master(dir.path(), "master", &mdata, "async", &conf);
    let web = m.endpoint("http");
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert!((200..300).contains(&status), "{status} {body}");
    let s = slave(dir.path(), "slave", &sdata, "1", &m.endpoint("replication"));
    wait_in_sync(&web, 2);
    publish(&web, (0..50).map(|i| format!("both {i}")));
    // Every one of them reached the slave before it stops.
    let caught_up = poll_until(WAIT, "the slave to catch up", || {
        (metric(&web, "rocketgate_replication_lag_bytes{slave=\"1\"} ")? == 0.0).then_some(())
    });
    assert!(caught_up.is_some());
    let (status, _) = s.terminate();
    assert!(status.success());
    // ASYNC: acknowledged by the master alone, never replicated.
    publish(&web, (0..20).map(|i| format!("master only {i}")));
    m.kill9();

    // The slave is promoted and takes new writes.
    let promoted = master(dir.path(), "promoted", &sdata, "async", &conf);
    let pweb = promoted.endpoint("http");
    publish(&pweb, (0..5).map(|i| format!("after {i}")));
    // The old master comes back as a slave of the promoted one: cut back, then following.
    let old = slave(
        dir.path(),
        "old",
        &mdata,
        "1",
        &promoted.endpoint("replication"),
    );
    wait_in_sync(&pweb, 2);
    let log = old.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("replication handshake done"))
        .unwrap_or_else(|| panic!("no handshake in {log}"));
    let field = |name: &str| -> u64 {
        let at = line.find(name).unwrap() + name.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        field("start=") < field("local_end="),
        "the old master's extra records were not cut: {line}"
    );
    let caught_up = poll_until(WAIT, "the old master to catch up", || {
        (metric(&pweb, "rocketgate_replication_lag_bytes{slave=\"1\"} ")? == 0.0).then_some(())
    });
    assert!(caught_up.is_some());

    // Its data now is the promoted slave's history: opened as a master, it has the 50
    // replicated messages and the 5 new ones, and none of the 20 it alone had.
    let (status, _) = old.terminate();
    assert!(status.success());
    drop(promoted);
    let again = master(dir.path(), "again", &mdata, "async", &conf);
    let got = drain(&again.endpoint("http"), "audit");
    let bodies: BTreeSet<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    let want: BTreeSet<String> = (0..50)
        .map(|i| format!("both {i}"))
        .chain((0..5).map(|i| format!("after {i}")))
        .collect();
    let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(bodies, want);
    assert_eq!(got.len(), 55, "a message twice");
}

#[test]
fn a_slave_behind_the_master_s_retention_starts_over_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB segments, every sealed segment deleted at the next clean (every 200 ms).
    let conf = dir.path().join("retention.toml");
    std::fs::write(
        &conf,
        "[store]\nsegment_size = 65536\nretention_hours = 0\nclean_interval_ms = 200\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let (mdata, sdata) = (dir.path().join("m"), dir.path().join("s"));
    let m = master(dir.path(), "master", &mdata, "async", conf);
    let web = m.endpoint("http");
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert!((200..300).contains(&status), "{status} {body}");
    let follower = |name: &str| {
        let args = [
            "broker",
            "--data-dir",
            sdata.to_str().unwrap(),
            "--broker-id",
            "1",
            "--master-addr",
            &m.endpoint("replication"),
            "--replication-addr",
            "127.0.0.1:0",
            "--config",
            conf,
        ];
        Node::start(dir.path(), name, &args)
    };
    let s = follower("slave");
    publish(&web, (0..10).map(|i| format!("early {i}")));
    wait_in_sync(&web, 2);
    let (status, _) = s.terminate();
    assert!(status.success());

    // While it is away the master writes several segments and deletes the sealed ones.
    let pad = "x".repeat(1000);
    publish(&web, (0..400).map(|i| format!("later {i} {pad}")));
    let gone = poll_until(
        WAIT,
        "the master's retention to pass the slave's end",
        || (info_field(&m, "log_min_offset") > 2 * 65536).then_some(()),
    );
    assert!(gone.is_some());

    // Back: it starts over from the master's oldest segment and catches up.
    let s = follower("slave2");
    let caught_up = poll_until(WAIT, "the slave to catch up after starting over", || {
        let lag = metric(&web, "rocketgate_replication_lag_bytes{slave=\"1\"} ")?;
        let in_sync = metric(&web, "rocketgate_replication_in_sync_replicas ")?;
        (lag == 0.0 && in_sync == 2.0).then_some(())
    });
    assert!(caught_up.is_some(), "{}", s.log_text());
    let log = s.log_text();
    assert!(
        log.contains("discarding the local copy and starting over"),
        "{log}"
    );
    // Its copy serves: promoted, it has the master's retained messages and its KV state.
    let (status, _) = s.terminate();
    assert!(status.success());
    drop(m);
    let promoted = master(dir.path(), "promoted", &sdata, "async", conf);
    let (status, body) = http(&promoted.endpoint("http"), "GET", "/v1/topics/orders", None);
    assert_eq!(status, 200, "the topic came with the KV snapshot: {body}");
    let got = drain(&promoted.endpoint("http"), "audit");
    assert!(
        got.iter().any(|(b, _)| b.starts_with("later 399 ")),
        "the newest message is there"
    );
}

/// A TCP proxy to `upstream` that flips one byte, at `flip_at` of the first connection's
/// upstream → client direction; later connections pass untouched. Returns its address.
fn corrupting_proxy(upstream: String, flip_at: usize) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (n, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                return;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut seen = 0usize;
                let mut buf = vec![0u8; 16 << 10];
                while let Ok(k) = s_in.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    if n == 0 && seen <= flip_at && flip_at < seen + k {
                        buf[flip_at - seen] ^= 0x5A;
                    }
                    seen += k;
                    if c_out.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn a_corrupted_stream_byte_is_refused_and_the_slave_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), 1);
    let (mdata, sdata) = (dir.path().join("m"), dir.path().join("s"));
    let m = master(dir.path(), "master", &mdata, "async", &conf);
    let web = m.endpoint("http");
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert!((200..300).contains(&status), "{status} {body}");
    let pad = "y".repeat(1000);
    let bodies: Vec<String> = (0..200).map(|i| format!("m {i} {pad}")).collect();
    publish(&web, bodies.clone());
    // The slave's first stream carries ~200 KB of records; one byte in the middle is flipped.
    let proxy = corrupting_proxy(m.endpoint("replication"), 100_000);
    let s = slave(dir.path(), "slave", &sdata, "1", &proxy);
    let caught_up = poll_until(WAIT, "the slave to catch up through the proxy", || {
        (metric(&web, "rocketgate_replication_lag_bytes{slave=\"1\"} ")? == 0.0).then_some(())
    });
    assert!(caught_up.is_some(), "{}", s.log_text());
    let log = s.log_text();
    let why = log
        .lines()
        .find(|l| l.contains("replication stream broken"))
        .unwrap_or_else(|| panic!("the corrupted stream was not refused:\n{log}"));
    println!("refused: {why}");
    assert!(
        log.matches("replication handshake done").count() >= 2,
        "no reconnect:\n{log}"
    );
    // Nothing corrupted got in: promoted, the slave has exactly what was sent.
    let (status, _) = s.terminate();
    assert!(status.success());
    drop(m);
    let promoted = master(dir.path(), "promoted", &sdata, "async", &conf);
    let mut got: Vec<String> = drain(&promoted.endpoint("http"), "audit")
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    got.sort();
    let mut want = bodies;
    want.sort();
    assert_eq!(got, want);
}
