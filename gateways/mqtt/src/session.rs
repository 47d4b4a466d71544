//! MQTT sessions: what outlives a connection, in memory and durably in the core.
//!
//! Owns: the session registry (client id → [`SessionSlot`]) and the durable session records
//! in the core's KV store, namespace [`SESSIONS_NS`] (key: the client id, 1..=1024 bytes;
//! value: the JSON [`SessionRecord`]; a session end deletes the key), loaded on start. The KV
//! store is never touched by CommitLog retention. An upgrade from the system topic
//! `mqtt_sys_sessions` of earlier versions imports its latest record per client id once (see
//! `system_topic`).
//!
//! What survives what:
//! - Subscriptions and the session expiry are in the durable record: they survive a broker
//!   restart. Delivery positions are the core's pop state of the session's consumer groups
//!   (acknowledged = delivered), so offline messages wait in the core and survive a restart.
//! - Messages in flight to the client (QoS 1/2 awaiting PUBACK/PUBREC/PUBCOMP) and messages
//!   popped but not yet sent are kept in memory across reconnects, and retransmitted with DUP;
//!   after a restart the core redelivers every unacknowledged message at once (without DUP).
//! - Incoming QoS 2 packet ids awaiting PUBREL are in memory: exactly-once holds within a
//!   broker run, across reconnects.
//!
//! - A record is written (and fsynced) before [`persist`] returns; every write of a client
//!   id's record holds its write lock, so the last write is the one that stays.
//!
//! Concurrency: one connection at a time owns a session, holding its `tokio::sync::Mutex`
//! guard for the connection's life; a takeover signals the owner through `kick` and waits for
//! the guard. The registry map is a `parking_lot::Mutex`, never held across `.await`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rocketgate_core::{Broker, StoredMessage};
use rumqttc::v5::mqttbytes::v5::Publish;
use serde::{Deserialize, Serialize};

/// KV namespace of the durable session records.
pub const SESSIONS_NS: &str = "mqtt.sessions";
/// RocketMQ topic of the session records of earlier versions (imported once).
const LEGACY_SESSIONS_TOPIC: &str = "mqtt_sys_sessions";

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The raw filter as subscribed (with `$share/<name>/` if shared).
    pub filter: String,
    /// Maximum QoS.
    pub qos: u8,
    /// v5 no-local.
    #[serde(default)]
    pub no_local: bool,
    /// v5 retain-as-published.
    #[serde(default)]
    pub retain_as_published: bool,
    /// v5 subscription identifier.
    #[serde(default)]
    pub id: Option<usize>,
}

/// The durable part of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Client id.
    pub client_id: String,
    /// Subscriptions by raw filter.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Seconds the session outlives a disconnect; `None` = never expires.
    pub expiry_secs: Option<u32>,
    /// When the client disconnected (ms), if offline.
    #[serde(default)]
    pub disconnected_at_ms: Option<i64>,
    /// The session ended.
    #[serde(default)]
    pub deleted: bool,
}

/// A message popped from the core for a session.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The consumer group it was popped for.
    pub group: Arc<str>,
    /// The receipt handle to acknowledge it with.
    pub receipt: String,
    /// The message.
    pub message: StoredMessage,
    /// For a shared subscription: its raw filter (only that subscription matches).
    pub shared: Option<Arc<str>>,
}

/// A message sent to the client and not yet completed.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Packet id.
    pub pkid: u16,
    /// The packet (retransmitted with DUP).
    pub publish: Publish,
    /// Core acknowledgement to make when the client acknowledges (`None` for retained).
    pub ack: Option<(Arc<str>, String)>,
    /// QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP.
    pub released: bool,
}

/// A session's state.
#[derive(Debug)]
pub struct SessionState {
    /// The durable part.
    pub record: SessionRecord,
    /// Whether the session existed before this connection.
    pub present: bool,
    /// In flight to the client, in send order.
    pub outgoing: VecDeque<Outgoing>,
    /// Popped, not yet sent.
    pub pending: VecDeque<Delivery>,
    /// Incoming QoS 2 ids awaiting PUBREL.
    pub incoming_qos2: HashSet<u16>,
    /// Last packet id used.
    pub last_pkid: u16,
    /// A durable record of this session exists (it was persistent at some point).
    pub durable: bool,
    /// The session ended; a connection that finds its slot so must take a fresh one.
    pub ended: bool,
}

impl SessionState {
    /// An empty session that ends at disconnect.
    pub fn new(client_id: &str) -> Self {
        Self {
            record: SessionRecord {
                client_id: client_id.to_owned(),
                subscriptions: BTreeMap::new(),
                expiry_secs: Some(0),
                disconnected_at_ms: None,
                deleted: false,
            },
            present: false,
            outgoing: VecDeque::new(),
            pending: VecDeque::new(),
            incoming_qos2: HashSet::new(),
            last_pkid: 0,
            durable: false,
            ended: false,
        }
    }

    /// A free packet id.
    pub fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            let id = self.last_pkid;
            if !self.outgoing.iter().any(|o| o.pkid == id) {
                return id;
            }
        }
    }

    /// Whether the session ends when its connection does.
    pub fn ends_at_disconnect(&self) -> bool {
        self.record.expiry_secs == Some(0)
    }
}

