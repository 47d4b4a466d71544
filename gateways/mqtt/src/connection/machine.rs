//! The session state machine of one MQTT connection after its CONNECT: decoded packets and
//! events in, [`Action`]s out. Sans-IO, like openraft's `Engine`: no socket, no timer, no
//! call into the core; the driver (`driver.rs`) feeds it [`Input`]s and executes the actions
//! it queues, feeding back the completions of those that need one.
//!
//! ```text
//!   Input::Packet(PUBLISH) ──▶ Machine ──▶ Action::Store ──▶ driver: Shared::publish ─┐
//!                                 ▲                                                   │
//!                                 └──── Input::Stored (in Store order) ◀──────────────┘
//!                                        └─▶ Action::Send(PUBACK / PUBREC)
//! ```
//!
//! Owns: the connection's protocol state (version, client id, will, the client's incoming
//! topic aliases in `alias.rs`, the client publishes being stored in `inbound.rs`, the
//! sending side with its window and backlog in `outbound.rs`, a SUBSCRIBE in progress in
//! `subscribe.rs`) and, through the session guard it holds, the session (subscriptions,
//! messages in flight to the client, QoS 2 ids awaiting PUBREL). Owning the machine means
//! owning the session.
//!
//! Invariants:
//! - PUBACK (QoS 1) / PUBREC (QoS 2) for a client PUBLISH is queued only on
//!   [`Input::Stored`], i.e. after `Producer::send` returned: never on the PUBLISH itself.
//!   Completions arrive in the order of their [`Action::Store`]s, so acknowledgements leave
//!   in the order the PUBLISH packets arrived.
//! - A popped core message is acknowledged to the core ([`Action::AckCore`]) only once the
//!   client acknowledged it (QoS 1: PUBACK, QoS 2: PUBREC), once it is queued for the socket
//!   (QoS 0), or when it is dropped (no matching subscription, expired, too large).
//! - At most `receive_maximum` client publishes are being stored ([`Machine::can_read`]); at
//!   most the window (`max_inflight` capped by the client's Receive Maximum) of messages are
//!   in flight to the client when taken from the core ([`Machine::window_open`]).
//! - An action that needs a completion ([`Action::StartSubscription`],
//!   [`Action::SendRetained`]) is the last one queued by its input, and the driver feeds the
//!   completion before any other input: a SUBSCRIBE is handled whole before the next packet.
//! - [`Action::Close`] is the last action ever; inputs after it are ignored.
//! - Bad input never panics: every protocol violation closes with a v5 DISCONNECT reason
//!   code (3.1.1: closes), or is answered with a negative acknowledgement.
//!
//! Called by the driver only (and the tests). Side effects: none but `metrics` counters and
//! `tracing` events. Concurrency: one owner (`&mut self`), no awaits, no locks taken (the
//! session guard is already held).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rocketgate_core::auth::Invalidation;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Disconnect, DisconnectReasonCode, LastWill, PingResp, PubAckReason, PubRecReason,
    Publish, Subscribe, UnsubAckReason, Unsubscribe,
};
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::OwnedMutexGuard;

use super::alias::IncomingAliases;
use super::connect::Admission;
use super::inbound::{Admit, Inbound};
use super::io::{Action, End, Input, Stored};
use super::outbound::Outbound;
use super::subscribe::Subscribing;
use crate::codec::{self, DecodeError, Packet, Version};
use crate::config::MqttConfig;
use crate::session::{Delivery, Outgoing, SessionRecord, SessionState, Subscription};
use crate::topic::{self, TopicError};

/// The limits of the server configuration the machine enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Receive Maximum granted to the client.
    pub receive_maximum: u16,
    /// Messages in flight to the client at most.
    pub max_inflight: u16,
    /// Topic Alias Maximum granted to the client.
    pub topic_alias_maximum: u16,
    /// Cap on a session expiry (also on DISCONNECT).
    pub max_session_expiry_secs: u32,
}

impl From<&MqttConfig> for Limits {
    fn from(c: &MqttConfig) -> Self {
        Self {
            receive_maximum: c.receive_maximum,
            max_inflight: c.max_inflight,
            topic_alias_maximum: c.topic_alias_maximum,
            max_session_expiry_secs: c.max_session_expiry_secs,
        }
    }
}

