//! Client PUBLISH: QoS 0/1/2 flows, "ack after durable store", refusals, the Receive
//! Maximum, topic aliases and topic names.

use rumqttc::v5::mqttbytes::v5::{PingReq, PingResp, PubAckReason, PubRecReason, PubRel};

use super::*;
use crate::codec;

#[test]
fn qos1_is_acknowledged_only_once_stored_and_in_publish_order() {
    let mut m = v5();
    let (p1, p2) = (
        publish("a/b", QoS::AtLeastOnce, 1),
        publish("a/c", QoS::AtLeastOnce, 2),
    );
    assert_eq!(
        packet(&mut m, Packet::Publish(p1.clone())),
        vec![store_action(&p1, "a/b")]
    );
    assert_eq!(
        packet(&mut m, Packet::Publish(p2.clone())),
        vec![store_action(&p2, "a/c")]
    );
    let done = vec![
        stored(1, QoS::AtLeastOnce, Ok(())),
        stored(2, QoS::AtLeastOnce, Ok(())),
    ];
    assert_eq!(
        step(&mut m, Input::Stored(done)),
        vec![
            Action::Send(codec::puback(1, PubAckReason::Success)),
            Action::Send(codec::puback(2, PubAckReason::Success)),
        ]
    );
}

#[test]
fn qos0_is_stored_and_never_acknowledged() {
    let mut m = v4();
    let p = publish("a", QoS::AtMostOnce, 0);
    assert_eq!(
        packet(&mut m, Packet::Publish(p.clone())),
        vec![store_action(&p, "a")]
    );
    assert_eq!(
        step(
            &mut m,
            Input::Stored(vec![stored(0, QoS::AtMostOnce, Ok(()))])
        ),
        vec![]
    );
    // Refused QoS 0: nothing to say, even to a 3.1.1 client.
    packet(&mut m, Packet::Publish(p));
    let refused = stored(0, QoS::AtMostOnce, Err(PubAckReason::QuotaExceeded));
    assert_eq!(step(&mut m, Input::Stored(vec![refused])), vec![]);
}

#[test]
fn qos2_stores_once_per_packet_id() {
    let mut m = v5();
    let p = publish("a/b", QoS::ExactlyOnce, 7);
    assert_eq!(
        packet(&mut m, Packet::Publish(p.clone())),
        vec![store_action(&p, "a/b")]
    );
    // Retransmitted while being stored: dropped, its PUBREC follows.
    let mut dup = p.clone();
    dup.dup = true;
    assert_eq!(packet(&mut m, Packet::Publish(dup.clone())), vec![]);
    assert_eq!(
        step(
            &mut m,
            Input::Stored(vec![stored(7, QoS::ExactlyOnce, Ok(()))])
        ),
        vec![Action::Send(codec::pubrec(7, PubRecReason::Success))]
    );
    // Retransmitted after it was stored: PUBREC again, not stored again.
    assert_eq!(
        packet(&mut m, Packet::Publish(dup)),
        vec![Action::Send(codec::pubrec(7, PubRecReason::Success))]
    );
    assert_eq!(
        packet(&mut m, Packet::PubRel(PubRel::new(7, None))),
        vec![Action::Send(codec::pubcomp(7, true))]
    );
    // A PUBREL for an id not (or no longer) awaiting one.
    assert_eq!(
        packet(&mut m, Packet::PubRel(PubRel::new(7, None))),
        vec![Action::Send(codec::pubcomp(7, false))]
    );
    // Released: the id is free for a new message.
    assert_eq!(
        packet(&mut m, Packet::Publish(p.clone())),
        vec![store_action(&p, "a/b")]
    );
}

