//! One MQTT connection: the session state machine from CONNECT to close.
//!
//! Owns: the socket, its read and write buffers, the in-flight publishes to the core, the pop
//! tasks of the session, and (through the held guard) the session state.
//!
//! Invariants:
//! - PUBACK (QoS 1) and PUBREC (QoS 2) are written only after [`Shared::publish`] returned,
//!   i.e. after the core stored the message; acknowledgements leave in the order the PUBLISH
//!   packets arrived (one `FuturesOrdered`).
//! - A core message is acknowledged to the core only once the client acknowledged it (QoS 1:
//!   PUBACK, QoS 2: PUBREC), or once written to the socket buffer (QoS 0).
//! - Memory per connection is bounded: the read buffer by `max_packet_size`, publishes to the
//!   core by the receive maximum, deliveries by `max_inflight` + `max_queued_messages`.
//!
//! Concurrency: one task per connection runs a `select!` over socket reads, completed core
//! publishes, deliveries, keep-alive, takeover and shutdown; writes are batched into one
//! buffer flushed once per loop turn.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use rumqttc::v5::mqttbytes::v5::{
    ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, LastWill, Login,
    PubAckReason, PubRecReason, Publish, PublishProperties, RetainForwardRule, SubscribeReasonCode,
    UnsubAckReason,
};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedMutexGuard};
use tokio::time::Instant;

use crate::codec::{self, DecodeError, Packet, Version};
use crate::delivery::{self, ensure_group, spawn_poller};
use crate::session::{self, Delivery, Outgoing, SessionSlot, SessionState, Subscription};
use crate::shared::{Refused, Shared};
use crate::topic::{self, PROP_CLIENT, PROP_RETAIN};

type PubFut = Pin<Box<dyn Future<Output = (u16, QoS, Result<(), Refused>)> + Send>>;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT 0x00: no will.
    Normal,
    /// Abrupt close, protocol error, keep-alive, DISCONNECT 0x04, takeover: the will goes out.
    Abnormal,
    /// Server shutdown.
    Shutdown,
}

fn gauge_conn(delta: f64) {
    metrics::gauge!("rocketgate_connections_active", "gateway" => "mqtt").increment(delta);
}

/// Serves one connection until it ends.
pub async fn run<S>(shared: Arc<Shared>, mut stream: S, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    metrics::counter!("rocketgate_connections_total", "gateway" => "mqtt").increment(1);
    gauge_conn(1.0);
    let mut rbuf = BytesMut::with_capacity(4096);
    let max = shared.config.max_packet_size;
    let timeout = Duration::from_millis(shared.config.connect_timeout_ms);
    let first = tokio::select! {
        r = tokio::time::timeout(timeout, read_first(&mut stream, &mut rbuf, max)) => r,
        _ = shutdown.changed() => Ok(Err(())),
    };
    if let Ok(Ok((Packet::Connect(c, will, login), version))) = first {
        connected(shared, stream, rbuf, version, c, will, login, shutdown).await;
    } else {
        tracing::debug!("MQTT connection closed before a valid CONNECT");
        let _ = stream.shutdown().await;
    }
    gauge_conn(-1.0);
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> std::io::Result<()> {
    s.write_all(b).await?;
    s.flush().await
}

async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(Packet, Version), ()> {
    loop {
        match codec::decode(buf, None, max) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "bad first packet");
                return Err(());
            }
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(_) => {}
        }
    }
}

struct Conn<S> {
    shared: Arc<Shared>,
    stream: S,
    version: Version,
    client_id: String,
    rbuf: BytesMut,
    wbuf: BytesMut,
    session: OwnedMutexGuard<SessionState>,
    slot: Arc<SessionSlot>,
    will: Option<LastWill>,
    client_receive_max: usize,
    client_max_packet: usize,
    aliases: HashMap<u16, Bytes>,
    /// Outgoing topic aliases (v5): topic → alias, at most the client's Topic Alias Maximum.
    out_aliases: HashMap<Bytes, u16>,
    client_alias_max: u16,
    publishes: FuturesOrdered<PubFut>,
    qos_pending: usize,
    qos2_storing: std::collections::HashSet<u16>,
    tx: mpsc::Sender<Delivery>,
    rx: mpsc::Receiver<Delivery>,
    backlog: std::collections::VecDeque<Delivery>,
    pollers: HashMap<(Arc<str>, String), tokio::task::JoinHandle<()>>,
    acks: Vec<(Arc<str>, String)>,
    group: Arc<str>,
    session_dirty: bool,
    disconnect_expiry: Option<u32>,
}

