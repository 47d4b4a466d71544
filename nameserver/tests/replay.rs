//! Replays of captured signed broker requests against a real NameServer with a cluster secret
//! on 127.0.0.1:0 (issue 14): every signed RegisterBroker, Heartbeat and UnregisterBroker is
//! accepted once; sent again, byte for byte, it is refused with UNAUTHENTICATED — a captured
//! registration cannot bring back a broker that left, nor a captured heartbeat keep a dead one
//! alive. The same body signed afresh is a new request, and the real client's heartbeats (the
//! same body every time) keep working. The attacker speaks raw gRPC; the broker is the real
//! client. Every server is shut down by its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use rocketgate_nameserver::{ClusterSecret, Config};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_client::NameServerClient as RawClient;
use support::*;
use tonic::Code;

const SECRET: &str = "a-cluster-secret-of-32-characters";

fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET).unwrap()
}

fn secured(config: Config) -> Config {
    Config {
        cluster_secret: Some(secret()),
        ..config
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn broker_a() -> pb::BrokerIdentity {
    pb::BrokerIdentity {
        cluster: "c1".into(),
        broker_name: "a".into(),
        broker_id: 0,
    }
}

fn register_request(port: u16) -> pb::RegisterBrokerRequest {
    let mut r = pb::RegisterBrokerRequest {
        broker: Some(broker_a()),
        endpoints: vec![pb::Endpoint {
            protocol: "grpc".into(),
            address: format!("127.0.0.1:{port}"),
        }],
        topics: vec![pb::TopicConfig {
            name: "orders".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            permission: pb::Permission::ReadWrite.into(),
            message_type: pb::MessageType::Normal.into(),
        }],
        ..Default::default()
    };
    secret().sign(&mut r, now_ms());
    r
}

fn assert_replay_refused(status: &tonic::Status) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("replayed"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_signed_request_is_refused_the_second_time() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(secured(Config::default())).await?;
    let mut raw = RawClient::connect(format!("http://{}", ns.address())).await?;

    // The broker registers (the attacker captures the request).
    let captured_registration = register_request(1001);
    let id = raw
        .register_broker(captured_registration.clone())
        .await?
        .into_inner()
        .registration_id;
    let status = raw
        .register_broker(captured_registration.clone())
        .await
        .expect_err("a replayed registration");
    assert_replay_refused(&status);

    // A heartbeat: accepted once; its replay is refused; the same body signed again is fine.
    let heartbeat = |at: u64| {
        let mut h = pb::HeartbeatRequest {
            broker: Some(broker_a()),
            registration_id: id.clone(),
            signature: None,
        };
        secret().sign(&mut h, at);
        h
    };
    let first = now_ms();
    let captured_heartbeat = heartbeat(first);
    assert!(
        raw.heartbeat(captured_heartbeat.clone())
            .await?
            .into_inner()
            .known
    );
    let status = raw
        .heartbeat(captured_heartbeat.clone())
        .await
        .expect_err("a replayed heartbeat");
    assert_replay_refused(&status);
    assert!(
        raw.heartbeat(heartbeat(first + 1))
            .await?
            .into_inner()
            .known
    );

    // The broker leaves; its captured unregistration and registration cannot be replayed, so
    // the broker stays gone (before, the registration brought it back for the skew window).
    let mut leave = pb::UnregisterBrokerRequest {
        broker: Some(broker_a()),
        registration_id: id.clone(),
        signature: None,
    };
    secret().sign(&mut leave, now_ms());
    assert!(
        raw.unregister_broker(leave.clone())
            .await?
            .into_inner()
            .removed
    );
    let status = raw
        .unregister_broker(leave)
        .await
        .expect_err("a replayed unregistration");
    assert_replay_refused(&status);
    let status = raw
        .register_broker(captured_registration)
        .await
        .expect_err("a replayed registration of a broker that left");
    assert_replay_refused(&status);
    let status = raw
        .heartbeat(captured_heartbeat)
        .await
        .expect_err("a replayed heartbeat");
    assert_replay_refused(&status);
    let info = raw
        .cluster_info(pb::ClusterInfoRequest {})
        .await?
        .into_inner();
    assert!(
        info.clusters.iter().all(|c| c.brokers.is_empty()),
        "{info:?}"
    );

    // A registration signed afresh is a new request.
    raw.register_broker(register_request(1001)).await?;
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_brokers_heartbeats_keep_it_registered() -> anyhow::Result<()> {
    // A 500 ms expiry and a heartbeat every 50 ms: if the heartbeats (the same body every
    // time) were refused, the broker would leave the routes within a second.
    let ns = RunningNameServer::start(secured(fast_config())).await?;
    let real = secured_client(&[&ns.address()], 50, SECRET);
    let a = broker(&real, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;
    let last_heartbeat = || async {
        let info = real.cluster_info().await.ok()?;
        let seen = info.brokers().next().map(|(_, b)| b.last_heartbeat_ms);
        seen
    };
    let registered_at = last_heartbeat().await.expect("registered");
    eventually("three expiry periods of heartbeats", || async {
        let seen = last_heartbeat().await?;
        (seen >= registered_at + 1_500).then_some(())
    })
    .await?;
    assert_eq!(routed_brokers(&real, "orders").await, vec!["a"]);
    assert_eq!(a.registered_count(), 1);
    assert_eq!(a.unregister().await, 1);
    ns.shutdown().await
}
