//! The node's place in the cluster, as `GET /v1/topics/{topic}/route` answers it: this
//! broker's group name and the NameServers it registers with ([`Cluster`]), and the pure
//! assembly of a route from the NameServers' answer and this broker's topic table
//! ([`assemble`]).
//!
//! Invariants: with a NameServer answer, the groups listed are exactly the NameServers' (the
//! set `rocketgate admin topic route` prints), this broker's own queues replaced by its topic
//! table's (fresher: a queue count changed a moment ago); queues are sorted by broker name,
//! then id. Without one (no NameServer, none answered within [`ROUTE_WAIT`], or none knows the
//! topic yet) the answer is this broker's queues alone and says so (`source: local`).
//!
//! Called by `rest/admin.rs` only. Asks the NameServers through `rocketgate-nameserver`'s
//! client (a fresh query, so that the answer agrees with the admin tool's, falling back to the
//! route cache's last answer); holds no state or lock of its own.

use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::TopicInfo;
use rocketgate_nameserver as ns;

use crate::model::{RouteBroker, RouteMember, RouteQueue, TopicRoute};

/// Longest the route waits for the NameServers before it answers with this broker's queues.
pub const ROUTE_WAIT: Duration = Duration::from_secs(1);

/// This broker in its cluster: its group name and, when it registers with NameServers, their
/// route cache (whose client asks them).
#[derive(Clone)]
pub struct Cluster {
    broker_name: String,
    routes: Option<ns::RouteCache>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("broker_name", &self.broker_name)
            .field("nameservers", &self.routes.is_some())
            .finish()
    }
}

impl Cluster {
    /// The group `broker_name`, registered with the NameServers behind `routes` (none: a broker
    /// that registers nowhere).
    pub fn new(broker_name: impl Into<String>, routes: Option<ns::RouteCache>) -> Self {
        Self {
            broker_name: broker_name.into(),
            routes,
        }
    }

    /// The NameServers' route of `topic`: asked afresh, else the cache's last answer; `None`
    /// when there is no NameServer, none answered within [`ROUTE_WAIT`] and nothing is cached,
    /// or none knows the topic.
    pub(crate) async fn route(&self, topic: &str) -> Option<Arc<ns::TopicRoute>> {
        let routes = self.routes.as_ref()?;
        match tokio::time::timeout(ROUTE_WAIT, routes.client().route(topic)).await {
            Ok(Ok(route)) => Some(Arc::new(route)),
            Ok(Err(ns::ClientError::TopicNotFound(_))) => None,
            Ok(Err(e)) => {
                tracing::debug!(topic, error = %e, "no NameServer route; trying the cache");
                routes.cached(topic)
            }
            Err(_) => routes.cached(topic),
        }
    }

    /// This broker's group name.
    pub(crate) fn broker_name(&self) -> &str {
        &self.broker_name
    }
}

fn permission(read: bool, write: bool) -> &'static str {
    match (read, write) {
        (true, true) => "READ_WRITE",
        (true, false) => "READ",
        (false, true) => "WRITE",
        (false, false) => "NONE",
    }
}

fn ns_permission(p: ns::Permission) -> &'static str {
    match p {
        ns::Permission::ReadWrite => "READ_WRITE",
        ns::Permission::Read => "READ",
        ns::Permission::Write => "WRITE",
        ns::Permission::None => "NONE",
    }
}