#[allow(clippy::too_many_arguments)]
async fn connected<S>(
    shared: Arc<Shared>,
    mut stream: S,
    rbuf: BytesMut,
    version: Version,
    connect: rumqttc::v5::mqttbytes::v5::Connect,
    will: Option<LastWill>,
    login: Option<Login>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let v5 = version == Version::V5;
    let refuse = |code| async move {
        let mut out = BytesMut::new();
        let _ = codec::encode(
            &Packet::ConnAck(codec::connack(code, false)),
            version,
            &mut out,
        );
        out
    };
    let login_pair = login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()));
    if !shared.config.authenticate(login_pair) {
        metrics::counter!("rocketgate_auth_failures_total", "gateway" => "mqtt").increment(1);
        let out = refuse(ConnectReturnCode::BadUserNamePassword).await;
        let _ = write_flush(&mut stream, &out).await;
        return;
    }
    if let Some(w) = &will {
        let ok = std::str::from_utf8(&w.topic)
            .ok()
            .is_some_and(|t| topic::core_topic_of_name(t).is_ok());
        if !ok {
            let out = refuse(ConnectReturnCode::TopicNameInvalid).await;
            let _ = write_flush(&mut stream, &out).await;
            return;
        }
    }
    let props = connect.properties.clone().unwrap_or_default();
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            let out = refuse(ConnectReturnCode::ClientIdentifierNotValid).await;
            let _ = write_flush(&mut stream, &out).await;
            return;
        }
        let id = format!(
            "rg-{}",
            rocketgate_core::message_id::generate(rocketgate_core::store::now_ms())
        );
        assigned = Some(id.clone());
        id
    } else {
        connect.client_id.clone()
    };
    let max_expiry = shared.config.max_session_expiry_secs;
    let expiry = match version {
        Version::V4 if connect.clean_start => Some(0),
        Version::V4 => None,
        Version::V5 => Some(props.session_expiry_interval.unwrap_or(0).min(max_expiry)),
    };
    // Take the session over from any live connection of the same client id.
    let mut guard = None;
    for _ in 0..3 {
        let slot = shared.sessions.slot(&client_id);
        slot.kick.send_modify(|k| *k = k.wrapping_add(1));
        match tokio::time::timeout(Duration::from_secs(3), slot.state.clone().lock_owned()).await {
            Ok(g) if !g.ended => {
                guard = Some((slot, g));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let Some((slot, mut session)) = guard else {
        let out = refuse(ConnectReturnCode::ServerBusy).await;
        let _ = write_flush(&mut stream, &out).await;
        return;
    };
    if let Some(w) = slot.will.lock().take() {
        w.abort();
    }
    let group: Arc<str> = topic::session_group(&client_id).into();
    let session_present = session.present && !connect.clean_start;
    if !session_present {
        let durable = session.durable;
        *session = SessionState::new(&client_id);
        session.durable = durable;
        if shared.broker.group(&group).is_ok() {
            let _ = shared.broker.delete_group(&group);
        }
    }
    session.present = true;
    session.record.expiry_secs = expiry;
    session.record.disconnected_at_ms = None;
    if expiry != Some(0) {
        session.durable = true;
        if let Err(e) = session::persist(&shared.broker, &shared.sessions, &session.record).await {
            tracing::error!(error = %e, "could not persist an MQTT session");
            let out = refuse(ConnectReturnCode::ServerUnavailable).await;
            let _ = write_flush(&mut stream, &out).await;
            return;
        }
    } else if session.durable {
        let mut ended = session.record.clone();
        ended.deleted = true;
        let _ = session::persist(&shared.broker, &shared.sessions, &ended).await;
        session.durable = false;
    }
    let keep_alive = shared
        .config
        .server_keep_alive
        .unwrap_or(connect.keep_alive);
    let mut ack = codec::connack(ConnectReturnCode::Success, session_present);
    if v5 {
        ack.properties = Some(ConnAckProperties {
            session_expiry_interval: match (props.session_expiry_interval, expiry) {
                (Some(asked), Some(granted)) if asked != granted => Some(granted),
                _ => None,
            },
            receive_max: Some(shared.config.receive_maximum.max(1)),
            max_packet_size: u32::try_from(shared.config.max_packet_size).ok(),
            assigned_client_identifier: assigned,
            topic_alias_max: Some(shared.config.topic_alias_maximum),
            retain_available: Some(1),
            wildcard_subscription_available: Some(1),
            subscription_identifiers_available: Some(1),
            shared_subscription_available: Some(1),
            server_keep_alive: shared.config.server_keep_alive,
            max_qos: None,
            reason_string: None,
            user_properties: Vec::new(),
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        });
    }
    let mut wbuf = BytesMut::with_capacity(8192);
    let _ = codec::encode(&Packet::ConnAck(ack), version, &mut wbuf);
    let cap = shared.config.max_queued_messages.max(32);
    let (tx, rx) = mpsc::channel(cap);
    let mut conn = Conn {
        version,
        client_id,
        rbuf,
        wbuf,
        will,
        client_receive_max: usize::from(props.receive_maximum.unwrap_or(u16::MAX).max(1)),
        client_max_packet: props.max_packet_size.map_or(usize::MAX, |m| m as usize),
        aliases: HashMap::new(),
        out_aliases: HashMap::new(),
        client_alias_max: if v5 {
            props.topic_alias_max.unwrap_or(0)
        } else {
            0
        },
        publishes: FuturesOrdered::new(),
        qos_pending: 0,
        qos2_storing: std::collections::HashSet::new(),
        tx,
        rx,
        backlog: std::mem::take(&mut session.pending),
        pollers: HashMap::new(),
        acks: Vec::new(),
        group,
        session_dirty: false,
        disconnect_expiry: None,
        session,
        slot,
        stream,
        shared,
    };
    metrics::counter!("rocketgate_packets_received_total", "gateway" => "mqtt", "type" => "connect")
        .increment(1);
    conn.resend_inflight();
    conn.refresh_pollers().await;
    let end = conn.run(keep_alive, &mut shutdown).await;
    conn.finish(end).await;
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn v5(&self) -> bool {
        self.version == Version::V5
    }

    fn window(&self) -> usize {
        usize::from(self.shared.config.max_inflight.max(1)).min(self.client_receive_max)
    }

    fn write(&mut self, p: &Packet) {
        if let Err(e) = codec::encode(p, self.version, &mut self.wbuf) {
            tracing::warn!(error = %e, "could not encode an MQTT packet");
        }
    }

    async fn run(&mut self, keep_alive: u16, shutdown: &mut watch::Receiver<bool>) -> End {
        let ka = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let mut deadline = ka.map(|d| Instant::now() + d);
        let mut kick = self.slot.kick.subscribe();
        let mut topics = self.shared.broker.topics_changed();
        // Bytes that arrived together with CONNECT.
        if let Some(end) = self.process().await {
            return end;
        }
        loop {
            while self.session.outgoing.len() < self.window() {
                let Some(d) = self.backlog.pop_front() else {
                    break;
                };
                self.deliver(d);
            }
            self.flush_acks();
            if !self.wbuf.is_empty() {
                if write_flush(&mut self.stream, &self.wbuf).await.is_err() {
                    return End::Abnormal;
                }
                self.wbuf.clear();
            }
            if self.session_dirty {
                self.session_dirty = false;
                if self.session.record.expiry_secs != Some(0) {
                    if let Err(e) = session::persist(
                        &self.shared.broker,
                        &self.shared.sessions,
                        &self.session.record,
                    )
                    .await
                    {
                        tracing::error!(error = %e, "could not persist an MQTT session");
                    }
                }
            }
            let can_read =
                self.publishes.len() < usize::from(self.shared.config.receive_maximum.max(1));
            let can_deliver =
                self.session.outgoing.len() < self.window() && self.backlog.is_empty();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {
                    if self.v5() {
                        self.write(&Packet::Disconnect(Disconnect::new(DisconnectReasonCode::ServerShuttingDown)));
                        let _ = write_flush(&mut self.stream, &self.wbuf).await;
                    }
                    return End::Shutdown;
                }
                _ = kick.changed() => {
                    if self.v5() {
                        self.write(&Packet::Disconnect(Disconnect::new(DisconnectReasonCode::SessionTakenOver)));
                        let _ = write_flush(&mut self.stream, &self.wbuf).await;
                    }
                    return End::Abnormal;
                }
                Some((pkid, q, r)) = self.publishes.next(), if !self.publishes.is_empty() => {
                    let mut ok = self.published(pkid, q, r);
                    // Take every other completed store in the same turn (one socket write).
                    while let Some(Some((pkid, q, r))) = self.publishes.next().now_or_never() {
                        ok &= self.published(pkid, q, r);
                    }
                    if !ok {
                        // 3.1.1 cannot refuse a QoS 1/2 publish: close, the client resends.
                        let _ = write_flush(&mut self.stream, &self.wbuf).await;
                        return End::Abnormal;
                    }
                }
                r = self.stream.read_buf(&mut self.rbuf), if can_read => {
                    match r {
                        Ok(0) | Err(_) => return End::Abnormal,
                        Ok(_) => {
                            deadline = ka.map(|d| Instant::now() + d);
                            if let Some(end) = self.process().await {
                                return end;
                            }
                        }
                    }
                }
                Some(d) = self.rx.recv(), if can_deliver => {
                    self.deliver(d);
                    // Take what else is queued in the same turn (one socket write for a batch).
                    while self.session.outgoing.len() < self.window() && self.wbuf.len() < 64 * 1024 {
                        match self.rx.try_recv() {
                            Ok(d) => self.deliver(d),
                            Err(_) => break,
                        }
                    }
                }
                r = topics.changed() => {
                    if r.is_ok() {
                        self.refresh_pollers().await;
                    }
                }
                () = sleep => {
                    tracing::debug!(client = %self.client_id, "MQTT keep-alive expired");
                    if self.v5() {
                        self.write(&Packet::Disconnect(Disconnect::new(DisconnectReasonCode::KeepAliveTimeout)));
                        let _ = write_flush(&mut self.stream, &self.wbuf).await;
                    }
                    return End::Abnormal;
                }
            }
        }
    }

    /// Closes with a reason (v5 DISCONNECT; 3.1.1 just closes).
    async fn fail(&mut self, reason: DisconnectReasonCode) -> Option<End> {
        metrics::counter!("rocketgate_protocol_errors_total", "gateway" => "mqtt").increment(1);
        if self.v5() {
            self.write(&Packet::Disconnect(Disconnect::new(reason)));
        }
        let _ = write_flush(&mut self.stream, &self.wbuf).await;
        self.wbuf.clear();
        Some(End::Abnormal)
    }

    /// Decodes and handles every complete packet in the read buffer.
    async fn process(&mut self) -> Option<End> {
        loop {
            let max = self.shared.config.max_packet_size;
            let packet = match codec::decode(&mut self.rbuf, Some(self.version), max) {
                Ok(Some((p, _))) => p,
                Ok(None) => return None,
                Err(DecodeError::TooLarge(_)) => {
                    return self.fail(DisconnectReasonCode::PacketTooLarge).await
                }
                Err(DecodeError::Protocol(_)) => {
                    return self.fail(DisconnectReasonCode::ProtocolError).await
                }
                Err(e) => {
                    tracing::debug!(error = %e, client = %self.client_id, "malformed MQTT packet");
                    return self.fail(DisconnectReasonCode::MalformedPacket).await;
                }
            };
            if let Some(end) = self.handle(packet).await {
                return Some(end);
            }
        }
    }

    async fn handle(&mut self, packet: Packet) -> Option<End> {
        match packet {
            Packet::Publish(p) => return self.incoming_publish(p).await,
            Packet::PubAck(a) => {
                if let Some(i) = self
                    .session
                    .outgoing
                    .iter()
                    .position(|o| o.pkid == a.pkid && o.publish.qos == QoS::AtLeastOnce)
                {
                    if let Some(o) = self.session.outgoing.remove(i) {
                        self.acks.extend(o.ack);
                    }
                }
            }
            Packet::PubRec(a) => {
                if let Some(o) = self
                    .session
                    .outgoing
                    .iter_mut()
                    .find(|o| o.pkid == a.pkid && o.publish.qos == QoS::ExactlyOnce)
                {
                    if !o.released {
                        o.released = true;
                        if let Some(ack) = o.ack.take() {
                            self.acks.push(ack);
                        }
                    }
                }
                self.write(&codec::pubrel(a.pkid));
            }
            Packet::PubComp(a) => {
                if let Some(i) = self
                    .session
                    .outgoing
                    .iter()
                    .position(|o| o.pkid == a.pkid && o.released)
                {
                    self.session.outgoing.remove(i);
                }
            }
            Packet::PubRel(r) => {
                let found = self.session.incoming_qos2.remove(&r.pkid);
                self.write(&codec::pubcomp(r.pkid, found));
            }
            Packet::Subscribe(s) => self.subscribe(s).await,
            Packet::Unsubscribe(u) => {
                let mut reasons = Vec::with_capacity(u.filters.len());
                for f in &u.filters {
                    reasons.push(match self.session.record.subscriptions.remove(f) {
                        Some(_) => UnsubAckReason::Success,
                        None => UnsubAckReason::NoSubscriptionExisted,
                    });
                }
                self.session_dirty = true;
                self.write(&codec::unsuback(u.pkid, reasons));
                self.refresh_pollers().await;
            }
            Packet::PingReq(_) => {
                self.write(&Packet::PingResp(rumqttc::v5::mqttbytes::v5::PingResp))
            }
            Packet::Disconnect(d) => {
                if let Some(e) = d
                    .properties
                    .as_ref()
                    .and_then(|p| p.session_expiry_interval)
                {
                    if self.session.record.expiry_secs == Some(0) && e != 0 {
                        return self.fail(DisconnectReasonCode::ProtocolError).await;
                    }
                    self.disconnect_expiry =
                        Some(e.min(self.shared.config.max_session_expiry_secs));
                }
                return Some(match d.reason_code {
                    DisconnectReasonCode::NormalDisconnection => End::Normal,
                    _ => End::Abnormal,
                });
            }
            Packet::Connect(..) => return self.fail(DisconnectReasonCode::ProtocolError).await,
            _ => return self.fail(DisconnectReasonCode::ProtocolError).await,
        }
        None
    }

    async fn incoming_publish(&mut self, mut p: Publish) -> Option<End> {
        metrics::counter!("rocketgate_publishes_received_total", "gateway" => "mqtt").increment(1);
        // Topic aliases (v5).
        if let Some(alias) = p.properties.as_ref().and_then(|x| x.topic_alias) {
            if alias == 0 || alias > self.shared.config.topic_alias_maximum {
                return self.fail(DisconnectReasonCode::TopicAliasInvalid).await;
            }
            if p.topic.is_empty() {
                match self.aliases.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => return self.fail(DisconnectReasonCode::ProtocolError).await,
                }
            } else {
                self.aliases.insert(alias, p.topic.clone());
            }
        }
        let topic = match std::str::from_utf8(&p.topic) {
            Ok(t) if topic::core_topic_of_name(t).is_ok() => t.to_owned(),
            _ => {
                if self.v5() && p.qos != QoS::AtMostOnce {
                    self.ack_publish(p.pkid, p.qos, PubAckReason::TopicNameInvalid);
                    return None;
                }
                return self.fail(DisconnectReasonCode::TopicNameInvalid).await;
            }
        };
        if p.qos != QoS::AtMostOnce {
            if p.qos == QoS::ExactlyOnce && self.qos2_storing.contains(&p.pkid) {
                // Retransmitted while the first copy is being stored: its PUBREC will follow.
                return None;
            }
            if p.qos == QoS::ExactlyOnce && self.session.incoming_qos2.contains(&p.pkid) {
                // A retransmission of a message stored already: acknowledge, do not store again.
                self.write(&codec::pubrec(p.pkid, PubRecReason::Success));
                return None;
            }
            let limit = usize::from(self.shared.config.receive_maximum.max(1));
            let full = self.qos_pending + self.session.incoming_qos2.len() >= limit;
            if full && (self.v5() || self.session.incoming_qos2.len() >= limit) {
                return self
                    .fail(DisconnectReasonCode::ReceiveMaximumExceeded)
                    .await;
            }
            self.qos_pending += 1;
            if p.qos == QoS::ExactlyOnce {
                self.qos2_storing.insert(p.pkid);
            }
        }
        let shared = self.shared.clone();
        let client = self.client_id.clone();
        self.publishes.push_back(Box::pin(async move {
            let r = shared.publish(&client, &p, &topic).await;
            (p.pkid, p.qos, r)
        }));
        None
    }

    fn ack_publish(&mut self, pkid: u16, q: QoS, reason: PubAckReason) {
        match q {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.write(&codec::puback(pkid, reason)),
            QoS::ExactlyOnce => {
                let r = match reason {
                    PubAckReason::Success => PubRecReason::Success,
                    PubAckReason::NotAuthorized => PubRecReason::NotAuthorized,
                    PubAckReason::TopicNameInvalid => PubRecReason::TopicNameInvalid,
                    PubAckReason::QuotaExceeded => PubRecReason::QuotaExceeded,
                    PubAckReason::PayloadFormatInvalid => PubRecReason::PayloadFormatInvalid,
                    _ => PubRecReason::ImplementationSpecificError,
                };
                self.write(&codec::pubrec(pkid, r));
            }
        }
    }

    /// Acknowledges a stored publish; `false` when the connection must close (a 3.1.1 QoS 1/2
    /// publish the core refused).
    fn published(&mut self, pkid: u16, q: QoS, r: Result<(), Refused>) -> bool {
        if q != QoS::AtMostOnce {
            self.qos_pending = self.qos_pending.saturating_sub(1);
        }
        if q == QoS::ExactlyOnce {
            self.qos2_storing.remove(&pkid);
        }
        match r {
            Ok(()) => {
                if q == QoS::ExactlyOnce {
                    self.session.incoming_qos2.insert(pkid);
                }
                self.ack_publish(pkid, q, PubAckReason::Success);
                true
            }
            Err(Refused(reason)) => {
                metrics::counter!("rocketgate_publishes_refused_total", "gateway" => "mqtt")
                    .increment(1);
                if !self.v5() && q != QoS::AtMostOnce {
                    tracing::debug!(client = %self.client_id, "MQTT publish refused");
                    return false;
                }
                self.ack_publish(pkid, q, reason);
                true
            }
        }
    }

    async fn subscribe(&mut self, s: rumqttc::v5::mqttbytes::v5::Subscribe) {
        let id = s.properties.as_ref().and_then(|p| p.id);
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for f in s.filters {
            let parsed = match topic::parse_filter(&f.path) {
                Ok(p) => p,
                Err(_) => {
                    codes.push(SubscribeReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            if let Some(t) = parsed.core_topic {
                if self.shared.ensure_topic(t).is_err() {
                    codes.push(SubscribeReasonCode::TopicFilterInvalid);
                    continue;
                }
            }
            let topics: Vec<String> = match parsed.core_topic {
                Some(t) => vec![t.to_owned()],
                None => self.visible_topics(),
            };
            let existed = self.session.record.subscriptions.contains_key(&f.path);
            match parsed.share {
                Some(share) => {
                    let g = topic::shared_group(share, parsed.filter);
                    if ensure_group(&self.shared.broker, &g) {
                        for t in &topics {
                            let _ = self.shared.broker.pop_from_end(&g, t).await;
                        }
                    }
                }
                None => {
                    let covered = self.covered_topics();
                    ensure_group(&self.shared.broker, &self.group);
                    for t in topics.iter().filter(|t| !covered.contains(*t)) {
                        if let Err(e) = self.shared.broker.pop_from_end(&self.group, t).await {
                            tracing::warn!(error = %e, topic = %t, "could not start an MQTT subscription");
                        }
                    }
                    let send = match f.retain_forward_rule {
                        RetainForwardRule::OnEverySubscribe => true,
                        RetainForwardRule::OnNewSubscribe => !existed,
                        RetainForwardRule::Never => false,
                    };
                    if send {
                        retained.push((parsed.filter.to_owned(), f.qos as u8, id));
                    }
                }
            }
            self.session.record.subscriptions.insert(
                f.path.clone(),
                Subscription {
                    filter: f.path.clone(),
                    qos: f.qos as u8,
                    no_local: f.nolocal,
                    retain_as_published: f.preserve_retain,
                    id,
                },
            );
            codes.push(SubscribeReasonCode::Success(f.qos));
        }
        self.session_dirty = true;
        self.write(&codec::suback(s.pkid, codes));
        self.refresh_pollers().await;
        let now = rocketgate_core::store::now_ms();
        for (filter, q, id) in retained {
            for m in self.shared.retained_matching(&filter) {
                if delivery::expired(&m, now) {
                    continue;
                }
                let q = delivery::qos(q.min(delivery::published_qos(&m)));
                let ids: Vec<usize> = id.into_iter().collect();
                let p = delivery::to_publish(&m, q, true, self.v5(), &ids, now);
                self.send_publish(p, None);
            }
        }
    }

    fn visible_topics(&self) -> Vec<String> {
        self.shared
            .broker
            .list_user_topics()
            .into_iter()
            .map(|t| t.name)
            .filter(|n| topic::wildcard_visible(n))
            .collect()
    }

    /// RocketMQ topics the session's plain subscriptions read.
    fn covered_topics(&self) -> std::collections::HashSet<String> {
        let mut out = std::collections::HashSet::new();
        let mut all = false;
        for raw in self.session.record.subscriptions.keys() {
            if let Ok(p) = topic::parse_filter(raw) {
                if p.share.is_some() {
                    continue;
                }
                match p.core_topic {
                    Some(t) => {
                        out.insert(t.to_owned());
                    }
                    None => all = true,
                }
            }
        }
        if all {
            out.extend(self.visible_topics());
        }
        out
    }

    /// Starts and stops pop tasks to match the subscriptions.
    async fn refresh_pollers(&mut self) {
        let mut want: HashMap<(Arc<str>, String), Option<Arc<str>>> = HashMap::new();
        for t in self.covered_topics() {
            want.insert((self.group.clone(), t), None);
        }
        let mut visible = None;
        for raw in self.session.record.subscriptions.keys() {
            let Ok(p) = topic::parse_filter(raw) else {
                continue;
            };
            let Some(share) = p.share else { continue };
            let g: Arc<str> = topic::shared_group(share, p.filter).into();
            let topics = match p.core_topic {
                Some(t) => vec![t.to_owned()],
                None => visible.get_or_insert_with(|| self.visible_topics()).clone(),
            };
            for t in topics {
                want.insert((g.clone(), t), Some(Arc::from(raw.as_str())));
            }
        }
        self.pollers.retain(|k, h| {
            let keep = want.contains_key(k) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        let invisible = Duration::from_secs(self.shared.config.delivery_invisible_secs.max(1));
        for (k, shared) in want {
            if self.pollers.contains_key(&k) {
                continue;
            }
            if shared.is_some() {
                ensure_group(&self.shared.broker, &k.0);
            }
            let h = spawn_poller(
                self.shared.broker.clone(),
                k.0.clone(),
                k.1.clone(),
                shared,
                invisible,
                self.tx.clone(),
            );
            self.pollers.insert(k, h);
        }
    }

    /// Sends a core message to the client if a subscription matches, else acknowledges it.
    fn deliver(&mut self, d: Delivery) {
        let now = rocketgate_core::store::now_ms();
        let m = &d.message;
        let t = delivery::mqtt_topic(m);
        let from_self = m
            .properties
            .get(PROP_CLIENT)
            .is_some_and(|c| *c == self.client_id);
        let mut best: Option<u8> = None;
        let mut ids = Vec::new();
        let mut rap = false;
        for (raw, sub) in &self.session.record.subscriptions {
            let filter = match (&d.shared, topic::parse_filter(raw)) {
                (Some(s), Ok(p)) if **s == **raw => p.filter,
                (None, Ok(p)) if p.share.is_none() => p.filter,
                _ => continue,
            };
            if !topic::matches(t, filter) || (sub.no_local && from_self) {
                continue;
            }
            best = Some(best.map_or(sub.qos, |b| b.max(sub.qos)));
            ids.extend(sub.id);
            rap |= sub.retain_as_published;
        }
        let Some(q) = best else {
            self.acks.push((d.group, d.receipt));
            return;
        };
        if delivery::expired(m, now) {
            self.acks.push((d.group, d.receipt));
            return;
        }
        let q = delivery::qos(q.min(delivery::published_qos(m)));
        let retain = rap && m.properties.get(PROP_RETAIN).is_some_and(|v| v == "true");
        let p = delivery::to_publish(m, q, retain, self.v5(), &ids, now);
        self.send_publish(p, Some((d.group, d.receipt)));
    }

    fn send_publish(&mut self, mut p: Publish, ack: Option<(Arc<str>, String)>) {
        if p.qos != QoS::AtMostOnce {
            p.pkid = self.session.next_pkid();
        }
        let start = self.wbuf.len();
        let wire = self.aliased(&p);
        self.write(&Packet::Publish(wire));
        if self.wbuf.len() - start > self.client_max_packet {
            // Larger than the client accepts (v5 Maximum Packet Size): dropped, as the spec says.
            self.wbuf.truncate(start);
            self.acks.extend(ack);
            return;
        }
        metrics::counter!("rocketgate_publishes_sent_total", "gateway" => "mqtt").increment(1);
        if p.qos == QoS::AtMostOnce {
            self.acks.extend(ack);
        } else {
            self.session.outgoing.push_back(Outgoing {
                pkid: p.pkid,
                publish: p,
                ack,
                released: false,
            });
        }
    }

    /// The packet as sent: with a topic alias when the client allows them (v5). The first use
    /// of an alias carries the topic, later ones an empty topic. Retransmissions after a
    /// reconnect use the stored packet, with its topic (aliases are per connection).
    fn aliased(&mut self, p: &Publish) -> Publish {
        let mut wire = p.clone();
        if self.client_alias_max == 0 {
            return wire;
        }
        let props = wire
            .properties
            .get_or_insert_with(PublishProperties::default);
        match self.out_aliases.get(&p.topic) {
            Some(&a) => {
                props.topic_alias = Some(a);
                wire.topic = Bytes::new();
            }
            None => {
                let next = u16::try_from(self.out_aliases.len() + 1).unwrap_or(u16::MAX);
                if next <= self.client_alias_max {
                    self.out_aliases.insert(p.topic.clone(), next);
                    props.topic_alias = Some(next);
                }
            }
        }
        wire
    }

    /// Retransmits what was in flight when the previous connection ended.
    fn resend_inflight(&mut self) {
        let items: Vec<Outgoing> = self.session.outgoing.iter().cloned().collect();
        for o in items {
            if o.released {
                self.write(&codec::pubrel(o.pkid));
            } else {
                let mut p = o.publish.clone();
                p.dup = true;
                self.write(&Packet::Publish(p));
            }
        }
    }

    fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        let broker = self.shared.broker.clone();
        tokio::spawn(async move {
            let mut by_group: HashMap<Arc<str>, Vec<String>> = HashMap::new();
            for (g, r) in acks {
                by_group.entry(g).or_default().push(r);
            }
            for (g, handles) in by_group {
                let refs: Vec<&str> = handles.iter().map(String::as_str).collect();
                if let Err(e) = broker.ack_batch(&g, &refs).await {
                    tracing::warn!(error = %e, group = %g, "could not acknowledge MQTT deliveries");
                }
            }
        });
    }

    async fn finish(mut self, end: End) {
        for (_, h) in self.pollers.drain() {
            h.abort();
        }
        // Completed publishes still owe their acknowledgement; abandoned ones the client resends.
        self.flush_acks();
        if let Some(e) = self.disconnect_expiry {
            self.session.record.expiry_secs = Some(e);
        }
        let will = match end {
            End::Abnormal => self.will.take(),
            End::Normal | End::Shutdown => None,
        };
        let _ = self.stream.shutdown().await;
        let broker = self.shared.broker.clone();
        let ends = self.session.ends_at_disconnect();
        if ends {
            self.session.ended = true;
            if self.session.durable {
                let mut r = self.session.record.clone();
                r.deleted = true;
                let _ = session::persist(&broker, &self.shared.sessions, &r).await;
            }
            if broker.group(&self.group).is_ok() {
                let _ = broker.delete_group(&self.group);
            }
            self.shared.sessions.remove(&self.client_id, &self.slot);
        } else {
            let mut pending = std::mem::take(&mut self.backlog);
            while let Ok(d) = self.rx.try_recv() {
                pending.push_back(d);
            }
            self.session.pending = pending;
            self.session.record.disconnected_at_ms = Some(rocketgate_core::store::now_ms());
            if let Err(e) =
                session::persist(&broker, &self.shared.sessions, &self.session.record).await
            {
                tracing::error!(error = %e, "could not persist an MQTT session");
            }
        }
        if let Some(w) = will {
            let delay = w
                .properties
                .as_ref()
                .and_then(|p| p.delay_interval)
                .unwrap_or(0)
                .min(self.session.record.expiry_secs.unwrap_or(u32::MAX));
            let shared = self.shared.clone();
            let client = self.client_id.clone();
            let task = tokio::spawn(async move {
                if delay > 0 {
                    tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
                }
                publish_will(&shared, &client, w).await;
            });
            if delay > 0 && !ends {
                *self.slot.will.lock() = Some(task.abort_handle());
            }
        }
        drop(self.session);
    }
}

async fn publish_will(shared: &Shared, client: &str, w: LastWill) {
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
    let p = Publish {
        dup: false,
        qos: w.qos,
        retain: w.retain,
        topic: w.topic,
        pkid: 0,
        payload: w.message,
        properties,
    };
    let Ok(topic) = std::str::from_utf8(&p.topic) else {
        return;
    };
    let topic = topic.to_owned();
    if let Err(Refused(r)) = shared.publish(client, &p, &topic).await {
        tracing::warn!(reason = ?r, client = %client, "MQTT will not published");
    }
}
