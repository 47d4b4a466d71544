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

/// A registration id made of `n`.
fn rid(n: u8) -> RegistrationId {
    RegistrationId::from_bytes([n; 16])
}

/// Registers as the instance's own registrant: presents its live id, if any; a new one gets
/// `rid(0xee)`.
fn register(
    t: &mut RouteTables,
    r: BrokerRegistration,
    now: Timestamp,
) -> Result<Registered, RouteError> {
    let presented = t.brokers().registration_of(&r.identity);
    t.register(r, presented, rid(0xee), now)
}

/// A heartbeat of the instance's own registrant.
fn heartbeat(t: &mut RouteTables, identity: &BrokerIdentity, now: Timestamp) -> bool {
    let presented = t.brokers().registration_of(identity);
    t.heartbeat(identity, presented, now).unwrap()
}

/// An unregistration by the instance's own registrant.
fn unregister(t: &mut RouteTables, identity: &BrokerIdentity) -> bool {
    let presented = t.brokers().registration_of(identity);
    t.unregister(identity, presented).unwrap()
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
    let r = register(
        &mut t,
        registration("a", 0, 1, &[("orders", 4), ("audit", 1)]),
        now,
    )
    .unwrap();
    assert!(r.new && r.routes_updated && r.displaced.is_empty());
    register(&mut t, registration("b", 0, 2, &[("orders", 8)]), now).unwrap();
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
    register(
        &mut t,
        registration("a", 0, 1, &[("orders", 4)]),
        Timestamp::now(),
    )
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
    register(&mut t, registration("a", 0, 1, &[("x", 4), ("y", 4)]), now).unwrap();
    register(&mut t, registration("b", 0, 2, &[("y", 2)]), now).unwrap();
    let r = register(&mut t, registration("a", 0, 1, &[("y", 16), ("z", 1)]), now).unwrap();
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
    register(&mut t, reg, now).unwrap();
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
    register(
        &mut t,
        registration("a", 0, 1, &[("x", 4), ("y", 4)]),
        start,
    )
    .unwrap();
    register(&mut t, registration("b", 0, 2, &[("y", 2)]), start).unwrap();

    // b keeps heartbeating, a goes silent.
    let later = start.after(Duration::from_millis(100_000));
    assert!(heartbeat(&mut t, &identity("c1", "b", 0), later));
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
    assert!(!heartbeat(&mut t, &identity("c1", "a", 0), end));
    assert_eq!(t.cluster_info().brokers().count(), 1);
}

#[test]
fn unregister_removes_at_once_and_is_idempotent() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    register(&mut t, registration("a", 0, 1, &[("x", 4)]), now).unwrap();
    register(&mut t, registration("b", 0, 2, &[("x", 4)]), now).unwrap();
    assert!(
        !unregister(&mut t, &identity("other", "a", 0)),
        "cluster must match"
    );
    assert!(unregister(&mut t, &identity("c1", "a", 0)));
    assert!(!unregister(&mut t, &identity("c1", "a", 0)));
    assert_consistent(&t);
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.queues.len(), 1);
    assert!(unregister(&mut t, &identity("c1", "b", 0)));
    assert!(t.topics().is_empty());
    assert_eq!(t.brokers().group_count(), 0);
    assert!(t.cluster_info().clusters.is_empty());
}

#[test]
fn master_decides_queues_and_slaves_keep_reads_alive() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    register(&mut t, registration("a", 0, 1, &[("x", 4)]), now).unwrap();
    // A slave's own topic list does not change the group's queues while the master lives.
    let r = register(
        &mut t,
        registration("a", 1, 2, &[("x", 1), ("other", 1)]),
        now,
    )
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
    assert!(unregister(&mut t, &identity("c1", "a", 0)));
    assert_consistent(&t);
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.queues[0].permission, Permission::Read);
    assert_eq!(x.queues[0].read_queues, 4);
    assert!(x.brokers[0].master_endpoint("grpc").is_none());

    // Without a master the lowest-id member is authoritative.
    let r = register(&mut t, registration("a", 1, 2, &[("x", 2)]), now).unwrap();
    assert!(r.routes_updated);
    assert_eq!(t.route(&tn("x")).unwrap().queues[0].read_queues, 2);

    // The master is back: write access again.
    register(&mut t, registration("a", 0, 1, &[("x", 4)]), now).unwrap();
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.queues[0].permission, Permission::ReadWrite);
}

