//! QueryRoute and QueryAssignment: which queues of a topic the cluster serves, and which of
//! them a consumer should poll.
//!
//! QueryRoute answers with every broker group that serves the topic: this broker's own group
//! from the local topic table (authoritative and fresh), and, when the node has a route cache
//! ([`crate::NodeInfo::routes`]), every other group of the NameServers' route that has a live
//! master advertising a `grpc` endpoint, pointing at that endpoint (RocketMQ semantics: a
//! topic's queues span brokers and each broker serves its own; the SDK sends to and receives
//! from each queue's broker). Groups are listed by broker name, so every broker of a cluster
//! gives the same answer.
//!
//! Permission policy for other groups: only READ_WRITE groups are listed. The Rust SDK
//! round-robins over every returned queue for both send and receive without looking at
//! `permission`, so a read-only queue would take sends and a write-only one polls (brief §1.1,
//! pitfall 15). A group that is read-only (draining, or master-less: the NameServer strips
//! write access and there is no master endpoint) is left out here; its own endpoint still
//! answers with its queues and their real permission. This broker's own queues keep the local
//! topic's permission, as in a single-broker answer.
//!
//! Fallback: the route cache is asked for at most [`ROUTE_WAIT`]. When it fails (no NameServer
//! answers and nothing is cached, the topic is unknown to them) or takes longer, the answer is
//! this broker's queues alone; TOPIC_NOT_FOUND only when the topic is unknown locally too.
//!
//! Invariants: never OK with an empty queue list (TOPIC_NOT_FOUND instead: RC divides by the
//! queue count); every queue carries `broker{name, id, endpoints}` with a gRPC endpoint (never
//! a wildcard) and `accept_message_types` from the topic's type (all four for MIXED); the
//! request's `Resource` is echoed as-is.
//!
//! Reads topic metadata from the core and routes from the node's cache; no state of its own.
//! QueryAssignment stays local (it names this broker's queues for this broker's consumers).

use std::time::Duration;

use rocketgate_core::{MessageType, Permission, TopicConfig};
use rocketgate_nameserver as ns;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::Code;

use tracing::debug;

use super::code::{from_core, ok, status};
use super::Context;

/// The topic name of a request resource, checked.
///
/// # Errors
/// ILLEGAL_TOPIC when missing or malformed.
pub(super) fn topic_name(topic: Option<&pb::Resource>) -> Result<&str, pb::Status> {
    let Some(t) = topic else {
        return Err(status(Code::IllegalTopic, "missing topic"));
    };
    rocketgate_core::rules::topic_name(&t.name).map_err(|e| from_core(&e))?;
    Ok(&t.name)
}

/// The consumer group name of a request resource, checked.
///
/// # Errors
/// ILLEGAL_CONSUMER_GROUP when missing or malformed.
pub(super) fn group_name(group: Option<&pb::Resource>) -> Result<&str, pb::Status> {
    let Some(g) = group else {
        return Err(status(Code::IllegalConsumerGroup, "missing group"));
    };
    rocketgate_core::rules::topic_name(&g.name).map_err(|_| {
        status(
            Code::IllegalConsumerGroup,
            format!("illegal consumer group name `{}`", g.name),
        )
    })?;
    Ok(&g.name)
}

/// The v2 message types a topic of `t` accepts.
pub(super) fn accepted_types(t: MessageType) -> Vec<i32> {
    let all = [
        pb::MessageType::Normal,
        pb::MessageType::Fifo,
        pb::MessageType::Delay,
        pb::MessageType::Transaction,
    ];
    let one = match t {
        MessageType::Normal => pb::MessageType::Normal,
        MessageType::Fifo => pb::MessageType::Fifo,
        MessageType::Delay => pb::MessageType::Delay,
        MessageType::Transaction => pb::MessageType::Transaction,
        _ => return all.iter().map(|m| *m as i32).collect(),
    };
    vec![one as i32]
}

fn permission(p: Permission) -> pb::Permission {
    match (p.read, p.write) {
        (true, true) => pb::Permission::ReadWrite,
        (true, false) => pb::Permission::Read,
        (false, true) => pb::Permission::Write,
        (false, false) => pb::Permission::None,
    }
}

