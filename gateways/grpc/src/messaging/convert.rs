//! Conversions between v2 wire messages and core messages: [`pb::Message`] → core
//! [`Message`] on send, core [`StoredMessage`] → [`pb::Message`] on delivery, and protobuf
//! timestamps and durations ↔ milliseconds.
//!
//! Invariant: a delivered message always has `topic` and `system_properties` set (RC unwraps
//! both), and an MD5 body digest (`digest.rs`). What the core has no field for travels in gateway-owned properties, prefixed
//! [`GATEWAY_PREFIX`], which producers may not set and v2 consumers never see, and only when
//! needed (plain NORMAL and FIFO messages carry none): the TRANSACTION type, the requested
//! delivery time of a DELAY message, and a GZIP body encoding (such bodies are stored and
//! delivered as sent, still compressed, with their flag).
//!
//! Pure functions; no state.

use std::collections::BTreeMap;
use std::time::Duration;

use rocketgate_core::rules::PROP_CHECK_IMMUNITY_SECS;
use rocketgate_core::{Message, StoredMessage};
use rocketgate_proto::apache::rocketmq::v2 as pb;

/// Prefix of the properties this gateway stores for itself.
pub(super) const GATEWAY_PREFIX: &str = "__RG_V2_";
const PROP_TYPE: &str = "__RG_V2_TYPE";
const PROP_DELIVERY_MS: &str = "__RG_V2_DELIVERY_MS";
const PROP_ENCODING: &str = "__RG_V2_ENCODING";

/// Milliseconds since the epoch of a protobuf timestamp.
pub(super) fn timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos.clamp(0, 999_999_999)) / 1_000_000)
}

/// A protobuf timestamp of milliseconds since the epoch.
pub(super) fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Now, as a protobuf timestamp.
pub(super) fn now() -> prost_types::Timestamp {
    timestamp(rocketgate_core::now_ms())
}

/// A std duration of a protobuf duration; negative ones are `None`.
pub(super) fn duration(d: &prost_types::Duration) -> Option<Duration> {
    if d.seconds < 0 || d.nanos < 0 {
        return None;
    }
    Some(Duration::new(
        d.seconds as u64,
        d.nanos.min(999_999_999) as u32,
    ))
}

/// A protobuf duration of a std duration.
pub(super) fn pb_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// The core message of a validated v2 message of `message_type` (never UNSPECIFIED here).
pub(super) fn to_core(m: &pb::Message, topic: &str, message_type: pb::MessageType) -> Message {
    let sys = m.system_properties.clone().unwrap_or_default();
    let mut properties: BTreeMap<String, String> = m
        .user_properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // NORMAL, FIFO and DELAY are told apart on delivery by the group and the delivery time;
    // only TRANSACTION needs a mark.
    if message_type == pb::MessageType::Transaction {
        properties.insert(PROP_TYPE.into(), message_type.as_str_name().into());
        // The first check-back after this long instead of the broker's default (whole
        // seconds, rounded up, as RocketMQ's CHECK_IMMUNITY_TIME_IN_SECONDS).
        if let Some(d) = sys
            .orphaned_transaction_recovery_duration
            .as_ref()
            .and_then(duration)
        {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            properties.insert(PROP_CHECK_IMMUNITY_SECS.into(), secs.to_string());
        }
    }
    if sys.body_encoding == pb::Encoding::Gzip as i32 {
        properties.insert(PROP_ENCODING.into(), "GZIP".into());
    }
    let deliver_at_ms = match message_type {
        pb::MessageType::Delay => sys.delivery_timestamp.as_ref().map(timestamp_ms),
        _ => None,
    };
    if let Some(at) = deliver_at_ms {
        properties.insert(PROP_DELIVERY_MS.into(), at.to_string());
    }
    let message_group = match message_type {
        pb::MessageType::Fifo => sys.message_group.clone(),
        _ => None,
    };
    Message {
        topic: topic.to_owned(),
        body: bytes::Bytes::from(m.body.clone()),
        tag: sys.tag.clone(),
        keys: sys.keys.clone(),
        message_group,
        properties,
        message_id: Some(sys.message_id.clone()),
        born_timestamp_ms: sys.born_timestamp.as_ref().map(timestamp_ms),
        born_host: (!sys.born_host.is_empty()).then(|| sys.born_host.clone()),
        delay_level: None,
        deliver_at_ms,
    }
}

/// What a delivery adds to a stored message.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    /// The receipt handle.
    pub receipt_handle: Option<String>,
    /// 1 for the first delivery.
    pub attempt: Option<u32>,
    /// How long it stays invisible.
    pub invisible: Option<Duration>,
}

