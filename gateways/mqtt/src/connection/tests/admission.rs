//! CONNECT: admission, session start, CONNACK, and the machine's first actions.

use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, ConnectReturnCode, LastWill, LastWillProperties,
};

use super::*;
use crate::codec;
use crate::connection::connect::{Persist, SessionStart};
use crate::session::{Outgoing, Subscription};

fn admit(
    config: &MqttConfig,
    version: Version,
    connect: rumqttc::v5::mqttbytes::v5::Connect,
) -> Result<connect::Admission, ConnectReturnCode> {
    connect::admit(config, version, connect, None, || "rg-1".into())
}

fn subscription(filter: &str) -> Subscription {
    Subscription {
        filter: filter.into(),
        qos: 1,
        no_local: false,
        retain_as_published: false,
        id: None,
    }
}

/// A session that existed before (durable, one subscription, one message in flight).
fn existing() -> SessionState {
    let mut s = SessionState::new(CLIENT);
    s.present = true;
    s.durable = true;
    s.record.expiry_secs = None;
    s.record.disconnected_at_ms = Some(5);
    s.record
        .subscriptions
        .insert("a/#".into(), subscription("a/#"));
    s.outgoing.push_back(Outgoing {
        pkid: 3,
        publish: publish("a/b", QoS::AtLeastOnce, 3),
        ack: None,
        released: false,
    });
    s
}

#[test]
fn v4_clean_session_ends_at_disconnect_and_starts_empty() {
    let config = MqttConfig::default();
    let a = admit(&config, Version::V4, connect_packet(CLIENT, true, None)).unwrap();
    assert_eq!(a.client_id, CLIENT);
    assert_eq!(a.assigned, None);
    assert_eq!(a.expiry, Some(0));
    assert_eq!(a.keep_alive, 30);
    assert_eq!(a.client_receive_max, usize::from(u16::MAX));
    assert_eq!(a.client_max_packet, usize::MAX);
    assert_eq!(a.client_alias_max, 0);
    let mut s = existing();
    let start = a.start_session(&mut s);
    assert_eq!(
        start,
        SessionStart {
            present: false,
            delete_group: true,
            persist: Persist::Ended({
                let mut r = SessionState::new(CLIENT).record;
                r.deleted = true;
                r
            }),
        }
    );
    assert!(s.record.subscriptions.is_empty() && s.outgoing.is_empty());
    assert!(!s.durable && s.present);
    // 3.1.1: a bare CONNACK.
    assert_eq!(
        a.connack(&config, start.present),
        codec::connack(ConnectReturnCode::Success, false)
    );
}

#[test]
fn v4_persistent_session_is_present_never_expires_and_is_stored_first() {
    let config = MqttConfig::default();
    let a = admit(&config, Version::V4, connect_packet(CLIENT, false, None)).unwrap();
    assert_eq!(a.expiry, None);
    let mut s = existing();
    let start = a.start_session(&mut s);
    assert!(start.present && !start.delete_group);
    let Persist::Live(record) = &start.persist else {
        panic!("a persistent session is stored: {start:?}");
    };
    assert_eq!(record.expiry_secs, None);
    assert_eq!(record.disconnected_at_ms, None, "online again");
    assert!(record.subscriptions.contains_key("a/#"));
    assert!(a.connack(&config, start.present).session_present);
    // The machine retransmits what was in flight, with DUP, after CONNACK.
    let (_, first, _) = start_with(
        &config,
        Version::V4,
        connect_packet(CLIENT, false, None),
        None,
        existing(),
    );
    let mut dup = publish("a/b", QoS::AtLeastOnce, 3);
    dup.dup = true;
    assert_eq!(
        first,
        vec![
            Action::Send(Packet::ConnAck(codec::connack(
                ConnectReturnCode::Success,
                true
            ))),
            Action::Send(Packet::Publish(dup)),
            Action::RefreshPollers,
        ]
    );
}

#[test]
fn a_new_clean_session_stores_nothing() {
    let a = admit(
        &MqttConfig::default(),
        Version::V5,
        connect_packet(CLIENT, true, None),
    )
    .unwrap();
    let mut s = SessionState::new(CLIENT);
    let start = a.start_session(&mut s);
    assert_eq!(start.persist, Persist::Nothing);
    assert!(!start.present && start.delete_group);
}

#[test]
fn released_qos2_messages_are_resent_as_pubrel() {
    let mut s = existing();
    s.outgoing[0].publish.qos = QoS::ExactlyOnce;
    s.outgoing[0].released = true;
    let (_, first, _) = start_with(
        &MqttConfig::default(),
        Version::V5,
        connect_packet(CLIENT, false, Some(expiry_props(60))),
        None,
        s,
    );
    assert_eq!(first[1], Action::Send(codec::pubrel(3)));
}