#[test]
fn a_refused_publish_gets_a_reason_code_or_closes_a_v4_connection() {
    let mut m = v5();
    packet(&mut m, Packet::Publish(publish("a", QoS::AtLeastOnce, 1)));
    packet(&mut m, Packet::Publish(publish("a", QoS::ExactlyOnce, 2)));
    packet(&mut m, Packet::Publish(publish("a", QoS::ExactlyOnce, 3)));
    let done = vec![
        stored(1, QoS::AtLeastOnce, Err(PubAckReason::QuotaExceeded)),
        stored(2, QoS::ExactlyOnce, Err(PubAckReason::NotAuthorized)),
        stored(3, QoS::ExactlyOnce, Err(PubAckReason::UnspecifiedError)),
    ];
    assert_eq!(
        step(&mut m, Input::Stored(done)),
        vec![
            Action::Send(codec::puback(1, PubAckReason::QuotaExceeded)),
            Action::Send(codec::pubrec(2, PubRecReason::NotAuthorized)),
            Action::Send(codec::pubrec(3, PubRecReason::ImplementationSpecificError)),
        ]
    );
    // A refused QoS 2 id is not awaiting PUBREL.
    assert_eq!(
        packet(&mut m, Packet::PubRel(PubRel::new(2, None))),
        vec![Action::Send(codec::pubcomp(2, false))]
    );

    // 3.1.1 has no negative acknowledgement: the others are acknowledged, then it closes.
    let mut m = v4();
    packet(&mut m, Packet::Publish(publish("a", QoS::AtLeastOnce, 1)));
    packet(&mut m, Packet::Publish(publish("a", QoS::AtLeastOnce, 2)));
    let done = vec![
        stored(1, QoS::AtLeastOnce, Err(PubAckReason::QuotaExceeded)),
        stored(2, QoS::AtLeastOnce, Ok(())),
    ];
    assert_eq!(
        step(&mut m, Input::Stored(done)),
        vec![
            Action::Send(codec::puback(2, PubAckReason::Success)),
            Action::Flush,
            Action::Close(End::Abnormal),
        ]
    );
    assert_eq!(packet(&mut m, Packet::PingReq(PingReq)), vec![]);
}

#[test]
fn a_publish_the_core_does_not_authorize_closes_a_v4_connection_whatever_its_qos() {
    // 3.1.1, QoS 0: nothing to answer, and no way to say no but closing.
    let mut m = v4();
    packet(&mut m, Packet::Publish(publish("a", QoS::AtMostOnce, 0)));
    let done = vec![stored(0, QoS::AtMostOnce, Err(PubAckReason::NotAuthorized))];
    assert_eq!(step(&mut m, Input::Stored(done)), failed_v4());
    // Any other refusal of a QoS 0 publish is not worth a close.
    let mut m = v4();
    packet(&mut m, Packet::Publish(publish("a", QoS::AtMostOnce, 0)));
    let done = vec![stored(0, QoS::AtMostOnce, Err(PubAckReason::QuotaExceeded))];
    assert_eq!(step(&mut m, Input::Stored(done)), vec![]);
    // v5: QoS 1 gets 0x87, QoS 0 is dropped.
    let mut m = v5();
    packet(&mut m, Packet::Publish(publish("a", QoS::AtMostOnce, 0)));
    packet(&mut m, Packet::Publish(publish("a", QoS::AtLeastOnce, 1)));
    let done = vec![
        stored(0, QoS::AtMostOnce, Err(PubAckReason::NotAuthorized)),
        stored(1, QoS::AtLeastOnce, Err(PubAckReason::NotAuthorized)),
    ];
    assert_eq!(
        step(&mut m, Input::Stored(done)),
        vec![Action::Send(codec::puback(1, PubAckReason::NotAuthorized))]
    );
}

#[test]
fn receive_maximum_disconnects_v5_and_stops_reading_v4() {
    let config = MqttConfig {
        receive_maximum: 2,
        ..MqttConfig::default()
    };
    let mut m = machine(&config, Version::V5);
    packet(&mut m, Packet::Publish(publish("a", QoS::AtLeastOnce, 1)));
    assert!(m.can_read());
    packet(&mut m, Packet::Publish(publish("a", QoS::ExactlyOnce, 2)));
    assert!(
        !m.can_read(),
        "the driver stops reading at the Receive Maximum"
    );
    assert_eq!(
        packet(&mut m, Packet::Publish(publish("a", QoS::AtLeastOnce, 3))),
        failed_v5(DisconnectReasonCode::ReceiveMaximumExceeded)
    );

    // Unreleased QoS 2 ids count too.
    let mut m = machine(&config, Version::V5);
    for id in [1, 2] {
        packet(&mut m, Packet::Publish(publish("a", QoS::ExactlyOnce, id)));
        step(
            &mut m,
            Input::Stored(vec![stored(id, QoS::ExactlyOnce, Ok(()))]),
        );
    }
    assert!(m.can_read());
    assert_eq!(
        packet(&mut m, Packet::Publish(publish("a", QoS::AtLeastOnce, 3))),
        failed_v5(DisconnectReasonCode::ReceiveMaximumExceeded)
    );

    // 3.1.1: a publish beyond the window (already in the read buffer) is taken...
    let mut m = machine(&config, Version::V4);
    for id in [1, 2, 3] {
        let p = publish("a", QoS::AtLeastOnce, id);
        assert_eq!(
            packet(&mut m, Packet::Publish(p.clone())),
            vec![store_action(&p, "a")]
        );
    }
    assert!(!m.can_read());
    let done = (1..=3)
        .map(|id| stored(id, QoS::AtLeastOnce, Ok(())))
        .collect();
    step(&mut m, Input::Stored(done));
    assert!(m.can_read());
    // ...but never more unreleased QoS 2 ids than the Receive Maximum.
    for id in [1, 2] {
        packet(&mut m, Packet::Publish(publish("a", QoS::ExactlyOnce, id)));
        step(
            &mut m,
            Input::Stored(vec![stored(id, QoS::ExactlyOnce, Ok(()))]),
        );
    }
    assert_eq!(
        packet(&mut m, Packet::Publish(publish("a", QoS::ExactlyOnce, 3))),
        failed_v4()
    );
}

