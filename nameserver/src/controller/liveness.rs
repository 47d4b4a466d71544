//! The controller leader's memory of broker heartbeats ([`Liveness`]) and the elections it
//! decides from them ([`Liveness::due`]).
//!
//! Liveness is not replicated: a member that becomes leader starts with an empty memory and
//! gives every master a full `heartbeat_timeout_ms` from its election before replacing it (so a
//! controller failover alone never replaces a master). Time is an input (`tokio::time::Instant`,
//! so tests may pause it); nothing here sleeps, writes or talks to Raft.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::state::{choose_master, Groups};

/// (cluster, group, broker id).
type BrokerKey = (String, String, u64);

/// An election the leader must propose ([`super::state::Command::Elect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Cluster.
    pub cluster: String,
    /// Group.
    pub group: String,
    /// The epoch it was decided at.
    pub expected_epoch: u64,
    /// The new master.
    pub master: u64,
}

/// Heartbeats heard by the leader.
#[derive(Debug)]
pub struct Liveness {
    timeout: Duration,
    since: Instant,
    seen: HashMap<BrokerKey, Instant>,
    /// Groups (and epochs) already logged as waiting for a candidate.
    waiting: HashSet<(String, String, u64)>,
}

impl Liveness {
    /// An empty memory from `now`, with brokers silent for `timeout` counted dead.
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            timeout,
            since: now,
            seen: HashMap::new(),
            waiting: HashSet::new(),
        }
    }

    /// Forgets everything (this member just became leader at `now`).
    pub fn reset(&mut self, now: Instant) {
        *self = Self::new(self.timeout, now);
    }

    /// A heartbeat of `broker_id` of `cluster`/`group` at `now`.
    pub fn beat(&mut self, cluster: &str, group: &str, broker_id: u64, now: Instant) {
        self.seen
            .insert((cluster.to_owned(), group.to_owned(), broker_id), now);
    }

    /// The brokers of `cluster`/`group` heard from within the timeout before `now`.
    pub fn alive(&self, cluster: &str, group: &str, now: Instant) -> BTreeSet<u64> {
        self.seen
            .iter()
            .filter(|((c, g, _), at)| {
                c == cluster && g == group && now.saturating_duration_since(**at) <= self.timeout
            })
            .map(|((_, _, id), _)| *id)
            .collect()
    }

    fn master_silent(&self, cluster: &str, group: &str, master: u64, now: Instant) -> bool {
        let last = self
            .seen
            .get(&(cluster.to_owned(), group.to_owned(), master))
            .copied()
            .unwrap_or(self.since)
            .max(self.since);
        now.saturating_duration_since(last) > self.timeout
    }

    /// The elections due at `now`: every group whose master has been silent for longer than
    /// the timeout and that has a live candidate ([`choose_master`]). A group without one is
    /// logged once per epoch and waits.
    pub fn due(&mut self, groups: &Groups, now: Instant, unclean: bool) -> Vec<Decision> {
        let mut out = Vec::new();
        for (cluster, name, group) in groups.iter() {
            let Some(master) = group.master else {
                continue;
            };
            if !self.master_silent(cluster, name, master, now) {
                continue;
            }
            let alive = self.alive(cluster, name, now);
            match choose_master(group, &alive, unclean) {
                Some(next) => out.push(Decision {
                    cluster: cluster.to_owned(),
                    group: name.to_owned(),
                    expected_epoch: group.epoch,
                    master: next,
                }),
                None => {
                    let key = (cluster.to_owned(), name.to_owned(), group.epoch);
                    if self.waiting.insert(key) {
                        tracing::warn!(
                            cluster,
                            group = name,
                            master,
                            epoch = group.epoch,
                            in_sync = ?group.in_sync,
                            alive = ?alive,
                            unclean,
                            "the master stopped heartbeating and no eligible broker is alive; \
                             the election waits"
                        );
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::state::Command;
    use super::*;

    fn groups() -> Groups {
        let mut s = Groups::default();
        for (id, master) in [(0, true), (1, false), (2, false)] {
            s.apply(&Command::Register {
                cluster: "c".into(),
                group: "g".into(),
                broker_id: id,
                address: format!("a{id}"),
                epoch: 1,
                is_master: master,
            });
        }
        s.apply(&Command::ReportInSync {
            cluster: "c".into(),
            group: "g".into(),
            broker_id: 0,
            epoch: 1,
            in_sync: BTreeSet::from([0, 2]),
        });
        s
    }

    #[test]
    fn a_silent_master_is_replaced_by_a_live_in_sync_broker_after_the_timeout() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Liveness::new(ms(3000), t0);
        let s = groups();
        for id in 0..3 {
            l.beat("c", "g", id, t0);
        }
        assert!(l.due(&s, t0 + ms(3000), false).is_empty());
        l.beat("c", "g", 1, t0 + ms(2000));
        l.beat("c", "g", 2, t0 + ms(2000));
        let due = l.due(&s, t0 + ms(3001), false);
        assert_eq!(
            due,
            vec![Decision {
                cluster: "c".into(),
                group: "g".into(),
                expected_epoch: 1,
                master: 2
            }]
        );
        // Broker 2 silent too: nobody in sync is alive; unclean picks 1.
        assert!(l.due(&s, t0 + ms(5001), false).is_empty());
        assert_eq!(l.alive("c", "g", t0 + ms(5000)), BTreeSet::from([1, 2]));
        l.beat("c", "g", 1, t0 + ms(5000));
        assert!(l.due(&s, t0 + ms(5001), false).is_empty());
        assert_eq!(l.due(&s, t0 + ms(5001), true)[0].master, 1);
    }

    #[test]
    fn a_new_leader_gives_every_master_a_full_timeout() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Liveness::new(ms(1000), t0);
        let s = groups();
        l.beat("c", "g", 2, t0 + ms(5000));
        l.reset(t0 + ms(5000));
        assert!(l.alive("c", "g", t0 + ms(5000)).is_empty());
        l.beat("c", "g", 2, t0 + ms(5500));
        assert!(l.due(&s, t0 + ms(6000), false).is_empty());
        assert_eq!(l.due(&s, t0 + ms(6001), false)[0].master, 2);
    }
}
