#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;
use crate::model::{Endpoint, MessageType, Permission, Role, TopicConfig};

fn identity(cluster: &str, name: &str, id: u64) -> BrokerIdentity {
    BrokerIdentity {
        cluster: ClusterName::new(cluster).unwrap(),
        broker_name: BrokerName::new(name).unwrap(),
        broker_id: BrokerId(id),
    }
}

fn topic(name: &str, queues: u32) -> TopicConfig {
    TopicConfig::new(TopicName::new(name).unwrap(), queues)
}

fn registration(name: &str, id: u64, port: u16, topics: &[(&str, u32)]) -> BrokerRegistration {
    BrokerRegistration {
        identity: identity("c1", name, id),
        endpoints: vec![Endpoint::new("grpc", format!("10.0.0.1:{port}")).unwrap()],
        topics: topics.iter().map(|(t, q)| topic(t, *q)).collect(),
    }
}

fn tn(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

/// Checks invariants 1 and 2 of the module doc.
fn assert_consistent(t: &RouteTables) {
    assert_eq!(t.live().len(), t.brokers().member_count());
    for (name, id) in t.live().entries.keys() {
        let group = t
            .brokers()
            .group(name.as_str())
            .expect("live instance has a group");
        assert!(group.members.contains_key(id));
    }
    for groups in t.topics().topics.values() {
        assert!(!groups.is_empty());
        for name in groups.keys() {
            let group = t
                .brokers()
                .group(name.as_str())
                .expect("routed group exists");
            assert!(!group.members.is_empty());
        }
    }
}

#[test]
fn register_then_route_lists_every_group() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    let r = t
        .register(registration("a", 0, 1, &[("orders", 4), ("audit", 1)]), now)
        .unwrap();
    assert!(r.new && r.routes_updated && r.displaced.is_empty());
    t.register(registration("b", 0, 2, &[("orders", 8)]), now)
        .unwrap();
    assert_consistent(&t);

    let route = t.route(&tn("orders")).unwrap();
    assert_eq!(route.queues.len(), 2);
    assert_eq!(route.queues[0].broker_name.as_str(), "a");
    assert_eq!(route.queues[0].write_queues, 4);
    assert_eq!(route.queues[1].broker_name.as_str(), "b");
    assert_eq!(route.queues[1].read_queues, 8);
    assert_eq!(route.queues[1].permission, Permission::ReadWrite);
    assert_eq!(
        route.broker("b").unwrap().master_endpoint("grpc"),
        Some("10.0.0.1:2")
    );
    assert_eq!(route.brokers[0].cluster.as_str(), "c1");
    assert_eq!(t.route(&tn("audit")).unwrap().queues.len(), 1);
}

#[test]
fn unknown_topic_is_not_found() {
    let mut t = RouteTables::new(16);
    assert_eq!(
        t.route(&tn("nope")),
        Err(RouteError::TopicNotFound(tn("nope")))
    );
    t.register(registration("a", 0, 1, &[("orders", 4)]), Timestamp::now())
        .unwrap();
    assert!(matches!(
        t.route(&tn("nope")),
        Err(RouteError::TopicNotFound(_))
    ));
}

#[test]
fn re_register_replaces_the_topic_set() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    t.register(registration("a", 0, 1, &[("x", 4), ("y", 4)]), now)
        .unwrap();
    t.register(registration("b", 0, 2, &[("y", 2)]), now)
        .unwrap();
    let r = t
        .register(registration("a", 0, 1, &[("y", 16), ("z", 1)]), now)
        .unwrap();
    assert!(!r.new && r.routes_updated);
    assert_consistent(&t);

    assert!(matches!(
        t.route(&tn("x")),
        Err(RouteError::TopicNotFound(_))
    ));
    let y = t.route(&tn("y")).unwrap();
    assert_eq!(y.queues.len(), 2);
    assert_eq!(y.queues[0].read_queues, 16);
    assert_eq!(t.route(&tn("z")).unwrap().queues.len(), 1);
    assert_eq!(t.topics().len(), 2);
    assert_eq!(t.brokers().member_count(), 2);

    // A registration may also change the queue config and the type.
    let mut reg = registration("b", 0, 2, &[]);
    reg.topics.push(TopicConfig {
        name: tn("y"),
        read_queues: 3,
        write_queues: 0,
        permission: Permission::Read,
        message_type: MessageType::Fifo,
    });
    t.register(reg, now).unwrap();
    let y = t.route(&tn("y")).unwrap();
    assert_eq!(y.queues[1].read_queues, 3);
    assert_eq!(y.queues[1].write_queues, 0);
    assert_eq!(y.queues[1].permission, Permission::Read);
    assert_eq!(y.queues[1].message_type, MessageType::Fifo);
}

#[test]
fn expiry_removes_a_brokers_queues_from_every_route() {
    let mut t = RouteTables::new(16);
    let start = Timestamp::now();
    let expiry = Duration::from_millis(120_000);
    t.register(registration("a", 0, 1, &[("x", 4), ("y", 4)]), start)
        .unwrap();
    t.register(registration("b", 0, 2, &[("y", 2)]), start)
        .unwrap();

    // b keeps heartbeating, a goes silent.
    let later = start.after(Duration::from_millis(100_000));
    assert!(t.heartbeat(&identity("c1", "b", 0), later));
    assert!(t.expire(later, expiry).is_empty());

    let end = start.after(Duration::from_millis(120_001));
    let removed = t.expire(end, expiry);
    assert_eq!(removed, vec![identity("c1", "a", 0)]);
    assert_consistent(&t);
    assert!(matches!(
        t.route(&tn("x")),
        Err(RouteError::TopicNotFound(_))
    ));
    let y = t.route(&tn("y")).unwrap();
    assert_eq!(y.queues.len(), 1);
    assert_eq!(y.queues[0].broker_name.as_str(), "b");
    assert_eq!(y.brokers.len(), 1);
    assert!(!t.heartbeat(&identity("c1", "a", 0), end));
    assert_eq!(t.cluster_info().brokers().count(), 1);
}

