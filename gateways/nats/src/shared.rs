//! State shared by every connection of the gateway: the core handle, the configuration, the
//! server's identity for INFO, the interest registry (`no_responders`), and the topics known to
//! exist.
//!
//! Interest: every subscription of every connection is counted by its subject, so a request
//! (a publish with a reply subject) can be answered with a 503 status when no subscription of
//! this gateway matches it — what NATS clients wait for to fail a request fast. Queue groups
//! whose members all left do not count (their group keeps the messages in the core).
//!
//! Concurrency: `parking_lot` locks around the maps, never held across `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rocketgate_core::{Broker, ErrorKind, TopicConfig};

use crate::config::NatsConfig;
use crate::subject;

/// Gateway-wide state.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The core, as the NATS gateway (for its own bookkeeping: group clean-up).
    pub broker: Broker,
    /// Configuration.
    pub config: NatsConfig,
    /// INFO's `server_id` (unique per start).
    pub server_id: String,
    /// Whether the listener speaks TLS (INFO's `tls_required`).
    pub tls: bool,
    next_client: AtomicU64,
    interest: Mutex<HashMap<String, usize>>,
    known_topics: Mutex<HashSet<String>>,
}

impl Shared {
    pub(crate) fn new(broker: Broker, config: NatsConfig, tls: bool) -> Self {
        let now = broker.now_ms();
        Self {
            server_id: format!("RG{now:X}"),
            broker,
            config,
            tls,
            next_client: AtomicU64::new(1),
            interest: Mutex::new(HashMap::new()),
            known_topics: Mutex::new(HashSet::new()),
        }
    }

    /// A new connection's id (INFO's `client_id`).
    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a subscription to `filter`.
    pub(crate) fn add_interest(&self, filter: &str) {
        *self.interest.lock().entry(filter.to_owned()).or_default() += 1;
    }

    /// Uncounts a subscription to `filter`.
    pub(crate) fn remove_interest(&self, filter: &str) {
        let mut map = self.interest.lock();
        if let Some(n) = map.get_mut(filter) {
            *n -= 1;
            if *n == 0 {
                map.remove(filter);
            }
        }
    }

    /// Whether any subscription matches the publish subject `s`.
    pub(crate) fn has_interest(&self, s: &str) -> bool {
        self.interest.lock().keys().any(|f| subject::matches(f, s))
    }

    /// Makes sure the RocketMQ topic exists (creating it through `broker`, the client's
    /// handle, when allowed).
    ///
    /// # Errors
    /// The core's refusal; `TopicNotFound` when creation is off.
    pub(crate) fn ensure_topic(
        &self,
        broker: &Broker,
        name: &str,
    ) -> Result<(), rocketgate_core::Error> {
        if self.known_topics.lock().contains(name) {
            return Ok(());
        }
        match broker.topics().config(name) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound && self.config.auto_create_topics => {
                let c = TopicConfig::new(name, self.config.auto_create_queue_count.max(1));
                match broker.topics().create(c) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        self.known_topics.lock().insert(name.to_owned());
        Ok(())
    }

    /// Forgets topics known to exist (one was deleted).
    pub(crate) fn forget_topics(&self) {
        self.known_topics.lock().clear();
    }

    /// Deletes the per-connection groups a previous run left (a crash skips their deletion).
    pub(crate) fn delete_stale_groups(&self) {
        for g in self.broker.groups().list() {
            if g.name.starts_with(subject::CONNECTION_GROUP_PREFIX) {
                let _ = self.broker.groups().delete(&g.name);
            }
        }
    }
}
