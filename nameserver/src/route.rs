//! The route registry: typed tables of topics, broker groups and live broker instances, and the
//! rules that keep them consistent under register / heartbeat / unregister / expiry.
//!
//! Three tables, as in RocketMQ's `RouteInfoManager`:
//! - [`TopicRoutes`]: topic → broker name → the topic's queues on that broker group.
//! - [`BrokerTable`]: broker name → cluster and members (broker id → endpoints); cluster → broker
//!   names.
//! - [`LiveBrokers`]: (broker name, broker id) → last registration or heartbeat.
//!
//! [`RouteTables`] owns all three and keeps these invariants after every call:
//! 1. an instance is in [`LiveBrokers`] exactly when it is a member in [`BrokerTable`];
//! 2. every broker name in [`TopicRoutes`] has a group in [`BrokerTable`] with at least one
//!    member; a group whose last member leaves takes its queues out of every route, and a topic
//!    no group serves is gone;
//! 3. a broker name belongs to one cluster at a time (a registration naming another cluster is
//!    refused until the group is empty);
//! 4. a group's queues come from its *authoritative* member's latest registration: the master
//!    (id 0), or, while the group has no master, its lowest-id member. Other members'
//!    registrations update only their own endpoints. When the master leaves, the queues it last
//!    registered stay, and routes report them without write access until a master is back;
//! 5. at most `max_brokers` instances are tracked;
//! 6. a live instance is bound to the [`RegistrationId`] it got when it was registered: only a
//!    request presenting that id re-registers, heartbeats or unregisters it. Anyone else is
//!    refused ([`RouteError::Held`], [`RouteError::NotRegistrant`]) until the instance is
//!    unregistered by its registrant or expires; so a live broker's endpoints cannot be replaced
//!    and it cannot be evicted, not even by a holder of the cluster secret. One exception: the
//!    same broker restarted after a crash (its id lost with the process) — signed with the
//!    cluster secret, the same endpoints, from the same IP address and client certificate
//!    ([`Registrant::restarts`], `route/registrant.rs`) — replaces its own registration at once
//!    and gets a fresh id; the old id is void.
//!
//! A registration whose endpoint address is already used by another member of the same group
//! replaces that member when it presents that member's registration id: it is the same process
//! after a role change (slave promoted to master). Without it, it is refused
//! ([`RouteError::EndpointHeld`]).
//!
//! Pure: no I/O, no clock (callers pass a [`Timestamp`]), no locks. The gRPC service holds the
//! tables behind one mutex and never awaits while holding it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::model::{
    BrokerData, BrokerId, BrokerIdentity, BrokerInfo, BrokerName, BrokerRegistration, ClusterEntry,
    ClusterInfo, ClusterName, Endpoint, MessageType, Permission, QueueData, TopicConfig, TopicName,
    TopicRoute,
};
use crate::secret::RegistrationId;

mod registrant;
#[cfg(test)]
mod tests;

pub use registrant::{Origin, Registrant};

/// A request the tables refuse (none of these changes any table).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No live broker group serves the topic.
    #[error("no live broker serves topic `{0}`")]
    TopicNotFound(TopicName),
    /// The broker name is registered under another cluster.
    #[error("broker `{broker_name}` is registered in cluster `{registered}`, not `{requested}`")]
    ClusterConflict {
        /// The group.
        broker_name: BrokerName,
        /// Its current cluster.
        registered: ClusterName,
        /// The cluster the request named.
        requested: ClusterName,
    },
    /// The NameServer already tracks its maximum number of instances.
    #[error("the NameServer already tracks its maximum of {max} broker instances")]
    TooManyBrokers {
        /// The limit.
        max: usize,
    },
    /// The instance is live and registered by someone else (the request did not present its
    /// registration id).
    #[error(
        "broker {0} is already registered by another live registration; it can be registered \
         again once its registrant unregisters it or it expires"
    )]
    Held(BrokerIdentity),
    /// A heartbeat or unregister that does not present the live registration's id.
    #[error(
        "not the registrant of broker {0}: the registration_id is not its live registration's"
    )]
    NotRegistrant(BrokerIdentity),
    /// Another live member of the group is registered with the same endpoint address, and the
    /// request did not present its registration id.
    #[error(
        "endpoint address `{address}` is registered by live member {holder} of broker group \
         `{broker_name}`"
    )]
    EndpointHeld {
        /// The group.
        broker_name: BrokerName,
        /// The member holding the address.
        holder: BrokerId,
        /// The address.
        address: String,
    },
}