#[test]
fn role_switch_replaces_the_old_entry() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    register(&mut t, registration("a", 0, 1, &[("x", 4)]), now).unwrap();
    t.register(registration("a", 1, 2, &[("x", 4)]), None, rid(1), now)
        .unwrap();
    unregister(&mut t, &identity("c1", "a", 0));
    // Someone else claiming the slave's address as the master is refused.
    let err = t
        .register(registration("a", 0, 2, &[("x", 9)]), None, rid(2), now)
        .unwrap_err();
    assert_eq!(
        err,
        RouteError::EndpointHeld {
            broker_name: BrokerName::new("a").unwrap(),
            holder: BrokerId(1),
            address: "10.0.0.1:2".into()
        }
    );
    // The slave at port 2 is promoted and registers as master with the same address, presenting
    // its registration id.
    let r = t
        .register(
            registration("a", 0, 2, &[("x", 4)]),
            Some(rid(1)),
            rid(3),
            now,
        )
        .unwrap();
    assert_eq!(r.displaced, vec![BrokerId(1)]);
    assert_eq!(r.registration_id, rid(3));
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
    register(&mut t, registration("a", 0, 1, &[("x", 4)]), now).unwrap();
    let mut other = registration("a", 1, 2, &[("y", 4)]);
    other.identity.cluster = ClusterName::new("c2").unwrap();
    assert!(matches!(
        register(&mut t, other, now),
        Err(RouteError::ClusterConflict { .. })
    ));
    register(&mut t, registration("b", 0, 2, &[("x", 4)]), now).unwrap();
    assert_eq!(
        register(&mut t, registration("c", 0, 3, &[("x", 4)]), now),
        Err(RouteError::TooManyBrokers { max: 2 })
    );
    // Re-registering a known instance is still allowed at the limit.
    register(&mut t, registration("b", 0, 2, &[("x", 2)]), now).unwrap();
    assert_consistent(&t);
    assert_eq!(t.route(&tn("x")).unwrap().queues.len(), 2);
    assert!(t.route(&tn("y")).is_err());
}

#[test]
fn cluster_info_reports_roles_endpoints_and_heartbeats() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    register(&mut t, registration("a", 0, 1, &[("x", 4), ("y", 1)]), now).unwrap();
    register(&mut t, registration("a", 1, 2, &[]), now).unwrap();
    let mut b = registration("b", 0, 3, &[]);
    b.identity.cluster = ClusterName::new("c0").unwrap();
    register(&mut t, b, now).unwrap();
    let later = now.after(Duration::from_secs(5));
    heartbeat(&mut t, &identity("c1", "a", 1), later);

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

#[test]
fn a_live_instance_belongs_to_its_registrant() {
    let mut t = RouteTables::new(16);
    let now = Timestamp::now();
    let a = identity("c1", "a", 0);
    let r = t
        .register(registration("a", 0, 1, &[("x", 4)]), None, rid(1), now)
        .unwrap();
    assert!(r.new);
    assert_eq!(r.registration_id, rid(1));

    // Nobody else renews it (with another endpoint or the same), heartbeats or unregisters it.
    for presented in [None, Some(rid(9))] {
        for port in [1, 66] {
            let err = t
                .register(
                    registration("a", 0, port, &[("y", 1)]),
                    presented,
                    rid(2),
                    now,
                )
                .unwrap_err();
            assert_eq!(err, RouteError::Held(a.clone()));
        }
        assert_eq!(
            t.heartbeat(&a, presented, now),
            Err(RouteError::NotRegistrant(a.clone()))
        );
        assert_eq!(
            t.unregister(&a, presented),
            Err(RouteError::NotRegistrant(a.clone()))
        );
    }
    assert_consistent(&t);
    let x = t.route(&tn("x")).unwrap();
    assert_eq!(x.brokers[0].master_endpoint("grpc"), Some("10.0.0.1:1"));
    assert!(t.route(&tn("y")).is_err());

    // Its registrant renews it and keeps its id, heartbeats, unregisters.
    let r = t
        .register(
            registration("a", 0, 1, &[("y", 1)]),
            Some(rid(1)),
            rid(3),
            now,
        )
        .unwrap();
    assert!(!r.new);
    assert_eq!(r.registration_id, rid(1));
    assert_eq!(t.heartbeat(&a, Some(rid(1)), now), Ok(true));
    assert_eq!(t.unregister(&a, Some(rid(1))), Ok(true));

    // Unknown instances: heartbeats say so, unregistering is a no-op, whatever is presented.
    assert_eq!(t.heartbeat(&a, Some(rid(1)), now), Ok(false));
    assert_eq!(t.unregister(&a, None), Ok(false));

    // Once free (unregistered, or expired), the identity can be registered by anyone.
    let r = t
        .register(
            registration("a", 0, 66, &[("x", 4)]),
            Some(rid(1)),
            rid(4),
            now,
        )
        .unwrap();
    assert_eq!(
        r.registration_id,
        rid(4),
        "a new registration gets a fresh id"
    );
    let later = now.after(Duration::from_secs(200));
    assert_eq!(t.expire(later, Duration::from_secs(120)), vec![a.clone()]);
    t.register(registration("a", 0, 77, &[("x", 4)]), None, rid(5), later)
        .unwrap();
    assert_eq!(
        t.route(&tn("x")).unwrap().brokers[0].master_endpoint("grpc"),
        Some("10.0.0.1:77")
    );
}