#[test]
fn unregister_removes_at_once_and_is_idempotent() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    t.register(registration("a", 0, 1, &[("x", 4)]), now)
        .unwrap();
    t.register(registration("b", 0, 2, &[("x", 4)]), now)
        .unwrap();
    assert!(
        !t.unregister(&identity("other", "a", 0)),
        "cluster must match"
    );
    assert!(t.unregister(&identity("c1", "a", 0)));
    assert!(!t.unregister(&identity("c1", "a", 0)));
    assert_consistent(&t);
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.queues.len(), 1);
    assert!(t.unregister(&identity("c1", "b", 0)));
    assert!(t.topics().is_empty());
    assert_eq!(t.brokers().group_count(), 0);
    assert!(t.cluster_info().clusters.is_empty());
}

#[test]
fn master_decides_queues_and_slaves_keep_reads_alive() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    t.register(registration("a", 0, 1, &[("x", 4)]), now)
        .unwrap();
    // A slave's own topic list does not change the group's queues while the master lives.
    let r = t
        .register(registration("a", 1, 2, &[("x", 1), ("other", 1)]), now)
        .unwrap();
    assert!(r.new && !r.routes_updated);
    assert!(t.route(&tn("other")).is_err());
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.queues[0].read_queues, 4);
    assert_eq!(x.brokers[0].addresses.len(), 2);
    assert_eq!(
        x.brokers[0].endpoint(BrokerId(1), "grpc"),
        Some("10.0.0.1:2")
    );

    // Master gone: the queues stay, read-only, served by the slave.
    assert!(t.unregister(&identity("c1", "a", 0)));
    assert_consistent(&t);
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.queues[0].permission, Permission::Read);
    assert_eq!(x.queues[0].read_queues, 4);
    assert!(x.brokers[0].master_endpoint("grpc").is_none());

    // Without a master the lowest-id member is authoritative.
    let r = t
        .register(registration("a", 1, 2, &[("x", 2)]), now)
        .unwrap();
    assert!(r.routes_updated);
    assert_eq!(t.route(&tn("x")).unwrap().queues[0].read_queues, 2);

    // The master is back: write access again.
    t.register(registration("a", 0, 1, &[("x", 4)]), now)
        .unwrap();
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.queues[0].permission, Permission::ReadWrite);
}

#[test]
fn role_switch_replaces_the_old_entry() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    t.register(registration("a", 0, 1, &[("x", 4)]), now)
        .unwrap();
    t.register(registration("a", 1, 2, &[("x", 4)]), now)
        .unwrap();
    t.unregister(&identity("c1", "a", 0));
    // The slave at port 2 is promoted and registers as master with the same address.
    let r = t
        .register(registration("a", 0, 2, &[("x", 4)]), now)
        .unwrap();
    assert_eq!(r.displaced, vec![BrokerId(1)]);
    assert_consistent(&t);
    let group = t.brokers().group("a").unwrap();
    assert_eq!(
        group.members.keys().copied().collect::<Vec<_>>(),
        vec![BrokerId(0)]
    );
}

#[test]
fn cluster_conflict_and_broker_limit_change_nothing() {
    let mut t = RouteTables::new(2);
    let now = Timestamp::now();
    t.register(registration("a", 0, 1, &[("x", 4)]), now)
        .unwrap();
    let mut other = registration("a", 1, 2, &[("y", 4)]);
    other.identity.cluster = ClusterName::new("c2").unwrap();
    assert!(matches!(
        t.register(other, now),
        Err(RouteError::ClusterConflict { .. })
    ));
    t.register(registration("b", 0, 2, &[("x", 4)]), now)
        .unwrap();
    assert_eq!(
        t.register(registration("c", 0, 3, &[("x", 4)]), now),
        Err(RouteError::TooManyBrokers { max: 2 })
    );
    // Re-registering a known instance is still allowed at the limit.
    t.register(registration("b", 0, 2, &[("x", 2)]), now)
        .unwrap();
    assert_consistent(&t);
    assert_eq!(t.route(&tn("x")).unwrap().queues.len(), 2);
    assert!(t.route(&tn("y")).is_err());
}

#[test]
fn cluster_info_reports_roles_endpoints_and_heartbeats() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    t.register(registration("a", 0, 1, &[("x", 4), ("y", 1)]), now)
        .unwrap();
    t.register(registration("a", 1, 2, &[]), now).unwrap();
    let mut b = registration("b", 0, 3, &[]);
    b.identity.cluster = ClusterName::new("c0").unwrap();
    t.register(b, now).unwrap();
    let later = now.after(Duration::from_secs(5));
    t.heartbeat(&identity("c1", "a", 1), later);

    let info = t.cluster_info();
    let names: Vec<&str> = info.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["c0", "c1"]);
    let c1 = &info.clusters[1].brokers;
    assert_eq!(c1.len(), 2);
    assert_eq!(c1[0].role, Role::Master);
    assert_eq!(c1[0].topic_count, 2);
    assert_eq!(c1[0].last_heartbeat_ms, now.unix_ms);
    assert_eq!(c1[1].role, Role::Slave);
    assert_eq!(c1[1].last_heartbeat_ms, later.unix_ms);
    assert_eq!(c1[1].endpoints[0].address(), "10.0.0.1:2");
}
