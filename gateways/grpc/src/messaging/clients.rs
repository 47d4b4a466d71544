//! Per-client state of the messaging service, keyed by `x-mq-client-id` (never by
//! connection: one client may use several connections, several clients may share one).
//!
//! Owns, per client id: the last Settings it reported, its client type and consumer group, the
//! topics it publishes (for transaction check-back), and the senders of its open Telemetry
//! streams (several per client id: one per endpoint string the client dials).
//!
//! Invariants: a client has an entry exactly while it has an open Telemetry stream (so the
//! table cannot grow with clients that never open one); NotifyClientTermination clears its
//! settings, group and topics at once, its last stream's end drops the entry; producer topics
//! are reference-counted across clients (`producers`, changed only with a client's own topics,
//! so a Settings costs its own topics, not every client's) so that the caller can unregister a
//! topic's transaction checker when its last producer goes ([`Change`]).
//!
//! Concurrency: one `parking_lot::Mutex` around the table, held only for map updates (never
//! across an `.await`). Telemetry sends use `try_send` so no lock waits on a slow client.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use tokio::sync::mpsc;

/// The sending half of one Telemetry response stream.
pub(super) type TelemetrySender = mpsc::Sender<Result<pb::TelemetryCommand, tonic::Status>>;

#[derive(Default)]
struct Client {
    settings: Option<pb::Settings>,
    group: Option<String>,
    producer_topics: BTreeSet<String>,
    streams: Vec<(u64, TelemetrySender)>,
}

/// Topics that gained their first producer or lost their last one.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Change {
    /// Topics with a first producer now.
    pub added: Vec<String>,
    /// Topics without any producer now.
    pub removed: Vec<String>,
}

/// The table of live clients.
#[derive(Default)]
pub(super) struct Clients {
    table: Mutex<Table>,
    next_stream: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Table {
    clients: HashMap<String, Client>,
    /// Producer topic → how many clients publish it.
    producers: HashMap<String, usize>,
}

impl Table {
    /// Replaces the producer topics of `client_id` (which must exist) by `topics`.
    fn set_topics(&mut self, client_id: &str, topics: BTreeSet<String>) -> Change {
        let Some(c) = self.clients.get_mut(client_id) else {
            return Change::default();
        };
        let old = std::mem::replace(&mut c.producer_topics, topics);
        let mut change = Change::default();
        for t in old.difference(&c.producer_topics) {
            if let Some(n) = self.producers.get_mut(t) {
                *n -= 1;
                if *n == 0 {
                    self.producers.remove(t);
                    change.removed.push(t.clone());
                }
            }
        }
        for t in c.producer_topics.difference(&old) {
            let n = self.producers.entry(t.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                change.added.push(t.clone());
            }
        }
        change
    }
}

impl Clients {
    /// Registers a new Telemetry stream of `client_id`; returns its id and whether it is the
    /// client's first (the client is new).
    pub(super) fn open_stream(&self, client_id: &str, sender: TelemetrySender) -> (u64, bool) {
        let id = self
            .next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut table = self.table.lock();
        let streams = &mut table
            .clients
            .entry(client_id.to_owned())
            .or_default()
            .streams;
        streams.push((id, sender));
        (id, streams.len() == 1)
    }

    /// Removes a Telemetry stream; the client goes with its last stream. Returns the producer
    /// topics that changed and whether the client went.
    pub(super) fn close_stream(&self, client_id: &str, stream: u64) -> (Change, bool) {
        let mut table = self.table.lock();
        let Some(c) = table.clients.get_mut(client_id) else {
            return (Change::default(), false);
        };
        c.streams.retain(|(id, _)| *id != stream);
        if !c.streams.is_empty() {
            return (Change::default(), false);
        }
        let change = table.set_topics(client_id, BTreeSet::new());
        table.clients.remove(client_id);
        (change, true)
    }

    /// Records the Settings a client reported on one of its streams; returns the producer
    /// topics that changed.
    pub(super) fn set_settings(&self, client_id: &str, settings: &pb::Settings) -> Change {
        let mut table = self.table.lock();
        let Some(c) = table.clients.get_mut(client_id) else {
            return Change::default();
        };
        if let Some(pb::settings::PubSub::Subscription(s)) = &settings.pub_sub {
            if let Some(g) = s.group.as_ref().filter(|g| !g.name.is_empty()) {
                c.group = Some(g.name.clone());
            }
        }
        c.settings = Some(settings.clone());
        let topics = match &settings.pub_sub {
            Some(pb::settings::PubSub::Publishing(p)) => {
                p.topics.iter().map(|t| t.name.clone()).collect()
            }
            _ => BTreeSet::new(),
        };
        table.set_topics(client_id, topics)
    }

