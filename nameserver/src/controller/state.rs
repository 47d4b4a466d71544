//! The controller's replicated state: every broker group's members, in-sync set, master and
//! master epoch ([`Groups`]), the Raft commands that change it ([`Command`]) and the pure
//! election rule ([`choose_master`]).
//!
//! Pure and deterministic: [`Groups::apply`] depends only on the state and the command (no
//! clock, no I/O), so every controller member reaches the same state from the same log. Liveness
//! (who heartbeated when) is deliberately not here: it lives in the leader's memory
//! (`liveness.rs`). Must not touch storage, the network or Raft itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One broker of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where it serves replication.
    pub address: String,
    /// The newest epoch it reported (its epoch file).
    pub epoch: u64,
}

/// One broker group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Broker id → member.
    pub members: BTreeMap<u64, Member>,
    /// The master's broker id, once bootstrapped.
    pub master: Option<u64>,
    /// The master's epoch.
    pub epoch: u64,
    /// Broker ids in sync with the master, the master included.
    pub in_sync: BTreeSet<u64>,
}

impl Group {
    /// The master's replication address.
    pub fn master_address(&self) -> Option<&str> {
        let id = self.master?;
        self.members.get(&id).map(|m| m.address.as_str())
    }

    /// The next epoch an election gives: above the group's and every epoch a member reported.
    pub fn next_epoch(&self) -> u64 {
        let reported = self.members.values().map(|m| m.epoch).max().unwrap_or(0);
        self.epoch.max(reported).saturating_add(1)
    }
}

/// Every group, by cluster then group name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    /// Cluster → group name → group.
    pub clusters: BTreeMap<String, BTreeMap<String, Group>>,
}

/// A change to [`Groups`]: the application data of the controller's Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker is new, moved, reported a newer epoch, or claims to be the master of a group
    /// with none (bootstrap: it becomes the master at its own epoch).
    Register {
        /// Cluster.
        cluster: String,
        /// Group.
        group: String,
        /// Broker id.
        broker_id: u64,
        /// Replication address.
        address: String,
        /// The newest epoch in its epoch file.
        epoch: u64,
        /// It is its group's master now.
        is_master: bool,
    },
    /// The master's in-sync set at its epoch.
    ReportInSync {
        /// Cluster.
        cluster: String,
        /// Group.
        group: String,
        /// The reporting broker (must be the master).
        broker_id: u64,
        /// Its epoch (must be the current one).
        epoch: u64,
        /// The in-sync set (must hold the master and only members).
        in_sync: BTreeSet<u64>,
    },
    /// A new master, decided by the leader: applied only if the epoch is still `expected_epoch`
    /// (so two elections decided from the same state do not both happen).
    Elect {
        /// Cluster.
        cluster: String,
        /// Group.
        group: String,
        /// The epoch the decision was made at.
        expected_epoch: u64,
        /// The new master.
        master: u64,
    },
}

impl Command {
    /// The (cluster, group) the command is about.
    pub fn group(&self) -> (&str, &str) {
        match self {
            Self::Register { cluster, group, .. }
            | Self::ReportInSync { cluster, group, .. }
            | Self::Elect { cluster, group, .. } => (cluster, group),
        }
    }
}

/// The result of applying a [`Command`]: the application response of the Raft log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Why the command changed nothing (`None`: applied).
    pub refused: Option<String>,
}

impl Outcome {
    fn refused(reason: impl Into<String>) -> Self {
        Self {
            refused: Some(reason.into()),
        }
    }
}

impl Groups {
    /// The group, if known.
    pub fn group(&self, cluster: &str, group: &str) -> Option<&Group> {
        self.clusters.get(cluster)?.get(group)
    }

    fn group_mut(&mut self, cluster: &str, group: &str) -> Option<&mut Group> {
        self.clusters.get_mut(cluster)?.get_mut(group)
    }