/// The session's fate when the connection ends.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The session ends with the connection: delete its group, drop it from the registry.
    pub session_ends: bool,
    /// The record to store: the offline session, or (if it was durable) its end.
    pub record: Option<SessionRecord>,
    /// The will to publish, after this many seconds.
    pub will: Option<(LastWill, u32)>,
}

/// The state machine of one connection.
#[derive(Debug)]
pub(crate) struct Machine {
    version: Version,
    client_id: String,
    group: Arc<str>,
    limits: Limits,
    will: Option<LastWill>,
    aliases: IncomingAliases,
    session: OwnedMutexGuard<SessionState>,
    inbound: Inbound,
    outbound: Outbound,
    subscribing: Option<Subscribing>,
    /// The session record changed (subscriptions).
    dirty: bool,
    /// A session expiry set by the client's DISCONNECT.
    disconnect_expiry: Option<u32>,
    closed: bool,
    actions: VecDeque<Action>,
}

impl Machine {
    /// The machine of an admitted connection owning `session`. Queues CONNACK, the
    /// retransmission of what was in flight when the session's last connection ended, and the
    /// delivery feeds of its subscriptions.
    pub(crate) fn new(
        admission: Admission,
        connack: ConnAck,
        limits: Limits,
        mut session: OwnedMutexGuard<SessionState>,
    ) -> Self {
        metrics::counter!("rocketgate_packets_received_total", "gateway" => "mqtt", "type" => "connect")
            .increment(1);
        let window = usize::from(limits.max_inflight.max(1)).min(admission.client_receive_max);
        let outbound = Outbound::new(
            admission.version,
            window,
            admission.client_max_packet,
            admission.client_alias_max,
            std::mem::take(&mut session.pending),
        );
        let mut m = Self {
            version: admission.version,
            group: admission.group(),
            client_id: admission.client_id,
            limits,
            will: admission.will,
            aliases: IncomingAliases::new(limits.topic_alias_maximum),
            session,
            outbound,
            inbound: Inbound::new(limits.receive_maximum),
            subscribing: None,
            dirty: false,
            disconnect_expiry: None,
            closed: false,
            actions: VecDeque::new(),
        };
        m.send(Packet::ConnAck(connack));
        Outbound::resend(&m.session, &mut m.actions);
        m.push(Action::RefreshPollers);
        m
    }

    /// The next action to execute, in order.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Protocol version of the connection.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The session's own consumer group.
    pub(crate) fn group(&self) -> &Arc<str> {
        &self.group
    }

    /// The session's subscriptions, by raw filter.
    pub(crate) fn subscriptions(&self) -> &BTreeMap<String, Subscription> {
        &self.session.record.subscriptions
    }

    /// Whether the driver may read more packets: fewer client publishes are being stored than
    /// the Receive Maximum granted.
    pub(crate) fn can_read(&self) -> bool {
        self.inbound.can_read()
    }

    /// Whether another message may go in flight to the client.
    pub(crate) fn window_open(&self) -> bool {
        self.outbound.window_open(&self.session)
    }

    /// Whether the driver may take a new delivery from its inbox.
    pub(crate) fn can_deliver(&self) -> bool {
        self.outbound.can_take(&self.session)
    }

