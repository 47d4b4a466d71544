//! State shared by every connection of the gateway: the core handle, the configuration, the
//! retained messages, the session registry, and the path of an MQTT publish into the core.
//!
//! Publishing: the MQTT topic's first level is the RocketMQ topic (created on first use when
//! `auto_create_topics`), the full topic and the MQTT attributes become message properties
//! (see `topic.rs` and `docs/mqtt.md`), and the queue is chosen by hashing the MQTT topic, so
//! messages of one MQTT topic keep their order. [`Shared::publish`] returns only once
//! `Producer::send` returned: the caller acknowledges (PUBACK/PUBREC) after that, never before.
//!
//! Retained messages are stored in the core's KV store, namespace [`RETAINED_NS`] (key: the
//! MQTT topic; an empty payload deletes the key), durably before the publish is acknowledged,
//! and mirrored in memory, rebuilt from the namespace on start. The KV store is never touched
//! by CommitLog retention. Every write of one MQTT topic's retained message holds that topic's
//! write lock, so the mirror changes in the order of the KV writes. A value is
//! `[1 version = 1][8 stored at, ms, i64][4 n][n bytes: JSON object of the message
//! properties][payload]` (little-endian). An upgrade from the system topic
//! `mqtt_sys_retained` of earlier versions imports its latest record per topic once (see
//! `system_topic`).
//!
//! Concurrency: `parking_lot` locks around the in-memory maps, never held across `.await`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rocketgate_core::TopicConfig;
use rocketgate_core::{Broker, ErrorKind, Message, QueueSelector, SendRequest, StoredMessage};
use rumqttc::v5::mqttbytes::v5::{PubAckReason, Publish};

use crate::config::MqttConfig;
use crate::session::Sessions;
use crate::system_topic;
use crate::topic::{self, PROP_CLIENT, PROP_QOS, PROP_RETAIN, PROP_TOPIC};

/// KV namespace of retained messages.
pub const RETAINED_NS: &str = "mqtt.retained";
/// RocketMQ topic of retained messages of earlier versions (imported once).
const LEGACY_RETAINED_TOPIC: &str = "mqtt_sys_retained";
/// Message property: payload format indicator (v5).
pub const PROP_PAYLOAD_FORMAT: &str = "mqttPayloadFormat";
/// Message property: absolute expiry time in ms since the epoch (v5 message expiry).
pub const PROP_EXPIRES_AT: &str = "mqttExpiresAt";
/// Message property: response topic (v5).
pub const PROP_RESPONSE_TOPIC: &str = "mqttResponseTopic";
/// Message property: correlation data, hex-encoded (v5).
pub const PROP_CORRELATION: &str = "mqttCorrelationData";
/// Message property: content type (v5).
pub const PROP_CONTENT_TYPE: &str = "mqttContentType";

/// Shards of the per-MQTT-topic write lock of retained records.
const RETAIN_WRITE_SHARDS: usize = 64;

/// Gateway-wide state.
pub struct Shared {
    /// The core.
    pub broker: Broker,
    /// Configuration.
    pub config: MqttConfig,
    /// Sessions.
    pub sessions: Sessions,
    retained: RwLock<BTreeMap<String, StoredMessage>>,
    /// Serialises the KV writes of one MQTT topic's retained message and the mirror's update
    /// (sharded by topic).
    retain_writes: Vec<tokio::sync::Mutex<()>>,
    known_topics: Mutex<HashSet<String>>,
}

/// Why a publish was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub PubAckReason);

