//! Messages from the core to the client: matching, QoS, core acknowledgements, the in-flight
//! window and backlog, outgoing topic aliases and the client's Maximum Packet Size.

use rumqttc::v5::mqttbytes::v5::{PubAck, PubComp, PubRec};

use super::*;
use crate::codec;

fn config_window(max_inflight: u16) -> MqttConfig {
    MqttConfig {
        max_inflight,
        ..MqttConfig::default()
    }
}

#[test]
fn a_delivery_goes_out_if_a_subscription_matches_else_it_is_acknowledged() {
    let mut m = v5();
    subscribe(&mut m, 1, vec![filter("t/#", QoS::AtLeastOnce)]);
    assert_eq!(
        deliver(&mut m, delivery("r0", message("u/x", 1, b"no"))),
        vec![ack_core("r0")]
    );
    // Published at QoS 2, subscribed at QoS 1: sent at QoS 1, kept in flight.
    let actions = deliver(&mut m, delivery("r1", message("t/1", 2, b"yes")));
    let sent = publishes(&actions);
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (
            sent[0].qos,
            sent[0].pkid,
            &sent[0].topic[..],
            sent[0].retain
        ),
        (QoS::AtLeastOnce, 1, &b"t/1"[..], false)
    );
    // The core hears of it when the client acknowledges.
    assert_eq!(
        packet(&mut m, Packet::PubAck(PubAck::new(1, None))),
        vec![ack_core("r1")]
    );
    // An unknown or repeated PUBACK changes nothing.
    assert_eq!(packet(&mut m, Packet::PubAck(PubAck::new(1, None))), vec![]);
    // Published at QoS 0: sent and acknowledged to the core at once.
    let actions = deliver(&mut m, delivery("r2", message("t/2", 0, b"fire")));
    assert_eq!(actions.len(), 2);
    assert_eq!(publishes(&actions)[0].qos, QoS::AtMostOnce);
    assert_eq!(actions[1], ack_core("r2"));
}

#[test]
fn expired_and_own_no_local_messages_are_dropped() {
    let mut m = v5();
    let mut f = filter("t/#", QoS::AtLeastOnce);
    f.nolocal = true;
    subscribe(&mut m, 1, vec![f]);
    let mut own = message("t/1", 1, b"mine");
    own.properties
        .insert(crate::topic::PROP_CLIENT.into(), CLIENT.into());
    assert_eq!(deliver(&mut m, delivery("r1", own)), vec![ack_core("r1")]);
    let mut old = message("t/1", 1, b"old");
    old.properties.insert("mqttExpiresAt".into(), "1000".into());
    assert_eq!(deliver(&mut m, delivery("r2", old)), vec![ack_core("r2")]);
}

#[test]
fn overlapping_subscriptions_deliver_once_with_the_highest_qos() {
    let mut m = v5();
    subscribe(&mut m, 1, vec![filter("t/#", QoS::AtMostOnce)]);
    let actions = packet(
        &mut m,
        subscribe_packet(2, Some(7), vec![filter("t/+", QoS::ExactlyOnce)]),
    );
    assert!(matches!(actions[..], [Action::StartSubscription(_)]));
    step(&mut m, Input::SubscriptionStarted(Ok(())));
    let actions = deliver(&mut m, delivery("r1", message("t/1", 2, b"x")));
    let sent = publishes(&actions);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].qos, QoS::ExactlyOnce);
    assert_eq!(
        sent[0]
            .properties
            .as_ref()
            .map(|p| p.subscription_identifiers.clone()),
        Some(vec![7])
    );
}

#[test]
fn a_shared_delivery_matches_only_its_own_subscription() {
    let mut m = v5();
    subscribe(
        &mut m,
        1,
        vec![
            filter("$share/g/t/#", QoS::AtLeastOnce),
            filter("t/1", QoS::AtMostOnce),
        ],
    );
    let mut d = delivery("r1", message("t/1", 1, b"x"));
    d.shared = Some(Arc::from("$share/g/t/#"));
    assert_eq!(publishes(&deliver(&mut m, d))[0].qos, QoS::AtLeastOnce);
    let mut d = delivery("r2", message("t/2", 1, b"x"));
    d.shared = Some(Arc::from("$share/other/t/#"));
    assert_eq!(deliver(&mut m, d), vec![ack_core("r2")]);
    // A plain delivery ignores the shared subscription.
    let actions = deliver(&mut m, delivery("r3", message("t/1", 1, b"x")));
    assert_eq!(publishes(&actions)[0].qos, QoS::AtMostOnce);
}

#[test]
fn outgoing_qos2_is_acknowledged_to_the_core_on_pubrec() {
    let mut m = v4();
    subscribe(&mut m, 1, vec![filter("t", QoS::ExactlyOnce)]);
    let actions = deliver(&mut m, delivery("r1", message("t", 2, b"x")));
    assert_eq!(publishes(&actions)[0].pkid, 1);
    assert_eq!(
        packet(&mut m, Packet::PubRec(PubRec::new(1, None))),
        vec![ack_core("r1"), Action::Send(codec::pubrel(1))]
    );
    // A repeated PUBREC is answered, not acknowledged twice.
    assert_eq!(
        packet(&mut m, Packet::PubRec(PubRec::new(1, None))),
        vec![Action::Send(codec::pubrel(1))]
    );
    assert_eq!(
        packet(&mut m, Packet::PubComp(PubComp::new(1, None))),
        vec![]
    );
    // A PUBCOMP for a message not released is ignored.
    deliver(&mut m, delivery("r2", message("t", 2, b"x")));
    assert_eq!(
        packet(&mut m, Packet::PubComp(PubComp::new(2, None))),
        vec![]
    );
    assert_eq!(
        packet(&mut m, Packet::PubRec(PubRec::new(2, None))),
        vec![ack_core("r2"), Action::Send(codec::pubrel(2))]
    );
}