    /// The session record when it changed since the last call and the session is persistent.
    pub(crate) fn take_dirty_record(&mut self) -> Option<&SessionRecord> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        (self.session.record.expiry_secs != Some(0)).then_some(&self.session.record)
    }

    fn v5(&self) -> bool {
        self.version == Version::V5
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn send(&mut self, p: Packet) {
        self.push(Action::Send(p));
    }

    fn close(&mut self, end: End) {
        self.push(Action::Close(end));
        self.closed = true;
    }

    /// Closes for an event of the server (v5: DISCONNECT with `reason` first).
    fn disconnect(&mut self, reason: DisconnectReasonCode, end: End) {
        if self.v5() {
            self.send(Packet::Disconnect(Disconnect::new(reason)));
            self.push(Action::Flush);
        }
        self.close(end);
    }

    /// Closes a connection whose credentials stopped being valid (the reason is logged on the
    /// `audit` target): v5 DISCONNECT 0x87 (not authorized), 3.1.1 just closes; no will.
    fn revoked(&mut self, why: Invalidation) {
        tracing::info!(target: "audit", action = "mqtt.close", client = %self.client_id, reason = %why, "credentials no longer valid");
        self.disconnect(DisconnectReasonCode::NotAuthorized, End::Revoked);
    }

    /// Closes for a protocol violation (v5: DISCONNECT with `reason`; 3.1.1 just closes).
    fn fail(&mut self, reason: DisconnectReasonCode) {
        metrics::counter!("rocketgate_protocol_errors_total", "gateway" => "mqtt").increment(1);
        if self.v5() {
            self.send(Packet::Disconnect(Disconnect::new(reason)));
        }
        self.push(Action::Flush);
        self.close(End::Abnormal);
    }

    /// Handles one input; the actions it causes are queued for [`Machine::poll_action`].
    pub(crate) fn handle(&mut self, input: Input) {
        if self.closed {
            return;
        }
        match input {
            Input::Packet(p) => self.packet(p),
            Input::Undecodable(e) => match e {
                DecodeError::TooLarge(_) => self.fail(DisconnectReasonCode::PacketTooLarge),
                DecodeError::Protocol(_) => self.fail(DisconnectReasonCode::ProtocolError),
                e => {
                    tracing::debug!(error = %e, client = %self.client_id, "malformed MQTT packet");
                    self.fail(DisconnectReasonCode::MalformedPacket);
                }
            },
            Input::Stored(done) => self.stored(done),
            Input::SubscriptionStarted(result) => {
                if let Some(s) = self.subscribing.as_mut() {
                    s.started(result, &mut self.session.record.subscriptions);
                }
                self.next_filter();
            }
            Input::Retained { found, now_ms } => {
                let out = &mut self.actions;
                self.outbound
                    .send_retained(&mut self.session, found, now_ms, out);
            }
            Input::Delivery { delivery, now_ms } => {
                let (id, out) = (&self.client_id, &mut self.actions);
                self.outbound
                    .deliver(&mut self.session, id, delivery, now_ms, out);
            }
            Input::Backlog { now_ms } => {
                let (id, out) = (&self.client_id, &mut self.actions);
                self.outbound
                    .release_backlog(&mut self.session, id, now_ms, out);
            }
            Input::KeepAliveExpired => {
                tracing::debug!(client = %self.client_id, "MQTT keep-alive expired");
                self.disconnect(DisconnectReasonCode::KeepAliveTimeout, End::Abnormal);
            }
            Input::TakenOver => {
                self.disconnect(DisconnectReasonCode::SessionTakenOver, End::Abnormal);
            }
            Input::Shutdown => {
                self.disconnect(DisconnectReasonCode::ServerShuttingDown, End::Shutdown);
            }
            Input::Revoked(why) => self.revoked(why),
        }
    }

    fn packet(&mut self, packet: Packet) {
        match packet {
            Packet::Publish(p) => self.incoming_publish(p),
            Packet::PubAck(a) => {
                if let Some(i) = self
                    .session
                    .outgoing
                    .iter()
                    .position(|o| o.pkid == a.pkid && o.publish.qos == QoS::AtLeastOnce)
                {
                    if let Some(Outgoing {
                        ack: Some((group, receipt)),
                        ..
                    }) = self.session.outgoing.remove(i)
                    {
                        self.push(Action::AckCore { group, receipt });
                    }
                }
            }
            Packet::PubRec(a) => {
                let mut ack = None;
                if let Some(o) = self
                    .session
                    .outgoing
                    .iter_mut()
                    .find(|o| o.pkid == a.pkid && o.publish.qos == QoS::ExactlyOnce)
                {
                    if !o.released {
                        o.released = true;
                        ack = o.ack.take();
                    }
                }
                if let Some((group, receipt)) = ack {
                    self.push(Action::AckCore { group, receipt });
                }
                self.send(codec::pubrel(a.pkid));
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
                self.send(codec::pubcomp(r.pkid, found));
            }
            Packet::Subscribe(s) => self.subscribe(s),
            Packet::Unsubscribe(u) => self.unsubscribe(u),
            Packet::PingReq(_) => self.send(Packet::PingResp(PingResp)),
            Packet::Disconnect(d) => {
                if let Some(e) = d
                    .properties
                    .as_ref()
                    .and_then(|p| p.session_expiry_interval)
                {
                    if self.session.record.expiry_secs == Some(0) && e != 0 {
                        return self.fail(DisconnectReasonCode::ProtocolError);
                    }
                    self.disconnect_expiry = Some(e.min(self.limits.max_session_expiry_secs));
                }
                self.close(match d.reason_code {
                    DisconnectReasonCode::NormalDisconnection => End::Normal,
                    _ => End::Abnormal,
                });
            }
            // A second CONNECT, server-only packets, AUTH (enhanced authentication is not
            // implemented).
            _ => self.fail(DisconnectReasonCode::ProtocolError),
        }
    }

    fn incoming_publish(&mut self, mut p: Publish) {
        metrics::counter!("rocketgate_publishes_received_total", "gateway" => "mqtt").increment(1);
        if let Err(reason) = self.aliases.resolve(&mut p) {
            return self.fail(reason);
        }
        let checked = std::str::from_utf8(&p.topic)
            .map_err(|_| TopicError::Malformed)
            .and_then(|t| topic::core_topic_of_name(t).map(|_| t.to_owned()));
        // What becomes of an admitted publish: stored, or answered in turn without a store.
        let action = match checked {
            Ok(topic) => Ok(topic),
            // Reserved (`$…`, `mqtt_sys_…`): never stored. 3.1.1 has no negative
            // acknowledgement, and clients and test suites expect one: the publish is
            // acknowledged and dropped. v5 says why: 0x87 (QoS 0: dropped in silence).
            Err(TopicError::Reserved) => {
                tracing::debug!(client = %self.client_id, "publish to a reserved topic dropped");
                if !self.v5() {
                    metrics::counter!("rocketgate_publishes_refused_total", "gateway" => "mqtt")
                        .increment(1);
                }
                Err(if self.v5() {
                    Err(PubAckReason::NotAuthorized)
                } else {
                    Ok(())
                })
            }
            // A name that cannot be mapped or is malformed: v5 QoS 1/2 get 0x90 in turn; QoS 0
            // and 3.1.1 have no way to say it but closing.
            Err(_) if self.v5() && p.qos != QoS::AtMostOnce => {
                Err(Err(PubAckReason::TopicNameInvalid))
            }
            Err(_) => return self.fail(DisconnectReasonCode::TopicNameInvalid),
        };
        let v5 = self.v5();
        match self
            .inbound
            .admit(p.pkid, p.qos, &self.session.incoming_qos2, v5)
        {
            Admit::Store => self.push(match action {
                Ok(topic) => Action::Store { publish: p, topic },
                Err(result) => Action::Answer {
                    pkid: p.pkid,
                    qos: p.qos,
                    result,
                },
            }),
            Admit::BeingStored => {}
            Admit::AlreadyStored => self.send(codec::pubrec(p.pkid, PubRecReason::Success)),
            Admit::Exceeded => self.fail(DisconnectReasonCode::ReceiveMaximumExceeded),
        }
    }

    fn ack_publish(&mut self, pkid: u16, q: QoS, reason: PubAckReason) {
        match q {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(codec::puback(pkid, reason)),
            QoS::ExactlyOnce => {
                let r = match reason {
                    PubAckReason::Success => PubRecReason::Success,
                    PubAckReason::NotAuthorized => PubRecReason::NotAuthorized,
                    PubAckReason::TopicNameInvalid => PubRecReason::TopicNameInvalid,
                    PubAckReason::QuotaExceeded => PubRecReason::QuotaExceeded,
                    PubAckReason::PayloadFormatInvalid => PubRecReason::PayloadFormatInvalid,
                    _ => PubRecReason::ImplementationSpecificError,
                };
                self.send(codec::pubrec(pkid, r));
            }
        }
    }

    /// Acknowledges stored publishes; a 3.1.1 QoS 1/2 publish the core refused, or a 3.1.1
    /// publish of any QoS the core does not authorize, closes the connection once the others
    /// are acknowledged (3.1.1 has no negative acknowledgement: the client resends after
    /// reconnecting). A v5 QoS 0 publish refused is dropped (nothing to answer).
    fn stored(&mut self, done: Vec<Stored>) {
        let mut refused_v4 = false;
        for Stored { pkid, qos, result } in done {
            self.inbound.completed(pkid, qos);
            match result {
                Ok(()) => {
                    if qos == QoS::ExactlyOnce {
                        self.session.incoming_qos2.insert(pkid);
                    }
                    self.ack_publish(pkid, qos, PubAckReason::Success);
                }
                Err(reason) => {
                    metrics::counter!("rocketgate_publishes_refused_total", "gateway" => "mqtt")
                        .increment(1);
                    if !self.v5()
                        && (qos != QoS::AtMostOnce || reason == PubAckReason::NotAuthorized)
                    {
                        tracing::debug!(client = %self.client_id, "MQTT publish refused");
                        refused_v4 = true;
                        continue;
                    }
                    self.ack_publish(pkid, qos, reason);
                }
            }
        }
        if refused_v4 {
            self.push(Action::Flush);
            self.close(End::Abnormal);
        }
    }

    fn subscribe(&mut self, s: Subscribe) {
        self.subscribing = Some(Subscribing::new(s));
        self.next_filter();
    }

    /// Asks for the core work of the SUBSCRIBE's next filter, or answers it when done.
    fn next_filter(&mut self) {
        let Some(s) = self.subscribing.as_mut() else {
            return;
        };
        if let Some(start) = s.next(&self.session.record.subscriptions, &self.group) {
            return self.push(Action::StartSubscription(start));
        }
        let Some(s) = self.subscribing.take() else {
            return;
        };
        let (suback, retained) = s.finish();
        self.dirty = true;
        self.send(suback);
        self.push(Action::RefreshPollers);
        if !retained.is_empty() {
            self.push(Action::SendRetained(retained));
        }
    }

    fn unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            reasons.push(match self.session.record.subscriptions.remove(f) {
                Some(_) => UnsubAckReason::Success,
                None => UnsubAckReason::NoSubscriptionExisted,
            });
        }
        self.dirty = true;
        self.send(codec::unsuback(u.pkid, reasons));
        self.push(Action::RefreshPollers);
    }

    /// Ends the session's connection (`end` as the driver returned it): keeps what the session
    /// keeps (deliveries not sent: the backlog, then `queued`), and says what to store and
    /// whether the will goes out.
    pub(crate) fn finish(
        &mut self,
        end: End,
        queued: impl IntoIterator<Item = Delivery>,
        now_ms: i64,
    ) -> Finished {
        self.closed = true;
        self.actions.clear();
        if let Some(e) = self.disconnect_expiry {
            self.session.record.expiry_secs = Some(e);
        }
        let will = match end {
            End::Abnormal => self.will.take(),
            End::Normal | End::Shutdown | End::Revoked => None,
        };
        let session_ends = self.session.ends_at_disconnect();
        let record = if session_ends {
            self.session.ended = true;
            self.session.durable.then(|| {
                let mut r = self.session.record.clone();
                r.deleted = true;
                r
            })
        } else {
            let mut pending = self.outbound.take_backlog();
            pending.extend(queued);
            self.session.pending = pending;
            self.session.record.disconnected_at_ms = Some(now_ms);
            Some(self.session.record.clone())
        };
        let expiry = self.session.record.expiry_secs.unwrap_or(u32::MAX);
        let will = will.map(|w| {
            let delay = w
                .properties
                .as_ref()
                .and_then(|p| p.delay_interval)
                .unwrap_or(0)
                .min(expiry);
            (w, delay)
        });
        Finished {
            session_ends,
            record,
            will,
        }
    }
}
