//! From the core to a session: the core subscriptions that feed a connection, and the
//! conversion of a stored message into the PUBLISH a subscriber receives.
//!
//! Each (consumer group, RocketMQ topic) a connection reads is one core [`Subscription`] (the
//! core's one delivery loop, `Consumer::subscribe`) and a small forwarding task that moves what
//! it yields into the connection's [`Inbox`], the bounded channel the driver takes deliveries
//! from. All of a connection's subscriptions pop against one shared credit pool: a popped
//! message always has a place in the channel, a slow subscriber makes its loops wait, and the
//! core keeps the rest. A message stays invisible to the group until the session acknowledges
//! it (on PUBACK / PUBREC, or once written for QoS 0).
//!
//! Invariants:
//! - The bound: messages popped from the core and not yet in the session (held by a core loop
//!   for a pop in progress, waiting in a core subscription's buffer, or queued in the channel)
//!   are at most the channel's capacity, `max(max_queued_messages, 32)`. The pool starts with
//!   that many credits, every popped message spends one, and one goes back each time the
//!   driver takes a delivery out of the channel ([`Inbox::recv`], [`Inbox::try_recv`]), where
//!   the session's window (`max_inflight`) bounds it. So a connection has at most
//!   capacity + window messages popped and unacknowledged, as with the pop tasks before.
//! - The channel never refuses a forwarded delivery: it holds at most what was popped, which
//!   the credits bound by its capacity; the forwarder puts it there without an await in
//!   between, so aborting a forwarder loses no credit (a core subscription gives back what it
//!   held when dropped).
//! - Errors come in order with the messages: logged at debug; the core loop retries after
//!   `RETRY_AFTER`, and a refusal that cannot heal ends that subscription (the driver starts it
//!   again at its next refresh, on a topic or subscription change).
//! - Pops use the connection's invisible time clamped to the broker's bounds, a wait of at most
//!   20 s, and batches of 32 (4 for a shared group, so that members share a burst).
//!
//! Concurrency: forwarding tasks own their core subscription and a channel sender; the
//! connection aborts them (a message popped and not yet forwarded then is redelivered after its
//! invisible time, as a pop cut off by the end always was).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rocketgate_core::{
    Broker, Credits, ErrorKind, FilterExpression, GroupConfig, PopRequest, StoredMessage,
    Subscription, SubscriptionCredits, SubscriptionRequest,
};
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use crate::session::Delivery;
use crate::shared::{
    unhex, PROP_CONTENT_TYPE, PROP_CORRELATION, PROP_EXPIRES_AT, PROP_PAYLOAD_FORMAT,
    PROP_RESPONSE_TOPIC,
};
use crate::topic::{self, PROP_QOS, PROP_TOPIC};

/// Messages popped per pop of a session's own group.
const POP_BATCH: usize = 32;
/// Messages popped per pop of a shared group: small, so that members share a burst.
const SHARED_POP_BATCH: usize = 4;
/// The longest long-polling wait of one pop.
const MAX_WAIT: Duration = Duration::from_secs(20);

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

/// What a connection reads for one (group, topic) — see [`Inbox::subscribe`].
#[derive(Debug, Clone)]
pub struct Feed {
    /// The consumer group.
    pub group: Arc<str>,
    /// The RocketMQ topic.
    pub topic: String,
    /// For a shared subscription: its raw filter.
    pub shared: Option<Arc<str>>,
    /// The session's invisible time (clamped to the broker's bounds).
    pub invisible: Duration,
}

/// A connection's deliveries: the bounded channel its forwarding tasks fill and the credit pool
/// their core subscriptions share (see the module doc for the bound).
#[derive(Debug)]
pub struct Inbox {
    tx: mpsc::Sender<Delivery>,
    rx: mpsc::Receiver<Delivery>,
    credits: SubscriptionCredits,
}

