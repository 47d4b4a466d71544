//! Route cache tests: real NameServers on 127.0.0.1:0, brokers registered through the real
//! client, and a `RouteCache` refreshing every 100 ms (or only when told). Every wait has a
//! deadline and every server is shut down by its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use rocketgate_nameserver::{
    ClientError, Config, RefreshReport, RouteCache, RouteCacheConfig, TopicRoute,
};
use support::*;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A cache of `servers` (500 ms call timeout) refreshing every `refresh_ms`.
fn route_cache(servers: &[&str], refresh_ms: u64, max_topics: usize) -> RouteCache {
    let config = RouteCacheConfig {
        refresh_interval_ms: refresh_ms,
        max_topics,
    };
    RouteCache::start(client(servers, 30_000), &config).unwrap()
}

/// Long enough that only `refresh_now` refreshes during a test.
const MANUAL: u64 = 3_600_000;

fn brokers_of(route: &Arc<TopicRoute>) -> Vec<&str> {
    route
        .queues
        .iter()
        .map(|q| q.broker_name.as_str())
        .collect()
}

fn is_unavailable(error: Option<&ClientError>) -> bool {
    matches!(error, Some(ClientError::Unavailable { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_routes_outlive_every_nameserver() -> anyhow::Result<()> {
    let ns1 = RunningNameServer::start(Config::default()).await?;
    let ns2 = RunningNameServer::start(Config::default()).await?;
    let servers = [ns1.address(), ns2.address()];
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    let registrar = client(&servers, 50);
    let a = broker(
        &registrar,
        registration("c1", "a", 0, 1001, &[("orders", 4)]),
    )
    .await?;
    let b = broker(
        &registrar,
        registration("c1", "b", 0, 1002, &[("orders", 2)]),
    )
    .await?;
    let cache = route_cache(&servers, 100, 16);

    let first = cache.route("orders").await?;
    assert_eq!(brokers_of(&first), ["a", "b"]);
    assert_eq!(
        first.broker("a").unwrap().master_endpoint("grpc"),
        Some("127.0.0.1:1001")
    );
    assert!(Arc::ptr_eq(&cache.cached("orders").unwrap(), &first));
    // A refresh that finds nothing new keeps the very same route.
    let report = cache.refresh_now().await;
    assert_eq!(
        (report.topics, report.replaced, report.dropped, report.kept),
        (1, 0, 0, 0),
        "{report:?}"
    );
    assert!(report.error.is_none(), "{report:?}");
    assert!(Arc::ptr_eq(&cache.route("orders").await?, &first));

    // Every NameServer goes away; the brokers keep running.
    ns1.shutdown().await?;
    ns2.shutdown().await?;
    let outage: RefreshReport = eventually("a round that finds no NameServer", || async {
        cache
            .last_refresh()
            .filter(|r| is_unavailable(r.error.as_ref()))
    })
    .await?;
    assert_eq!((outage.kept, outage.dropped), (1, 0), "{outage:?}");

    // Ten more rounds (about a second): the cached route answers every time, unchanged.
    let until = outage.round + 10;
    let deadline = Instant::now() + WAIT;
    loop {
        let route = cache.route("orders").await?;
        assert!(Arc::ptr_eq(&route, &first));
        let last = cache.last_refresh().unwrap();
        assert!(is_unavailable(last.error.as_ref()), "{last:?}");
        if last.round >= until {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refresher stalled at {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(is_unavailable(cache.last_refresh_error().as_ref()));
    let report = cache.refresh_now().await;
    assert_eq!((report.topics, report.kept), (1, 1), "{report:?}");

    // A topic never seen before cannot be answered, and is not cached.
    let err = cache.route("never-seen").await.expect_err("no NameServer");
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
    assert!(cache.cached("never-seen").is_none());
    assert_eq!(cache.len(), 1);
    // Neither can a topic the caller chose to forget.
    assert!(cache.invalidate("orders"));
    assert!(!cache.invalidate("orders"));
    let err = cache.route("orders").await.expect_err("no NameServer");
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
    assert!(cache.is_empty());

    cache.stop().await;
    a.stop().await;
    b.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_follow_brokers_leaving_and_topics_going_away() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(fast_config()).await?;
    let address = ns.address();
    let registrar = client(&[&address], 50);
    let a = broker(
        &registrar,
        registration("c1", "a", 0, 1, &[("t", 2), ("only-a", 1)]),
    )
    .await?;
    let b = broker(&registrar, registration("c1", "b", 0, 2, &[("t", 2)])).await?;
    let c = broker(&registrar, registration("c1", "c", 0, 3, &[("t", 2)])).await?;
    let manual = route_cache(&[&address], MANUAL, 16);
    let auto = route_cache(&[&address], 100, 16);
    for cache in [&manual, &auto] {
        assert_eq!(brokers_of(&cache.route("t").await?), ["a", "b", "c"]);
        assert_eq!(brokers_of(&cache.route("only-a").await?), ["a"]);
    }

    // `c` unregisters: the cached route keeps it until the next refresh, and loses it then.
    c.unregister().await;
    assert_eq!(brokers_of(&manual.route("t").await?), ["a", "b", "c"]);
    let report = manual.refresh_now().await;
    assert_eq!(
        (report.topics, report.replaced, report.dropped, report.kept),
        (2, 1, 0, 0),
        "{report:?}"
    );
    assert_eq!(brokers_of(&manual.route("t").await?), ["a", "b"]);

    // `a` crashes (stops heartbeating): once the NameServer expires it, the background
    // refresher takes it out of `t` and drops `only-a`, which nobody else serves.
    a.stop().await;
    eventually("the refresher to drop a from t", || async {
        auto.cached("t")
            .filter(|r| brokers_of(r) == ["b"])
            .map(drop)
    })
    .await?;
    eventually("the refresher to drop only-a", || async {
        auto.cached("only-a").is_none().then_some(())
    })
    .await?;
    let err = auto.route("only-a").await.expect_err("deleted");
    assert!(
        matches!(err, ClientError::TopicNotFound(ref t) if t.as_str() == "only-a"),
        "{err}"
    );
    assert_eq!(auto.len(), 1);

    // `b`, the last broker of `t`, leaves: `t` is gone after one refresh.
    b.unregister().await;
    let report = manual.refresh_now().await;
    assert_eq!((report.topics, report.dropped), (2, 2), "{report:?}");
    assert!(report.error.is_none(), "{report:?}");
    assert!(manual.is_empty());
    let err = manual.route("t").await.expect_err("deleted");
    assert!(matches!(err, ClientError::TopicNotFound(_)), "{err}");
    eventually("the refresher to drop t", || async {
        auto.is_empty().then_some(())
    })
    .await?;
    // A NOT_FOUND is an answer, not an outage.
    assert!(auto.last_refresh_error().is_none());

    manual.stop().await;
    auto.stop().await;
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_evicts_the_least_recently_used_topic() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(Config::default()).await?;
    let address = ns.address();
    let registrar = client(&[&address], 30_000);
    let topics = [("t0", 1), ("t1", 1), ("t2", 1), ("t3", 1)];
    let a = broker(&registrar, registration("c1", "a", 0, 1, &topics)).await?;
    let cache = route_cache(&[&address], MANUAL, 2);

    cache.route("t0").await?;
    cache.route("t1").await?;
    cache.route("t0").await?; // a hit: t1 is now the least recently used
    cache.route("t2").await?;
    let cached = |t: &str| cache.cached(t).is_some();
    assert_eq!(
        (cached("t0"), cached("t1"), cached("t2"), cache.len()),
        (true, false, true, 2)
    );
    cache.route("t2").await?; // t0 is now the least recently used
    cache.route("t1").await?;
    assert_eq!(
        (cached("t0"), cached("t1"), cached("t2"), cache.len()),
        (false, true, true, 2)
    );

    // Invalid names are refused before anything is asked.
    let err = cache.route("no spaces").await.expect_err("invalid");
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");

    // Concurrent callers of one uncached topic all get the same route.
    let mut calls = JoinSet::new();
    for _ in 0..16 {
        let cache = cache.clone();
        calls.spawn(async move { cache.route("t3").await });
    }
    let mut routes = Vec::new();
    while let Some(joined) = tokio::time::timeout(WAIT, calls.join_next())
        .await
        .expect("every concurrent caller answered within 10 s")
    {
        routes.push(joined??);
    }
    assert_eq!(routes.len(), 16);
    assert!(routes.iter().all(|r| Arc::ptr_eq(r, &routes[0])));
    assert_eq!(cache.len(), 2);

    cache.stop().await;
    a.unregister().await;
    ns.shutdown().await
}

#[tokio::test]
async fn the_refresher_stops_with_the_last_handle_or_stop() -> anyhow::Result<()> {
    // Nothing is cached, so nothing is ever sent to this address. The client's channel has a
    // task of its own, so it is made (and kept) before counting.
    let nowhere = client(&["127.0.0.1:9"], 30_000);
    let config = RouteCacheConfig {
        refresh_interval_ms: 10,
        max_topics: 4,
    };
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let cache = RouteCache::start(nowhere.clone(), &config)?;
    let clone = cache.clone();
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    let round = eventually("a background round", || async {
        clone.last_refresh().map(|r| r.round)
    })
    .await?;
    assert!(round >= 1);

    drop(cache);
    // A handle is left: the refresher goes on with its rounds.
    eventually("two more rounds after the drop", || async {
        clone
            .last_refresh()
            .is_some_and(|r| r.round >= round + 2)
            .then_some(())
    })
    .await?;
    assert_eq!(metrics.num_alive_tasks(), before + 1, "a handle is left");
    drop(clone);
    eventually("the refresher to end", || async {
        (metrics.num_alive_tasks() == before).then_some(())
    })
    .await?;

    let cache = RouteCache::start(nowhere.clone(), &config)?;
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    cache.stop().await;
    assert_eq!(metrics.num_alive_tasks(), before);
    let stopped_at = cache.last_refresh().map_or(0, |r| r.round);
    // No round in five refresh intervals (waiting is the point).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cache.last_refresh().map_or(0, |r| r.round), stopped_at);
    // Explicit rounds still work.
    let report = cache.refresh_now().await;
    assert_eq!((report.round, report.topics), (stopped_at + 1, 0));
    Ok(())
}

#[test]
fn route_cache_config_is_checked() {
    let defaults = RouteCacheConfig::default();
    assert_eq!(
        (defaults.refresh_interval_ms, defaults.max_topics),
        (30_000, 10_000)
    );
    assert!(defaults.validate().is_ok());
    let parsed: RouteCacheConfig = toml::from_str("refresh_interval_ms = 5000").unwrap();
    assert_eq!(parsed.refresh_interval_ms, 5_000);
    assert_eq!(parsed.max_topics, 10_000);
    assert!(toml::from_str::<RouteCacheConfig>("ttl_ms = 1").is_err());
    for (config, key) in [
        (
            RouteCacheConfig {
                refresh_interval_ms: 0,
                ..RouteCacheConfig::default()
            },
            "refresh_interval_ms",
        ),
        (
            RouteCacheConfig {
                max_topics: 0,
                ..RouteCacheConfig::default()
            },
            "max_topics",
        ),
    ] {
        assert_eq!(config.validate().unwrap_err().key, key);
    }
}

#[tokio::test]
async fn an_invalid_config_starts_nothing() {
    let config = RouteCacheConfig {
        max_topics: 0,
        ..RouteCacheConfig::default()
    };
    let nowhere = client(&["127.0.0.1:9"], 30_000);
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let err = RouteCache::start(nowhere.clone(), &config).expect_err("invalid");
    assert!(
        matches!(err, ClientError::Config(ref e) if e.key == "max_topics"),
        "{err}"
    );
    assert_eq!(metrics.num_alive_tasks(), before);
}
