//! The connection's decisions without sockets: CONNECT admission, the state machine fed
//! packets and events, and what it asks the driver to do. Each test drives the machine the
//! way the driver does (completions fed right after the action that asked for them).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rocketgate_core::StoredMessage;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, Disconnect, DisconnectReasonCode, Filter, Publish, PublishProperties,
    RetainForwardRule, Subscribe, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::connect;
use super::io::{Action, End, Input, Stored};
use super::machine::{Limits, Machine};
use crate::codec::{Packet, Version};
use crate::config::MqttConfig;
use crate::session::{Delivery, SessionState};
use crate::topic::{PROP_QOS, PROP_TOPIC};

mod admission;
mod delivering;
mod fuzz;
mod lifecycle;
mod publishing;
mod subscribing;

/// The client id of every test connection.
const CLIENT: &str = "dev";

/// A session behind its lock, the way the registry keeps it, with its guard.
fn locked(s: SessionState) -> (Arc<Mutex<SessionState>>, OwnedMutexGuard<SessionState>) {
    let slot = Arc::new(Mutex::new(s));
    let guard = slot.clone().try_lock_owned().unwrap();
    (slot, guard)
}

fn connect_packet(
    client_id: &str,
    clean_start: bool,
    properties: Option<ConnectProperties>,
) -> rumqttc::v5::mqttbytes::v5::Connect {
    rumqttc::v5::mqttbytes::v5::Connect {
        keep_alive: 30,
        client_id: client_id.into(),
        clean_start,
        properties,
    }
}

fn expiry_props(secs: u32) -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval: Some(secs),
        ..ConnectProperties::new()
    }
}

/// Everything the driver would do up to the machine, for a CONNECT that must be admitted.
fn start_with(
    config: &MqttConfig,
    version: Version,
    connect: rumqttc::v5::mqttbytes::v5::Connect,
    will: Option<rumqttc::v5::mqttbytes::v5::LastWill>,
    session: SessionState,
) -> (Machine, Vec<Action>, Arc<Mutex<SessionState>>) {
    let admission =
        connect::admit(config, version, connect, will, || "rg-1".into()).expect("admitted");
    let (slot, mut guard) = locked(session);
    let start = admission.start_session(&mut guard);
    let connack = admission.connack(config, start.present);
    let mut m = Machine::new(admission, connack, Limits::from(config), guard);
    let first = drain(&mut m);
    (m, first, slot)
}

/// A clean session of `version` with `config`, past its CONNACK.
fn machine(config: &MqttConfig, version: Version) -> Machine {
    let (m, first, _) = start_with(
        config,
        version,
        connect_packet(CLIENT, true, None),
        None,
        SessionState::new(CLIENT),
    );
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(matches!(&first[0], Action::Send(Packet::ConnAck(_))));
    assert_eq!(first[1], Action::RefreshPollers);
    m
}

fn v5() -> Machine {
    machine(&MqttConfig::default(), Version::V5)
}

fn v4() -> Machine {
    machine(&MqttConfig::default(), Version::V4)
}

/// A persistent v5 session (expiry `secs`), past its CONNACK.
fn persistent_v5(config: &MqttConfig, secs: u32) -> (Machine, Arc<Mutex<SessionState>>) {
    let c = connect_packet(CLIENT, false, Some(expiry_props(secs)));
    let (m, _, slot) = start_with(config, Version::V5, c, None, SessionState::new(CLIENT));
    (m, slot)
}

fn drain(m: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

fn step(m: &mut Machine, input: Input) -> Vec<Action> {
    m.handle(input);
    drain(m)
}

fn packet(m: &mut Machine, p: Packet) -> Vec<Action> {
    step(m, Input::Packet(p))
}

fn publish(topic: &str, qos: QoS, pkid: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        pkid,
        payload: Bytes::from_static(b"x"),
        properties: None,
    }
}

fn stored(
    pkid: u16,
    qos: QoS,
    result: Result<(), rumqttc::v5::mqttbytes::v5::PubAckReason>,
) -> Stored {
    Stored { pkid, qos, result }
}

fn store_action(p: &Publish, topic: &str) -> Action {
    Action::Store {
        publish: p.clone(),
        topic: topic.into(),
    }
}