/// `host:port` → v2 endpoints (IPv4 for a dotted quad, DOMAIN_NAME otherwise).
pub(super) fn endpoints(host: &str, port: u16) -> pb::Endpoints {
    let scheme = if host.parse::<std::net::Ipv4Addr>().is_ok() {
        pb::AddressScheme::IPv4
    } else if host.parse::<std::net::Ipv6Addr>().is_ok() {
        pb::AddressScheme::IPv6
    } else {
        pb::AddressScheme::DomainName
    };
    pb::Endpoints {
        scheme: scheme as i32,
        addresses: vec![pb::Address {
            host: host.to_owned(),
            port: i32::from(port),
        }],
    }
}

/// The endpoints to advertise: the node's gRPC endpoint, else the access point the client
/// used (when it names one address), else the listener's address.
fn advertised(ctx: &Context, access: Option<&pb::Endpoints>) -> Option<pb::Endpoints> {
    if let Some((host, port)) = &ctx.endpoint {
        return Some(endpoints(host, *port));
    }
    access
        .filter(|e| e.addresses.len() == 1 && e.addresses.iter().all(|a| a.port > 0))
        .cloned()
}

fn queue(
    ctx: &Context,
    resource: &pb::Resource,
    t: &TopicConfig,
    id: u32,
    endpoints: &pb::Endpoints,
) -> pb::MessageQueue {
    pb::MessageQueue {
        topic: Some(resource.clone()),
        id: i32::try_from(id).unwrap_or(i32::MAX),
        permission: permission(t.permission) as i32,
        broker: Some(pb::Broker {
            name: ctx.node.broker_name.clone(),
            id: i32::try_from(ctx.node.broker_id).unwrap_or(i32::MAX),
            endpoints: Some(endpoints.clone()),
        }),
        accept_message_types: accepted_types(t.message_type),
    }
}

/// Longest a QueryRoute waits on the route cache (a miss asks the NameServers) before it
/// answers with this broker's queues alone.
pub(super) const ROUTE_WAIT: Duration = Duration::from_secs(1);

/// The core message type of a routed topic's type.
fn core_type(t: ns::MessageType) -> MessageType {
    match t {
        ns::MessageType::Normal => MessageType::Normal,
        ns::MessageType::Fifo => MessageType::Fifo,
        ns::MessageType::Delay => MessageType::Delay,
        ns::MessageType::Transaction => MessageType::Transaction,
        ns::MessageType::Mixed => MessageType::Mixed,
    }
}

/// The v2 endpoints of a routed `host:port` address; `None` for one clients cannot dial
/// (unparsable, port 0, a wildcard host).
fn routed_endpoints(address: &str) -> Option<pb::Endpoints> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    let wildcard = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    (!host.is_empty() && port > 0 && !wildcard).then(|| endpoints(host, port))
}

/// The queues of every group of `route` other than `local` (this broker's group) that clients
/// can both send to and receive from: READ_WRITE, with a live master advertising a dialable
/// `grpc` endpoint. Returned as (broker name, queues), in the route's (broker name) order.
fn remote_groups(
    route: &ns::TopicRoute,
    local: &str,
    resource: &pb::Resource,
) -> Vec<(String, Vec<pb::MessageQueue>)> {
    route
        .queues
        .iter()
        .filter(|q| q.broker_name.as_str() != local && q.permission == ns::Permission::ReadWrite)
        .filter_map(|q| {
            let address = route
                .broker(q.broker_name.as_str())?
                .master_endpoint(ns::Protocol::GRPC)?;
            let endpoints = routed_endpoints(address)?;
            let types = accepted_types(core_type(q.message_type));
            let queues = (0..q.read_queues.max(q.write_queues))
                .map(|id| pb::MessageQueue {
                    topic: Some(resource.clone()),
                    id: i32::try_from(id).unwrap_or(i32::MAX),
                    permission: pb::Permission::ReadWrite as i32,
                    broker: Some(pb::Broker {
                        name: q.broker_name.to_string(),
                        id: 0,
                        endpoints: Some(endpoints.clone()),
                    }),
                    accept_message_types: types.clone(),
                })
                .collect::<Vec<_>>();
            (!queues.is_empty()).then(|| (q.broker_name.to_string(), queues))
        })
        .collect()
}