#[test]
fn qos0_publishes_being_stored_hold_the_reader_too() {
    let config = MqttConfig {
        receive_maximum: 1,
        ..MqttConfig::default()
    };
    let mut m = machine(&config, Version::V4);
    packet(&mut m, Packet::Publish(publish("a", QoS::AtMostOnce, 0)));
    assert!(!m.can_read());
    step(
        &mut m,
        Input::Stored(vec![stored(0, QoS::AtMostOnce, Ok(()))]),
    );
    assert!(m.can_read());
}

#[test]
fn incoming_topic_aliases_bind_resolve_and_are_checked() {
    let config = MqttConfig {
        topic_alias_maximum: 2,
        ..MqttConfig::default()
    };
    let mut m = machine(&config, Version::V5);
    let bind = with_alias(publish("a/b", QoS::AtMostOnce, 0), 1);
    assert_eq!(
        packet(&mut m, Packet::Publish(bind.clone())),
        vec![store_action(&bind, "a/b")]
    );
    let reuse = with_alias(publish("", QoS::AtLeastOnce, 1), 1);
    let mut resolved = reuse.clone();
    resolved.topic = Bytes::from_static(b"a/b");
    assert_eq!(
        packet(&mut m, Packet::Publish(reuse)),
        vec![store_action(&resolved, "a/b")]
    );
    // Rebinding an alias.
    let rebind = with_alias(publish("c", QoS::AtMostOnce, 0), 1);
    packet(&mut m, Packet::Publish(rebind));
    let reuse = with_alias(publish("", QoS::AtMostOnce, 0), 1);
    let actions = packet(&mut m, Packet::Publish(reuse));
    assert!(matches!(&actions[..], [Action::Store { topic, .. }] if topic == "c"));

    for (p, reason) in [
        (
            with_alias(publish("a", QoS::AtMostOnce, 0), 3),
            DisconnectReasonCode::TopicAliasInvalid,
        ),
        (
            with_alias(publish("a", QoS::AtMostOnce, 0), 0),
            DisconnectReasonCode::TopicAliasInvalid,
        ),
        (
            with_alias(publish("", QoS::AtMostOnce, 0), 2),
            DisconnectReasonCode::ProtocolError,
        ),
    ] {
        let mut m = machine(&config, Version::V5);
        assert_eq!(packet(&mut m, Packet::Publish(p)), failed_v5(reason));
    }
}

fn answer(pkid: u16, qos: QoS, result: Result<(), PubAckReason>) -> Action {
    Action::Answer { pkid, qos, result }
}

#[test]
fn illegal_topic_names_get_0x90_in_turn_or_close() {
    for topic in ["a.b/c", "%DLQ%g/x", ""] {
        let mut m = v5();
        let a = publish("a", QoS::AtLeastOnce, 1);
        assert_eq!(
            packet(&mut m, Packet::Publish(a.clone())),
            vec![store_action(&a, "a")]
        );
        let invalid = Err(PubAckReason::TopicNameInvalid);
        assert_eq!(
            packet(&mut m, Packet::Publish(publish(topic, QoS::AtLeastOnce, 2))),
            vec![answer(2, QoS::AtLeastOnce, invalid)],
            "{topic:?}"
        );
        assert_eq!(
            packet(&mut m, Packet::Publish(publish(topic, QoS::ExactlyOnce, 3))),
            vec![answer(3, QoS::ExactlyOnce, invalid)]
        );
        // The refusals leave after the earlier publish's PUBACK: PUBLISH order.
        let done = vec![
            stored(1, QoS::AtLeastOnce, Ok(())),
            stored(2, QoS::AtLeastOnce, invalid),
            stored(3, QoS::ExactlyOnce, invalid),
        ];
        assert_eq!(
            step(&mut m, Input::Stored(done)),
            vec![
                Action::Send(codec::puback(1, PubAckReason::Success)),
                Action::Send(codec::puback(2, PubAckReason::TopicNameInvalid)),
                Action::Send(codec::pubrec(3, PubRecReason::TopicNameInvalid)),
            ]
        );
        assert_eq!(
            packet(&mut m, Packet::Publish(publish(topic, QoS::AtMostOnce, 0))),
            failed_v5(DisconnectReasonCode::TopicNameInvalid)
        );
        let mut m = v4();
        assert_eq!(
            packet(&mut m, Packet::Publish(publish(topic, QoS::AtLeastOnce, 1))),
            failed_v4()
        );
    }
    // Not UTF-8 (the codec refuses it first; the machine holds anyway).
    let mut m = v5();
    let mut p = publish("a", QoS::AtMostOnce, 0);
    p.topic = Bytes::from_static(&[0xff, 0xfe]);
    assert_eq!(
        packet(&mut m, Packet::Publish(p)),
        failed_v5(DisconnectReasonCode::TopicNameInvalid)
    );
}