    /// Every group with its cluster and name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Group)> {
        self.clusters.iter().flat_map(|(c, groups)| {
            groups
                .iter()
                .map(move |(g, group)| (c.as_str(), g.as_str(), group))
        })
    }

    /// Whether applying [`Command::Register`] with these values would change anything (the
    /// leader writes to the log only then).
    pub fn register_changes(
        &self,
        cluster: &str,
        group: &str,
        broker_id: u64,
        address: &str,
        epoch: u64,
        is_master: bool,
    ) -> bool {
        let Some(g) = self.group(cluster, group) else {
            return true;
        };
        match g.members.get(&broker_id) {
            None => true,
            Some(m) => m.address != address || m.epoch < epoch || (is_master && g.master.is_none()),
        }
    }

    /// Applies `command` (deterministic).
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Register {
                cluster,
                group,
                broker_id,
                address,
                epoch,
                is_master,
            } => {
                let g = self
                    .clusters
                    .entry(cluster.clone())
                    .or_default()
                    .entry(group.clone())
                    .or_default();
                let member = g.members.entry(*broker_id).or_insert_with(|| Member {
                    address: address.clone(),
                    epoch: *epoch,
                });
                member.address.clone_from(address);
                member.epoch = member.epoch.max(*epoch);
                if *is_master && g.master.is_none() {
                    g.master = Some(*broker_id);
                    g.epoch = g.epoch.max(*epoch);
                    g.in_sync = BTreeSet::from([*broker_id]);
                }
                Outcome::default()
            }
            Command::ReportInSync {
                cluster,
                group,
                broker_id,
                epoch,
                in_sync,
            } => {
                let Some(g) = self.group_mut(cluster, group) else {
                    return Outcome::refused(format!("unknown group {cluster}/{group}"));
                };
                if g.master != Some(*broker_id) || g.epoch != *epoch {
                    return Outcome::refused(format!(
                        "broker {broker_id} at epoch {epoch} is not the master of {cluster}/{group} \
                         (master {:?}, epoch {})",
                        g.master, g.epoch
                    ));
                }
                if !in_sync.contains(broker_id) {
                    return Outcome::refused("the in-sync set must hold the master");
                }
                if let Some(unknown) = in_sync.iter().find(|id| !g.members.contains_key(id)) {
                    return Outcome::refused(format!(
                        "broker {unknown} of the in-sync set is not a member of {cluster}/{group}"
                    ));
                }
                g.in_sync.clone_from(in_sync);
                Outcome::default()
            }
            Command::Elect {
                cluster,
                group,
                expected_epoch,
                master,
            } => {
                let Some(g) = self.group_mut(cluster, group) else {
                    return Outcome::refused(format!("unknown group {cluster}/{group}"));
                };
                if g.epoch != *expected_epoch {
                    return Outcome::refused(format!(
                        "{cluster}/{group} moved on: epoch {} (election decided at {expected_epoch})",
                        g.epoch
                    ));
                }
                if !g.members.contains_key(master) {
                    return Outcome::refused(format!(
                        "broker {master} is not a member of {cluster}/{group}"
                    ));
                }
                g.epoch = g.next_epoch();
                g.master = Some(*master);
                g.in_sync = BTreeSet::from([*master]);
                Outcome::default()
            }
        }
    }
}