/// The other groups' queues of `topic` from the node's route cache, or nothing when the node
/// has none, the cache fails or it takes longer than [`ROUTE_WAIT`].
async fn cluster_groups(
    ctx: &Context,
    topic: &str,
    resource: &pb::Resource,
) -> Vec<(String, Vec<pb::MessageQueue>)> {
    let Some(routes) = ctx.node.routes.as_ref() else {
        return Vec::new();
    };
    match tokio::time::timeout(ROUTE_WAIT, routes.route(topic)).await {
        Ok(Ok(route)) => remote_groups(&route, &ctx.node.broker_name, resource),
        Ok(Err(err)) => {
            debug!(topic, error = %err, "no cluster route; answering with local queues");
            Vec::new()
        }
        Err(_) => {
            debug!(
                topic,
                wait_ms = ROUTE_WAIT.as_millis() as u64,
                "cluster route too slow; answering with local queues"
            );
            Vec::new()
        }
    }
}

/// QueryRoute: every queue of the topic on this broker and, with a route cache, on every
/// other READ_WRITE broker group of the cluster (see the module docs).
pub(super) async fn query_route(
    ctx: &Context,
    req: &pb::QueryRouteRequest,
) -> pb::QueryRouteResponse {
    let answer = |status| pb::QueryRouteResponse {
        status: Some(status),
        message_queues: Vec::new(),
    };
    let name = match topic_name(req.topic.as_ref()) {
        Ok(n) => n,
        Err(s) => return answer(s),
    };
    let resource = req.topic.clone().unwrap_or_default();
    let remote = cluster_groups(ctx, name, &resource).await;
    let local = match ctx.broker.topics().config(name) {
        Ok(config) => {
            let Some(endpoints) = advertised(ctx, req.endpoints.as_ref()) else {
                return answer(status(
                    Code::IllegalAccessPoint,
                    "no advertised gRPC endpoint and no usable access point in the request",
                ));
            };
            let queues: Vec<_> = (0..config.queue_count)
                .map(|id| queue(ctx, &resource, &config, id, &endpoints))
                .collect();
            Some((ctx.node.broker_name.clone(), queues))
        }
        // Unknown here: the other groups may still serve it.
        Err(e) if remote.is_empty() || e.kind() != rocketgate_core::ErrorKind::NotFound => {
            return answer(from_core(&e));
        }
        Err(_) => None,
    };
    let mut groups = remote;
    groups.extend(local);
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let queues: Vec<_> = groups.into_iter().flat_map(|(_, q)| q).collect();
    if queues.is_empty() {
        return answer(status(
            Code::TopicNotFound,
            format!("topic `{name}` has no queues"),
        ));
    }
    pb::QueryRouteResponse {
        status: Some(ok()),
        message_queues: queues,
    }
}

