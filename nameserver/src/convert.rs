//! Conversions between the wire types of `rocketgate.cluster.v1` and the domain types of
//! [`crate::model`].
//!
//! Invariant: everything from the wire is checked here, before any table sees it — counts against
//! [`Limits`] first (so an oversized list is refused before its elements are looked at), then
//! every name, endpoint and enum value. Errors name the field by its path (`topics[3].name`).
//! Domain → wire conversions cannot fail.
//!
//! Pure functions; used by the service (requests in, replies out) and the client (requests out,
//! replies in).

use std::collections::{BTreeMap, BTreeSet};

use rocketgate_proto::cluster::v1 as pb;

use crate::config::Limits;
use crate::model::{
    BrokerData, BrokerId, BrokerIdentity, BrokerInfo, BrokerName, BrokerRegistration, ClusterEntry,
    ClusterInfo, ClusterName, Endpoint, InvalidInput, MessageType, Permission, QueueData, Role,
    TopicConfig, TopicName, TopicRoute, MAX_ENDPOINTS,
};

fn at(prefix: &str) -> impl Fn(InvalidInput) -> InvalidInput + '_ {
    move |e| {
        let field = if e.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", e.field)
        };
        e.at(field)
    }
}

/// A broker identity from the wire.
///
/// # Errors
/// [`InvalidInput`] when it is missing or a name is invalid.
pub fn identity_from_proto(
    identity: Option<pb::BrokerIdentity>,
) -> Result<BrokerIdentity, InvalidInput> {
    let id = identity.ok_or_else(|| InvalidInput::new("broker", "missing"))?;
    Ok(BrokerIdentity {
        cluster: ClusterName::new(id.cluster).map_err(|e| e.at("broker.cluster"))?,
        broker_name: BrokerName::new(id.broker_name).map_err(|e| e.at("broker.broker_name"))?,
        broker_id: BrokerId(id.broker_id),
    })
}

/// A domain identity on the wire.
pub fn identity_to_proto(identity: &BrokerIdentity) -> pb::BrokerIdentity {
    pb::BrokerIdentity {
        cluster: identity.cluster.to_string(),
        broker_name: identity.broker_name.to_string(),
        broker_id: identity.broker_id.0,
    }
}

