//! What a promoted slave carries on, with real processes (issue 15's acceptance): a SYNC master
//! (`min_in_sync_replicas = 2`) and its slave; while the master lives, a delayed message is
//! scheduled, a half message is sent by the official SDK and another over REST, and an MQTT
//! persistent session subscribes and goes offline while messages for it arrive. The master
//! is killed (`kill -9`) and the slave promoted. Then, on the promoted slave: the delayed
//! message is delivered once when due, the REST half message commits with its transaction id,
//! the SDK half message is checked back by the new master (a producer of the group connected
//! to it answers COMMIT) and delivered, and the MQTT session resumes with its messages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::replication::{master, slave, wait_in_sync};
use support::{http, poll_until, WAIT};

fn ok(status: u16, body: &str) {
    assert!((200..300).contains(&status), "{status} {body}");
}

/// Runs `f` on a fresh multi-thread runtime (the SDK needs one).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

type Checks = Arc<Mutex<Vec<String>>>;

/// A started SDK transaction producer of topic `tx` answering `answer` to check-backs.
async fn tx_producer(grpc: &str, commit: bool, checks: Checks) -> rocketmq::Producer {
    use rocketmq::conf::{ClientOption, ProducerOption};
    let mut po = ProducerOption::default();
    po.set_topics(vec!["tx"]);
    let mut co = ClientOption::default();
    co.set_access_url(grpc);
    co.set_enable_tls(false);
    let mut p = rocketmq::Producer::new_transaction_producer(
        po,
        co,
        Box::new(move |_tx_id, m: rocketmq::model::message::MessageView| {
            use rocketmq::model::transaction::TransactionResolution;
            checks.lock().unwrap().push(m.message_id().to_owned());
            if commit {
                TransactionResolution::COMMIT
            } else {
                TransactionResolution::UNKNOWN
            }
        }),
    )
    .unwrap();
    tokio::time::timeout(WAIT, p.start())
        .await
        .expect("producer start timed out")
        .expect("producer start");
    p
}

