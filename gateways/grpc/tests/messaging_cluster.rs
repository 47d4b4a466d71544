//! QueryRoute across a cluster: a real NameServer in-process, two brokers (each with its own
//! gRPC server on 127.0.0.1:0, registered through the real `NameServerClient` and routing
//! through a `RouteCache`). Routes list every READ_WRITE group with its own endpoint, data RPCs
//! stay on the broker that serves the queue, and the cache keeps answering while the
//! NameServer is down. Every wait is bounded; everything is stopped at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use messaging_support::*;
use rocketgate_nameserver as ns;

/// The NameServer: short expiry, stopped through `stop`.
struct NameServer {
    address: String,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), ns::Error>>,
}

impl NameServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let config = ns::Config {
            broker_expiry_ms: 2_000,
            scan_interval_ms: 100,
            ..ns::Config::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(ns::serve(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            address,
            stop,
            join,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        bounded(self.join).await.unwrap().unwrap();
    }
}

/// One broker group's master: a broker, its gRPC server, its registration and route cache.
struct Member {
    name: &'static str,
    client: Client,
    broker: Broker,
    port: u16,
    routes: ns::RouteCache,
    registration: Option<ns::Registration>,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), rocketgate_gateway_grpc::Error>>,
    _dir: tempfile::TempDir,
}

/// Starts broker `name` with `topics` (name, queues) created locally, registered with
/// `nameserver` as (name, queues, permission) from `registered`.
async fn member(
    name: &'static str,
    nameserver: &str,
    topics: &[(&str, u32)],
    registered: &[(&str, u32, ns::Permission)],
) -> Member {
    member_with(name, nameserver, 500, topics, Some(registered)).await
}

