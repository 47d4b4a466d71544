//! SIGTERM under load: the real `rocketgate standalone` process stops accepting, flushes and
//! writes the clean marker, exits 0 within 10 s, and starts again without a recovery scan with
//! every acknowledged message readable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use rocketgate_proto::cluster::v1::broker_admin_client::BrokerAdminClient;
use rocketgate_proto::cluster::v1::{QueryMessageByIdRequest, SendMessageRequest};
use support::{admin_json, Node, EPHEMERAL};

fn start(dir: &std::path::Path, name: &str) -> Node {
    let data = dir.join("data");
    let mut args = vec![
        "standalone",
        "--data-dir",
        data.to_str().unwrap(),
        "--flush-mode",
        "SYNC",
    ];
    args.extend_from_slice(&EPHEMERAL);
    Node::start(dir, name, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_writes_the_clean_marker_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "first");
    let grpc = node.endpoint("grpc");
    admin_json(&[
        "--broker", &grpc, "topic", "create", "load", "--queues", "4",
    ]);

    // Every acknowledged send: (message id, body, queue, offset); `count` follows its length.
    let acked = Arc::new(parking_lot::Mutex::new(
        Vec::<(String, String, u32, u64)>::new(),
    ));
    let (count, mut counted) = tokio::sync::watch::channel(0usize);
    let mut producers = Vec::new();
    for p in 0..4 {
        let acked = acked.clone();
        let count = count.clone();
        let grpc = grpc.clone();
        producers.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
                .unwrap()
                .timeout(Duration::from_secs(5))
                .connect_lazy();
            let mut admin = BrokerAdminClient::new(channel);
            let mut failures = 0u32;
            for i in 0u64.. {
                let body = format!("p{p}-{i}");
                let sent = admin
                    .send_message(SendMessageRequest {
                        topic: "load".into(),
                        body: body.clone().into_bytes(),
                        ..Default::default()
                    })
                    .await;
                match sent {
                    Ok(r) => {
                        let r = r.into_inner();
                        acked.lock().push((
                            r.message_id,
                            body,
                            r.queue_id,
                            r.queue_offset.unwrap(),
                        ));
                        count.send_modify(|n| *n += 1);
                    }
                    // The server is going away: the outcome of this one is unknown, stop.
                    Err(_) => {
                        failures += 1;
                        if failures > 3 {
                            break;
                        }
                        // A retry backoff of the load, not a synchronisation.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    // Let the load run (500 acknowledged sends), then SIGTERM in the middle of it.
    tokio::time::timeout(Duration::from_secs(20), counted.wait_for(|n| *n >= 500))
        .await
        .expect("load did not start")
        .unwrap();
    let data = dir.path().join("data");
    let log = node.log.clone();
    // (`terminate` gives up after 30 s itself.)
    let (status, took) = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::task::spawn_blocking(move || node.terminate()),
    )
    .await
    .expect("terminate returns")
    .unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let stop_lines: Vec<&str> = log.lines().filter(|l| !l.contains("grpc{")).collect();
    eprintln!("shutdown log:\n{}", stop_lines.join("\n"));
    assert!(status.success(), "exit status {status}");
    // Typically well under a second (docs/benchmarks.md: 64 ms): 10 s is a generous bound.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for p in producers {
        tokio::time::timeout(Duration::from_secs(30), p)
            .await
            .expect("producers stop once the server is gone")
            .unwrap();
    }
    assert!(!data.join("abort").exists(), "clean marker written");
    let acked = acked.lock().clone();
    eprintln!(
        "{} sends acknowledged before SIGTERM; exit after {took:?}",
        acked.len()
    );

    // The next start finds a clean store: no recovery scan.
    let node = start(dir.path(), "second");
    assert_eq!(node.ready["recovered_after_crash"], false, "{}", node.ready);
    let log = node.log_text();
    assert!(log.contains("after_crash=false"), "{log}");
    let grpc = node.endpoint("grpc");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut admin = BrokerAdminClient::new(channel);
    for (id, body, queue, offset) in &acked {
        let found = admin
            .query_message_by_id(QueryMessageByIdRequest {
                message_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged message {id} lost: {e}"))
            .into_inner();
        let [m] = &found.messages[..] else {
            panic!("acknowledged message {id}: {found:?}");
        };
        assert_eq!(
            (
                m.topic.as_str(),
                m.body.as_slice(),
                m.queue_id,
                m.queue_offset
            ),
            ("load", body.as_bytes(), *queue, *offset),
            "acknowledged message {id}"
        );
    }
    let status = admin_json(&["--broker", &grpc, "topic", "status", "load"]);
    let stored: u64 = status
        .pointer("/0/queues")
        .or_else(|| status.pointer("/queues"))
        .and_then(|q| q.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|q| q["max_offset"].as_u64().unwrap_or(0) - q["min_offset"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        stored >= acked.len() as u64,
        "{stored} stored < {} acked: {status}",
        acked.len()
    );
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::task::spawn_blocking(move || node.terminate()),
    )
    .await
    .expect("terminate returns")
    .unwrap();
    assert!(status.success());
}