/// A point in time, monotonic (for expiry) and wall-clock (for reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Monotonic time: expiry is measured with this.
    pub instant: Instant,
    /// Milliseconds since the Unix epoch: reported as `last_heartbeat_ms`.
    pub unix_ms: u64,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            instant: Instant::now(),
            unix_ms,
        }
    }

    /// This time plus `d`.
    #[must_use]
    pub fn after(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            instant: self.instant + d,
            unix_ms: self.unix_ms.saturating_add(ms),
        }
    }
}

/// A topic's queues on one broker group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicQueues {
    /// Queues consumers read.
    pub read_queues: u32,
    /// Queues producers write.
    pub write_queues: u32,
    /// Access, as registered.
    pub permission: Permission,
    /// Accepted message type.
    pub message_type: MessageType,
}

impl From<&TopicConfig> for TopicQueues {
    fn from(t: &TopicConfig) -> Self {
        Self {
            read_queues: t.read_queues,
            write_queues: t.write_queues,
            permission: t.permission,
            message_type: t.message_type,
        }
    }
}

/// Topic → broker name → queues.
#[derive(Debug, Default)]
pub struct TopicRoutes {
    topics: BTreeMap<TopicName, BTreeMap<BrokerName, TopicQueues>>,
}

impl TopicRoutes {
    /// Makes `topics` exactly what group `broker` serves: adds or updates those, and takes the
    /// group out of every other topic (dropping topics left with no group).
    pub fn replace_broker(&mut self, broker: &BrokerName, topics: &[TopicConfig]) {
        let wanted: BTreeSet<&TopicName> = topics.iter().map(|t| &t.name).collect();
        self.topics.retain(|name, groups| {
            if !wanted.contains(name) {
                groups.remove(broker);
            }
            !groups.is_empty()
        });
        for t in topics {
            self.topics
                .entry(t.name.clone())
                .or_default()
                .insert(broker.clone(), TopicQueues::from(t));
        }
    }

    /// Takes group `broker` out of every topic; returns how many topics it was in.
    pub fn remove_broker(&mut self, broker: &BrokerName) -> usize {
        let mut removed = 0;
        self.topics.retain(|_, groups| {
            if groups.remove(broker).is_some() {
                removed += 1;
            }
            !groups.is_empty()
        });
        removed
    }

    /// The groups serving `topic`, by broker name.
    pub fn queues(&self, topic: &str) -> Option<&BTreeMap<BrokerName, TopicQueues>> {
        self.topics.get(topic)
    }

    /// Number of topics with at least one group.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether no topic has a group.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }
}

/// One member of a broker group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Where it listens.
    pub endpoints: Vec<Endpoint>,
    /// Topics in its latest registration.
    pub topic_count: u32,
    /// The id its registrant must present (invariant 6).
    pub(crate) registration: RegistrationId,
    /// Where its latest registration came from (what a restart must match).
    pub(crate) origin: Origin,
}

/// A broker group: its cluster and members by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerGroup {
    /// Its cluster.
    pub cluster: ClusterName,
    /// Its members.
    pub members: BTreeMap<BrokerId, Member>,
}

impl BrokerGroup {
    /// Whether member `id` decides the group's queues (invariant 4 of the module doc).
    fn is_authoritative(&self, id: BrokerId) -> bool {
        id.is_master()
            || (!self.members.contains_key(&BrokerId::MASTER)
                && self.members.keys().next() == Some(&id))
    }
}

/// Broker name → group; cluster → broker names.
#[derive(Debug, Default)]
pub struct BrokerTable {
    groups: BTreeMap<BrokerName, BrokerGroup>,
    clusters: BTreeMap<ClusterName, BTreeSet<BrokerName>>,
    members: usize,
}

impl BrokerTable {
    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&BrokerGroup> {
        self.groups.get(name)
    }

    /// Whether `identity` is a member (cluster included).
    pub fn contains(&self, identity: &BrokerIdentity) -> bool {
        self.groups.get(&identity.broker_name).is_some_and(|g| {
            g.cluster == identity.cluster && g.members.contains_key(&identity.broker_id)
        })
    }