/// Receives from `topic` in `group` until `want` bodies were seen (or WAIT passed): body →
/// deliveries.
fn receive_until(web: &str, group: &str, topic: &str, want: usize) -> BTreeMap<String, usize> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    poll_until(WAIT, "the messages to arrive", || {
        let (status, body) = http(
            web,
            "POST",
            &format!("/v1/groups/{group}/receive"),
            Some(&format!(r#"{{"topic":"{topic}","max":32,"wait_ms":500}}"#)),
        );
        assert_eq!(status, 200, "{body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        for m in got["messages"].as_array().unwrap() {
            *seen
                .entry(m["body"].as_str().unwrap().to_owned())
                .or_default() += 1;
            let handle = m["receipt_handle"].as_str().unwrap();
            let (s, b) = http(
                web,
                "POST",
                &format!("/v1/groups/{group}/ack"),
                Some(&format!(r#"{{"receipt_handle":"{handle}"}}"#)),
            );
            ok(s, &b);
        }
        (seen.len() >= want).then_some(())
    });
    seen
}

#[test]
fn timers_transactions_and_sessions_continue_on_the_promoted_slave() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("promote.toml");
    std::fs::write(
        &conf,
        "[store]\nsegment_size = 16777216\n[replication]\nmin_in_sync_replicas = 2\n\
         [transaction]\ncheck_first_ms = 4000\ncheck_interval_ms = 1000\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let (mdata, sdata) = (dir.path().join("m"), dir.path().join("s"));
    let mut m = master(dir.path(), "master", &mdata, "sync", conf);
    let web = m.endpoint("http");
    let sl = slave(dir.path(), "slave", &sdata, "1", &m.endpoint("replication"));
    wait_in_sync(&web, 2);
    for topic in [
        r#"{"name":"orders"}"#,
        r#"{"name":"later","message_type":"DELAY"}"#,
        r#"{"name":"tx","message_type":"TRANSACTION"}"#,
    ] {
        let (s, b) = http(&web, "POST", "/v1/topics", Some(topic));
        ok(s, &b);
    }

    // An MQTT persistent session subscribes, then goes offline.
    let mqtt = |addr: &str| {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let mut o = MqttOptions::new("device-1", host, port.parse().unwrap());
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(5));
        Client::new(o, 16)
    };
    {
        let (client, mut conn) = mqtt(&m.endpoint("mqtt"));
        client.subscribe("orders/#", QoS::AtLeastOnce).unwrap();
        for event in conn.iter() {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = event {
                break;
            }
            assert!(event.is_ok(), "{event:?}");
        }
        client.disconnect().unwrap();
        for event in conn.iter() {
            if event.is_err() {
                break;
            }
        }
    }

    // Scheduled, half and offline-session messages, each acknowledged by the SYNC master (so on
    // the slave too).
    let (s, b) = http(
        &web,
        "POST",
        "/v1/topics/later/messages",
        Some(r#"{"body":"due later","delay_ms":5000}"#),
    );
    ok(s, &b);
    let (s, b) = http(
        &web,
        "POST",
        "/v1/topics/tx/transactions",
        Some(r#"{"producer_group":"pg","message":{"body":"rest half"}}"#),
    );
    ok(s, &b);
    let tx: serde_json::Value = serde_json::from_str(&b).unwrap();
    let transaction_id = tx["transaction_id"].as_str().unwrap().to_owned();
    let old_checks = Checks::default();
    let grpc = m.endpoint("grpc");
    let checks = old_checks.clone();
    block_on(async move {
        use rocketmq::model::message::MessageBuilder;
        let p = tx_producer(&grpc, false, checks).await;
        let half = MessageBuilder::transaction_message_builder("tx", b"sdk half".to_vec())
            .build()
            .unwrap();
        // Sent and left open: neither committed nor rolled back.
        let t = tokio::time::timeout(WAIT, p.send_transaction_message(half))
            .await
            .expect("send_transaction_message timed out")
            .expect("send_transaction_message");
        drop(t);
        let _ = p.shutdown().await;
    });
    for i in 0..3 {
        let (s, b) = http(
            &web,
            "POST",
            "/v1/topics/orders/messages",
            Some(&format!(r#"{{"body":"for device {i}"}}"#)),
        );
        ok(s, &b);
    }

    // The master's machine dies; the slave is promoted.
    m.kill9();
    let (status, _) = sl.terminate();
    assert!(status.success());
    let promoted = master(dir.path(), "promoted", &sdata, "async", conf);
    let pweb = promoted.endpoint("http");

    // The REST half message commits on the new master.
    let (s, b) = http(
        &pweb,
        "POST",
        &format!("/v1/transactions/{transaction_id}/commit"),
        None,
    );
    ok(s, &b);
    // The SDK half message is checked back by the new master: a producer of the topic
    // connected to it commits.
    let new_checks = Checks::default();
    let grpc = promoted.endpoint("grpc");
    let checks = new_checks.clone();
    let web2 = pweb.clone();
    let tx_seen = block_on(async move {
        let p = tx_producer(&grpc, true, checks).await;
        let seen = tokio::task::spawn_blocking(move || receive_until(&web2, "txg", "tx", 2))
            .await
            .unwrap();
        let _ = p.shutdown().await;
        seen
    });
    assert_eq!(
        tx_seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["rest half", "sdk half"],
        "checks by the new master: {:?}",
        new_checks.lock().unwrap()
    );
    assert!(!new_checks.lock().unwrap().is_empty());

    // The delayed message is delivered once, when due.
    let later = receive_until(&pweb, "lg", "later", 1);
    assert_eq!(later.get("due later"), Some(&1));

    // The MQTT session resumes on the promoted slave with what arrived while it was away.
    let (client, mut conn) = mqtt(&promoted.endpoint("mqtt"));
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    for event in conn.iter() {
        assert!(std::time::Instant::now() < deadline, "got only {got:?}");
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
                if got.len() == 3 {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("MQTT: {e} (got {got:?})"),
        }
    }
    got.sort();
    assert_eq!(got, ["for device 0", "for device 1", "for device 2"]);
    let _ = client.disconnect();
}
