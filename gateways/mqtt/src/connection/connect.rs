//! The decisions of a CONNECT: whether the client is admitted, under which client id, with
//! which session expiry and keep-alive; how the session it takes over starts; what CONNACK
//! says; and what the will becomes when it is published.
//!
//! Invariants:
//! - A refusal is a CONNACK return code only (3.1.1 codes are mapped by the codec; a 3.1.1
//!   "malformed packet" is closed without a CONNACK); nothing of the session is touched before
//!   [`admit`] accepted.
//! - The will topic is checked as a PUBLISH's would be: a name that maps, or a reserved one
//!   (accepted; the will is dropped when it goes out, as such a publish is), is admitted; a
//!   name that cannot be mapped is refused with "topic name invalid" (3.1.1: 5, not
//!   authorized), a malformed one too (3.1.1: closed without CONNACK). Never "server
//!   unavailable", which clients treat as a passing outage and retry.
//! - Session expiry: 3.1.1 clean session → `Some(0)` (ends at disconnect), 3.1.1 persistent
//!   → `None` (never expires), v5 → the asked interval capped by `max_session_expiry_secs`
//!   (absent = 0). The CONNACK tells a v5 client the granted interval when it differs.
//! - A session is "present" only if it existed and the client did not ask for a clean start;
//!   otherwise it restarts empty (its durability kept, its consumer group deleted by the
//!   driver).
//!
//! Called by the connection driver (`driver.rs`) between reading CONNECT and starting the
//! state machine; the driver does the I/O in between (taking the session over, deleting the
//! group, persisting the record). Pure: no I/O, no locks; the session is passed in by
//! `&mut` under the driver's guard.

use std::sync::Arc;

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, Connect, ConnectReturnCode, LastWill, Publish, PublishProperties,
};

use crate::codec::{self, Version};
use crate::config::MqttConfig;
use crate::session::{SessionRecord, SessionState};
use crate::topic::{self, TopicError};

/// An admitted CONNECT: everything the connection needs from it.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    /// Protocol version of the connection.
    pub version: Version,
    /// The client id (assigned when the client sent an empty one).
    pub client_id: String,
    /// The id the server assigned, for the v5 CONNACK.
    pub assigned: Option<String>,
    /// Clean start (3.1.1: clean session).
    pub clean_start: bool,
    /// Granted session expiry: `None` = never expires, `Some(0)` = ends at disconnect.
    pub expiry: Option<u32>,
    /// The session expiry the v5 client asked for.
    pub asked_expiry: Option<u32>,
    /// Keep-alive in seconds (the server's override, else the client's; 0 = none).
    pub keep_alive: u16,
    /// The will, published on an abnormal end.
    pub will: Option<LastWill>,
    /// The client's Receive Maximum (at least 1; `u16::MAX` when not given).
    pub client_receive_max: usize,
    /// The client's Maximum Packet Size (`usize::MAX` when not given).
    pub client_max_packet: usize,
    /// The client's Topic Alias Maximum (0 for 3.1.1).
    pub client_alias_max: u16,
}

/// Checks a CONNECT (its credentials were checked before, `access.rs`): the will's topic,
/// the client id. `assign_id` makes an id for an empty one (called only then).
///
/// # Errors
/// The CONNACK return code of a refusal.
pub(crate) fn admit(
    config: &MqttConfig,
    version: Version,
    connect: Connect,
    will: Option<LastWill>,
    assign_id: impl FnOnce() -> String,
) -> Result<Admission, ConnectReturnCode> {
    let v5 = version == Version::V5;
    if let Some(w) = &will {
        let checked = std::str::from_utf8(&w.topic)
            .map_err(|_| TopicError::Malformed)
            .and_then(topic::core_topic_of_name);
        match checked {
            // A will on a reserved topic is accepted and, like a publish there, dropped.
            Ok(_) | Err(TopicError::Reserved) => {}
            // 3.1.1: a will topic that is no topic name makes the CONNECT a protocol
            // violation, closed without a CONNACK (MQTT-3.1.4-1, 4.8).
            Err(TopicError::Malformed) if !v5 => return Err(ConnectReturnCode::MalformedPacket),
            // v5: 0x90; 3.1.1 (a name this server cannot map): the codec sends 5, "not
            // authorized", the one refusal 3.1.1 has for it.
            Err(_) => return Err(ConnectReturnCode::TopicNameInvalid),
        }
    }
    let props = connect.properties.unwrap_or_default();
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            return Err(ConnectReturnCode::ClientIdentifierNotValid);
        }
        let id = assign_id();
        assigned = Some(id.clone());
        id
    } else {
        connect.client_id
    };
    let expiry = match version {
        Version::V4 if connect.clean_start => Some(0),
        Version::V4 => None,
        Version::V5 => Some(
            props
                .session_expiry_interval
                .unwrap_or(0)
                .min(config.max_session_expiry_secs),
        ),
    };
    Ok(Admission {
        version,
        client_id,
        assigned,
        clean_start: connect.clean_start,
        expiry,
        asked_expiry: props.session_expiry_interval,
        keep_alive: config.server_keep_alive.unwrap_or(connect.keep_alive),
        will,
        client_receive_max: usize::from(props.receive_maximum.unwrap_or(u16::MAX).max(1)),
        client_max_packet: props.max_packet_size.map_or(usize::MAX, |m| m as usize),
        client_alias_max: if v5 {
            props.topic_alias_max.unwrap_or(0)
        } else {
            0
        },
    })
}

