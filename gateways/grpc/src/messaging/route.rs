//! QueryRoute and QueryAssignment: which queues of a topic this broker serves, and which of
//! them a consumer should poll.
//!
//! Invariants: never OK with an empty queue list (TOPIC_NOT_FOUND instead: RC divides by the
//! queue count); every queue carries `broker{name, id, endpoints}` with the advertised gRPC
//! endpoint and `accept_message_types` from the topic's type (all four for MIXED); the
//! request's `Resource` is echoed as-is.
//!
//! Reads topic metadata from the core; no state of its own.

use rocketgate_core::{MessageType, Permission, TopicConfig};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::Code;

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
    rocketgate_core::broker::validate::topic_name(&t.name).map_err(|e| from_core(&e))?;
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
    rocketgate_core::broker::validate::topic_name(&g.name).map_err(|_| {
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

/// QueryRoute: every queue of the topic on this broker.
pub(super) fn query_route(ctx: &Context, req: &pb::QueryRouteRequest) -> pb::QueryRouteResponse {
    let answer = |status| pb::QueryRouteResponse {
        status: Some(status),
        message_queues: Vec::new(),
    };
    let name = match topic_name(req.topic.as_ref()) {
        Ok(n) => n,
        Err(s) => return answer(s),
    };
    let info = match ctx.broker.describe_topic(name) {
        Ok(i) => i,
        Err(e) => return answer(from_core(&e)),
    };
    let Some(endpoints) = advertised(ctx, req.endpoints.as_ref()) else {
        return answer(status(
            Code::IllegalAccessPoint,
            "no advertised gRPC endpoint and no usable access point in the request",
        ));
    };
    let resource = req.topic.clone().unwrap_or_default();
    let queues: Vec<_> = (0..info.config.queue_count)
        .map(|id| queue(ctx, &resource, &info.config, id, &endpoints))
        .collect();
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
    let info = match ctx.broker.describe_topic(topic) {
        Ok(i) => i,
        Err(e) => return answer(from_core(&e)),
    };
    if !info.config.permission.read {
        return answer(status(
            Code::Forbidden,
            format!("topic `{topic}` is not readable"),
        ));
    }
    let queues = match ctx.broker.assignment(group, topic, client_id) {
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
            message_queue: Some(queue(ctx, &resource, &info.config, id, &endpoints)),
        })
        .collect();
    // Empty when the group has more live clients than queues: this one idles.
    pb::QueryAssignmentResponse {
        status: Some(ok()),
        assignments,
    }
}

#[cfg(test)]
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
}
