//! End-to-end tests: real NameServers on 127.0.0.1:0, brokers and queries through the real
//! client, bad input through the raw generated gRPC client. Every wait has a deadline and every
//! server is shut down by its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocketgate_nameserver::{
    BrokerId, ClientError, Config, Endpoint, Limits, NameServerClient, Permission, Role,
};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_client::NameServerClient as RawClient;
use support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_two_nameservers_route_from_either() -> anyhow::Result<()> {
    let ns1 = RunningNameServer::start(Config::default()).await?;
    let ns2 = RunningNameServer::start(Config::default()).await?;
    let both = client(&[&ns1.address(), &ns2.address()], 30_000);

    let a = broker(
        &both,
        registration("c1", "broker-a", 0, 1001, &[("orders", 4)]),
    )
    .await?;
    let b = broker(
        &both,
        registration("c1", "broker-b", 0, 1002, &[("orders", 8)]),
    )
    .await?;
    assert_eq!(a.registered_count(), 2);
    assert_eq!(b.registered_count(), 2);

    for ns in [&ns1, &ns2] {
        let only = client(&[&ns.address()], 30_000);
        let route = only.route("orders").await?;
        assert_eq!(route.topic.as_str(), "orders");
        let queues: Vec<(&str, u32, u32)> = route
            .queues
            .iter()
            .map(|q| (q.broker_name.as_str(), q.read_queues, q.write_queues))
            .collect();
        assert_eq!(queues, vec![("broker-a", 4, 4), ("broker-b", 8, 8)]);
        assert!(route
            .queues
            .iter()
            .all(|q| q.permission == Permission::ReadWrite));
        assert_eq!(
            route.broker("broker-a").unwrap().master_endpoint("grpc"),
            Some("127.0.0.1:1001")
        );
        assert_eq!(
            route.broker("broker-b").unwrap().master_endpoint("grpc"),
            Some("127.0.0.1:1002")
        );
        assert!(matches!(
            only.route("unknown").await,
            Err(ClientError::TopicNotFound(_))
        ));
    }

    assert_eq!(a.unregister().await, 2);
    assert_eq!(b.unregister().await, 2);
    ns1.shutdown().await?;
    ns2.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_broker_leaves_routes_after_expiry() -> anyhow::Result<()> {
    let ns1 = RunningNameServer::start(fast_config()).await?;
    let ns2 = RunningNameServer::start(fast_config()).await?;
    let both = client(&[&ns1.address(), &ns2.address()], 50);
    let a = broker(
        &both,
        registration("c1", "a", 0, 1, &[("t", 2), ("only-a", 1)]),
    )
    .await?;
    let b = broker(&both, registration("c1", "b", 0, 2, &[("t", 2)])).await?;
    let views = [client(&[&ns1.address()], 50), client(&[&ns2.address()], 50)];

    // Both stay routed well past the expiry while they heartbeat (waiting is the point here).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for view in &views {
        assert_eq!(routed_brokers(view, "t").await, vec!["a", "b"]);
    }

    // `a` stops heartbeating (a crash, as the NameServers see it).
    let stopped = Instant::now();
    a.stop().await;
    for view in &views {
        eventually("a to leave the route of t", || async {
            (routed_brokers(view, "t").await == vec!["b"]).then_some(())
        })
        .await?;
        assert!(matches!(
            view.route("only-a").await,
            Err(ClientError::TopicNotFound(_))
        ));
        let info = view.cluster_info().await?;
        let names: Vec<&str> = info
            .brokers()
            .map(|(_, b)| b.broker_name.as_str())
            .collect();
        assert_eq!(names, vec!["b"]);
    }
    // Not before the expiry: its last heartbeat was at most one interval (50 ms) before the stop.
    assert!(
        stopped.elapsed() >= Duration::from_millis(240),
        "{:?}",
        stopped.elapsed()
    );

    // `b` is still there after two more expiry periods (waiting is the point here too).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for view in &views {
        assert_eq!(routed_brokers(view, "t").await, vec!["b"]);
    }

    b.unregister().await;
    ns1.shutdown().await?;
    ns2.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_removes_at_once() -> anyhow::Result<()> {
    let ns1 = RunningNameServer::start(Config::default()).await?;
    let ns2 = RunningNameServer::start(Config::default()).await?;
    let both = client(&[&ns1.address(), &ns2.address()], 30_000);
    let a = broker(&both, registration("c1", "a", 0, 1, &[("t", 2)])).await?;
    let b = broker(&both, registration("c1", "b", 0, 2, &[("t", 2)])).await?;

    assert_eq!(a.unregister().await, 2);
    for ns in [&ns1, &ns2] {
        let view = client(&[&ns.address()], 30_000);
        assert_eq!(routed_brokers(&view, "t").await, vec!["b"]);
    }
    assert_eq!(b.unregister().await, 2);
    for ns in [&ns1, &ns2] {
        let view = client(&[&ns.address()], 30_000);
        assert!(matches!(
            view.route("t").await,
            Err(ClientError::TopicNotFound(_))
        ));
        assert!(view.cluster_info().await?.clusters.is_empty());
    }
    ns1.shutdown().await?;
    ns2.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_info_lists_roles_and_endpoints() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(Config::default()).await?;
    let c = client(&[&ns.address()], 30_000);
    let before = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;

    let mut master = registration("east", "a", 0, 10, &[("t", 4), ("u", 1)]);
    master
        .endpoints
        .push(Endpoint::new("http", "127.0.0.1:11")?);
    master
        .endpoints
        .push(Endpoint::new("mqtt", "127.0.0.1:12")?);
    let master = broker(&c, master).await?;
    let slave = broker(&c, registration("east", "a", 1, 20, &[("t", 4)])).await?;
    let other = broker(&c, registration("west", "b", 0, 30, &[])).await?;

    let info = c.cluster_info().await?;
    let clusters: Vec<&str> = info.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters, vec!["east", "west"]);
    let east = &info.clusters[0].brokers;
    assert_eq!(east.len(), 2);
    assert_eq!(
        (
            east[0].broker_name.as_str(),
            east[0].broker_id,
            east[0].role
        ),
        ("a", BrokerId(0), Role::Master)
    );
    assert_eq!(
        (
            east[1].broker_name.as_str(),
            east[1].broker_id,
            east[1].role
        ),
        ("a", BrokerId(1), Role::Slave)
    );
    let endpoints: Vec<(&str, &str)> = east[0]
        .endpoints
        .iter()
        .map(|e| (e.protocol().as_str(), e.address()))
        .collect();
    assert_eq!(
        endpoints,
        vec![
            ("grpc", "127.0.0.1:10"),
            ("http", "127.0.0.1:11"),
            ("mqtt", "127.0.0.1:12")
        ]
    );
    assert_eq!(east[0].topic_count, 2);
    let after = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    for (_, b) in info.brokers() {
        assert!(
            (before..=after).contains(&b.last_heartbeat_ms),
            "{} not in {before}..={after}",
            b.last_heartbeat_ms
        );
    }
    assert_eq!(info.clusters[1].brokers[0].broker_name.as_str(), "b");

    // The route of `t` lists the group once, with both members' endpoints.
    let route = c.route("t").await?;
    assert_eq!(route.brokers.len(), 1);
    assert_eq!(route.brokers[0].addresses.len(), 2);
    assert_eq!(
        route.brokers[0].endpoint(BrokerId(1), "grpc"),
        Some("127.0.0.1:20")
    );

    master.unregister().await;
    // Without its master the group's queues stay, read-only.
    let route = c.route("t").await?;
    assert_eq!(route.queues[0].permission, Permission::Read);
    slave.unregister().await;
    other.unregister().await;
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_broker_registers_again() -> anyhow::Result<()> {
    // The broker heartbeats less often than the NameServer's expiry, so it is dropped between
    // heartbeats and must register again when the heartbeat answers `known = false`.
    let config = Config {
        broker_expiry_ms: 300,
        scan_interval_ms: 20,
        ..Config::default()
    };
    let ns = RunningNameServer::start(config).await?;
    let c = client(&[&ns.address()], 1_000);
    let a = broker(&c, registration("c1", "a", 0, 1, &[("t", 2)])).await?;

    eventually("a to expire", || async {
        routed_brokers(&c, "t").await.is_empty().then_some(())
    })
    .await?;
    eventually("a to register again", || async {
        (routed_brokers(&c, "t").await == vec!["a"]).then_some(())
    })
    .await?;

    a.unregister().await;
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_nameserver_learns_brokers_and_queries_fail_over() -> anyhow::Result<()> {
    let ns1 = RunningNameServer::start(Config::default()).await?;
    // The second NameServer's port is bound but nothing answers on it yet.
    let late = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let late_addr = late.local_addr()?.to_string();
    let both = client(&[&late_addr, &ns1.address()], 100);

    let a = broker(&both, registration("c1", "a", 0, 1, &[("t", 2)])).await?;
    assert_eq!(a.registered_count(), 1);
    // Queries skip the silent NameServer: after its 100 ms call timeout at most; 5 s is a
    // generous bound, only to tell skipping from hanging on it.
    let started = Instant::now();
    assert_eq!(routed_brokers(&both, "t").await, vec!["a"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");

    let ns2 = RunningNameServer::serve_on(late, Config::default());
    eventually("a to register with the late NameServer", || async {
        (a.registered_count() == 2).then_some(())
    })
    .await?;
    let view = client(&[&late_addr], 30_000);
    assert_eq!(routed_brokers(&view, "t").await, vec!["a"]);

    // With the first NameServer gone, queries still succeed through the second.
    ns1.shutdown().await?;
    assert_eq!(routed_brokers(&both, "t").await, vec!["a"]);

    a.unregister().await;
    ns2.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_updates_register_at_once_and_refused_ones_roll_back() -> anyhow::Result<()> {
    let config = Config {
        limits: Limits {
            max_topics_per_registration: 2,
            ..Limits::default()
        },
        ..Config::default()
    };
    let ns = RunningNameServer::start(config).await?;
    let c = client(&[&ns.address()], 30_000);
    let a = broker(&c, registration("c1", "a", 0, 1, &[("t", 2)])).await?;
    let topic = |name: &str| rocketgate_nameserver::TopicConfig::new(name.parse().unwrap(), 1);

    // A topic change is registered at once.
    let errors = a.update_topics(vec![topic("t"), topic("u")]).await?;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(c.route("u").await?.queues[0].read_queues, 1);
    let errors = a.update_topics(vec![topic("u")]).await?;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(matches!(
        c.route("t").await,
        Err(ClientError::TopicNotFound(_))
    ));

    // Checked locally: nothing is sent.
    let err = a
        .update_topics(vec![topic("x"), topic("x")])
        .await
        .expect_err("duplicate");
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");

    // Over this NameServer's limit: refused, and the previous list stays registered.
    let err = a
        .update_topics(vec![topic("x"), topic("y"), topic("z")])
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert_eq!(a.registered_count(), 1);
    assert_eq!(routed_brokers(&c, "u").await, vec!["a"]);
    assert!(routed_brokers(&c, "x").await.is_empty());

    a.unregister().await;
    ns.shutdown().await
}

fn raw_request(topics: usize) -> pb::RegisterBrokerRequest {
    pb::RegisterBrokerRequest {
        broker: Some(pb::BrokerIdentity {
            cluster: "c1".into(),
            broker_name: "bad".into(),
            broker_id: 0,
        }),
        endpoints: vec![pb::Endpoint {
            protocol: "grpc".into(),
            address: "127.0.0.1:1".into(),
        }],
        topics: (0..topics)
            .map(|i| pb::TopicConfig {
                name: format!("topic-{i}"),
                read_queue_nums: 1,
                write_queue_nums: 1,
                permission: pb::Permission::ReadWrite.into(),
                message_type: pb::MessageType::Normal.into(),
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_and_the_server_keeps_serving() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(Config::default()).await?;
    let mut raw = RawClient::connect(format!("http://{}", ns.address())).await?;
    let c = client(&[&ns.address()], 30_000);
    let good = broker(&c, registration("c1", "good", 0, 1, &[("t", 2)])).await?;

    let mut cases: Vec<(&str, pb::RegisterBrokerRequest, &str)> = Vec::new();
    let mut r = raw_request(1);
    r.topics[0].name = String::new();
    cases.push(("empty topic name", r, "topics[0].name: empty"));
    cases.push((
        "10,000 topics",
        raw_request(10_000),
        "topics: 10000 topics, more than the limit of 4096",
    ));
    let mut r = raw_request(1);
    r.topics[0].name = "x".repeat(128);
    cases.push(("oversized topic name", r, "topics[0].name: 128 bytes"));
    let mut r = raw_request(1);
    r.broker.as_mut().unwrap().broker_name = "b".repeat(10_000);
    cases.push((
        "oversized broker name",
        r,
        "broker.broker_name: 10000 bytes",
    ));
    let mut r = raw_request(1);
    r.broker.as_mut().unwrap().cluster = "c".repeat(1_000);
    cases.push(("oversized cluster name", r, "broker.cluster: 1000 bytes"));
    let mut r = raw_request(1);
    r.endpoints = (0..17)
        .map(|i| pb::Endpoint {
            protocol: format!("p{i}"),
            address: "127.0.0.1:1".into(),
        })
        .collect();
    cases.push(("17 endpoints", r, "endpoints: 17 endpoints"));
    let mut r = raw_request(1);
    r.endpoints[0].address = "h".repeat(256);
    cases.push(("oversized address", r, "endpoints[0].address"));
    let mut r = raw_request(1);
    r.broker = None;
    cases.push(("missing identity", r, "broker: missing"));
    let mut r = raw_request(1);
    r.topics[0].write_queue_nums = u32::MAX;
    cases.push(("too many queues", r, "topics[0].write_queue_nums"));
    let mut r = raw_request(1);
    r.topics[0].permission = 42;
    cases.push((
        "unknown permission",
        r,
        "topics[0].permission: unknown value 42",
    ));

    for (what, request, message) in cases {
        let status = raw.register_broker(request).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains(message),
            "{what}: `{}` does not contain `{message}`",
            status.message()
        );
    }

    let status = raw
        .query_route(pb::QueryRouteRequest {
            topic: String::new(),
        })
        .await
        .expect_err("empty topic query");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw
        .heartbeat(pb::HeartbeatRequest {
            broker: Some(pb::BrokerIdentity {
                cluster: "c1".into(),
                broker_name: "n".repeat(500),
                broker_id: 0,
            }),
            ..Default::default()
        })
        .await
        .expect_err("oversized heartbeat");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = raw
        .unregister_broker(pb::UnregisterBrokerRequest {
            broker: None,
            ..Default::default()
        })
        .await
        .expect_err("unregister without identity");
    assert_eq!(status.code(), Code::InvalidArgument);

    // A request over the size limit is refused before it is decoded.
    let mut r = raw_request(1);
    r.topics[0].name = "x".repeat(5 << 20);
    let status = raw.register_broker(r).await.expect_err("oversized request");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // The real client reports the refusal of a registration at once.
    let mut bad = registration("c1", "bad", 0, 2, &[("t", 2)]);
    bad.endpoints.push(Endpoint::new("grpc", "127.0.0.1:3")?);
    let err = c.register(bad).await.expect_err("duplicate protocol");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");

    // Nothing was registered by the bad requests, and the server still serves.
    assert_eq!(routed_brokers(&c, "t").await, vec!["good"]);
    let info = c.cluster_info().await?;
    assert_eq!(info.brokers().count(), 1);
    let reply = raw.register_broker(raw_request(3)).await?;
    assert_eq!(reply.into_inner().broker_expiry_ms, 120_000);
    assert_eq!(routed_brokers(&c, "topic-2").await, vec!["bad"]);

    good.unregister().await;
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_limit_and_cluster_conflict_are_refused() -> anyhow::Result<()> {
    let config = Config {
        limits: Limits {
            max_brokers: 1,
            ..Limits::default()
        },
        ..Config::default()
    };
    let ns = RunningNameServer::start(config).await?;
    let c = client(&[&ns.address()], 30_000);
    let a = broker(&c, registration("c1", "a", 0, 1, &[("t", 2)])).await?;

    let mut raw = RawClient::connect(format!("http://{}", ns.address())).await?;
    let mut other = raw_request(1);
    other.broker.as_mut().unwrap().broker_name = "b".into();
    let status = raw
        .register_broker(other)
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted);

    let mut conflict = raw_request(1);
    conflict.broker = Some(pb::BrokerIdentity {
        cluster: "c2".into(),
        broker_name: "a".into(),
        broker_id: 1,
    });
    let status = raw.register_broker(conflict).await.expect_err("conflict");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("cluster `c1`"), "{status:?}");

    assert_eq!(routed_brokers(&c, "t").await, vec!["a"]);
    a.unregister().await;
    ns.shutdown().await
}

#[tokio::test]
async fn client_config_is_checked() {
    let err = NameServerClient::new(&rocketgate_nameserver::ClientConfig::default())
        .expect_err("no address");
    assert!(
        matches!(err, ClientError::Config(ref e) if e.key == "addresses"),
        "{err}"
    );
    let err = NameServerClient::new(&rocketgate_nameserver::ClientConfig::new(["bad address"]))
        .expect_err("bad address");
    assert!(matches!(err, ClientError::Config(_)), "{err}");
}
