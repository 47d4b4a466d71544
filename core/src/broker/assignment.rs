//! Queue assignment for push-style consumers: which live clients of a group exist, and which
//! queues of a topic each of them should consume.
//!
//! Owns: client liveness (a heartbeat renews a client for `consumer.client_expiry_ms`) and the
//! allocation. The allocation is RocketMQ's "averagely": clients sorted by id, queues by id;
//! each client gets a contiguous block, the first `queues % clients` clients one extra. It is a
//! pure function of the live set, so it is stable while membership is stable and every client
//! computes a disjoint share covering all queues.
//!
//! Concurrency: one mutex around the table; expired clients are dropped lazily on access.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Live clients per group.
#[derive(Debug)]
pub struct Clients {
    expiry: Duration,
    groups: Mutex<HashMap<String, BTreeMap<String, Instant>>>,
}

impl Clients {
    /// A table whose clients expire `expiry` after their last heartbeat.
    pub fn new(expiry: Duration) -> Self {
        Self {
            expiry,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Records a heartbeat.
    pub fn heartbeat(&self, group: &str, client_id: &str) {
        self.groups
            .lock()
            .entry(group.to_owned())
            .or_default()
            .insert(client_id.to_owned(), Instant::now());
    }

    /// Removes a client at once (clean termination).
    pub fn remove(&self, group: &str, client_id: &str) {
        if let Some(g) = self.groups.lock().get_mut(group) {
            g.remove(client_id);
        }
    }

    /// Live clients of a group, sorted.
    pub fn live(&self, group: &str) -> Vec<String> {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group) else {
            return Vec::new();
        };
        g.retain(|_, seen| now.duration_since(*seen) < self.expiry);
        g.keys().cloned().collect()
    }
}

/// The queues (of `queue_count`) that `client` gets among `live` (sorted) clients.
pub fn allocate(queue_count: u32, live: &[String], client: &str) -> Vec<u32> {
    let Some(index) = live.iter().position(|c| c == client) else {
        return Vec::new();
    };
    let n = live.len() as u32;
    let i = index as u32;
    if n == 0 || i >= queue_count {
        return Vec::new();
    }
    let base = queue_count / n;
    let extra = queue_count % n;
    let size = base + u32::from(i < extra);
    let start = i * base + i.min(extra);
    (start..start + size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_even_and_covering() {
        for clients in 1..10usize {
            for queues in 0..20u32 {
                let live: Vec<String> = (0..clients).map(|c| format!("c{c}")).collect();
                let mut all: Vec<u32> = Vec::new();
                let mut sizes = Vec::new();
                for c in &live {
                    let a = allocate(queues, &live, c);
                    sizes.push(a.len());
                    all.extend(a);
                }
                all.sort_unstable();
                assert_eq!(all, (0..queues).collect::<Vec<_>>());
                let (lo, hi) = (sizes.iter().min().copied(), sizes.iter().max().copied());
                assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= 1);
            }
        }
        assert!(allocate(8, &["a".into()], "b").is_empty());
    }

    #[test]
    fn clients_expire() {
        let c = Clients::new(Duration::from_millis(30));
        c.heartbeat("g", "a");
        c.heartbeat("g", "b");
        assert_eq!(c.live("g"), vec!["a", "b"]);
        std::thread::sleep(Duration::from_millis(40));
        c.heartbeat("g", "b");
        assert_eq!(c.live("g"), vec!["b"]);
        c.remove("g", "b");
        assert!(c.live("g").is_empty());
    }
}
