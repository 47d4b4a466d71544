//! Cluster tests with real processes of the `rocketgate` binary: two NameServers and two
//! brokers on 127.0.0.1 with ephemeral ports, administered with `rocketgate admin`, and a
//! producer and a consumer that work from cached routes (RELIABILITY.md T11).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketgate_nameserver::{
    ClientConfig, ClientError, NameServerClient, RouteCache, RouteCacheConfig, TopicRoute,
};
use rocketgate_proto::apache::rocketmq::v2;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use rocketgate_proto::cluster::v1::broker_admin_client::BrokerAdminClient;
use rocketgate_proto::cluster::v1::{PullMessagesRequest, SendMessageRequest};
use support::{admin_json, Node};
use tonic::transport::Channel;

/// NameServer expiry used here: a killed broker leaves the routes within 1.5 s + one 100 ms scan.
const EXPIRY_MS: u64 = 1_500;
/// Clients refresh their cached routes this often (RocketMQ's default is 30 s).
const ROUTE_REFRESH_MS: u64 = 300;
/// How long every NameServer stays down while produce and consume go on (T11 asks for 60 s in
/// the full run; `ROCKETGATE_T11_SECS` sets it).
fn outage() -> Duration {
    let secs = std::env::var("ROCKETGATE_T11_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(secs)
}

fn nameserver_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("nameserver.toml");
    std::fs::write(
        &path,
        format!("[nameserver]\nbroker_expiry_ms = {EXPIRY_MS}\nscan_interval_ms = 100\n"),
    )
    .unwrap();
    path
}

fn broker_config(dir: &std::path::Path, name: &str, namesrv: &[String]) -> std::path::PathBuf {
    let list: Vec<String> = namesrv.iter().map(|a| format!("\"{a}\"")).collect();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\ndata_dir = \"{data}\"\nsegment_size = 4194304\nflush_mode = \"SYNC\"\n\
             [broker]\ncluster = \"TestCluster\"\nname = \"{name}\"\nnamesrv = [{list}]\n\
             heartbeat_interval_ms = 200\nrpc_timeout_ms = 500\n\
             [grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [mqtt]\nenabled = false\n",
            data = dir.join(name).display(),
            list = list.join(", "),
        ),
    )
    .unwrap();
    path
}

/// Polls `check` until it returns `Some` or `within` passes.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client_of(address: &str) -> NameServerClient {
    NameServerClient::new(&ClientConfig {
        addresses: vec![address.to_owned()],
        rpc_timeout_ms: 1_000,
        ..ClientConfig::default()
    })
    .unwrap()
}

async fn route_from(address: &str, topic: &str) -> Result<TopicRoute, ClientError> {
    client_of(address).route(topic).await
}

fn brokers_of(route: &TopicRoute) -> BTreeMap<String, u32> {
    route
        .queues
        .iter()
        .map(|q| (q.broker_name.as_str().to_owned(), q.write_queues))
        .collect()
}

/// A producer and a consumer on the cached routes, as RocketMQ clients work.
struct RouteClients {
    routes: RouteCache,
    channels: parking_lot::Mutex<BTreeMap<String, Channel>>,
}

impl RouteClients {
    fn channel(&self, address: &str) -> Channel {
        self.channels
            .lock()
            .entry(address.to_owned())
            .or_insert_with(|| {
                tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                    .unwrap()
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_secs(3))
                    .connect_lazy()
            })
            .clone()
    }

    /// The writable (broker name, grpc address, queue count) triples of `topic`'s route.
    async fn targets(&self, topic: &str) -> Vec<(String, String, u32)> {
        let Ok(route) = self.routes.route(topic).await else {
            return Vec::new();
        };
        route
            .queues
            .iter()
            .filter(|q| q.permission.writable() && q.write_queues > 0)
            .filter_map(|q| {
                let b = route.broker(q.broker_name.as_str())?;
                let grpc = b.master_endpoint("grpc")?;
                Some((
                    q.broker_name.as_str().to_owned(),
                    grpc.to_owned(),
                    q.write_queues,
                ))
            })
            .collect()
    }
}