/// The new master of `group` among the live brokers `alive` (the current master excluded):
/// the lowest id of the in-sync set, or — with `unclean` — of any live member when no in-sync
/// one is alive. `None`: nobody can take over (the election waits).
pub fn choose_master(group: &Group, alive: &BTreeSet<u64>, unclean: bool) -> Option<u64> {
    let candidate = |id: &&u64| Some(**id) != group.master && alive.contains(id);
    if let Some(id) = group.in_sync.iter().find(candidate) {
        return Some(*id);
    }
    if unclean {
        return group.members.keys().find(candidate).copied();
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn register(id: u64, epoch: u64, is_master: bool) -> Command {
        Command::Register {
            cluster: "c".into(),
            group: "g".into(),
            broker_id: id,
            address: format!("127.0.0.1:{}", 9000 + id),
            epoch,
            is_master,
        }
    }

    fn three() -> Groups {
        let mut s = Groups::default();
        for c in [
            register(1, 0, false),
            register(0, 2, true),
            register(2, 1, false),
        ] {
            assert_eq!(s.apply(&c), Outcome::default());
        }
        s
    }

    #[test]
    fn the_first_broker_claiming_master_bootstraps_the_group_at_its_epoch() {
        let s = three();
        let g = s.group("c", "g").unwrap();
        assert_eq!((g.master, g.epoch), (Some(0), 2));
        assert_eq!(g.in_sync, BTreeSet::from([0]));
        assert_eq!(g.master_address(), Some("127.0.0.1:9000"));
        // Another claim does not replace the master.
        let mut s2 = s.clone();
        s2.apply(&register(1, 5, true));
        assert_eq!(s2.group("c", "g").unwrap().master, Some(0));
        assert!(!s.register_changes("c", "g", 0, "127.0.0.1:9000", 2, true));
        assert!(s.register_changes("c", "g", 0, "127.0.0.1:9999", 2, true));
        assert!(s.register_changes("c", "g", 7, "x", 0, false));
    }

    #[test]
    fn only_the_current_master_reports_the_in_sync_set() {
        let mut s = three();
        let report = |id, epoch, set: &[u64]| Command::ReportInSync {
            cluster: "c".into(),
            group: "g".into(),
            broker_id: id,
            epoch,
            in_sync: set.iter().copied().collect(),
        };
        assert!(s.apply(&report(1, 2, &[0, 1])).refused.is_some());
        assert!(s.apply(&report(0, 1, &[0, 1])).refused.is_some());
        assert!(s.apply(&report(0, 2, &[1])).refused.is_some());
        assert!(s.apply(&report(0, 2, &[0, 9])).refused.is_some());
        assert!(s
            .apply(&Command::ReportInSync {
                cluster: "x".into(),
                group: "g".into(),
                broker_id: 0,
                epoch: 2,
                in_sync: BTreeSet::new(),
            })
            .refused
            .is_some());
        assert_eq!(s.apply(&report(0, 2, &[0, 1])), Outcome::default());
        assert_eq!(s.group("c", "g").unwrap().in_sync, BTreeSet::from([0, 1]));
    }

    #[test]
    fn an_election_bumps_the_epoch_once_and_resets_the_in_sync_set() {
        let mut s = three();
        let elect = |expected_epoch, master| Command::Elect {
            cluster: "c".into(),
            group: "g".into(),
            expected_epoch,
            master,
        };
        assert!(s.apply(&elect(2, 9)).refused.is_some());
        assert_eq!(s.apply(&elect(2, 1)), Outcome::default());
        let g = s.group("c", "g").unwrap();
        assert_eq!((g.master, g.epoch), (Some(1), 3));
        assert_eq!(g.in_sync, BTreeSet::from([1]));
        // A second decision from the same state is refused.
        assert!(s.apply(&elect(2, 2)).refused.is_some());
        // A member that reported a higher epoch pushes the next one above it.
        s.apply(&register(2, 7, false));
        assert_eq!(s.apply(&elect(3, 2)), Outcome::default());
        assert_eq!(s.group("c", "g").unwrap().epoch, 8);
    }

    #[test]
    fn the_new_master_comes_from_the_live_in_sync_set_unless_unclean() {
        let mut g = three().group("c", "g").unwrap().clone();
        g.in_sync = BTreeSet::from([0, 2]);
        let alive = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        assert_eq!(choose_master(&g, &alive(&[1, 2]), false), Some(2));
        assert_eq!(choose_master(&g, &alive(&[0, 1]), false), None);
        assert_eq!(choose_master(&g, &alive(&[0, 1]), true), Some(1));
        assert_eq!(choose_master(&g, &alive(&[]), true), None);
    }
}
