//! A caller-side cache of topic routes, refreshed in the background, so that callers keep
//! routing while every NameServer is down (DESIGN.md "Cluster", RELIABILITY.md T11).
//!
//! Owns: a map topic → last good [`TopicRoute`] (at most `max_topics` entries), the in-flight
//! first-time loads, and one refresher task per cache.
//!
//! Invariants:
//! - a hit ([`RouteCache::route`] on a cached topic) makes no network call and never fails;
//! - a route is only ever replaced by a newer answer of a NameServer, and only removed when
//!   every NameServer that answered said `NOT_FOUND` (the topic was deleted), when
//!   [`RouteCache::invalidate`] is called, or when the least recently used topic is evicted to
//!   make room for a new one. Failures (no NameServer answered, a bad reply) keep the last good
//!   route, so an outage never empties the cache;
//! - a refresh result is applied only if the entry is still the one the round started from: a
//!   topic invalidated or evicted during a round is not brought back, and a fresher load is not
//!   overwritten;
//! - the `Arc` of a cached route changes only when the route does (callers may `Arc::ptr_eq`).
//!
//! Callers: gateways, producers, admin tools; anything holding a [`NameServerClient`]. Depends
//! only on the client; never on `rocketgate-core`.
//!
//! Concurrency: [`RouteCache`] is a cheap `Clone` handle. The map is behind a
//! `parking_lot::RwLock` (hits take it shared; inserts, refresh results and invalidation take it
//! exclusively, briefly); no synchronous lock is held across an `.await`. Concurrent misses of
//! one topic share one query (a `tokio::sync::OnceCell` per topic being loaded). The refresher
//! task owns the timer; refresh rounds (background or [`RouteCache::refresh_now`]) are
//! serialized by a `tokio::sync::Mutex` and query up to [`REFRESH_CONCURRENCY`] topics at once
//! in a `JoinSet`. The task stops on [`RouteCache::stop`] or when the last handle is dropped.
//!
//! Deliberately not here: a time-to-live (a stale route is better than none while the
//! NameServers are down; the refresher replaces it as soon as one answers) and negative caching
//! (a miss that fails is retried by the next call).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OnceCell};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, trace, warn};

use super::{ClientError, NameServerClient};
use crate::config::ConfigError;
use crate::model::{TopicName, TopicRoute};

/// Most route queries one refresh round has in flight at once.
pub const REFRESH_CONCURRENCY: usize = 8;

/// Route cache settings (part of a gateway's, producer's or tool's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// How often every cached topic is queried again, in ms (30,000, as RocketMQ clients poll).
    pub refresh_interval_ms: u64,
    /// Most topics cached at once (10,000); a new topic beyond it evicts the least recently used.
    pub max_topics: usize,
}

impl Default for RouteCacheConfig {
    fn default() -> Self {
        Self {
            refresh_interval_ms: 30_000,
            max_topics: 10_000,
        }
    }
}

impl RouteCacheConfig {
    /// Checks that every value can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad key: a zero interval or a zero bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.refresh_interval_ms == 0 {
            return Err(ConfigError {
                key: "refresh_interval_ms",
                reason: "must be greater than 0".into(),
            });
        }
        if self.max_topics == 0 {
            return Err(ConfigError {
                key: "max_topics",
                reason: "must be greater than 0".into(),
            });
        }
        Ok(())
    }
}

/// What one refresh round did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RefreshReport {
    /// This round's number, counting from 1 (background rounds and [`RouteCache::refresh_now`]).
    pub round: u64,
    /// Topics cached when the round started.
    pub topics: usize,
    /// Routes replaced because the NameServers' answer differed.
    pub replaced: usize,
    /// Topics dropped because every NameServer that answered said `NOT_FOUND`.
    pub dropped: usize,
    /// Topics whose last good route was kept because their query failed, or was not sent once
    /// no NameServer answered.
    pub kept: usize,
    /// The last failure other than `NOT_FOUND`, if any.
    pub error: Option<ClientError>,
}

/// A cache of topic routes in front of a [`NameServerClient`]; cheap to clone. See the module
/// docs for what it guarantees.
#[derive(Debug, Clone)]
pub struct RouteCache {
    owner: Arc<Owner>,
}