/// QueryAssignment: the queues `client_id` should long-poll (the core's share of the group's
/// live clients). Receives pop across the whole topic anyway, so any assigned queue works.
pub(super) fn query_assignment(
    ctx: &Context,
    client_id: &str,
    req: &pb::QueryAssignmentRequest,
) -> pb::QueryAssignmentResponse {
    let answer = |status| pb::QueryAssignmentResponse {
        status: Some(status),
        assignments: Vec::new(),
    };
    let topic = match topic_name(req.topic.as_ref()) {
        Ok(n) => n,
        Err(s) => return answer(s),
    };
    let group = match group_name(req.group.as_ref()) {
        Ok(n) => n,
        Err(s) => return answer(s),
    };
    let config = match ctx.broker.topics().config(topic) {
        Ok(c) => c,
        Err(e) => return answer(from_core(&e)),
    };
    if !config.permission.read {
        return answer(status(
            Code::Forbidden,
            format!("topic `{topic}` is not readable"),
        ));
    }
    let queues = match ctx.broker.consumer().assignment(group, topic, client_id) {
        Ok(q) => q,
        Err(e) => return answer(from_core(&e)),
    };
    ctx.clients.set_group(client_id, group);
    let Some(endpoints) = advertised(ctx, req.endpoints.as_ref()) else {
        return answer(status(
            Code::IllegalAccessPoint,
            "no advertised gRPC endpoint and no usable access point in the request",
        ));
    };
    let resource = req.topic.clone().unwrap_or_default();
    let assignments: Vec<_> = queues
        .into_iter()
        .map(|id| pb::Assignment {
            message_queue: Some(queue(ctx, &resource, &config, id, &endpoints)),
        })
        .collect();
    // Empty when the group has more live clients than queues: this one idles.
    pb::QueryAssignmentResponse {
        status: Some(ok()),
        assignments,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn address_schemes() {
        assert_eq!(
            endpoints("127.0.0.1", 1).scheme,
            pb::AddressScheme::IPv4 as i32
        );
        assert_eq!(
            endpoints("broker.local", 1).scheme,
            pb::AddressScheme::DomainName as i32
        );
        assert_eq!(accepted_types(MessageType::Mixed).len(), 4);
        assert_eq!(
            accepted_types(MessageType::Fifo),
            vec![pb::MessageType::Fifo as i32]
        );
    }

    fn group(name: &str, queues: u32, permission: ns::Permission) -> ns::QueueData {
        ns::QueueData {
            broker_name: name.parse().unwrap(),
            read_queues: queues,
            write_queues: queues,
            permission,
            message_type: ns::MessageType::Fifo,
        }
    }

    fn members(name: &str, endpoints: &[(u64, &str)]) -> ns::BrokerData {
        ns::BrokerData {
            cluster: "c".parse().unwrap(),
            broker_name: name.parse().unwrap(),
            addresses: endpoints
                .iter()
                .map(|(id, a)| {
                    (
                        ns::BrokerId(*id),
                        vec![ns::Endpoint::new("grpc", *a).unwrap()],
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn remote_groups_skip_local_unwritable_masterless_and_wildcards() {
        let route = ns::TopicRoute {
            topic: "t".parse().unwrap(),
            queues: vec![
                group("a", 4, ns::Permission::ReadWrite),
                group("b", 2, ns::Permission::ReadWrite),
                group("c", 2, ns::Permission::Read),
                group("d", 2, ns::Permission::ReadWrite),
                group("e", 2, ns::Permission::ReadWrite),
                group("f", 3, ns::Permission::ReadWrite),
            ],
            brokers: vec![
                members("a", &[(0, "10.0.0.1:8081")]),
                members("b", &[(0, "10.0.0.2:8081"), (1, "10.0.0.3:8081")]),
                members("c", &[(0, "10.0.0.4:8081")]),
                // A slave only: no master to send to.
                members("d", &[(1, "10.0.0.5:8081")]),
                members("e", &[(0, "0.0.0.0:8081")]),
                members("f", &[(0, "broker-f.local:9000")]),
            ],
        };
        let resource = pb::Resource {
            resource_namespace: "ns".into(),
            name: "t".into(),
        };
        let groups = remote_groups(&route, "a", &resource);
        let names: Vec<_> = groups.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "f"]);
        let b = &groups[0].1;
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].id, 1);
        assert_eq!(b[0].topic.as_ref(), Some(&resource));
        assert_eq!(b[0].permission, pb::Permission::ReadWrite as i32);
        assert_eq!(
            b[0].accept_message_types,
            vec![pb::MessageType::Fifo as i32]
        );
        let broker = b[0].broker.as_ref().unwrap();
        assert_eq!((broker.name.as_str(), broker.id), ("b", 0));
        assert_eq!(
            broker.endpoints.as_ref().unwrap(),
            &endpoints("10.0.0.2", 8081)
        );
        let f = groups[1].1[0].broker.as_ref().unwrap();
        assert_eq!(
            f.endpoints.as_ref().unwrap().scheme,
            pb::AddressScheme::DomainName as i32
        );
        assert_eq!(groups[1].1.len(), 3);
    }
}