#[test]
fn v5_expiry_is_capped_and_the_connack_tells_the_client() {
    let mut config = MqttConfig {
        max_session_expiry_secs: 100,
        server_keep_alive: Some(5),
        ..MqttConfig::default()
    };
    let props = ConnectProperties {
        session_expiry_interval: Some(1000),
        receive_maximum: Some(5),
        max_packet_size: Some(2000),
        topic_alias_max: Some(3),
        ..ConnectProperties::new()
    };
    let a = admit(
        &config,
        Version::V5,
        connect_packet(CLIENT, false, Some(props)),
    )
    .unwrap();
    assert_eq!(a.expiry, Some(100));
    assert_eq!(a.keep_alive, 5, "the server's keep-alive wins");
    assert_eq!(a.client_receive_max, 5);
    assert_eq!(a.client_max_packet, 2000);
    assert_eq!(a.client_alias_max, 3);
    let ack = a.connack(&config, false);
    let p = ack.properties.unwrap();
    assert_eq!(p.session_expiry_interval, Some(100));
    assert_eq!(p.receive_max, Some(128));
    assert_eq!(p.topic_alias_max, Some(64));
    assert_eq!(p.max_packet_size, Some(1 << 20));
    assert_eq!(p.server_keep_alive, Some(5));
    assert_eq!(p.assigned_client_identifier, None);
    // Granted as asked: not repeated.
    config.max_session_expiry_secs = 10_000;
    let a = admit(
        &config,
        Version::V5,
        connect_packet(CLIENT, false, Some(expiry_props(1000))),
    )
    .unwrap();
    let p = a.connack(&config, false).properties.unwrap();
    assert_eq!(p.session_expiry_interval, None);
    // No expiry asked: the session ends at disconnect.
    let a = admit(&config, Version::V5, connect_packet(CLIENT, false, None)).unwrap();
    assert_eq!(a.expiry, Some(0));
}

#[test]
fn an_empty_client_id_is_assigned_unless_a_v4_session_must_persist() {
    let config = MqttConfig::default();
    assert_eq!(
        admit(&config, Version::V4, connect_packet("", false, None)).unwrap_err(),
        ConnectReturnCode::ClientIdentifierNotValid
    );
    let a = admit(&config, Version::V4, connect_packet("", true, None)).unwrap();
    assert_eq!(
        (a.client_id.as_str(), a.assigned.as_deref()),
        ("rg-1", Some("rg-1"))
    );
    assert_eq!(a.connack(&config, false).properties, None);
    let a = admit(&config, Version::V5, connect_packet("", false, None)).unwrap();
    let p = a.connack(&config, false).properties.unwrap();
    assert_eq!(p.assigned_client_identifier.as_deref(), Some("rg-1"));
    assert_eq!(*a.group(), *crate::topic::session_group("rg-1"));
}

#[test]
fn the_will_topic_is_checked() {
    let will = |topic: &str| LastWill {
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        message: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: None,
    };
    let config = MqttConfig::default();
    let admit_will = |version, topic: &str| {
        connect::admit(
            &config,
            version,
            connect_packet(CLIENT, true, None),
            Some(will(topic)),
            || "rg-1".into(),
        )
        .map(|_| ())
    };
    for version in [Version::V4, Version::V5] {
        // Names that map, and reserved ones (dropped when the will goes out).
        for ok in ["/TopicA", "/a/b", "$SYS/x", "mqtt_sys_retained/x"] {
            assert_eq!(admit_will(version, ok), Ok(()), "{ok}");
        }
        // Never "server unavailable": v5 0x90; 3.1.1 5 (the codec maps it).
        assert_eq!(
            admit_will(version, "a.b/c"),
            Err(ConnectReturnCode::TopicNameInvalid)
        );
    }
    // A malformed will topic: v5 0x90; 3.1.1 closes without CONNACK.
    for bad in ["a/+", "#", ""] {
        assert_eq!(
            admit_will(Version::V5, bad),
            Err(ConnectReturnCode::TopicNameInvalid)
        );
        assert_eq!(
            admit_will(Version::V4, bad),
            Err(ConnectReturnCode::MalformedPacket)
        );
    }
    let a = connect::admit(
        &config,
        Version::V4,
        connect_packet(CLIENT, true, None),
        Some(will("status/dev")),
        || "rg-1".into(),
    )
    .unwrap();
    assert_eq!(a.will, Some(will("status/dev")));
}

#[test]
fn the_will_becomes_a_publish_with_its_properties() {
    let w = LastWill {
        topic: Bytes::from_static(b"status/dev"),
        message: Bytes::from_static(b"gone"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Some(LastWillProperties {
            delay_interval: Some(5),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: vec![("k".into(), "v".into())],
        }),
    };
    let p = connect::will_publish(w);
    assert_eq!(
        (p.qos, p.retain, p.pkid, &p.topic[..], &p.payload[..]),
        (QoS::ExactlyOnce, true, 0, &b"status/dev"[..], &b"gone"[..])
    );
    let props = p.properties.unwrap();
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.message_expiry_interval, Some(60));
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("r"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"c"[..]));
    assert_eq!(props.user_properties, vec![("k".into(), "v".into())]);
    assert_eq!(props.topic_alias, None);
}