#[test]
fn the_same_broker_restarted_replaces_its_stale_registration() {
    let mut t = RouteTables::new(8);
    let now = Timestamp::now();
    let a = identity("c1", "a", 0);
    let host = Origin {
        peer_ip: "10.0.0.1".parse().ok(),
        certificate: Some([7; 32]),
    };
    let signed = |origin: Origin| Registrant {
        presented: None,
        origin,
        signed: true,
    };
    let two_endpoints = |first: &str, second: &str| {
        let mut r = registration("a", 0, 1, &[("x", 4)]);
        r.endpoints = vec![
            Endpoint::new(first, "10.0.0.1:1").unwrap(),
            Endpoint::new(second, "10.0.0.1:2").unwrap(),
        ];
        r
    };
    let r = t
        .register(two_endpoints("grpc", "http"), signed(host), rid(1), now)
        .unwrap();
    assert!(r.new && !r.restarted);

    // Not the same broker: unsigned, from elsewhere, another certificate or none, an unknown
    // address, other endpoints. All refused while the registration lives.
    let elsewhere = Origin {
        peer_ip: "10.0.0.9".parse().ok(),
        ..host
    };
    let other_cert = Origin {
        certificate: Some([8; 32]),
        ..host
    };
    let no_cert = Origin {
        certificate: None,
        ..host
    };
    let unknown = Origin {
        peer_ip: None,
        ..host
    };
    let unsigned = Registrant {
        signed: false,
        ..signed(host)
    };
    for (who, r) in [
        (unsigned, two_endpoints("grpc", "http")),
        (signed(elsewhere), two_endpoints("grpc", "http")),
        (signed(other_cert), two_endpoints("grpc", "http")),
        (signed(no_cert), two_endpoints("grpc", "http")),
        (signed(unknown), two_endpoints("grpc", "http")),
        (signed(host), registration("a", 0, 1, &[("x", 4)])),
        (signed(host), two_endpoints("grpc", "mqtt")),
    ] {
        assert_eq!(
            t.register(r, who, rid(9), now).unwrap_err(),
            RouteError::Held(a.clone()),
            "{who:?}"
        );
    }
    assert_eq!(t.brokers().registration_of(&a), Some(rid(1)));

    // The same broker (endpoints in another order are the same set), restarted with other
    // topics: it replaces its registration at once and gets a fresh id; the old id is void.
    let mut restarted = two_endpoints("grpc", "http");
    restarted.endpoints.swap(0, 1);
    restarted.topics = vec![topic("y", 2)];
    let r = t.register(restarted, signed(host), rid(2), now).unwrap();
    assert!(r.restarted && !r.new && r.routes_updated);
    assert_eq!(r.registration_id, rid(2));
    assert_eq!(t.brokers().member_count(), 1);
    assert!(t.route(&tn("x")).is_err());
    assert_eq!(t.route(&tn("y")).unwrap().queues[0].read_queues, 2);
    assert_eq!(
        t.heartbeat(&a, Some(rid(1)), now),
        Err(RouteError::NotRegistrant(a.clone()))
    );
    assert_eq!(t.heartbeat(&a, Some(rid(2)), now), Ok(true));
    assert_consistent(&t);
}
