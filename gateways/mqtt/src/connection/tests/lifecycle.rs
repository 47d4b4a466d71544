//! How connections end: protocol violations, bad bytes, DISCONNECT, keep-alive, takeover,
//! shutdown; and what the session keeps and the will does afterwards.

use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties, PingReq, PingResp, UnsubAck};

use super::*;
use crate::codec::{self, DecodeError};

fn disconnect(reason: DisconnectReasonCode, expiry: Option<u32>) -> Packet {
    match expiry {
        None => Packet::Disconnect(Disconnect::new(reason)),
        Some(e) => disconnect_with_expiry(reason, e),
    }
}

fn will(delay: Option<u32>) -> LastWill {
    LastWill {
        topic: Bytes::from_static(b"status/dev"),
        message: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: delay.map(|d| LastWillProperties {
            delay_interval: Some(d),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    }
}

#[test]
fn pingreq_is_answered() {
    let mut m = v4();
    assert_eq!(
        packet(&mut m, Packet::PingReq(PingReq)),
        vec![Action::Send(Packet::PingResp(PingResp))]
    );
}

#[test]
fn packets_a_client_must_not_send_close_with_protocol_error() {
    let server_only = || {
        vec![
            Packet::ConnAck(codec::connack(
                rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success,
                false,
            )),
            codec::suback(1, Vec::new()),
            Packet::UnsubAck(UnsubAck {
                pkid: 1,
                reasons: Vec::new(),
                properties: None,
            }),
            Packet::PingResp(PingResp),
            Packet::Connect(connect_packet(CLIENT, true, None), None, None),
        ]
    };
    for p in server_only() {
        let mut m = v5();
        assert_eq!(
            packet(&mut m, p.clone()),
            failed_v5(DisconnectReasonCode::ProtocolError),
            "{p:?}"
        );
        // Closed: nothing else happens.
        assert_eq!(packet(&mut m, Packet::PingReq(PingReq)), vec![]);
        assert_eq!(step(&mut m, Input::Shutdown), vec![]);
    }
    for p in server_only() {
        assert_eq!(packet(&mut v4(), p), failed_v4());
    }
}

#[test]
fn undecodable_bytes_close_with_the_matching_reason() {
    for (e, reason) in [
        (
            DecodeError::TooLarge(1 << 30),
            DisconnectReasonCode::PacketTooLarge,
        ),
        (
            DecodeError::Protocol("second CONNECT"),
            DisconnectReasonCode::ProtocolError,
        ),
        (
            DecodeError::Malformed("QoS 3".into()),
            DisconnectReasonCode::MalformedPacket,
        ),
        (
            DecodeError::UnsupportedVersion(3),
            DisconnectReasonCode::MalformedPacket,
        ),
    ] {
        assert_eq!(
            step(&mut v5(), Input::Undecodable(e.clone())),
            failed_v5(reason)
        );
        assert_eq!(step(&mut v4(), Input::Undecodable(e)), failed_v4());
    }
}

#[test]
fn disconnect_ends_normally_or_with_the_will() {
    let mut m = v5();
    // Acknowledgements queued before a DISCONNECT in the same read are not flushed.
    assert_eq!(
        packet(
            &mut m,
            disconnect(DisconnectReasonCode::NormalDisconnection, None)
        ),
        vec![Action::Close(End::Normal)]
    );
    let mut m = v5();
    assert_eq!(
        packet(
            &mut m,
            disconnect(DisconnectReasonCode::DisconnectWithWillMessage, None)
        ),
        vec![Action::Close(End::Abnormal)]
    );
    // A session that ends at disconnect cannot be made to outlive it.
    let mut m = v5();
    assert_eq!(
        packet(
            &mut m,
            disconnect(DisconnectReasonCode::NormalDisconnection, Some(10))
        ),
        failed_v5(DisconnectReasonCode::ProtocolError)
    );
}

#[test]
fn a_disconnect_expiry_is_capped_and_kept_by_the_session() {
    let config = MqttConfig {
        max_session_expiry_secs: 100,
        ..MqttConfig::default()
    };
    let (mut m, slot) = persistent_v5(&config, 60);
    assert_eq!(
        packet(
            &mut m,
            disconnect(DisconnectReasonCode::NormalDisconnection, Some(5_000))
        ),
        vec![Action::Close(End::Normal)]
    );
    let finished = m.finish(End::Normal, Vec::new(), 42);
    assert!(!finished.session_ends);
    let record = finished.record.unwrap();
    assert_eq!(record.expiry_secs, Some(100));
    assert_eq!(record.disconnected_at_ms, Some(42));
    assert!(finished.will.is_none());
    drop(m);
    assert!(!slot.try_lock().unwrap().ended);
}

/// An event of the server, the DISCONNECT reason it gives a v5 client, how the connection ends.
type ServerEvent = (fn() -> Input, DisconnectReasonCode, End);

#[test]
fn server_events_close_with_their_reason() {
    let events: [ServerEvent; 4] = [
        (
            || Input::KeepAliveExpired,
            DisconnectReasonCode::KeepAliveTimeout,
            End::Abnormal,
        ),
        (
            || Input::TakenOver,
            DisconnectReasonCode::SessionTakenOver,
            End::Abnormal,
        ),
        (
            || Input::Shutdown,
            DisconnectReasonCode::ServerShuttingDown,
            End::Shutdown,
        ),
        // The credentials stopped being valid (user disabled, token revoked, ...).
        (
            || Input::Revoked(rocketgate_core::auth::Invalidation::Disabled),
            DisconnectReasonCode::NotAuthorized,
            End::Revoked,
        ),
    ];
    for (input, reason, end) in events {
        assert_eq!(
            step(&mut v5(), input()),
            vec![
                Action::Send(Packet::Disconnect(Disconnect::new(reason))),
                Action::Flush,
                Action::Close(end),
            ]
        );
        // 3.1.1 has no server DISCONNECT: the connection just closes.
        assert_eq!(step(&mut v4(), input()), vec![Action::Close(end)]);
    }
}

#[test]
fn a_clean_session_ends_with_its_connection() {
    let config = MqttConfig::default();
    let (mut m, _, slot) = start_with(
        &config,
        Version::V5,
        connect_packet(CLIENT, true, None),
        Some(will(Some(30))),
        SessionState::new(CLIENT),
    );
    let queued = vec![delivery("q1", message("t", 1, b"x"))];
    let finished = m.finish(End::Abnormal, queued, 42);
    assert!(finished.session_ends);
    assert_eq!(finished.record, None, "never durable: nothing to store");
    // The will's delay is capped by the session expiry (0).
    assert_eq!(finished.will, Some((will(Some(30)), 0)));
    drop(m);
    let s = slot.try_lock().unwrap();
    assert!(s.ended && s.pending.is_empty());
}

#[test]
fn a_persistent_session_keeps_its_deliveries_and_delays_its_will() {
    let config = MqttConfig::default();
    let mut s = SessionState::new(CLIENT);
    s.present = true;
    s.pending.push_back(delivery("b1", message("t", 1, b"x")));
    let (mut m, _, slot) = start_with(
        &config,
        Version::V5,
        connect_packet(CLIENT, false, Some(expiry_props(60))),
        Some(will(Some(30))),
        s,
    );
    let finished = m.finish(
        End::Abnormal,
        vec![delivery("q1", message("t", 1, b"y"))],
        42,
    );
    assert!(!finished.session_ends);
    assert_eq!(finished.will, Some((will(Some(30)), 30)));
    let record = finished.record.unwrap();
    assert_eq!(
        (
            record.expiry_secs,
            record.disconnected_at_ms,
            record.deleted
        ),
        (Some(60), Some(42), false)
    );
    drop(m);
    let s = slot.try_lock().unwrap();
    let kept: Vec<&str> = s.pending.iter().map(|d| d.receipt.as_str()).collect();
    assert_eq!(
        kept,
        vec!["b1", "q1"],
        "the backlog first, then what was queued"
    );
    assert!(!s.ended);
}

#[test]
fn the_will_goes_out_only_on_an_abnormal_end() {
    for (end, sent) in [
        (End::Abnormal, true),
        (End::Normal, false),
        (End::Shutdown, false),
        (End::Revoked, false),
    ] {
        let (mut m, _, _) = start_with(
            &MqttConfig::default(),
            Version::V4,
            connect_packet(CLIENT, true, None),
            Some(will(None)),
            SessionState::new(CLIENT),
        );
        assert_eq!(m.finish(end, Vec::new(), 0).will.is_some(), sent, "{end:?}");
    }
}

#[test]
fn a_durable_session_that_ends_stores_its_end() {
    // Persistent before, v5 with expiry 0 now: the old record is ended at CONNECT already,
    // so at disconnect there is nothing durable left.
    let mut s = SessionState::new(CLIENT);
    s.present = true;
    s.durable = true;
    s.record.expiry_secs = None;
    let (mut m, _, _) = start_with(
        &MqttConfig::default(),
        Version::V5,
        connect_packet(CLIENT, false, None),
        None,
        s,
    );
    let finished = m.finish(End::Normal, Vec::new(), 0);
    assert!(finished.session_ends && finished.record.is_none());
    // Persistent now, DISCONNECT sets the expiry to 0: the durable record is ended.
    let (mut m, _) = persistent_v5(&MqttConfig::default(), 60);
    packet(
        &mut m,
        disconnect(DisconnectReasonCode::NormalDisconnection, Some(0)),
    );
    let finished = m.finish(End::Normal, Vec::new(), 0);
    assert!(finished.session_ends);
    assert!(finished.record.unwrap().deleted);
}