/// The route answer of `topic`: `local` is this broker's topic (if it has it), `scheme` and
/// `host` how clients reach this gateway (`https` with TLS: every node of a cluster shares the
/// setting, so its peers' advertised `http` endpoints get it too), `name` this broker's group
/// name (if known), and `cluster` the NameServers' route (if any).
pub(crate) fn assemble(
    topic: &str,
    local: Option<&TopicInfo>,
    scheme: &str,
    host: &str,
    name: Option<&str>,
    cluster: Option<&ns::TopicRoute>,
) -> TopicRoute {
    let endpoint = format!("{scheme}://{host}");
    let endpoint = endpoint.as_str();
    let own = |info: &TopicInfo| -> Vec<RouteQueue> {
        let p = info.config.permission;
        info.queues
            .iter()
            .map(|q| RouteQueue {
                broker_name: name.map(str::to_owned),
                queue_id: q.queue_id,
                permission: permission(p.read, p.write).into(),
                endpoint: Some(endpoint.to_owned()),
            })
            .collect()
    };
    let Some(route) = cluster else {
        return TopicRoute {
            topic: topic.to_owned(),
            source: "local".into(),
            queues: local.map(own).unwrap_or_default(),
            brokers: Vec::new(),
        };
    };
    let mut queues = Vec::new();
    let mut local_listed = false;
    for q in &route.queues {
        let group = q.broker_name.as_str();
        if Some(group) == name {
            if let Some(info) = local {
                queues.extend(own(info));
                local_listed = true;
                continue;
            }
        }
        let http = route
            .broker(group)
            .and_then(|b| b.master_endpoint(ns::Protocol::HTTP))
            .map(|a| format!("{scheme}://{a}"));
        queues.extend((0..q.read_queues.max(q.write_queues)).map(|id| RouteQueue {
            broker_name: Some(group.to_owned()),
            queue_id: id,
            permission: ns_permission(q.permission).into(),
            endpoint: http.clone(),
        }));
    }
    // Served here but not in the NameServers' route yet (created a moment ago).
    if let (false, Some(info)) = (local_listed, local) {
        queues.extend(own(info));
    }
    queues.sort_by(|a, b| {
        (a.broker_name.as_deref(), a.queue_id).cmp(&(b.broker_name.as_deref(), b.queue_id))
    });
    let brokers = route
        .brokers
        .iter()
        .map(|b| RouteBroker {
            cluster: b.cluster.to_string(),
            broker_name: b.broker_name.to_string(),
            addresses: b
                .addresses
                .iter()
                .map(|(id, endpoints)| RouteMember {
                    broker_id: id.0,
                    role: match id.role() {
                        ns::Role::Master => "master".into(),
                        ns::Role::Slave => "slave".into(),
                    },
                    endpoints: endpoints
                        .iter()
                        .map(|e| (e.protocol().to_string(), e.address().to_owned()))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    TopicRoute {
        topic: topic.to_owned(),
        source: "nameserver".into(),
        queues,
        brokers,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn group(name: &str, queues: u32, permission: ns::Permission) -> ns::QueueData {
        ns::QueueData {
            broker_name: name.parse().unwrap(),
            read_queues: queues,
            write_queues: queues,
            permission,
            message_type: ns::MessageType::Normal,
        }
    }

    fn members(name: &str, endpoints: &[(u64, &str, &str)]) -> ns::BrokerData {
        let mut addresses = std::collections::BTreeMap::new();
        for (id, protocol, address) in endpoints {
            addresses
                .entry(ns::BrokerId(*id))
                .or_insert_with(Vec::new)
                .push(ns::Endpoint::new(*protocol, *address).unwrap());
        }
        ns::BrokerData {
            cluster: "c".parse().unwrap(),
            broker_name: name.parse().unwrap(),
            addresses,
        }
    }

    #[tokio::test]
    async fn every_group_of_the_nameservers_with_this_brokers_own_queues() {
        let route = ns::TopicRoute {
            topic: "t".parse().unwrap(),
            queues: vec![
                group("a", 2, ns::Permission::ReadWrite),
                group("b", 1, ns::Permission::Read),
                group("c", 1, ns::Permission::ReadWrite),
            ],
            brokers: vec![
                members("a", &[(0, "http", "10.0.0.1:8080")]),
                members(
                    "b",
                    &[(0, "http", "10.0.0.2:8080"), (1, "grpc", "10.0.0.3:8081")],
                ),
                members("c", &[(0, "grpc", "10.0.0.4:8081")]),
            ],
        };
        // Without this broker's topic table: the NameServers' answer as it is.
        let r = assemble("t", None, "http", "here", Some("a"), Some(&route));
        assert_eq!(r.source, "nameserver");
        let names: Vec<_> = r
            .queues
            .iter()
            .map(|q| (q.broker_name.as_deref().unwrap(), q.queue_id))
            .collect();
        assert_eq!(names, [("a", 0), ("a", 1), ("b", 0), ("c", 0)]);
        assert_eq!(
            r.queues[0].endpoint.as_deref(),
            Some("http://10.0.0.1:8080")
        );
        assert_eq!(r.queues[2].permission, "READ");
        assert_eq!(r.queues[3].endpoint, None, "c advertises no http endpoint");
        assert_eq!(r.brokers.len(), 3);
        assert_eq!(r.brokers[1].addresses[1].role, "slave");
        assert_eq!(r.brokers[1].addresses[1].endpoints["grpc"], "10.0.0.3:8081");
        // With it: its own queues (3 now) from the table, reached here.
        let dir = tempfile::tempdir().unwrap();
        let mut config = rocketgate_core::Config::default();
        config.store.data_dir = dir.path().into();
        config.store.segment_size = 1 << 20;
        let broker = rocketgate_core::Broker::open(config).unwrap();
        broker
            .topics()
            .create(rocketgate_core::TopicConfig::new("t", 3))
            .unwrap();
        let info = broker.topics().describe("t").await.unwrap();
        let r = assemble("t", Some(&info), "http", "here", Some("a"), Some(&route));
        let own: Vec<_> = r
            .queues
            .iter()
            .filter(|q| q.broker_name.as_deref() == Some("a"))
            .map(|q| (q.queue_id, q.endpoint.as_deref()))
            .collect();
        assert_eq!(
            own,
            [
                (0, Some("http://here")),
                (1, Some("http://here")),
                (2, Some("http://here"))
            ]
        );
        assert_eq!(r.queues.len(), 5);
        // Not routed yet (another group name): listed too.
        let r = assemble("t", Some(&info), "http", "here", Some("z"), Some(&route));
        assert_eq!(r.queues.len(), 7);
        assert_eq!(r.queues[6].broker_name.as_deref(), Some("z"));
        // No NameServer: local only, and said so.
        let r = assemble("t", Some(&info), "https", "here", None, None);
        assert_eq!((r.source.as_str(), r.queues.len()), ("local", 3));
        assert!(r.brokers.is_empty() && r.queues[0].broker_name.is_none());
        assert_eq!(r.queues[0].endpoint.as_deref(), Some("https://here"));
    }
}