impl Inbox {
    /// An inbox of `capacity` deliveries (at least 1), and as many credits.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let credits = SubscriptionCredits::new(u32::try_from(capacity).unwrap_or(u32::MAX));
        Self { tx, rx, credits }
    }

    /// The next delivery; its credit goes back to the pool (it is the session's now).
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let d = self.rx.recv().await?;
        self.credits.grant(1);
        Some(d)
    }

    /// A delivery already queued, if any (its credit goes back to the pool).
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let d = self.rx.try_recv().ok()?;
        self.credits.grant(1);
        Some(d)
    }

    /// Starts a core subscription for `feed` on the shared pool, and the task that forwards
    /// what it yields into the channel; aborting the task ends both.
    ///
    /// # Errors
    /// The core's refusal of the subscription (`Consumer::subscribe`).
    pub fn subscribe(
        &self,
        broker: &Broker,
        feed: Feed,
    ) -> Result<JoinHandle<()>, rocketgate_core::Error> {
        let c = &broker.config().consumer;
        let invisible = feed.invisible.clamp(
            Duration::from_millis(c.min_invisible_ms),
            Duration::from_millis(c.max_invisible_ms),
        );
        let batch = if feed.shared.is_some() {
            SHARED_POP_BATCH
        } else {
            POP_BATCH
        };
        let sub = broker.consumer().subscribe(SubscriptionRequest {
            pop: PopRequest {
                group: feed.group.to_string(),
                topic: feed.topic.clone(),
                filter: Some(FilterExpression::tag("*")),
                max: batch.min(c.max_pop_batch.max(1)),
                invisible,
                wait: Duration::from_millis(c.max_wait_ms).min(MAX_WAIT),
            },
            credits: Credits::Shared(self.credits.clone()),
            max_buffered_bytes: c.max_pop_bytes,
        })?;
        Ok(tokio::spawn(forward(sub, self.tx.clone(), feed)))
    }
}

/// Moves what a core subscription yields into the connection's channel.
async fn forward(mut sub: Subscription, tx: mpsc::Sender<Delivery>, feed: Feed) {
    while let Some(item) = sub.next().await {
        let p = match item {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, group = %feed.group, topic = %feed.topic, "MQTT pop failed");
                continue;
            }
        };
        let d = Delivery {
            group: feed.group.clone(),
            receipt: p.receipt_handle,
            message: p.message,
            shared: feed.shared.clone(),
        };
        // Never full (the credits bound it) and no await: an abort here loses no credit.
        match tx.try_send(d) {
            Ok(()) => {}
            Err(TrySendError::Full(d)) => {
                if tx.send(d).await.is_err() {
                    return;
                }
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
    tracing::debug!(group = %feed.group, topic = %feed.topic, "MQTT subscription ended");
}

/// The MQTT topic of a stored message: its `mqttTopic` property when that is a topic name an
/// MQTT client could have published to this RocketMQ topic, else the RocketMQ topic itself.
///
/// A message sent over REST or gRPC may carry any `mqttTopic`: wildcards (`t1/+/#`), a NUL, a
/// reserved `$` name, or a name stored in another RocketMQ topic (`other/x` in `t1`). None of
/// those is ever sent as a PUBLISH topic (a topic name with wildcards is a protocol violation
/// for the client, and a name of another topic would pass it off as that topic's): the message
/// is delivered under its RocketMQ topic name (logged at debug).
pub fn mqtt_topic(m: &StoredMessage) -> &str {
    match m.properties.get(PROP_TOPIC) {
        Some(t) if topic::core_topic_of_name(t) == Ok(m.topic.as_str()) => t,
        Some(_) => {
            tracing::debug!(topic = %m.topic, "mqttTopic is not an MQTT topic name of this topic: delivered under the topic");
            &m.topic
        }
        None => &m.topic,
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn only_a_topic_name_of_the_message_s_own_topic_is_its_mqtt_topic() {
        let m = |topic: &str, prop: Option<&str>| {
            let mut m = rocketgate_core::Message::new(topic, "x");
            if let Some(p) = prop {
                m.properties.insert(super::PROP_TOPIC.into(), p.into());
            }
            crate::shared::stored_for_tests(&m)
        };
        for (topic, prop, want) in [
            ("t1", None, "t1"),
            ("t1", Some("t1/a/b"), "t1/a/b"),
            ("t1", Some("t1/+/#"), "t1"),
            ("t1", Some("#"), "t1"),
            ("t1", Some("other/x"), "t1"),
            ("t1", Some("$SYS/x"), "t1"),
            ("t1", Some(""), "t1"),
            ("mqtt_slash", Some("/a"), "/a"),
        ] {
            assert_eq!(super::mqtt_topic(&m(topic, prop)), want, "{prop:?}");
        }
    }
}