#[derive(Default, Debug)]
struct Tally {
    acked: BTreeMap<String, BTreeSet<String>>,
    send_errors: BTreeMap<String, usize>,
    consumed: BTreeSet<String>,
    consume_errors: BTreeMap<String, usize>,
}

/// Where the consumer of [`traffic`] is: the next offset per (broker name, queue).
type Offsets = BTreeMap<(String, u32), u64>;

/// Sends one message per round, spread over every writable queue of the cached route, and
/// pulls every queue of every broker in the route, until `stop`; returns where the consumer
/// is.
async fn traffic(
    clients: Arc<RouteClients>,
    topic: &'static str,
    tally: Arc<parking_lot::Mutex<Tally>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Offsets {
    let mut round = 0u64;
    let mut offsets = Offsets::new();
    while !*stop.borrow() {
        round += 1;
        let targets = clients.targets(topic).await;
        // Produce.
        let total: u32 = targets.iter().map(|t| t.2).sum();
        if total > 0 {
            let mut pick = (round % u64::from(total)) as u32;
            let (name, address, queue) = targets
                .iter()
                .find_map(|(n, a, q)| {
                    if pick < *q {
                        Some((n.clone(), a.clone(), pick))
                    } else {
                        pick -= q;
                        None
                    }
                })
                .unwrap();
            let mut admin = BrokerAdminClient::new(clients.channel(&address));
            let body = format!("m-{round}");
            let sent = admin
                .send_message(SendMessageRequest {
                    topic: topic.into(),
                    body: body.clone().into_bytes(),
                    queue_id: Some(queue),
                    ..Default::default()
                })
                .await;
            let mut t = tally.lock();
            match sent {
                Ok(_) => {
                    t.acked.entry(name).or_default().insert(body);
                }
                Err(_) => *t.send_errors.entry(name).or_default() += 1,
            }
        }
        // Consume.
        for (name, address, queues) in &targets {
            let mut admin = BrokerAdminClient::new(clients.channel(address));
            for q in 0..*queues {
                let at = offsets.get(&(name.clone(), q)).copied();
                let pulled = admin
                    .pull_messages(PullMessagesRequest {
                        group: "t11-consumer".into(),
                        topic: topic.into(),
                        queue_id: q,
                        offset: at,
                        max: 64,
                        ..Default::default()
                    })
                    .await;
                match pulled {
                    Ok(r) => {
                        let r = r.into_inner();
                        let mut t = tally.lock();
                        for m in &r.messages {
                            t.consumed
                                .insert(String::from_utf8_lossy(&m.body).into_owned());
                        }
                        offsets.insert((name.clone(), q), r.next_offset);
                    }
                    Err(_) => *tally.lock().consume_errors.entry(name.clone()).or_default() += 1,
                }
            }
        }
        // The pace of the load (about 50 rounds a second), not a synchronisation.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    offsets
}

/// Every message of `topic` queue `queue` on the broker at `grpc`, from `offset` to the end
/// (pulled by `group`, 64 at a time): their bodies.
async fn bodies_from(
    grpc: &str,
    group: &str,
    topic: &str,
    queue: u32,
    mut offset: u64,
) -> Vec<String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut admin = BrokerAdminClient::new(channel);
    let mut out = Vec::new();
    loop {
        let r = admin
            .pull_messages(PullMessagesRequest {
                group: group.into(),
                topic: topic.into(),
                queue_id: queue,
                offset: Some(offset),
                max: 64,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("pull {topic}/{queue} at {offset} from {grpc}: {e}"))
            .into_inner();
        out.extend(
            r.messages
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned()),
        );
        if r.messages.is_empty() || r.next_offset >= r.max_offset {
            return out;
        }
        offset = r.next_offset;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nameservers_two_brokers_routes_expiry_and_cached_routes() {
    let dir = tempfile::tempdir().unwrap();
    let ns_conf = nameserver_config(dir.path());
    let ns_conf = ns_conf.to_str().unwrap();
    let mut ns1 = Node::start(
        dir.path(),
        "ns1",
        &[
            "nameserver",
            "--config",
            ns_conf,
            "--nameserver-addr",
            "127.0.0.1:0",
        ],
    );
    let mut ns2 = Node::start(
        dir.path(),
        "ns2",
        &[
            "nameserver",
            "--config",
            ns_conf,
            "--nameserver-addr",
            "127.0.0.1:0",
        ],
    );
    let ns_addrs = vec![ns1.endpoint("nameserver"), ns2.endpoint("nameserver")];

    let conf_a = broker_config(dir.path(), "broker-a", &ns_addrs);
    let conf_b = broker_config(dir.path(), "broker-b", &ns_addrs);
    let broker_a = Node::start(
        dir.path(),
        "broker-a",
        &["broker", "--config", conf_a.to_str().unwrap()],
    );
    let mut broker_b = Node::start(
        dir.path(),
        "broker-b",
        &["broker", "--config", conf_b.to_str().unwrap()],
    );

    // Both brokers register with both NameServers.
    let namesrv = ns_addrs.join(",");
    for ns in &ns_addrs {
        eventually(
            Duration::from_secs(10),
            "both brokers in the cluster",
            || async {
                let info = client_of(ns).cluster_info().await.ok()?;
                let names: BTreeSet<String> = info
                    .brokers()
                    .map(|(_, b)| b.broker_name.as_str().to_owned())
                    .collect();
                (names.len() == 2).then_some(())
            },
        )
        .await;
    }

    // A topic created on the whole cluster with the admin tool.
    let created = admin_json(&[
        "--namesrv",
        &namesrv,
        "--cluster",
        "TestCluster",
        "topic",
        "create",
        "orders",
        "--queues",
        "4",
    ]);
    assert!(created.is_array() || created.is_object(), "{created}");

    // Its route, from either NameServer, lists both brokers with their queues.
    for ns in &ns_addrs {
        let route = eventually(
            Duration::from_secs(10),
            "route with both brokers",
            || async {
                let r = route_from(ns, "orders").await.ok()?;
                (brokers_of(&r).len() == 2).then_some(r)
            },
        )
        .await;
        assert_eq!(
            brokers_of(&route),
            BTreeMap::from([("broker-a".to_owned(), 4), ("broker-b".to_owned(), 4)])
        );
        for b in &route.brokers {
            assert!(b.master_endpoint("grpc").is_some(), "{b:?}");
        }
    }

    // The RocketMQ 5 QueryRoute of either broker lists both brokers' queues, each pointing at
    // its own broker's gRPC endpoint (what the official SDKs send to and poll).
    for grpc in [broker_a.endpoint("grpc"), broker_b.endpoint("grpc")] {
        let by_broker = eventually(
            Duration::from_secs(10),
            "v2 route with both brokers",
            || {
                let grpc = grpc.clone();
                async move {
                    let mut c = MessagingServiceClient::connect(format!("http://{grpc}"))
                        .await
                        .ok()?;
                    let mut req = tonic::Request::new(v2::QueryRouteRequest {
                        topic: Some(v2::Resource {
                            resource_namespace: String::new(),
                            name: "orders".into(),
                        }),
                        endpoints: None,
                    });
                    req.metadata_mut()
                        .insert("x-mq-client-id", "cluster-test@1#0".parse().ok()?);
                    let r = c.query_route(req).await.ok()?.into_inner();
                    let mut by_broker: BTreeMap<String, (usize, String)> = BTreeMap::new();
                    for q in &r.message_queues {
                        let b = q.broker.as_ref()?;
                        let a = b.endpoints.as_ref()?.addresses.first()?;
                        let e = by_broker
                            .entry(b.name.clone())
                            .or_insert((0, format!("{}:{}", a.host, a.port)));
                        e.0 += 1;
                    }
                    (by_broker.len() == 2).then_some(by_broker)
                }
            },
        )
        .await;
        assert_eq!(
            by_broker["broker-a"],
            (4, broker_a.endpoint("grpc")),
            "asked {grpc}"
        );
        assert_eq!(
            by_broker["broker-b"],
            (4, broker_b.endpoint("grpc")),
            "asked {grpc}"
        );
    }

    // Producer and consumer on cached routes.
    let routes = RouteCache::start(
        NameServerClient::new(&ClientConfig {
            addresses: ns_addrs.clone(),
            rpc_timeout_ms: 500,
            ..ClientConfig::default()
        })
        .unwrap(),
        &RouteCacheConfig {
            refresh_interval_ms: ROUTE_REFRESH_MS,
            ..RouteCacheConfig::default()
        },
    )
    .unwrap();
    let clients = Arc::new(RouteClients {
        routes: routes.clone(),
        channels: parking_lot::Mutex::new(BTreeMap::new()),
    });
    let tally = Arc::new(parking_lot::Mutex::new(Tally::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(traffic(clients.clone(), "orders", tally.clone(), stop_rx));
    eventually(
        Duration::from_secs(10),
        "messages on both brokers",
        || async {
            let t = tally.lock();
            (t.acked.get("broker-a").map_or(0, BTreeSet::len) > 5
                && t.acked.get("broker-b").map_or(0, BTreeSet::len) > 5)
                .then_some(())
        },
    )
    .await;

    // kill -9 broker-b: it leaves both NameServers' routes after the expiry, and the clients'
    // cached route within one refresh after that.
    let killed_at = Instant::now();
    broker_b.kill9();
    for ns in &ns_addrs {
        eventually(
            Duration::from_secs(10),
            "broker-b out of the route",
            || async {
                let r = route_from(ns, "orders").await.ok()?;
                (brokers_of(&r).keys().collect::<Vec<_>>() == ["broker-a"]).then_some(())
            },
        )
        .await;
    }
    let left_routes = killed_at.elapsed();
    eventually(
        Duration::from_secs(10),
        "broker-b out of the cached route",
        || async {
            let r = routes.cached("orders")?;
            (brokers_of(&r).keys().collect::<Vec<_>>() == ["broker-a"]).then_some(())
        },
    )
    .await;
    let left_cache = killed_at.elapsed();
    eprintln!("broker-b left the NameServer routes after {left_routes:?}, the cached route after {left_cache:?}");
    assert!(
        left_routes >= Duration::from_millis(EXPIRY_MS - 200),
        "{left_routes:?}"
    );

    // Kill every NameServer: produce and consume on broker-a keep going from the cached route.
    ns1.kill9();
    ns2.kill9();
    let (acked_before, consumed_before, errors_before) = {
        let t = tally.lock();
        (
            t.acked.get("broker-a").map_or(0, BTreeSet::len),
            t.consumed.len(),
            t.send_errors.get("broker-a").copied().unwrap_or(0)
                + t.consume_errors.get("broker-a").copied().unwrap_or(0),
        )
    };
    // The outage lasting is the point of the test: traffic goes on meanwhile.
    tokio::time::sleep(outage()).await;
    let _ = stop_tx.send(true);
    let offsets = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("traffic stops")
        .unwrap();

    // The traffic task is done: take the tally out of its lock. The consumer reads on from
    // where it stopped, to the end of each queue of broker-a (its last round may trail by the
    // final sends).
    let mut t = std::mem::take(&mut *tally.lock());
    let grpc_a = broker_a.endpoint("grpc");
    for q in 0..4 {
        let at = offsets
            .get(&("broker-a".to_owned(), q))
            .copied()
            .unwrap_or(0);
        t.consumed
            .extend(bodies_from(&grpc_a, "t11-consumer", "orders", q, at).await);
    }
    let acked_a = t.acked.get("broker-a").cloned().unwrap_or_default();
    let errors_a = t.send_errors.get("broker-a").copied().unwrap_or(0)
        + t.consume_errors.get("broker-a").copied().unwrap_or(0);
    eprintln!(
        "during the NameServer outage of {:?}: {} sends acked by broker-a, {} consumed, {} errors",
        outage(),
        acked_a.len() - acked_before,
        t.consumed.len() - consumed_before,
        errors_a - errors_before
    );
    assert!(
        acked_a.len() > acked_before + 20,
        "producer kept going: {} then {}",
        acked_before,
        acked_a.len()
    );
    assert_eq!(errors_a, 0, "no errors on the healthy broker: {t:?}");
    assert!(t.consumed.len() > consumed_before, "consumer kept going");
    // Every send broker-a acknowledged was consumed.
    let missing: Vec<&String> = acked_a
        .iter()
        .filter(|m| !t.consumed.contains(*m))
        .collect();
    assert!(missing.is_empty(), "acked but never consumed: {missing:?}");

    // broker-b, killed with -9, restarts (its NameServers are gone: it serves unregistered)
    // with every send it acknowledged before it died.
    let acked_b = t.acked.get("broker-b").cloned().unwrap_or_default();
    assert!(acked_b.len() > 5, "{t:?}");
    let broker_b = Node::start(
        dir.path(),
        "broker-b-restarted",
        &["broker", "--config", conf_b.to_str().unwrap()],
    );
    assert_eq!(
        broker_b.ready["recovered_after_crash"], true,
        "{}",
        broker_b.ready
    );
    let grpc_b = broker_b.endpoint("grpc");
    let mut stored_b = BTreeSet::new();
    for q in 0..4 {
        stored_b.extend(bodies_from(&grpc_b, "t11-audit", "orders", q, 0).await);
    }
    let lost: Vec<&String> = acked_b.difference(&stored_b).collect();
    assert!(
        lost.is_empty(),
        "acknowledged by broker-b before its kill -9, not stored after its restart: {lost:?}"
    );
    routes.stop().await;
    broker_b.terminate();
    broker_a.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_with_sigterm_leaves_the_routes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Default expiry (120 s): leaving within seconds proves the broker unregistered.
    let ns = Node::start(
        dir.path(),
        "ns",
        &["nameserver", "--nameserver-addr", "127.0.0.1:0"],
    );
    let ns_addr = ns.endpoint("nameserver");
    let conf = broker_config(dir.path(), "broker-c", std::slice::from_ref(&ns_addr));
    let broker = Node::start(
        dir.path(),
        "broker-c",
        &["broker", "--config", conf.to_str().unwrap()],
    );
    let grpc = broker.endpoint("grpc");
    admin_json(&[
        "--broker", &grpc, "topic", "create", "leaving", "--queues", "2",
    ]);
    eventually(Duration::from_secs(10), "route to broker-c", || async {
        let r = route_from(&ns_addr, "leaving").await.ok()?;
        (brokers_of(&r) == BTreeMap::from([("broker-c".to_owned(), 2)])).then_some(())
    })
    .await;
    // The route's endpoint is the broker's bound gRPC address.
    let r = route_from(&ns_addr, "leaving").await.unwrap();
    assert_eq!(r.brokers[0].master_endpoint("grpc"), Some(grpc.as_str()));

    let stopped = Instant::now();
    // (`terminate` gives up after 30 s itself.)
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::task::spawn_blocking(move || broker.terminate()),
    )
    .await
    .expect("terminate returns")
    .unwrap();
    assert!(status.success());
    match route_from(&ns_addr, "leaving").await {
        Err(ClientError::TopicNotFound(_)) => {}
        other => panic!("the topic should have no route once its only broker left: {other:?}"),
    }
    let info = client_of(&ns_addr).cluster_info().await.unwrap();
    assert_eq!(info.brokers().count(), 0, "{info:?}");
    // Gone right after the exit, no polling: it unregistered. (The expiry would take 120 s;
    // 10 s is a generous bound for the stop itself, which takes well under a second.)
    assert!(stopped.elapsed() < Duration::from_secs(10));
    ns.terminate();
}