/// What a v5 connection does when it closes for `reason` after a protocol violation.
fn failed_v5(reason: DisconnectReasonCode) -> Vec<Action> {
    vec![
        Action::Send(Packet::Disconnect(Disconnect::new(reason))),
        Action::Flush,
        Action::Close(End::Abnormal),
    ]
}

/// What a 3.1.1 connection does on a protocol violation (it has no server DISCONNECT).
fn failed_v4() -> Vec<Action> {
    vec![Action::Flush, Action::Close(End::Abnormal)]
}

fn filter(path: &str, qos: QoS) -> Filter {
    Filter {
        path: path.into(),
        qos,
        nolocal: false,
        preserve_retain: false,
        retain_forward_rule: RetainForwardRule::OnEverySubscribe,
    }
}

fn subscribe_packet(pkid: u16, id: Option<usize>, filters: Vec<Filter>) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid,
        filters,
        properties: id.map(|id| SubscribeProperties {
            id: Some(id),
            user_properties: Vec::new(),
        }),
    })
}

/// Subscribes the way the driver does, every filter's core work succeeding; returns the
/// actions after the last core work (SUBACK, pollers, retained lookup).
fn subscribe(m: &mut Machine, pkid: u16, filters: Vec<Filter>) -> Vec<Action> {
    let mut actions = packet(m, subscribe_packet(pkid, None, filters));
    while let Some(Action::StartSubscription(_)) = actions.last() {
        actions = step(m, Input::SubscriptionStarted(Ok(())));
    }
    actions
}

/// A message as the core stores an MQTT publish on `mqtt_topic` at `qos`.
fn message(mqtt_topic: &str, qos: u8, body: &[u8]) -> StoredMessage {
    let mut properties = BTreeMap::new();
    properties.insert(PROP_TOPIC.to_owned(), mqtt_topic.to_owned());
    properties.insert(PROP_QOS.to_owned(), qos.to_string());
    StoredMessage {
        message_id: "m".into(),
        topic: mqtt_topic.split('/').next().unwrap_or_default().into(),
        queue_id: 0,
        queue_offset: 0,
        physical_offset: 0,
        size: 0,
        store_timestamp_ms: 0,
        born_timestamp_ms: 0,
        born_host: None,
        tag: None,
        keys: Vec::new(),
        message_group: None,
        properties,
        body: Bytes::copy_from_slice(body),
        reconsume_times: 0,
        flags: 0,
    }
}

fn delivery(receipt: &str, message: StoredMessage) -> Delivery {
    Delivery {
        group: Arc::from("mqtt-dev"),
        receipt: receipt.into(),
        message,
        shared: None,
    }
}

fn deliver(m: &mut Machine, d: Delivery) -> Vec<Action> {
    step(
        m,
        Input::Delivery {
            delivery: d,
            now_ms: 1_000,
        },
    )
}

fn ack_core(receipt: &str) -> Action {
    Action::AckCore {
        group: Arc::from("mqtt-dev"),
        receipt: receipt.into(),
    }
}

/// The PUBLISH packets among `actions`.
fn publishes(actions: &[Action]) -> Vec<&Publish> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Packet::Publish(p)) => Some(p),
            _ => None,
        })
        .collect()
}

fn alias(p: &Publish) -> Option<u16> {
    p.properties.as_ref().and_then(|x| x.topic_alias)
}

fn with_alias(mut p: Publish, alias: u16) -> Publish {
    p.properties = Some(PublishProperties {
        topic_alias: Some(alias),
        ..PublishProperties::default()
    });
    p
}

/// A v5 DISCONNECT with a Session Expiry Interval, as the client sends it (`mqttbytes` does
/// not export the properties type, so it is decoded from its bytes).
fn disconnect_with_expiry(reason: DisconnectReasonCode, expiry: u32) -> Packet {
    let mut bytes = BytesMut::from(&[0xe0, 7, reason as u8, 5, 0x11][..]);
    bytes.extend_from_slice(&expiry.to_be_bytes());
    let (p, _) = crate::codec::decode(&mut bytes, Some(Version::V5), 1024)
        .unwrap()
        .unwrap();
    assert!(bytes.is_empty());
    p
}
