//! From the core to a session: the pop tasks that feed a connection, and the conversion of a
//! stored message into the PUBLISH a subscriber receives.
//!
//! Each (consumer group, RocketMQ topic) a connection reads has one pop task. It reserves
//! channel slots *before* popping, so a popped message always has a place in the session's
//! bounded queue (`max_queued_messages`): a slow subscriber makes its pop tasks wait, and the
//! core keeps the rest. The message stays invisible to the group until the session
//! acknowledges it (on PUBACK / PUBREC, or once written for QoS 0).
//!
//! Concurrency: pop tasks own nothing but their channel sender; the connection aborts them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rocketgate_core::{
    Broker, ErrorKind, FilterExpression, GroupConfig, PopRequest, StoredMessage,
};
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc;

use crate::session::Delivery;
use crate::shared::{
    unhex, PROP_CONTENT_TYPE, PROP_CORRELATION, PROP_EXPIRES_AT, PROP_PAYLOAD_FORMAT,
    PROP_RESPONSE_TOPIC,
};
use crate::topic::{PROP_QOS, PROP_TOPIC};

/// Messages popped per pop of a session's own group.
const POP_BATCH: usize = 32;
/// Messages popped per pop of a shared group: small, so that members share a burst.
const SHARED_POP_BATCH: usize = 4;

/// Creates a consumer group if missing; `true` when it was created now.
pub fn ensure_group(broker: &Broker, name: &str) -> bool {
    match broker.groups().get(name) {
        Ok(_) => false,
        Err(_) => match broker.groups().create(GroupConfig::new(name)) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => {
                tracing::warn!(error = %e, group = %name, "could not create an MQTT consumer group");
                false
            }
        },
    }
}

/// Starts a pop task feeding `tx`.
pub fn spawn_poller(
    broker: Broker,
    group: Arc<str>,
    topic: String,
    shared: Option<Arc<str>>,
    invisible: Duration,
    tx: mpsc::Sender<Delivery>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = broker.config().consumer.clone();
        let invisible = invisible.clamp(
            Duration::from_millis(c.min_invisible_ms),
            Duration::from_millis(c.max_invisible_ms),
        );
        let wait = Duration::from_millis(c.max_wait_ms.min(20_000));
        let batch = if shared.is_some() {
            SHARED_POP_BATCH
        } else {
            POP_BATCH
        };
        let max = batch.min(c.max_pop_batch.max(1));
        loop {
            let Ok(mut permits) = tx.reserve_many(max).await else {
                return;
            };
            let req = PopRequest {
                group: group.to_string(),
                topic: topic.clone(),
                filter: Some(FilterExpression::tag("*")),
                max,
                invisible,
                wait,
            };
            match broker.consumer().pop(req).await {
                Ok(popped) => {
                    for p in popped {
                        let d = Delivery {
                            group: group.clone(),
                            receipt: p.receipt_handle,
                            message: p.message,
                            shared: shared.clone(),
                        };
                        if let Some(permit) = permits.next() {
                            permit.send(d);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, group = %group, topic = %topic, "MQTT pop failed");
                    drop(permits);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

/// The MQTT topic of a stored message: its `mqttTopic` property, or the RocketMQ topic.
pub fn mqtt_topic(m: &StoredMessage) -> &str {
    m.properties
        .get(PROP_TOPIC)
        .map_or(m.topic.as_str(), String::as_str)
}

/// Whether a message's v5 expiry has passed.
pub fn expired(m: &StoredMessage, now_ms: i64) -> bool {
    m.properties
        .get(PROP_EXPIRES_AT)
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|at| at <= now_ms)
}

/// The QoS a message was published with (messages from other protocols count as QoS 1).
pub fn published_qos(m: &StoredMessage) -> u8 {
    m.properties
        .get(PROP_QOS)
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(1)
        .min(2)
}

/// QoS from a number (clamped).
pub fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The PUBLISH for a subscriber: `v5` adds the message properties (user properties, payload
/// format, remaining expiry, response topic, correlation data, content type, subscription ids).
pub fn to_publish(
    m: &StoredMessage,
    q: QoS,
    retain: bool,
    v5: bool,
    sub_ids: &[usize],
    now_ms: i64,
) -> Publish {
    let properties = v5.then(|| {
        let mut p = PublishProperties {
            subscription_identifiers: sub_ids.to_vec(),
            ..PublishProperties::default()
        };
        for (k, v) in &m.properties {
            match k.as_str() {
                PROP_PAYLOAD_FORMAT => p.payload_format_indicator = v.parse().ok(),
                PROP_EXPIRES_AT => {
                    p.message_expiry_interval = v.parse::<i64>().ok().map(|at| {
                        u32::try_from(((at - now_ms).max(0) + 999) / 1000).unwrap_or(u32::MAX)
                    });
                }
                PROP_RESPONSE_TOPIC => p.response_topic = Some(v.clone()),
                PROP_CORRELATION => p.correlation_data = unhex(v),
                PROP_CONTENT_TYPE => p.content_type = Some(v.clone()),
                k if k.starts_with("mqtt") => {}
                _ => p.user_properties.push((k.clone(), v.clone())),
            }
        }
        p
    });
    Publish {
        dup: false,
        qos: q,
        retain,
        topic: Bytes::copy_from_slice(mqtt_topic(m).as_bytes()),
        pkid: 0,
        payload: m.body.clone(),
        properties,
    }
}