    /// Number of members over all groups.
    pub fn member_count(&self) -> usize {
        self.members
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Member `identity`, if it is one.
    fn member(&self, identity: &BrokerIdentity) -> Option<&Member> {
        self.groups
            .get(&identity.broker_name)
            .filter(|g| g.cluster == identity.cluster)
            .and_then(|g| g.members.get(&identity.broker_id))
    }

    /// The registration id of member `identity`, if it is one.
    fn registration_of(&self, identity: &BrokerIdentity) -> Option<RegistrationId> {
        self.member(identity).map(|m| m.registration)
    }

    /// Other members of `identity`'s group sharing an endpoint address with `endpoints`: (id,
    /// registration id, the shared address).
    fn sharing_address(
        &self,
        identity: &BrokerIdentity,
        endpoints: &[Endpoint],
    ) -> Vec<(BrokerId, RegistrationId, String)> {
        let Some(group) = self.groups.get(&identity.broker_name) else {
            return Vec::new();
        };
        let addresses: BTreeSet<&str> = endpoints.iter().map(Endpoint::address).collect();
        group
            .members
            .iter()
            .filter(|(id, _)| **id != identity.broker_id)
            .filter_map(|(id, m)| {
                let shared = m
                    .endpoints
                    .iter()
                    .find(|e| addresses.contains(e.address()))?;
                Some((*id, m.registration, shared.address().to_owned()))
            })
            .collect()
    }

    fn check_cluster(&self, identity: &BrokerIdentity) -> Result<(), RouteError> {
        match self.groups.get(&identity.broker_name) {
            Some(g) if g.cluster != identity.cluster => Err(RouteError::ClusterConflict {
                broker_name: identity.broker_name.clone(),
                registered: g.cluster.clone(),
                requested: identity.cluster.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Inserts or replaces a member after [`Self::check_cluster`]; returns the ids of members
    /// it displaced because they shared an endpoint address with it.
    fn upsert(&mut self, identity: &BrokerIdentity, member: Member) -> Vec<BrokerId> {
        let group = self
            .groups
            .entry(identity.broker_name.clone())
            .or_insert_with(|| BrokerGroup {
                cluster: identity.cluster.clone(),
                members: BTreeMap::new(),
            });
        let addresses: BTreeSet<&str> = member.endpoints.iter().map(Endpoint::address).collect();
        let displaced: Vec<BrokerId> = group
            .members
            .iter()
            .filter(|(id, m)| {
                **id != identity.broker_id
                    && m.endpoints.iter().any(|e| addresses.contains(e.address()))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &displaced {
            group.members.remove(id);
        }
        if group.members.insert(identity.broker_id, member).is_none() {
            self.members += 1;
        }
        self.members -= displaced.len();
        self.clusters
            .entry(identity.cluster.clone())
            .or_default()
            .insert(identity.broker_name.clone());
        displaced
    }

    /// Removes member `id` of group `name`; returns whether it was there and whether the group
    /// is now gone. Callers check the registration id first.
    fn remove(&mut self, name: &BrokerName, id: BrokerId) -> (bool, bool) {
        let Some(group) = self.groups.get_mut(name) else {
            return (false, false);
        };
        if group.members.remove(&id).is_none() {
            return (false, false);
        }
        self.members -= 1;
        if !group.members.is_empty() {
            return (true, false);
        }
        let cluster = group.cluster.clone();
        self.groups.remove(name);
        if let Some(names) = self.clusters.get_mut(&cluster) {
            names.remove(name);
            if names.is_empty() {
                self.clusters.remove(&cluster);
            }
        }
        (true, true)
    }
}

/// When an instance was last heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LastSeen {
    at: Instant,
    unix_ms: u64,
}

/// (broker name, broker id) → last registration or heartbeat.
#[derive(Debug, Default)]
pub struct LiveBrokers {
    entries: BTreeMap<(BrokerName, BrokerId), LastSeen>,
}

impl LiveBrokers {
    fn touch(&mut self, name: &BrokerName, id: BrokerId, now: Timestamp) {
        self.entries.insert(
            (name.clone(), id),
            LastSeen {
                at: now.instant,
                unix_ms: now.unix_ms,
            },
        );
    }

    fn remove(&mut self, name: &BrokerName, id: BrokerId) {
        self.entries.remove(&(name.clone(), id));
    }

    /// When instance `id` of group `name` was last heard from, in ms since the Unix epoch.
    pub fn last_seen_ms(&self, name: &BrokerName, id: BrokerId) -> Option<u64> {
        self.entries.get(&(name.clone(), id)).map(|s| s.unix_ms)
    }

    /// Instances silent for longer than `expiry` at `now`.
    pub fn expired(&self, now: Timestamp, expiry: Duration) -> Vec<(BrokerName, BrokerId)> {
        self.entries
            .iter()
            .filter(|(_, s)| now.instant.saturating_duration_since(s.at) > expiry)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of live instances.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no instance is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a successful registration changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The instance was not a member before.
    pub new: bool,
    /// The registration set the group's queues (it came from the authoritative member).
    pub routes_updated: bool,
    /// Members of the group replaced because they shared an endpoint address.
    pub displaced: Vec<BrokerId>,
    /// The instance was live under another registration id, and this is the same broker
    /// restarted ([`Registrant::restarts`]): it replaced that registration.
    pub restarted: bool,
    /// The id its registrant presents from now on: the live registration's when this renewed
    /// it, else the `fresh` one given to [`RouteTables::register`].
    pub registration_id: RegistrationId,
}

/// The three tables and the rules between them (see the module doc).
#[derive(Debug)]
pub struct RouteTables {
    topics: TopicRoutes,
    brokers: BrokerTable,
    live: LiveBrokers,
    max_brokers: usize,
}

impl RouteTables {
    /// Empty tables tracking at most `max_brokers` instances.
    pub fn new(max_brokers: usize) -> Self {
        Self {
            topics: TopicRoutes::default(),
            brokers: BrokerTable::default(),
            live: LiveBrokers::default(),
            max_brokers,
        }
    }

    /// The topic table.
    pub fn topics(&self) -> &TopicRoutes {
        &self.topics
    }

    /// The broker table.
    pub fn brokers(&self) -> &BrokerTable {
        &self.brokers
    }

    /// The live table.
    pub fn live(&self) -> &LiveBrokers {
        &self.live
    }

    /// Registers or re-registers an instance; it counts as a heartbeat. A live instance is
    /// renewed only when the registrant presents its registration id, or replaced when the
    /// registrant is the same broker restarted ([`Registrant::restarts`]); a new or replaced
    /// one gets `fresh`. An `Option<RegistrationId>` converts into an unsigned registrant of
    /// unknown origin presenting it.
    ///
    /// # Errors
    /// [`RouteError::ClusterConflict`] when the group is in another cluster;
    /// [`RouteError::Held`] when the instance is live, the registrant does not present its
    /// registration id and is not it restarted; [`RouteError::EndpointHeld`] when another live
    /// member of the group has one of its endpoint addresses and the registrant does not
    /// present that member's id; [`RouteError::TooManyBrokers`] when a new instance would
    /// exceed the limit.
    pub fn register(
        &mut self,
        registration: BrokerRegistration,
        registrant: impl Into<Registrant>,
        fresh: RegistrationId,
        now: Timestamp,
    ) -> Result<Registered, RouteError> {
        let registrant = registrant.into();
        let presented = registrant.presented;
        let BrokerRegistration {
            identity,
            endpoints,
            topics,
        } = registration;
        self.brokers.check_cluster(&identity)?;
        let mut current = self.brokers.registration_of(&identity);
        let mut restarted = false;
        if let Some(member) = self.brokers.member(&identity) {
            if Some(member.registration) != presented {
                if !registrant.restarts(&member.origin, &member.endpoints, &endpoints) {
                    return Err(RouteError::Held(identity));
                }
                restarted = true;
                current = None;
            }
        }
        for (holder, id, address) in self.brokers.sharing_address(&identity, &endpoints) {
            if Some(id) != presented {
                return Err(RouteError::EndpointHeld {
                    broker_name: identity.broker_name,
                    holder,
                    address,
                });
            }
        }
        let new = current.is_none() && !restarted;
        if new && self.brokers.member_count() >= self.max_brokers {
            return Err(RouteError::TooManyBrokers {
                max: self.max_brokers,
            });
        }
        let registration_id = current.unwrap_or(fresh);
        let member = Member {
            endpoints,
            topic_count: u32::try_from(topics.len()).unwrap_or(u32::MAX),
            registration: registration_id,
            origin: registrant.origin,
        };
        let name = &identity.broker_name;
        let displaced = self.brokers.upsert(&identity, member);
        for id in &displaced {
            self.live.remove(name, *id);
        }
        self.live.touch(name, identity.broker_id, now);
        let routes_updated = self
            .brokers
            .group(name.as_str())
            .is_some_and(|g| g.is_authoritative(identity.broker_id));
        if routes_updated {
            self.topics.replace_broker(name, &topics);
        }
        Ok(Registered {
            new,
            routes_updated,
            displaced,
            restarted,
            registration_id,
        })
    }

    /// Checks that `presented` is the registration id of live instance `identity`; `Ok(false)`
    /// when it is not registered.
    fn check_registrant(
        &self,
        identity: &BrokerIdentity,
        presented: Option<RegistrationId>,
    ) -> Result<bool, RouteError> {
        match self.brokers.registration_of(identity) {
            None => Ok(false),
            Some(current) if Some(current) == presented => Ok(true),
            Some(_) => Err(RouteError::NotRegistrant(identity.clone())),
        }
    }

    /// Records a heartbeat of the registrant presenting `presented`; returns whether the
    /// instance is registered (else it must register).
    ///
    /// # Errors
    /// [`RouteError::NotRegistrant`] when it is registered under another id (nothing changes).
    pub fn heartbeat(
        &mut self,
        identity: &BrokerIdentity,
        presented: Option<RegistrationId>,
        now: Timestamp,
    ) -> Result<bool, RouteError> {
        if !self.check_registrant(identity, presented)? {
            return Ok(false);
        }
        self.live
            .touch(&identity.broker_name, identity.broker_id, now);
        Ok(true)
    }

    /// Removes an instance for the registrant presenting `presented`; returns whether it was
    /// registered.
    ///
    /// # Errors
    /// [`RouteError::NotRegistrant`] when it is registered under another id (nothing changes).
    pub fn unregister(
        &mut self,
        identity: &BrokerIdentity,
        presented: Option<RegistrationId>,
    ) -> Result<bool, RouteError> {
        Ok(self.check_registrant(identity, presented)?
            && self.remove_member(&identity.broker_name, identity.broker_id))
    }

    /// Removes every instance silent for longer than `expiry` at `now`; returns them.
    pub fn expire(&mut self, now: Timestamp, expiry: Duration) -> Vec<BrokerIdentity> {
        let mut removed = Vec::new();
        for (name, id) in self.live.expired(now, expiry) {
            let cluster = self.brokers.group(name.as_str()).map(|g| g.cluster.clone());
            if self.remove_member(&name, id) {
                if let Some(cluster) = cluster {
                    removed.push(BrokerIdentity {
                        cluster,
                        broker_name: name,
                        broker_id: id,
                    });
                }
            }
        }
        removed
    }

    fn remove_member(&mut self, name: &BrokerName, id: BrokerId) -> bool {
        let (removed, group_gone) = self.brokers.remove(name, id);
        self.live.remove(name, id);
        if group_gone {
            self.topics.remove_broker(name);
        }
        removed
    }

    /// The route of `topic`.
    ///
    /// # Errors
    /// [`RouteError::TopicNotFound`] when no live group serves it.
    pub fn route(&self, topic: &TopicName) -> Result<TopicRoute, RouteError> {
        let not_found = || RouteError::TopicNotFound(topic.clone());
        let groups = self.topics.queues(topic.as_str()).ok_or_else(not_found)?;
        let mut queues = Vec::with_capacity(groups.len());
        let mut brokers = Vec::with_capacity(groups.len());
        for (name, q) in groups {
            let Some(group) = self.brokers.group(name.as_str()) else {
                continue;
            };
            let permission = if group.members.contains_key(&BrokerId::MASTER) {
                q.permission
            } else {
                q.permission.without_write()
            };
            queues.push(QueueData {
                broker_name: name.clone(),
                read_queues: q.read_queues,
                write_queues: q.write_queues,
                permission,
                message_type: q.message_type,
            });
            brokers.push(BrokerData {
                cluster: group.cluster.clone(),
                broker_name: name.clone(),
                addresses: group
                    .members
                    .iter()
                    .map(|(id, m)| (*id, m.endpoints.clone()))
                    .collect(),
            });
        }
        if queues.is_empty() {
            return Err(not_found());
        }
        Ok(TopicRoute {
            topic: topic.clone(),
            queues,
            brokers,
        })
    }

    /// Every live instance, grouped by cluster.
    pub fn cluster_info(&self) -> ClusterInfo {
        let clusters = self
            .brokers
            .clusters
            .iter()
            .map(|(cluster, names)| ClusterEntry {
                name: cluster.clone(),
                brokers: names
                    .iter()
                    .filter_map(|name| Some((name, self.brokers.group(name.as_str())?)))
                    .flat_map(|(name, group)| {
                        group.members.iter().map(move |(id, m)| BrokerInfo {
                            broker_name: name.clone(),
                            broker_id: *id,
                            role: id.role(),
                            endpoints: m.endpoints.clone(),
                            last_heartbeat_ms: self.live.last_seen_ms(name, *id).unwrap_or(0),
                            topic_count: m.topic_count,
                        })
                    })
                    .collect(),
            })
            .collect();
        ClusterInfo { clusters }
    }
}