/// [`member`] with NameServer calls bounded by `rpc_timeout_ms`, registered only when
/// `registered` is given.
async fn member_with(
    name: &'static str,
    nameserver: &str,
    rpc_timeout_ms: u64,
    topics: &[(&str, u32)],
    registered: Option<&[(&str, u32, ns::Permission)]>,
) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 4 << 20;
    config.limits.max_body_bytes = MAX_BODY;
    config.consumer.min_invisible_ms = 100;
    let broker = Broker::open(config).unwrap();
    for (topic, queues) in topics {
        broker
            .topics()
            .create(TopicConfig::new(*topic, *queues))
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");

    let client = ns::NameServerClient::new(&ns::ClientConfig {
        addresses: vec![nameserver.to_owned()],
        heartbeat_interval_ms: 100,
        rpc_timeout_ms,
        tls: None,
    })
    .unwrap();
    let registration = match registered {
        Some(registered) => Some(register(&client, name, &address, registered).await),
        None => None,
    };
    let routes = ns::RouteCache::start(
        client,
        &ns::RouteCacheConfig {
            refresh_interval_ms: 200,
            ..ns::RouteCacheConfig::default()
        },
    )
    .unwrap();
    let node = NodeInfo {
        cluster: "c1".into(),
        broker_name: name.into(),
        broker_id: 0,
        endpoints: vec![("grpc".into(), address)],
        nameservers: vec![nameserver.to_owned()],
        registered_nameservers: Arc::new(|| 1),
        started_at_ms: 0,
        routes: Some(routes.clone()),
    };
    let messaging = MessagingConfig {
        max_long_polling_ms: POLL_CAP_MS,
        min_long_polling_ms: 100,
        ..MessagingConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let join = tokio::spawn(serve_with(
        listener,
        broker.clone(),
        node,
        messaging,
        async {
            let _ = stopped.await;
        },
    ));
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .unwrap();
    Member {
        name,
        client: MessagingServiceClient::new(channel),
        broker,
        port,
        routes,
        registration,
        stop,
        join,
        _dir: dir,
    }
}

/// Registers broker `name` at `address` with `topics` through the real client.
async fn register(
    client: &ns::NameServerClient,
    name: &str,
    address: &str,
    topics: &[(&str, u32, ns::Permission)],
) -> ns::Registration {
    bounded(
        client.register(ns::BrokerRegistration {
            identity: ns::BrokerIdentity {
                cluster: "c1".parse().unwrap(),
                broker_name: name.parse().unwrap(),
                broker_id: ns::BrokerId::MASTER,
            },
            endpoints: vec![ns::Endpoint::new("grpc", address).unwrap()],
            topics: topics
                .iter()
                .map(|(t, q, p)| ns::TopicConfig {
                    permission: *p,
                    ..ns::TopicConfig::new(ns::TopicName::new(*t).unwrap(), *q)
                })
                .collect(),
        }),
    )
    .await
    .unwrap()
}

impl Member {
    async fn stop(self) {
        drop(self.client);
        bounded(self.routes.stop()).await;
        if let Some(registration) = self.registration {
            bounded(registration.stop()).await;
        }
        let _ = self.stop.send(());
        bounded(self.join).await.unwrap().unwrap();
        self.broker.shutdown().unwrap();
    }

    async fn route(&mut self, topic: &str) -> pb::QueryRouteResponse {
        bounded(self.client.query_route(req(pb::QueryRouteRequest {
            topic: res(topic),
            endpoints: None,
        })))
        .await
        .unwrap()
        .into_inner()
    }
}

/// (broker name, endpoint port, queue count) per group, in answer order; every queue checked
/// for the fields SDKs rely on.
fn groups(r: &pb::QueryRouteResponse) -> Vec<(String, u16, usize)> {
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    let mut out: Vec<(String, u16, usize)> = Vec::new();
    for q in &r.message_queues {
        assert_eq!(q.permission, pb::Permission::ReadWrite as i32, "{q:?}");
        assert_eq!(q.accept_message_types, vec![pb::MessageType::Normal as i32]);
        let b = q.broker.as_ref().expect("broker");
        assert_eq!(b.id, 0);
        let e = b.endpoints.as_ref().expect("endpoints");
        assert_eq!(e.scheme, pb::AddressScheme::IPv4 as i32);
        assert_eq!(e.addresses.len(), 1);
        assert_eq!(e.addresses[0].host, "127.0.0.1");
        let port = u16::try_from(e.addresses[0].port).unwrap();
        match out.last_mut() {
            Some((name, p, n)) if *name == b.name && *p == port => *n += 1,
            _ => out.push((b.name.clone(), port, 1)),
        }
    }
    out
}

/// Polls QueryRoute on `m` until its groups are `want` (the other broker may register, and
/// the cache refresh, a moment later).
async fn route_becomes(m: &mut Member, topic: &str, want: &[(String, u16, usize)]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = m.route(topic).await;
        if code(&r.status) == Code::Ok && groups(&r) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "route of `{topic}` on {} never became {want:?}: {r:?}",
            m.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn routes_span_the_cluster_and_survive_a_nameserver_outage() {
    let nameserver = NameServer::start().await;
    let rw = ns::Permission::ReadWrite;
    let mut a = member(
        "broker-a",
        &nameserver.address,
        &[("shared", 4), ("solo", 2), ("ro", 2), ("late", 3)],
        &[("shared", 4, rw), ("solo", 2, rw), ("ro", 2, rw)],
    )
    .await;
    let mut b = member(
        "broker-b",
        &nameserver.address,
        &[("shared", 2), ("ro", 2)],
        &[("shared", 2, rw), ("ro", 2, ns::Permission::Read)],
    )
    .await;
    let group_a = |n| ("broker-a".to_owned(), a.port, n);
    let (ga4, ga2, ga3) = (group_a(4), group_a(2), group_a(3));
    let gb2 = ("broker-b".to_owned(), b.port, 2);

    // A topic on both brokers: both groups, each with its own endpoint, same answer on each.
    route_becomes(&mut a, "shared", &[ga4.clone(), gb2.clone()]).await;
    route_becomes(&mut b, "shared", &[ga4.clone(), gb2.clone()]).await;
    // Only on broker-a: broker-a's queues, also when asked through broker-b, which does not
    // know the topic itself.
    assert_eq!(groups(&a.route("solo").await), vec![ga2.clone()]);
    route_becomes(&mut b, "solo", std::slice::from_ref(&ga2)).await;
    // broker-b's group is read-only in the routes: left out for the SDKs' sake.
    assert_eq!(groups(&a.route("ro").await), vec![ga2.clone()]);
    // Known locally, not (yet) registered: the NameServer says not found, local answer.
    assert_eq!(groups(&a.route("late").await), vec![ga3.clone()]);
    // Unknown everywhere.
    assert_eq!(code(&a.route("nowhere").await.status), Code::TopicNotFound);

    // Data RPCs stay on the broker of the queue: sent through broker-b, received there only.
    send_ok(
        &mut b.client,
        vec![message("shared", "m-b", pb::MessageType::Normal)],
    )
    .await;
    let got = receive(&mut b.client, "g", "shared", 8, 10_000, 1_000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(sys(&got[0]).message_id, "m-b");
    let r = ack(&mut b.client, "g", "shared", &[handle(&got[0])]).await;
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    assert!(receive(&mut a.client, "g", "shared", 8, 10_000, 200)
        .await
        .is_empty());

    // NameServer down: cached routes keep answering, also after a refresh round fails.
    nameserver.stop().await;
    let report = bounded(a.routes.refresh_now()).await;
    assert!(report.error.is_some(), "{report:?}");
    assert_eq!(groups(&a.route("shared").await), [ga4.clone(), gb2.clone()]);
    assert_eq!(groups(&b.route("solo").await), vec![ga2.clone()]);
    // Not cached, NameServer unreachable: local answer, or TOPIC_NOT_FOUND, promptly: within
    // milliseconds (a refused connection), ROUTE_WAIT (1 s) at worst; each bound is generous.
    let started = Instant::now();
    assert_eq!(groups(&a.route("late").await), [ga3]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let started = Instant::now();
    assert_eq!(code(&b.route("nowhere").await.status), Code::TopicNotFound);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_silent_nameserver_does_not_hold_up_query_route() {
    // Accepts connections (the kernel does) but never answers: the cache's miss would wait
    // for the client's 30 s call timeout; QueryRoute gives up after 1 s (ROUTE_WAIT) and
    // answers locally. Checked with a generous bound: 10 s, a third of the call timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let mut a = member_with("broker-a", &address, 30_000, &[("orders", 2)], None).await;
    let started = Instant::now();
    assert_eq!(
        groups(&a.route("orders").await),
        [("broker-a".to_owned(), a.port, 2)]
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(code(&a.route("nowhere").await.status), Code::TopicNotFound);
    a.stop().await;
    drop(silent);
}