#[test]
fn the_window_holds_deliveries_back_and_the_backlog_goes_first() {
    let config = config_window(2);
    let mut m = machine(&config, Version::V5);
    subscribe(&mut m, 1, vec![filter("t", QoS::AtLeastOnce)]);
    deliver(&mut m, delivery("r1", message("t", 1, b"1")));
    assert!(m.window_open() && m.can_deliver());
    deliver(&mut m, delivery("r2", message("t", 1, b"2")));
    assert!(!m.window_open() && !m.can_deliver());
    packet(&mut m, Packet::PubAck(PubAck::new(1, None)));
    assert!(m.can_deliver());

    // Deliveries kept by the session from its last connection wait for the window.
    let mut s = SessionState::new(CLIENT);
    s.present = true;
    s.record.expiry_secs = None;
    s.record.subscriptions.insert(
        "t".into(),
        crate::session::Subscription {
            filter: "t".into(),
            qos: 1,
            no_local: false,
            retain_as_published: false,
            id: None,
        },
    );
    for r in ["b1", "b2", "b3"] {
        s.pending
            .push_back(delivery(r, message("t", 1, r.as_bytes())));
    }
    let (mut m, _, _) = start_with(
        &config_window(1),
        Version::V4,
        connect_packet(CLIENT, false, None),
        None,
        s,
    );
    assert!(!m.can_deliver(), "the backlog goes before new deliveries");
    let actions = step(&mut m, Input::Backlog { now_ms: 1 });
    assert_eq!(publishes(&actions).len(), 1);
    assert_eq!(&publishes(&actions)[0].payload[..], b"b1");
    assert_eq!(step(&mut m, Input::Backlog { now_ms: 1 }), vec![]);
    packet(&mut m, Packet::PubAck(PubAck::new(1, None)));
    let actions = step(&mut m, Input::Backlog { now_ms: 1 });
    assert_eq!(&publishes(&actions)[0].payload[..], b"b2");
}

#[test]
fn the_clients_receive_maximum_caps_the_window() {
    let props = ConnectProperties {
        receive_maximum: Some(1),
        ..ConnectProperties::new()
    };
    let (mut m, _, _) = start_with(
        &MqttConfig::default(),
        Version::V5,
        connect_packet(CLIENT, true, Some(props)),
        None,
        SessionState::new(CLIENT),
    );
    subscribe(&mut m, 1, vec![filter("t", QoS::AtLeastOnce)]);
    deliver(&mut m, delivery("r1", message("t", 1, b"1")));
    assert!(!m.window_open());
}

#[test]
fn outgoing_aliases_and_the_clients_maximum_packet_size() {
    let props = ConnectProperties {
        topic_alias_max: Some(1),
        max_packet_size: Some(64),
        ..ConnectProperties::new()
    };
    let (mut m, _, _) = start_with(
        &MqttConfig::default(),
        Version::V5,
        connect_packet(CLIENT, true, Some(props)),
        None,
        SessionState::new(CLIENT),
    );
    subscribe(&mut m, 1, vec![filter("t/#", QoS::AtMostOnce)]);
    let first = deliver(&mut m, delivery("r1", message("t/1", 0, b"a")));
    let p = publishes(&first)[0];
    assert_eq!((&p.topic[..], alias(p)), (&b"t/1"[..], Some(1)));
    let again = deliver(&mut m, delivery("r2", message("t/1", 0, b"b")));
    let p = publishes(&again)[0];
    assert_eq!((&p.topic[..], alias(p)), (&b""[..], Some(1)));
    // No alias left: the topic goes in full.
    let other = deliver(&mut m, delivery("r3", message("t/2", 0, b"c")));
    let p = publishes(&other)[0];
    assert_eq!((&p.topic[..], alias(p)), (&b"t/2"[..], None));
    // Larger than the client accepts: dropped, acknowledged to the core.
    let big = deliver(&mut m, delivery("r4", message("t/2", 0, &[0u8; 100])));
    assert_eq!(big, vec![ack_core("r4")]);
    // Just within the limit.
    let fits = message("t/2", 0, &[0u8; 40]);
    let p = crate::delivery::to_publish(&fits, QoS::AtMostOnce, false, true, &[], 1_000);
    assert!(codec::publish_size(&p, Version::V5) <= 64);
    assert_eq!(publishes(&deliver(&mut m, delivery("r5", fits))).len(), 1);
}

#[test]
fn v4_clients_never_get_aliases() {
    let mut m = v4();
    subscribe(&mut m, 1, vec![filter("t/#", QoS::AtMostOnce)]);
    for r in ["r1", "r2"] {
        let actions = deliver(&mut m, delivery(r, message("t/1", 0, b"a")));
        let p = publishes(&actions)[0];
        assert_eq!((&p.topic[..], &p.properties), (&b"t/1"[..], &None));
    }
}