pub(crate) fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[usize::from(x >> 4)] as char);
        s.push(H[usize::from(x & 15)] as char);
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Bytes> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2)
        .map(|p| Some(v(p[0])? << 4 | v(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

impl Shared {
    /// Loads retained messages and sessions from the core.
    ///
    /// # Errors
    /// Core errors while creating or reading the gateway's topics.
    pub async fn open(
        broker: Broker,
        config: MqttConfig,
    ) -> Result<Arc<Self>, rocketgate_core::Error> {
        // The gateway's `mqtt_sys_*` topics and `mqtt*` properties are reserved to it in core.
        let broker = broker.as_caller(rocketgate_core::Caller::gateway(
            rocketgate_core::Gateway::Mqtt,
        ));
        let sessions = Sessions::load(&broker).await?;
        let shared = Arc::new(Self {
            broker,
            config,
            sessions,
            retained: RwLock::new(BTreeMap::new()),
            retain_writes: (0..RETAIN_WRITE_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            known_topics: Mutex::new(HashSet::new()),
        });
        shared.load_retained().await?;
        Ok(shared)
    }

    async fn load_retained(&self) -> Result<(), rocketgate_core::Error> {
        let kv = self.broker.kv();
        if let Some(old) = system_topic::read_once(&self.broker, LEGACY_RETAINED_TOPIC).await? {
            let mut latest = BTreeMap::new();
            for m in old {
                if let Some(t) = m.properties.get(PROP_TOPIC).cloned() {
                    latest.insert(t, m);
                }
            }
            let mut n = 0;
            for (t, m) in latest {
                if !m.body.is_empty() {
                    kv.put(RETAINED_NS, t.as_bytes(), encode_retained(&m))
                        .await?;
                    n += 1;
                }
            }
            system_topic::mark_imported(&self.broker, LEGACY_RETAINED_TOPIC).await?;
            tracing::info!(
                retained = n,
                "imported the MQTT retained messages of the old system topic"
            );
        }
        let mut map = self.retained.write();
        let mut after: Option<Bytes> = None;
        loop {
            let page = kv.scan(RETAINED_NS, b"", after.as_deref(), 1024)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in page {
                match (String::from_utf8(k.to_vec()), decode_retained(&v)) {
                    (Ok(t), Some(m)) => {
                        map.insert(t, m);
                    }
                    _ => tracing::warn!("skipping an unreadable MQTT retained message"),
                }
            }
        }
        tracing::info!(retained = map.len(), "MQTT retained messages loaded");
        Ok(())
    }

    /// Makes sure the RocketMQ topic exists (creating it when allowed).
    ///
    /// # Errors
    /// "topic name invalid" when it does not exist and may not be created.
    pub fn ensure_topic(&self, name: &str) -> Result<(), Refused> {
        if self.known_topics.lock().contains(name) {
            return Ok(());
        }
        match self.broker.topics().config(name) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound && self.config.auto_create_topics => {
                let c = TopicConfig::new(name, self.config.auto_create_queue_count.max(1));
                match self.broker.topics().create(c) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %name, "could not create a topic for MQTT");
                        return Err(Refused(crate::error::publish_reason(&e)));
                    }
                }
            }
            Err(_) => return Err(Refused(PubAckReason::TopicNameInvalid)),
        }
        self.known_topics.lock().insert(name.to_owned());
        Ok(())
    }

    /// Stores an MQTT publish in the core (and in the retained store when `retain`). Returns
    /// once the core accepted it.
    ///
    /// # Errors
    /// [`Refused`] with the reason for the client.
    pub async fn publish(
        &self,
        client_id: &str,
        p: &Publish,
        topic_name: &str,
    ) -> Result<(), Refused> {
        let core = topic::core_topic_of_name(topic_name)
            .map_err(|_| Refused(PubAckReason::TopicNameInvalid))?;
        self.ensure_topic(core)?;
        let mut m = Message::new(core, p.payload.clone());
        let props = &mut m.properties;
        props.insert(PROP_TOPIC.into(), topic_name.to_owned());
        props.insert(PROP_QOS.into(), (p.qos as u8).to_string());
        props.insert(PROP_CLIENT.into(), client_id.to_owned());
        if p.retain {
            props.insert(PROP_RETAIN.into(), "true".into());
        }
        if let Some(v5) = &p.properties {
            if let Some(f) = v5.payload_format_indicator {
                props.insert(PROP_PAYLOAD_FORMAT.into(), f.to_string());
                if f == 1 && std::str::from_utf8(&p.payload).is_err() {
                    return Err(Refused(PubAckReason::PayloadFormatInvalid));
                }
            }
            if let Some(e) = v5.message_expiry_interval {
                let at = self.broker.now_ms() + i64::from(e) * 1000;
                props.insert(PROP_EXPIRES_AT.into(), at.to_string());
            }
            if let Some(t) = &v5.response_topic {
                props.insert(PROP_RESPONSE_TOPIC.into(), t.clone());
            }
            if let Some(c) = &v5.correlation_data {
                props.insert(PROP_CORRELATION.into(), hex(c));
            }
            if let Some(c) = &v5.content_type {
                props.insert(PROP_CONTENT_TYPE.into(), c.clone());
            }
            for (k, v) in &v5.user_properties {
                if !k.starts_with("mqtt") {
                    props.insert(k.clone(), v.clone());
                }
            }
        }
        let req = SendRequest::new(m, QueueSelector::ShardingKey(topic_name.to_owned()));
        if p.retain {
            // A publish the core refuses (a topic of another message type, a size) is not
            // retained either.
            self.broker
                .producer()
                .check(&req)
                .map_err(|e| Refused(crate::error::publish_reason(&e)))?;
            self.retain(&req.message, topic_name).await?;
        }
        match self.broker.producer().send(req).await {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(e.kind(), ErrorKind::Internal | ErrorKind::Unavailable) {
                    tracing::error!(error = %e, topic = %topic_name, "MQTT publish not stored");
                }
                Err(Refused(crate::error::publish_reason(&e)))
            }
        }
    }

    fn retain_write_lock(&self, topic_name: &str) -> &tokio::sync::Mutex<()> {
        let i = crc32c::crc32c(topic_name.as_bytes()) as usize % self.retain_writes.len().max(1);
        &self.retain_writes[i]
    }

    async fn retain(&self, m: &Message, topic_name: &str) -> Result<(), Refused> {
        let _write = self.retain_write_lock(topic_name).lock().await;
        if !m.body.is_empty()
            && !self.retained.read().contains_key(topic_name)
            && self.retained.read().len() >= self.config.max_retained
        {
            return Err(Refused(PubAckReason::QuotaExceeded));
        }
        let kv = self.broker.kv();
        let now = self.broker.now_ms();
        let stored = stored(m, now);
        let written = if m.body.is_empty() {
            kv.delete(RETAINED_NS, topic_name.as_bytes()).await
        } else {
            kv.put(RETAINED_NS, topic_name.as_bytes(), encode_retained(&stored))
                .await
        };
        match written {
            Ok(_) => {
                let mut map = self.retained.write();
                if m.body.is_empty() {
                    map.remove(topic_name);
                } else {
                    map.insert(topic_name.to_owned(), stored);
                }
                Ok(())
            }
            Err(e) => {
                if matches!(e.kind(), ErrorKind::Internal | ErrorKind::Unavailable) {
                    tracing::error!(error = %e, "could not store a retained message");
                }
                Err(Refused(crate::error::publish_reason(&e)))
            }
        }
    }

    /// Retained messages whose MQTT topic matches `filter`.
    pub fn retained_matching(&self, filter: &str) -> Vec<StoredMessage> {
        self.retained
            .read()
            .iter()
            .filter(|(t, _)| topic::matches(t, filter))
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// A stored message for `m` (unit tests of other modules).
#[cfg(test)]
pub(crate) fn stored_for_tests(m: &Message) -> StoredMessage {
    stored(m, 0)
}

/// A retained message as kept in memory and handed to deliveries.
fn stored(m: &Message, stored_at_ms: i64) -> StoredMessage {
    StoredMessage {
        message_id: String::new(),
        topic: m.topic.clone(),
        queue_id: 0,
        queue_offset: 0,
        physical_offset: 0,
        size: 0,
        store_timestamp_ms: stored_at_ms,
        born_timestamp_ms: stored_at_ms,
        born_host: None,
        tag: None,
        keys: Vec::new(),
        message_group: None,
        properties: m.properties.clone(),
        body: m.body.clone(),
        reconsume_times: 0,
        flags: 0,
    }
}

/// The KV value of a retained message (layout in the module doc).
fn encode_retained(m: &StoredMessage) -> Bytes {
    let props = serde_json::to_vec(&m.properties).unwrap_or_default();
    let mut out = Vec::with_capacity(13 + props.len() + m.body.len());
    out.push(1);
    out.extend_from_slice(&m.store_timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(props.len() as u32).to_le_bytes());
    out.extend_from_slice(&props);
    out.extend_from_slice(&m.body);
    Bytes::from(out)
}

/// A retained message from its KV value, `None` if it does not decode.
fn decode_retained(v: &Bytes) -> Option<StoredMessage> {
    if *v.first()? != 1 {
        return None;
    }
    let at = i64::from_le_bytes(v.get(1..9)?.try_into().ok()?);
    let n = u32::from_le_bytes(v.get(9..13)?.try_into().ok()?) as usize;
    let properties: BTreeMap<String, String> =
        serde_json::from_slice(v.get(13..13usize.checked_add(n)?)?).ok()?;
    let topic = topic::core_topic_of_name(properties.get(PROP_TOPIC)?)
        .ok()?
        .to_owned();
    let mut m = Message::new(topic, v.slice(13 + n..));
    m.properties = properties;
    Some(stored(&m, at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_retained_message_round_trips_through_its_kv_value() {
        let mut m = rocketgate_core::Message::new("news", "payload");
        m.properties
            .insert(super::PROP_TOPIC.into(), "news/a".into());
        m.properties.insert("k".into(), "v".into());
        let s = super::stored(&m, 42);
        let back = super::decode_retained(&super::encode_retained(&s)).unwrap();
        assert_eq!(
            (back.topic.as_str(), &back.body[..]),
            ("news", &b"payload"[..])
        );
        assert_eq!(
            (back.properties, back.store_timestamp_ms),
            (m.properties, 42)
        );
        assert!(super::decode_retained(&bytes::Bytes::from_static(b"\x02")).is_none());
    }
}