/// Shared by every handle; dropping it (the last handle) stops the refresher.
#[derive(Debug)]
struct Owner {
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

type Load = Arc<OnceCell<Result<Arc<TopicRoute>, ClientError>>>;

/// Shared by the handles and the refresher task.
#[derive(Debug)]
struct State {
    client: NameServerClient,
    max_topics: usize,
    refresh_interval: Duration,
    entries: RwLock<HashMap<TopicName, Entry>>,
    /// First-time loads in flight, one per topic, so concurrent misses share one query.
    loads: Mutex<HashMap<TopicName, Load>>,
    /// Recency epoch, advanced by every insert; a hit stamps its entry with the current epoch,
    /// so recency costs a shared read (not a write) on repeated hits.
    epoch: AtomicU64,
    /// Source of entry versions (a new one per insert or replacement).
    versions: AtomicU64,
    /// Serializes rounds and counts them.
    rounds: tokio::sync::Mutex<u64>,
    /// Whether the last round that queried anything found no NameServer answering.
    outage: AtomicBool,
    last: Mutex<Option<RefreshReport>>,
}

#[derive(Debug)]
struct Entry {
    route: Arc<TopicRoute>,
    version: u64,
    last_used: AtomicU64,
}

impl RouteCache {
    /// A cache in front of `client`, empty, with its refresher running (every
    /// `refresh_interval_ms`, first one interval from now).
    ///
    /// # Errors
    /// [`ClientError::Config`] when `config` does not validate (nothing is started).
    ///
    /// # Panics
    /// When called outside a Tokio runtime (it spawns the refresher, like `tokio::spawn`).
    pub fn start(client: NameServerClient, config: &RouteCacheConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let state = Arc::new(State {
            client,
            max_topics: config.max_topics,
            refresh_interval: Duration::from_millis(config.refresh_interval_ms),
            entries: RwLock::new(HashMap::new()),
            loads: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            versions: AtomicU64::new(0),
            rounds: tokio::sync::Mutex::new(0),
            outage: AtomicBool::new(false),
            last: Mutex::new(None),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(refresh_loop(state.clone(), stopped));
        Ok(Self {
            owner: Arc::new(Owner {
                state,
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    fn state(&self) -> &Arc<State> {
        &self.owner.state
    }

    /// The client behind the cache (for calls the cache does not cover, e.g. cluster info).
    pub fn client(&self) -> &NameServerClient {
        &self.state().client
    }

    /// The route of `topic`: the cached one if there is one (no network call), otherwise asked
    /// of the NameServers (with failover), cached and returned. Concurrent misses of one topic
    /// share one query. A new topic in a full cache evicts the least recently used one.
    ///
    /// # Errors
    /// Only on a miss: [`ClientError::Invalid`] for an invalid topic name,
    /// [`ClientError::TopicNotFound`] when every NameServer that answered does not know it,
    /// [`ClientError::Unavailable`] when none answered, [`ClientError::BadReply`] for a reply
    /// that breaks the protocol. Failures are not cached.
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>, ClientError> {
        if let Some(route) = self.state().hit(topic) {
            return Ok(route);
        }
        let topic = TopicName::new(topic)?;
        self.state().load(topic).await
    }

    /// The cached route of `topic`, if any, without asking anyone or counting as a use.
    pub fn cached(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        self.state()
            .entries
            .read()
            .get(topic)
            .map(|e| e.route.clone())
    }

    /// Forgets `topic`: the next [`Self::route`] asks the NameServers. Returns whether it was
    /// cached. A refresh round in progress does not bring it back.
    pub fn invalidate(&self, topic: &str) -> bool {
        self.state().entries.write().remove(topic).is_some()
    }

    /// How many topics are cached.
    pub fn len(&self) -> usize {
        self.state().entries.read().len()
    }

    /// Whether no topic is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs one refresh round now (after any round in progress) and reports it. Works after
    /// [`Self::stop`] too.
    pub async fn refresh_now(&self) -> RefreshReport {
        self.state().refresh().await
    }

    /// The report of the last finished round, if any has finished.
    pub fn last_refresh(&self) -> Option<RefreshReport> {
        self.state().last.lock().clone()
    }

    /// The failure of the last finished round, if it had one (see [`RefreshReport::error`]).
    pub fn last_refresh_error(&self) -> Option<ClientError> {
        self.state().last.lock().as_ref()?.error.clone()
    }

    /// Stops the background refresher for every handle and waits for it to end. The cache
    /// keeps answering (hits from the cache, misses from the NameServers); routes are refreshed
    /// only by [`Self::refresh_now`] from then on. Dropping the last handle also stops it.
    pub async fn stop(&self) {
        let _ = self.owner.stop.send(true);
        let task = self.owner.task.lock().take();
        if let Some(task) = task {
            if let Err(err) = task.await {
                if !err.is_cancelled() {
                    warn!(error = %err, "route refresher ended abnormally");
                }
            }
        }
    }
}

/// Removes its topic's load cell when the load ends or its caller is cancelled, so the map only
/// holds loads in flight.
struct LoadGuard<'a> {
    state: &'a State,
    topic: &'a TopicName,
    cell: &'a Load,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        let mut loads = self.state.loads.lock();
        if loads
            .get(self.topic)
            .is_some_and(|c| Arc::ptr_eq(c, self.cell))
        {
            loads.remove(self.topic);
        }
    }
}

impl State {
    fn hit(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        let entries = self.entries.read();
        let entry = entries.get(topic)?;
        let now = self.epoch.load(Ordering::Relaxed);
        if entry.last_used.load(Ordering::Relaxed) < now {
            entry.last_used.store(now, Ordering::Relaxed);
        }
        Some(entry.route.clone())
    }

    async fn load(&self, topic: TopicName) -> Result<Arc<TopicRoute>, ClientError> {
        let cell = self.loads.lock().entry(topic.clone()).or_default().clone();
        let _guard = LoadGuard {
            state: self,
            topic: &topic,
            cell: &cell,
        };
        let result = cell.get_or_init(|| self.fetch(&topic)).await.clone();
        result
    }

    async fn fetch(&self, topic: &TopicName) -> Result<Arc<TopicRoute>, ClientError> {
        // A load that finished between our miss and our taking the cell has cached it.
        if let Some(route) = self.hit(topic.as_str()) {
            return Ok(route);
        }
        match self.client.route(topic.as_str()).await {
            Ok(route) => Ok(self.insert(topic, route)),
            Err(err) => {
                debug!(topic = %topic, error = %err, "route query for an uncached topic failed");
                Err(err)
            }
        }
    }

    fn insert(&self, topic: &TopicName, route: TopicRoute) -> Arc<TopicRoute> {
        let route = Arc::new(route);
        let stamp = self.epoch.fetch_add(1, Ordering::Relaxed);
        let version = self.versions.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.write();
        if !entries.contains_key(topic) && entries.len() >= self.max_topics {
            let victim = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(t, _)| t.clone());
            if let Some(victim) = victim {
                entries.remove(&victim);
                debug!(topic = %victim, max_topics = self.max_topics, "route cache full; evicted the least recently used topic");
            }
        }
        entries.insert(
            topic.clone(),
            Entry {
                route: route.clone(),
                version,
                last_used: AtomicU64::new(stamp),
            },
        );
        trace!(topic = %topic, "route cached");
        route
    }

    /// Applies a refreshed route; returns whether it changed the cache.
    fn replace(&self, topic: &TopicName, version: u64, route: TopicRoute) -> bool {
        let mut entries = self.entries.write();
        let Some(entry) = entries.get_mut(topic) else {
            return false;
        };
        if entry.version != version || *entry.route == route {
            return false;
        }
        entry.route = Arc::new(route);
        entry.version = self.versions.fetch_add(1, Ordering::Relaxed);
        debug!(topic = %topic, "route changed");
        true
    }

    /// Drops a topic the NameServers no longer route; returns whether it was dropped.
    fn forget(&self, topic: &TopicName, version: u64) -> bool {
        let mut entries = self.entries.write();
        if entries.get(topic).is_none_or(|e| e.version != version) {
            return false;
        }
        entries.remove(topic);
        info!(topic = %topic, "topic no longer routed; dropped from the route cache");
        true
    }

    /// One refresh round over every cached topic.
    async fn refresh(&self) -> RefreshReport {
        let mut rounds = self.rounds.lock().await;
        *rounds += 1;
        let snapshot: Vec<(TopicName, u64)> = self
            .entries
            .read()
            .iter()
            .map(|(t, e)| (t.clone(), e.version))
            .collect();
        let mut report = RefreshReport {
            round: *rounds,
            topics: snapshot.len(),
            ..RefreshReport::default()
        };
        let mut pending = snapshot.into_iter();
        let mut calls = JoinSet::new();
        let (mut answered, mut unreachable, mut failed) = (false, false, 0usize);
        loop {
            // Once no NameServer answers, the rest of the round would only wait on timeouts.
            while !unreachable && calls.len() < REFRESH_CONCURRENCY {
                let Some((topic, version)) = pending.next() else {
                    break;
                };
                let client = self.client.clone();
                calls.spawn(async move {
                    let result = client.route(topic.as_str()).await;
                    (topic, version, result)
                });
            }
            let Some(joined) = calls.join_next().await else {
                break;
            };
            let Ok((topic, version, result)) = joined else {
                report.kept += 1;
                continue;
            };
            match result {
                Ok(route) => {
                    answered = true;
                    report.replaced += usize::from(self.replace(&topic, version, route));
                }
                Err(ClientError::TopicNotFound(_)) => {
                    answered = true;
                    report.dropped += usize::from(self.forget(&topic, version));
                }
                Err(err) => {
                    report.kept += 1;
                    failed += 1;
                    unreachable |= matches!(err, ClientError::Unavailable { .. });
                    report.error = Some(err);
                }
            }
        }
        report.kept += pending.len();
        self.log_round(&report, answered, unreachable, failed);
        *self.last.lock() = Some(report.clone());
        report
    }

    /// Warns once per outage (not per topic or per round), and once per round for other
    /// failures.
    fn log_round(&self, report: &RefreshReport, answered: bool, unreachable: bool, failed: usize) {
        let error = report.error.as_ref();
        if unreachable && !answered {
            if !self.outage.swap(true, Ordering::Relaxed) {
                if let Some(error) = error {
                    warn!(error = %error, topics = report.kept, "no NameServer answered; serving cached routes until one does");
                }
            }
            return;
        }
        if answered && self.outage.swap(false, Ordering::Relaxed) {
            info!(
                topics = report.topics,
                "NameServers answer again; cached routes refreshed"
            );
        }
        if let Some(error) = error {
            warn!(error = %error, failed, "route refresh failed for some topics; keeping their last good routes");
        }
    }
}

async fn refresh_loop(state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let period = state.refresh_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = state.refresh() => {}
        }
    }
}