fn endpoints_from_proto(
    field: &str,
    endpoints: Vec<pb::Endpoint>,
) -> Result<Vec<Endpoint>, InvalidInput> {
    if endpoints.is_empty() || endpoints.len() > MAX_ENDPOINTS {
        return Err(InvalidInput::new(
            field,
            format!(
                "{} endpoints; 1..={MAX_ENDPOINTS} are allowed",
                endpoints.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(endpoints.len());
    for (i, e) in endpoints.into_iter().enumerate() {
        let endpoint =
            Endpoint::new(e.protocol, e.address).map_err(at(&format!("{field}[{i}]")))?;
        if !seen.insert(endpoint.protocol().clone()) {
            return Err(InvalidInput::new(
                format!("{field}[{i}].protocol"),
                format!("`{}` appears twice", endpoint.protocol()),
            ));
        }
        out.push(endpoint);
    }
    Ok(out)
}

fn endpoints_to_proto(endpoints: &[Endpoint]) -> Vec<pb::Endpoint> {
    endpoints
        .iter()
        .map(|e| pb::Endpoint {
            protocol: e.protocol().to_string(),
            address: e.address().to_owned(),
        })
        .collect()
}

fn permission_from_proto(field: &str, value: i32) -> Result<Permission, InvalidInput> {
    match pb::Permission::try_from(value) {
        Ok(pb::Permission::None) => Ok(Permission::None),
        Ok(pb::Permission::Read) => Ok(Permission::Read),
        Ok(pb::Permission::Write) => Ok(Permission::Write),
        Ok(pb::Permission::ReadWrite) => Ok(Permission::ReadWrite),
        Ok(pb::Permission::Unspecified) => Err(InvalidInput::new(field, "unspecified")),
        Err(_) => Err(InvalidInput::new(field, format!("unknown value {value}"))),
    }
}

fn permission_to_proto(p: Permission) -> i32 {
    match p {
        Permission::None => pb::Permission::None,
        Permission::Read => pb::Permission::Read,
        Permission::Write => pb::Permission::Write,
        Permission::ReadWrite => pb::Permission::ReadWrite,
    }
    .into()
}

fn message_type_from_proto(field: &str, value: i32) -> Result<MessageType, InvalidInput> {
    match pb::MessageType::try_from(value) {
        Ok(pb::MessageType::Normal) => Ok(MessageType::Normal),
        Ok(pb::MessageType::Fifo) => Ok(MessageType::Fifo),
        Ok(pb::MessageType::Delay) => Ok(MessageType::Delay),
        Ok(pb::MessageType::Transaction) => Ok(MessageType::Transaction),
        Ok(pb::MessageType::Mixed) => Ok(MessageType::Mixed),
        Ok(pb::MessageType::Unspecified) => Err(InvalidInput::new(field, "unspecified")),
        Err(_) => Err(InvalidInput::new(field, format!("unknown value {value}"))),
    }
}

fn message_type_to_proto(t: MessageType) -> i32 {
    match t {
        MessageType::Normal => pb::MessageType::Normal,
        MessageType::Fifo => pb::MessageType::Fifo,
        MessageType::Delay => pb::MessageType::Delay,
        MessageType::Transaction => pb::MessageType::Transaction,
        MessageType::Mixed => pb::MessageType::Mixed,
    }
    .into()
}

fn topic_from_proto(
    field: &str,
    t: pb::TopicConfig,
    limits: &Limits,
) -> Result<TopicConfig, InvalidInput> {
    let name = TopicName::new(t.name).map_err(|e| e.at(format!("{field}.name")))?;
    let max = limits.max_queues_per_topic;
    for (what, n) in [
        ("read_queue_nums", t.read_queue_nums),
        ("write_queue_nums", t.write_queue_nums),
    ] {
        if n > max {
            return Err(InvalidInput::new(
                format!("{field}.{what}"),
                format!("{n} queues, more than the limit of {max}"),
            ));
        }
    }
    if t.read_queue_nums == 0 && t.write_queue_nums == 0 {
        return Err(InvalidInput::new(
            field,
            "read_queue_nums and write_queue_nums are both 0",
        ));
    }
    Ok(TopicConfig {
        name,
        read_queues: t.read_queue_nums,
        write_queues: t.write_queue_nums,
        permission: permission_from_proto(&format!("{field}.permission"), t.permission)?,
        message_type: message_type_from_proto(&format!("{field}.message_type"), t.message_type)?,
    })
}

/// A registration from the wire, checked against `limits`.
///
/// # Errors
/// [`InvalidInput`] naming the first field that breaks a rule.
pub fn registration_from_proto(
    request: pb::RegisterBrokerRequest,
    limits: &Limits,
) -> Result<BrokerRegistration, InvalidInput> {
    let max = limits.max_topics_per_registration;
    if request.topics.len() > max {
        return Err(InvalidInput::new(
            "topics",
            format!(
                "{} topics, more than the limit of {max} per registration",
                request.topics.len()
            ),
        ));
    }
    let identity = identity_from_proto(request.broker)?;
    let endpoints = endpoints_from_proto("endpoints", request.endpoints)?;
    let mut seen = BTreeSet::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for (i, t) in request.topics.into_iter().enumerate() {
        let field = format!("topics[{i}]");
        let topic = topic_from_proto(&field, t, limits)?;
        if !seen.insert(topic.name.clone()) {
            return Err(InvalidInput::new(
                format!("{field}.name"),
                format!("topic `{}` appears twice", topic.name),
            ));
        }
        topics.push(topic);
    }
    Ok(BrokerRegistration {
        identity,
        endpoints,
        topics,
    })
}

/// A registration on the wire (no registration id, unsigned: the client adds both per
/// NameServer).
pub fn registration_to_proto(r: &BrokerRegistration) -> pb::RegisterBrokerRequest {
    pb::RegisterBrokerRequest {
        broker: Some(identity_to_proto(&r.identity)),
        endpoints: endpoints_to_proto(&r.endpoints),
        topics: r
            .topics
            .iter()
            .map(|t| pb::TopicConfig {
                name: t.name.to_string(),
                read_queue_nums: t.read_queues,
                write_queue_nums: t.write_queues,
                permission: permission_to_proto(t.permission),
                message_type: message_type_to_proto(t.message_type),
            })
            .collect(),
        registration_id: String::new(),
        signature: None,
    }
}

/// A route on the wire.
pub fn route_to_proto(route: &TopicRoute) -> pb::QueryRouteResponse {
    pb::QueryRouteResponse {
        topic: route.topic.to_string(),
        queues: route
            .queues
            .iter()
            .map(|q| pb::QueueData {
                broker_name: q.broker_name.to_string(),
                read_queue_nums: q.read_queues,
                write_queue_nums: q.write_queues,
                permission: permission_to_proto(q.permission),
                message_type: message_type_to_proto(q.message_type),
            })
            .collect(),
        brokers: route
            .brokers
            .iter()
            .map(|b| pb::BrokerData {
                cluster: b.cluster.to_string(),
                broker_name: b.broker_name.to_string(),
                addresses: b
                    .addresses
                    .iter()
                    .map(|(id, endpoints)| pb::BrokerAddress {
                        broker_id: id.0,
                        endpoints: endpoints_to_proto(endpoints),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A route from the wire (client side).
///
/// # Errors
/// [`InvalidInput`] when the reply breaks a rule of [`crate::model`].
pub fn route_from_proto(r: pb::QueryRouteResponse) -> Result<TopicRoute, InvalidInput> {
    let topic = TopicName::new(r.topic).map_err(|e| e.at("topic"))?;
    let mut queues = Vec::with_capacity(r.queues.len());
    for (i, q) in r.queues.into_iter().enumerate() {
        let field = format!("queues[{i}]");
        queues.push(QueueData {
            broker_name: BrokerName::new(q.broker_name)
                .map_err(|e| e.at(format!("{field}.broker_name")))?,
            read_queues: q.read_queue_nums,
            write_queues: q.write_queue_nums,
            permission: permission_from_proto(&format!("{field}.permission"), q.permission)?,
            message_type: message_type_from_proto(
                &format!("{field}.message_type"),
                q.message_type,
            )?,
        });
    }
    let mut brokers = Vec::with_capacity(r.brokers.len());
    for (i, b) in r.brokers.into_iter().enumerate() {
        let field = format!("brokers[{i}]");
        let mut addresses = BTreeMap::new();
        for (j, a) in b.addresses.into_iter().enumerate() {
            let endpoints =
                endpoints_from_proto(&format!("{field}.addresses[{j}].endpoints"), a.endpoints)?;
            addresses.insert(BrokerId(a.broker_id), endpoints);
        }
        brokers.push(BrokerData {
            cluster: ClusterName::new(b.cluster).map_err(|e| e.at(format!("{field}.cluster")))?,
            broker_name: BrokerName::new(b.broker_name)
                .map_err(|e| e.at(format!("{field}.broker_name")))?,
            addresses,
        });
    }
    Ok(TopicRoute {
        topic,
        queues,
        brokers,
    })
}

fn role_to_proto(role: Role) -> i32 {
    match role {
        Role::Master => pb::BrokerRole::Master,
        Role::Slave => pb::BrokerRole::Slave,
    }
    .into()
}

/// Cluster info on the wire.
pub fn cluster_info_to_proto(info: &ClusterInfo) -> pb::ClusterInfoResponse {
    pb::ClusterInfoResponse {
        clusters: info
            .clusters
            .iter()
            .map(|c| pb::Cluster {
                name: c.name.to_string(),
                brokers: c
                    .brokers
                    .iter()
                    .map(|b| pb::BrokerInfo {
                        broker_name: b.broker_name.to_string(),
                        broker_id: b.broker_id.0,
                        role: role_to_proto(b.role),
                        endpoints: endpoints_to_proto(&b.endpoints),
                        last_heartbeat_ms: b.last_heartbeat_ms,
                        topic_count: b.topic_count,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Cluster info from the wire (client side). The role is derived from the broker id.
///
/// # Errors
/// [`InvalidInput`] when the reply breaks a rule of [`crate::model`].
pub fn cluster_info_from_proto(r: pb::ClusterInfoResponse) -> Result<ClusterInfo, InvalidInput> {
    let mut clusters = Vec::with_capacity(r.clusters.len());
    for (i, c) in r.clusters.into_iter().enumerate() {
        let field = format!("clusters[{i}]");
        let mut brokers = Vec::with_capacity(c.brokers.len());
        for (j, b) in c.brokers.into_iter().enumerate() {
            let bf = format!("{field}.brokers[{j}]");
            let broker_id = BrokerId(b.broker_id);
            brokers.push(BrokerInfo {
                broker_name: BrokerName::new(b.broker_name)
                    .map_err(|e| e.at(format!("{bf}.broker_name")))?,
                broker_id,
                role: broker_id.role(),
                endpoints: endpoints_from_proto(&format!("{bf}.endpoints"), b.endpoints)?,
                last_heartbeat_ms: b.last_heartbeat_ms,
                topic_count: b.topic_count,
            });
        }
        clusters.push(ClusterEntry {
            name: ClusterName::new(c.name).map_err(|e| e.at(format!("{field}.name")))?,
            brokers,
        });
    }
    Ok(ClusterInfo { clusters })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn request(topics: usize) -> pb::RegisterBrokerRequest {
        pb::RegisterBrokerRequest {
            broker: Some(pb::BrokerIdentity {
                cluster: "c".into(),
                broker_name: "b".into(),
                broker_id: 0,
            }),
            endpoints: vec![pb::Endpoint {
                protocol: "grpc".into(),
                address: "127.0.0.1:1".into(),
            }],
            topics: (0..topics)
                .map(|i| pb::TopicConfig {
                    name: format!("t{i}"),
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    permission: pb::Permission::ReadWrite.into(),
                    message_type: pb::MessageType::Normal.into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn field_of(r: pb::RegisterBrokerRequest) -> String {
        registration_from_proto(r, &Limits::default())
            .unwrap_err()
            .field
    }

    #[test]
    fn registration_round_trips() {
        let reg = registration_from_proto(request(3), &Limits::default()).unwrap();
        assert_eq!(reg.topics.len(), 3);
        assert_eq!(registration_to_proto(&reg), request(3));
    }

    #[test]
    fn every_wire_field_is_checked() {
        assert_eq!(field_of(request(4_097)), "topics");
        let mut r = request(1);
        r.broker = None;
        assert_eq!(field_of(r), "broker");
        let mut r = request(1);
        r.broker.as_mut().unwrap().broker_name = "x".repeat(200);
        assert_eq!(field_of(r), "broker.broker_name");
        let mut r = request(1);
        r.endpoints.clear();
        assert_eq!(field_of(r), "endpoints");
        let mut r = request(1);
        r.endpoints.push(r.endpoints[0].clone());
        assert_eq!(field_of(r), "endpoints[1].protocol");
        let mut r = request(1);
        r.endpoints[0].address = String::new();
        assert_eq!(field_of(r), "endpoints[0].address");
        let mut r = request(2);
        r.topics[1].name = String::new();
        assert_eq!(field_of(r), "topics[1].name");
        let mut r = request(2);
        r.topics[1].name = "t0".into();
        assert_eq!(field_of(r), "topics[1].name");
        let mut r = request(1);
        r.topics[0].write_queue_nums = 1 << 20;
        assert_eq!(field_of(r), "topics[0].write_queue_nums");
        let mut r = request(1);
        r.topics[0].read_queue_nums = 0;
        r.topics[0].write_queue_nums = 0;
        assert_eq!(field_of(r), "topics[0]");
        let mut r = request(1);
        r.topics[0].permission = 0;
        assert_eq!(field_of(r), "topics[0].permission");
        let mut r = request(1);
        r.topics[0].message_type = 99;
        assert_eq!(field_of(r), "topics[0].message_type");
    }
}