    /// Records the consumer group a client named in a heartbeat or receive (clients without a
    /// Telemetry stream have no entry: the core's heartbeat expiry covers them).
    pub(super) fn set_group(&self, client_id: &str, group: &str) {
        if let Some(c) = self.table.lock().clients.get_mut(client_id) {
            if c.group.as_deref() != Some(group) {
                c.group = Some(group.to_owned());
            }
        }
    }

    /// Forgets a terminated client's settings, group and producer topics (its open streams
    /// stay until the client closes them); returns its group and the producer topics that lost
    /// their last producer.
    pub(super) fn remove(&self, client_id: &str) -> (Option<String>, Change) {
        let mut table = self.table.lock();
        let change = table.set_topics(client_id, BTreeSet::new());
        let group = match table.clients.get_mut(client_id) {
            Some(c) if c.streams.is_empty() => {
                table.clients.remove(client_id).and_then(|c| c.group)
            }
            Some(c) => {
                c.settings = None;
                c.group.take()
            }
            None => None,
        };
        (group, change)
    }

    /// A live Telemetry sender of some producer of `topic` (round-robin is not needed: the
    /// first open one).
    pub(super) fn producer_stream(&self, topic: &str) -> Option<TelemetrySender> {
        let table = self.table.lock();
        table
            .clients
            .values()
            .filter(|c| c.producer_topics.contains(topic))
            .flat_map(|c| c.streams.iter())
            .map(|(_, s)| s)
            .find(|s| !s.is_closed())
            .cloned()
    }

    /// Whether `topic` still has a producer.
    pub(super) fn has_producer(&self, topic: &str) -> bool {
        self.table.lock().producers.contains_key(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(topics: &[&str]) -> pb::Settings {
        pb::Settings {
            pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                topics: topics
                    .iter()
                    .map(|t| pb::Resource {
                        resource_namespace: String::new(),
                        name: (*t).into(),
                    })
                    .collect(),
                max_body_size: 0,
                validate_message_type: true,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn topics_come_and_go_with_their_last_producer() {
        let c = Clients::default();
        let (tx, _rx) = mpsc::channel(1);
        // No stream, no state.
        assert_eq!(c.set_settings("x", &producer(&["t"])), Change::default());
        c.set_group("x", "g");
        assert_eq!(c.remove("x"), (None, Change::default()));
        let (s1, first) = c.open_stream("a", tx.clone());
        assert!(first, "a new client");
        let (s2, first) = c.open_stream("a", tx.clone());
        assert!(!first, "a second stream of a known client");
        let (sb, _) = c.open_stream("b", tx.clone());
        assert_eq!(c.set_settings("a", &producer(&["t"])).added, vec!["t"]);
        assert_eq!(c.set_settings("b", &producer(&["t"])), Change::default());
        assert!(c.producer_stream("t").is_some());
        assert_eq!(c.remove("b").1, Change::default());
        assert_eq!(c.close_stream("b", sb), (Change::default(), true));
        assert_eq!(c.close_stream("a", s1), (Change::default(), false));
        assert!(c.has_producer("t"));
        let (change, gone) = c.close_stream("a", s2);
        assert_eq!((change.removed, gone), (vec!["t".to_owned()], true));
        assert!(!c.has_producer("t"));
        assert!(c.producer_stream("t").is_none());
        // Termination with a stream still open: topics go at once, the stream stays.
        let (s3, _) = c.open_stream("a", tx.clone());
        c.set_settings("a", &producer(&["u"]));
        c.set_group("a", "g");
        let (group, change) = c.remove("a");
        assert_eq!(
            (group.as_deref(), change.removed),
            (Some("g"), vec!["u".to_owned()])
        );
        assert!(c.producer_stream("u").is_none());
        assert_eq!(c.close_stream("a", s3), (Change::default(), true));
        let t = c.table.lock();
        assert!(t.clients.is_empty() && t.producers.is_empty());
    }
}
