//! The route-hijack attacks of issue 14's probe, against a real NameServer on 127.0.0.1:0: an
//! anonymous RegisterBroker of a fake broker, and the unregister-then-reregister takeover of a
//! live identity with another endpoint. The real broker registers through the real client; the
//! attacker speaks raw gRPC. Every server is shut down by its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rocketgate_nameserver::{ClusterSecret, Config};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_client::NameServerClient as RawClient;
use support::*;
use tonic::Code;

const SECRET: &str = "a-cluster-secret-of-32-characters";

/// A NameServer that requires the cluster secret.
fn secured_config() -> Config {
    Config {
        cluster_secret: Some(ClusterSecret::new(SECRET).unwrap()),
        ..Config::default()
    }
}

/// The master gRPC endpoints in `topic`'s route, as a client sees them.
async fn routed_endpoints(
    client: &rocketgate_nameserver::NameServerClient,
    topic: &str,
) -> Vec<String> {
    match client.route(topic).await {
        Ok(route) => route
            .brokers
            .iter()
            .filter_map(|b| b.master_endpoint("grpc").map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn raw_registration(name: &str, address: &str, topic: &str) -> pb::RegisterBrokerRequest {
    pb::RegisterBrokerRequest {
        broker: Some(pb::BrokerIdentity {
            cluster: "c1".into(),
            broker_name: name.into(),
            broker_id: 0,
        }),
        endpoints: vec![pb::Endpoint {
            protocol: "grpc".into(),
            address: address.into(),
        }],
        topics: vec![pb::TopicConfig {
            name: topic.into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            permission: pb::Permission::ReadWrite.into(),
            message_type: pb::MessageType::Normal.into(),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_registration_of_a_fake_broker_is_refused() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(secured_config()).await?;
    let real = secured_client(&[&ns.address()], 50, SECRET);
    let a = broker(&real, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;
    assert_eq!(
        routed_endpoints(&real, "orders").await,
        vec!["127.0.0.1:1001"]
    );

    // The attacker registers a fake broker serving `orders` at its own address.
    let mut raw = RawClient::connect(format!("http://{}", ns.address())).await?;
    let status = raw
        .register_broker(raw_registration("evil", "203.0.113.7:8081", "orders"))
        .await
        .expect_err("an anonymous registration must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("cluster secret"), "{status:?}");

    // Signed with a wrong secret: refused the same way.
    let wrong = secured_client(&[&ns.address()], 50, "another-secret-of-enough-length");
    let err = wrong
        .register(registration("c1", "evil", 0, 7, &[("orders", 8)]))
        .await
        .expect_err("a wrong secret must be refused");
    assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");

    // Heartbeat and unregister are refused unsigned too; queries stay open.
    let status = raw
        .unregister_broker(pb::UnregisterBrokerRequest {
            broker: raw_registration("a", "x:1", "orders").broker,
            ..Default::default()
        })
        .await
        .expect_err("an anonymous unregister must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = raw
        .heartbeat(pb::HeartbeatRequest {
            broker: raw_registration("a", "x:1", "orders").broker,
            ..Default::default()
        })
        .await
        .expect_err("an anonymous heartbeat must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    raw.cluster_info(pb::ClusterInfoRequest {}).await?;

    let anonymous_reader = client(&[&ns.address()], 30_000);
    assert_eq!(
        routed_endpoints(&anonymous_reader, "orders").await,
        vec!["127.0.0.1:1001"]
    );
    let info = anonymous_reader.cluster_info().await?;
    assert_eq!(info.brokers().count(), 1);

    assert_eq!(a.unregister().await, 1);
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_identity_cannot_be_unregistered_and_taken_over() -> anyhow::Result<()> {
    // No cluster secret here: the registration id alone must stop the takeover (and with a
    // secret, a holder of it is stopped the same way).
    let ns = RunningNameServer::start(fast_config()).await?;
    let real = client(&[&ns.address()], 50);
    let a = broker(&real, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;
    assert_eq!(
        routed_endpoints(&real, "orders").await,
        vec!["127.0.0.1:1001"]
    );

    // The attacker unregisters the real identity, then registers it with its own endpoint,
    // while the real broker keeps heartbeating.
    let mut raw = RawClient::connect(format!("http://{}", ns.address())).await?;
    let unregistered = raw
        .unregister_broker(pb::UnregisterBrokerRequest {
            broker: raw_registration("a", "x:1", "orders").broker,
            ..Default::default()
        })
        .await;
    match unregistered {
        Ok(reply) => assert!(
            !reply.into_inner().removed,
            "the attacker evicted the broker"
        ),
        Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{status:?}"),
    }
    let takeover = raw
        .register_broker(raw_registration("a", "203.0.113.7:8081", "orders"))
        .await;
    let status = takeover.expect_err("a takeover of a live identity must be refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("registered"), "{status:?}");

    // A forged heartbeat does not keep someone else's entry alive either.
    let status = raw
        .heartbeat(pb::HeartbeatRequest {
            broker: raw_registration("a", "x:1", "orders").broker,
            ..Default::default()
        })
        .await
        .expect_err("a heartbeat without the registration id");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Through several heartbeats of the real broker (the expiry is 500 ms) the route still
    // points at it.
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            routed_endpoints(&real, "orders").await,
            vec!["127.0.0.1:1001"]
        );
    }

    // Its registrant unregisters it; then the identity is free.
    assert_eq!(a.unregister().await, 1);
    raw.register_broker(raw_registration("a", "127.0.0.1:2002", "orders"))
        .await?;
    assert_eq!(
        routed_endpoints(&real, "orders").await,
        vec!["127.0.0.1:2002"]
    );
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_broker_gets_its_identity_back_once_the_old_registration_expires(
) -> anyhow::Result<()> {
    let ns = RunningNameServer::start(Config {
        broker_expiry_ms: 500,
        scan_interval_ms: 50,
        ..secured_config()
    })
    .await?;
    let first = secured_client(&[&ns.address()], 50, SECRET);
    let a = broker(&first, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;
    // A crash: the registration id is lost with the process, nothing is unregistered.
    a.stop().await;

    // Restarted with another endpoint (moved to port 1002), it is not the same broker
    // (tests/restart.rs: the same one registers at once): it starts at once, is refused while
    // the old registration lives, and is registered by its heartbeats once that one expired.
    let second = secured_client(&[&ns.address()], 50, SECRET);
    let a = broker(&second, registration("c1", "a", 0, 1002, &[("orders", 2)])).await?;
    assert_eq!(
        a.registered_count(),
        0,
        "refused while the old registration lives"
    );
    eventually("the restarted broker to register", || async {
        (a.registered_count() == 1).then_some(())
    })
    .await?;
    let route = second.route("orders").await?;
    assert_eq!(route.queues[0].read_queues, 2);
    assert_eq!(a.unregister().await, 1);
    ns.shutdown().await
}