#[test]
fn names_with_an_empty_first_level_are_stored() {
    for version in [Version::V4, Version::V5] {
        let mut m = machine(&MqttConfig::default(), version);
        for (i, topic) in ["/TopicA", "/a/b", "/"].into_iter().enumerate() {
            let p = publish(topic, QoS::AtLeastOnce, i as u16 + 1);
            assert_eq!(
                packet(&mut m, Packet::Publish(p.clone())),
                vec![store_action(&p, topic)]
            );
        }
    }
}

#[test]
fn reserved_topics_are_acknowledged_in_turn_and_never_stored() {
    for topic in ["$TopicA/B", "$SYS/x", "mqtt_sys_sessions"] {
        // 3.1.1: acknowledged like a stored publish, in PUBLISH order; the connection stays.
        let mut m = v4();
        let a = publish("a", QoS::AtLeastOnce, 1);
        assert_eq!(
            packet(&mut m, Packet::Publish(a.clone())),
            vec![store_action(&a, "a")]
        );
        for (pkid, qos) in [
            (2, QoS::AtLeastOnce),
            (3, QoS::ExactlyOnce),
            (0, QoS::AtMostOnce),
        ] {
            assert_eq!(
                packet(&mut m, Packet::Publish(publish(topic, qos, pkid))),
                vec![answer(pkid, qos, Ok(()))],
                "{topic} {qos:?}"
            );
        }
        let done = vec![
            stored(1, QoS::AtLeastOnce, Ok(())),
            stored(2, QoS::AtLeastOnce, Ok(())),
            stored(3, QoS::ExactlyOnce, Ok(())),
            stored(0, QoS::AtMostOnce, Ok(())),
        ];
        assert_eq!(
            step(&mut m, Input::Stored(done)),
            vec![
                Action::Send(codec::puback(1, PubAckReason::Success)),
                Action::Send(codec::puback(2, PubAckReason::Success)),
                Action::Send(codec::pubrec(3, PubRecReason::Success)),
            ]
        );
        assert_eq!(
            packet(&mut m, Packet::PubRel(PubRel::new(3, None))),
            vec![Action::Send(codec::pubcomp(3, true))]
        );
        assert_eq!(
            packet(&mut m, Packet::PingReq(PingReq)),
            vec![Action::Send(Packet::PingResp(PingResp))]
        );

        // v5: 0x87 Not authorized in turn; QoS 0 is dropped in silence.
        let mut m = v5();
        let refused = Err(PubAckReason::NotAuthorized);
        for (pkid, qos) in [
            (1, QoS::AtLeastOnce),
            (2, QoS::ExactlyOnce),
            (0, QoS::AtMostOnce),
        ] {
            assert_eq!(
                packet(&mut m, Packet::Publish(publish(topic, qos, pkid))),
                vec![answer(pkid, qos, refused)]
            );
        }
        let done = vec![
            stored(1, QoS::AtLeastOnce, refused),
            stored(2, QoS::ExactlyOnce, refused),
            stored(0, QoS::AtMostOnce, refused),
        ];
        assert_eq!(
            step(&mut m, Input::Stored(done)),
            vec![
                Action::Send(codec::puback(1, PubAckReason::NotAuthorized)),
                Action::Send(codec::pubrec(2, PubRecReason::NotAuthorized)),
            ]
        );
        assert_eq!(
            packet(&mut m, Packet::PingReq(PingReq)),
            vec![Action::Send(Packet::PingResp(PingResp))]
        );
    }
}