/// The v2 message of a stored message. `namespace` is echoed in the topic resource and
/// `store_host` names this broker.
pub(super) fn to_pb(
    m: &StoredMessage,
    namespace: &str,
    store_host: &str,
    delivery: Delivery,
) -> pb::Message {
    let mut user_properties = std::collections::HashMap::new();
    let mut message_type = None;
    let mut delivery_timestamp = None;
    let mut encoding = pb::Encoding::Identity;
    let mut recovery = None;
    for (k, v) in &m.properties {
        match k.as_str() {
            PROP_TYPE => message_type = pb::MessageType::from_str_name(v),
            PROP_DELIVERY_MS => delivery_timestamp = v.parse().ok().map(timestamp),
            PROP_ENCODING if v == "GZIP" => encoding = pb::Encoding::Gzip,
            PROP_CHECK_IMMUNITY_SECS => {
                recovery = v
                    .parse::<u64>()
                    .ok()
                    .map(|s| pb_duration(Duration::from_secs(s)));
            }
            k if k.starts_with(GATEWAY_PREFIX) => {}
            // The core's own bookkeeping (retry origin, transaction ids) stays internal.
            k if rocketgate_core::rules::RESERVED_PROPERTY_KEYS.contains(&k) => {}
            _ => {
                user_properties.insert(k.clone(), v.clone());
            }
        }
    }
    let message_type = message_type.unwrap_or(if delivery_timestamp.is_some() {
        pb::MessageType::Delay
    } else if m.message_group.is_some() {
        pb::MessageType::Fifo
    } else {
        pb::MessageType::Normal
    });
    let system_properties = pb::SystemProperties {
        tag: m.tag.clone(),
        keys: m.keys.clone(),
        message_id: m.message_id.clone(),
        body_digest: Some(pb::Digest {
            r#type: pb::DigestType::Md5 as i32,
            checksum: super::digest::md5_hex(&m.body),
        }),
        body_encoding: encoding as i32,
        message_type: message_type as i32,
        born_timestamp: Some(timestamp(m.born_timestamp_ms)),
        born_host: m.born_host.clone().unwrap_or_default(),
        store_timestamp: Some(timestamp(m.store_timestamp_ms)),
        store_host: store_host.to_owned(),
        delivery_timestamp,
        receipt_handle: delivery.receipt_handle,
        queue_id: i32::try_from(m.queue_id).unwrap_or(i32::MAX),
        queue_offset: Some(i64::try_from(m.queue_offset).unwrap_or(i64::MAX)),
        invisible_duration: delivery.invisible.map(pb_duration),
        delivery_attempt: delivery
            .attempt
            .map(|a| i32::try_from(a).unwrap_or(i32::MAX)),
        message_group: m.message_group.clone(),
        trace_context: None,
        orphaned_transaction_recovery_duration: recovery
            .filter(|_| message_type == pb::MessageType::Transaction),
        dead_letter_queue: None,
    };
    pb::Message {
        topic: Some(pb::Resource {
            resource_namespace: namespace.to_owned(),
            name: m.topic.clone(),
        }),
        user_properties,
        system_properties: Some(system_properties),
        body: m.body.to_vec(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1000, 1_700_000_000_123] {
            assert_eq!(timestamp_ms(&timestamp(ms)), ms);
        }
        let d = duration(&pb_duration(Duration::from_millis(1500))).unwrap();
        assert_eq!(d, Duration::from_millis(1500));
        assert!(duration(&prost_types::Duration {
            seconds: -1,
            nanos: 0
        })
        .is_none());
    }

    #[test]
    fn gateway_properties_stay_hidden() {
        let sys = pb::SystemProperties {
            message_id: "id".into(),
            delivery_timestamp: Some(timestamp(5000)),
            body_encoding: pb::Encoding::Gzip as i32,
            ..Default::default()
        };
        let wire = pb::Message {
            topic: None,
            user_properties: [("a".to_owned(), "b".to_owned())].into(),
            system_properties: Some(sys),
            body: b"x".to_vec(),
        };
        let core = to_core(&wire, "t", pb::MessageType::Delay);
        assert_eq!(core.deliver_at_ms, Some(5000));
        let stored = StoredMessage {
            message_id: "id".into(),
            topic: "t".into(),
            queue_id: 1,
            queue_offset: 2,
            physical_offset: 0,
            size: 0,
            store_timestamp_ms: 10,
            born_timestamp_ms: 9,
            born_host: None,
            tag: None,
            keys: Vec::new(),
            message_group: None,
            properties: core.properties,
            body: core.body,
            reconsume_times: 0,
            flags: 0,
        };
        let back = to_pb(&stored, "", "h:1", Delivery::default());
        assert_eq!(back.user_properties.len(), 1);
        let sys = back.system_properties.unwrap();
        assert_eq!(sys.message_type, pb::MessageType::Delay as i32);
        assert_eq!(sys.body_encoding, pb::Encoding::Gzip as i32);
        assert_eq!(sys.delivery_timestamp, Some(timestamp(5000)));
    }
}