/// The slot of one client id.
#[derive(Debug)]
pub struct SessionSlot {
    /// The state; its guard is held by the owning connection.
    pub state: Arc<tokio::sync::Mutex<SessionState>>,
    /// Bumped to ask the owning connection to close (takeover, expiry).
    pub kick: tokio::sync::watch::Sender<u64>,
    /// A will waiting for its delay, cancelled when the client reconnects.
    pub will: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

/// Shards of the per-client-id write lock of session records.
const WRITE_SHARDS: usize = 64;

/// The session registry.
#[derive(Debug)]
pub struct Sessions {
    slots: parking_lot::Mutex<HashMap<String, Arc<SessionSlot>>>,
    /// Serialises the KV writes of one client id's record (sharded by client id).
    writes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            slots: parking_lot::Mutex::default(),
            writes: (0..WRITE_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

impl Sessions {
    /// Rebuilds the registry from the durable records.
    ///
    /// # Errors
    /// Core errors.
    pub async fn load(broker: &Broker) -> Result<Self, rocketgate_core::Error> {
        let kv = broker.kv();
        if let Some(old) = crate::system_topic::read_once(broker, LEGACY_SESSIONS_TOPIC).await? {
            let mut latest: HashMap<String, Vec<u8>> = HashMap::new();
            for m in old {
                match serde_json::from_slice::<SessionRecord>(&m.body) {
                    Ok(r) => {
                        latest.insert(r.client_id, m.body.to_vec());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable MQTT session record")
                    }
                }
            }
            let mut n = 0;
            for (id, body) in latest {
                let live = serde_json::from_slice::<SessionRecord>(&body).is_ok_and(|r| !r.deleted);
                if live {
                    kv.put(SESSIONS_NS, id.as_bytes(), body).await?;
                    n += 1;
                }
            }
            crate::system_topic::mark_imported(broker, LEGACY_SESSIONS_TOPIC).await?;
            tracing::info!(
                sessions = n,
                "imported the MQTT sessions of the old system topic"
            );
        }
        let now = rocketgate_core::now_ms();
        let sessions = Self::default();
        let mut n = 0;
        let mut after: Option<bytes::Bytes> = None;
        loop {
            let page = kv.scan(SESSIONS_NS, b"", after.as_deref(), 1024)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (id, body) in page {
                let mut r = match serde_json::from_slice::<SessionRecord>(&body) {
                    Ok(r) if r.client_id.as_bytes() == &id[..] && !r.deleted => r,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable MQTT session record");
                        continue;
                    }
                };
                // A session that was online when the broker stopped went offline then.
                r.disconnected_at_ms.get_or_insert(now);
                let id = r.client_id.clone();
                let mut s = SessionState::new(&id);
                s.record = r;
                s.present = true;
                s.durable = true;
                sessions.slot_with(&id, s);
                n += 1;
            }
        }
        tracing::info!(sessions = n, "MQTT sessions loaded");
        Ok(sessions)
    }

    fn slot_with(&self, id: &str, s: SessionState) -> Arc<SessionSlot> {
        let slot = Arc::new(SessionSlot {
            state: Arc::new(tokio::sync::Mutex::new(s)),
            kick: tokio::sync::watch::channel(0).0,
            will: parking_lot::Mutex::new(None),
        });
        self.slots.lock().insert(id.to_owned(), slot.clone());
        slot
    }

    /// The slot of `id`, created empty if missing.
    pub fn slot(&self, id: &str) -> Arc<SessionSlot> {
        if let Some(s) = self.slots.lock().get(id) {
            return s.clone();
        }
        self.slot_with(id, SessionState::new(id))
    }

    /// Removes a slot if it is still `slot`.
    pub fn remove(&self, id: &str, slot: &Arc<SessionSlot>) {
        let mut slots = self.slots.lock();
        if slots.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(id);
        }
    }

    /// Every slot (for the expiry sweep).
    pub fn all(&self) -> Vec<(String, Arc<SessionSlot>)> {
        self.slots
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Writes a session record durably (under the client id's write lock): a `deleted` record
/// removes the client id's key. Returns once the KV store has it on disk.
///
/// # Errors
/// Core errors (the caller logs them).
pub async fn persist(
    broker: &Broker,
    sessions: &Sessions,
    record: &SessionRecord,
) -> Result<(), rocketgate_core::Error> {
    let _write = sessions.write_lock(&record.client_id).lock().await;
    let key = record.client_id.as_bytes();
    if record.deleted {
        broker.kv().delete(SESSIONS_NS, key).await?;
    } else {
        let body = serde_json::to_vec(record).unwrap_or_default();
        broker.kv().put(SESSIONS_NS, key, body).await?;
    }
    Ok(())
}

impl Sessions {
    fn write_lock(&self, client_id: &str) -> &tokio::sync::Mutex<()> {
        let i = crc32c::crc32c(client_id.as_bytes()) as usize % self.writes.len().max(1);
        &self.writes[i]
    }
}