/// What the driver must do for a session this CONNECT starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionStart {
    /// CONNACK's session present flag.
    pub present: bool,
    /// The session restarted empty: delete its consumer group (positions and all).
    pub delete_group: bool,
    /// The record to store before CONNACK.
    pub persist: Persist,
}

/// A session record to store while connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Persist {
    /// Nothing to store (a clean session that never was durable).
    Nothing,
    /// The live record of a persistent session: if it cannot be stored, refuse with "server
    /// unavailable".
    Live(SessionRecord),
    /// The end of a formerly durable session now clean: best effort.
    Ended(SessionRecord),
}

impl Admission {
    /// The session's own consumer group (`mqtt-<client id>`).
    pub(crate) fn group(&self) -> Arc<str> {
        topic::session_group(&self.client_id).into()
    }

    /// Starts the session this connection took over: resets it unless present, marks it
    /// online with the granted expiry, and says what to store.
    pub(crate) fn start_session(&self, session: &mut SessionState) -> SessionStart {
        let present = session.present && !self.clean_start;
        if !present {
            let durable = session.durable;
            *session = SessionState::new(&self.client_id);
            session.durable = durable;
        }
        session.present = true;
        session.record.expiry_secs = self.expiry;
        session.record.disconnected_at_ms = None;
        let persist = if self.expiry != Some(0) {
            session.durable = true;
            Persist::Live(session.record.clone())
        } else if session.durable {
            let mut ended = session.record.clone();
            ended.deleted = true;
            session.durable = false;
            Persist::Ended(ended)
        } else {
            Persist::Nothing
        };
        SessionStart {
            present,
            delete_group: !present,
            persist,
        }
    }

    /// The CONNACK accepting this connection (v5: with the server's limits and features).
    pub(crate) fn connack(&self, config: &MqttConfig, session_present: bool) -> ConnAck {
        let mut ack = codec::connack(ConnectReturnCode::Success, session_present);
        if self.version == Version::V5 {
            ack.properties = Some(ConnAckProperties {
                session_expiry_interval: match (self.asked_expiry, self.expiry) {
                    (Some(asked), Some(granted)) if asked != granted => Some(granted),
                    _ => None,
                },
                receive_max: Some(config.receive_maximum.max(1)),
                max_packet_size: u32::try_from(config.max_packet_size).ok(),
                assigned_client_identifier: self.assigned.clone(),
                topic_alias_max: Some(config.topic_alias_maximum),
                retain_available: Some(1),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(1),
                shared_subscription_available: Some(1),
                server_keep_alive: config.server_keep_alive,
                max_qos: None,
                reason_string: None,
                user_properties: Vec::new(),
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            });
        }
        ack
    }
}

/// The will as the PUBLISH stored when it goes out (its v5 properties carried over).
pub(crate) fn will_publish(w: LastWill) -> Publish {
    let properties = w.properties.map(|p| PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        topic_alias: None,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        subscription_identifiers: Vec::new(),
        content_type: p.content_type,
    });
    Publish {
        dup: false,
        qos: w.qos,
        retain: w.retain,
        topic: w.topic,
        pkid: 0,
        payload: w.message,
        properties,
    }
}
