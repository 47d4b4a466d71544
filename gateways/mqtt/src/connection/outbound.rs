//! Messages from the core to the client: matching a popped message against the session's
//! subscriptions, the PUBLISH it becomes (QoS, retain flag, subscription ids, remaining
//! expiry, topic alias), the client's Maximum Packet Size, the in-flight window and the
//! backlog of deliveries waiting for it.
//!
//! Invariants:
//! - A message goes out at most once per connection, with the highest QoS of the matching
//!   subscriptions (capped by its publish QoS) and all their subscription identifiers; a
//!   shared-group delivery matches only its own `$share/…` subscription.
//! - Its core acknowledgement is queued when the client acknowledges it (QoS 1/2, via the
//!   session's in-flight list), when it is queued for the socket (QoS 0), or when it is dropped:
//!   nothing matches, it expired, or it is larger than the client accepts.
//! - Deliveries leave the backlog only while the window (`max_inflight` capped by the
//!   client's Receive Maximum) has room; retained messages after a SUBACK do not wait for it.
//!
//! Called by the connection's state machine (`machine.rs`) only, with the session it holds.
//! Pure: no I/O, no locks; actions are appended to the machine's queue.

use std::collections::VecDeque;
use std::sync::Arc;

use rocketgate_core::StoredMessage;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;

use super::alias::OutgoingAliases;
use super::io::Action;
use super::subscribe::RetainedRequest;
use crate::codec::{self, Packet, Version};
use crate::delivery;
use crate::session::{Delivery, Outgoing, SessionState};
use crate::topic::{self, PROP_CLIENT, PROP_RETAIN};

/// The sending side of one connection.
#[derive(Debug)]
pub(crate) struct Outbound {
    version: Version,
    /// Messages in flight at most.
    window: usize,
    /// The client's Maximum Packet Size.
    client_max_packet: usize,
    aliases: OutgoingAliases,
    /// Popped deliveries waiting for the window.
    backlog: VecDeque<Delivery>,
}

impl Outbound {
    /// The sending side of a connection of `version` whose client accepts `window` messages
    /// in flight, packets up to `client_max_packet` and `alias_max` topic aliases; `backlog`
    /// is what the session kept from its last connection.
    pub(crate) fn new(
        version: Version,
        window: usize,
        client_max_packet: usize,
        alias_max: u16,
        backlog: VecDeque<Delivery>,
    ) -> Self {
        Self {
            version,
            window,
            client_max_packet,
            aliases: OutgoingAliases::new(alias_max),
            backlog,
        }
    }

    /// Whether another message may go in flight.
    pub(crate) fn window_open(&self, session: &SessionState) -> bool {
        session.outgoing.len() < self.window
    }

    /// Whether a new delivery may be taken (the window has room and nothing waits before it).
    pub(crate) fn can_take(&self, session: &SessionState) -> bool {
        self.window_open(session) && self.backlog.is_empty()
    }

    /// The deliveries still waiting, handed back to the session at disconnect.
    pub(crate) fn take_backlog(&mut self) -> VecDeque<Delivery> {
        std::mem::take(&mut self.backlog)
    }

    /// Retransmits what was in flight when the session's last connection ended (with DUP, or
    /// PUBREL when the client's PUBREC had arrived), with topics (aliases are per connection).
    pub(crate) fn resend(session: &SessionState, out: &mut VecDeque<Action>) {
        for o in &session.outgoing {
            if o.released {
                out.push_back(Action::Send(codec::pubrel(o.pkid)));
            } else {
                let mut p = o.publish.clone();
                p.dup = true;
                out.push_back(Action::Send(Packet::Publish(p)));
            }
        }
    }

    /// Moves backlog deliveries out while the window has room.
    pub(crate) fn release_backlog(
        &mut self,
        session: &mut SessionState,
        client_id: &str,
        now_ms: i64,
        out: &mut VecDeque<Action>,
    ) {
        while self.window_open(session) {
            let Some(d) = self.backlog.pop_front() else {
                break;
            };
            self.deliver(session, client_id, d, now_ms, out);
        }
    }

    /// Sends a core message to the client if a subscription matches, else acknowledges it.
    pub(crate) fn deliver(
        &mut self,
        session: &mut SessionState,
        client_id: &str,
        d: Delivery,
        now_ms: i64,
        out: &mut VecDeque<Action>,
    ) {
        let m = &d.message;
        let t = delivery::mqtt_topic(m);
        let from_self = m
            .properties
            .get(PROP_CLIENT)
            .is_some_and(|c| *c == client_id);
        let mut best: Option<u8> = None;
        let mut ids = Vec::new();
        let mut rap = false;
        for (raw, sub) in &session.record.subscriptions {
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
        let Some(q) = best.filter(|_| !delivery::expired(m, now_ms)) else {
            return out.push_back(Action::AckCore {
                group: d.group,
                receipt: d.receipt,
            });
        };
        let q = delivery::qos(q.min(delivery::published_qos(m)));
        let retain = rap && m.properties.get(PROP_RETAIN).is_some_and(|v| v == "true");
        let p = delivery::to_publish(m, q, retain, self.v5(), &ids, now_ms);
        self.send(session, p, Some((d.group, d.receipt)), out);
    }

    /// Sends the retained messages found for a SUBSCRIBE (retain set, not expired).
    pub(crate) fn send_retained(
        &mut self,
        session: &mut SessionState,
        found: Vec<(RetainedRequest, Vec<StoredMessage>)>,
        now_ms: i64,
        out: &mut VecDeque<Action>,
    ) {
        for (req, messages) in found {
            let ids: Vec<usize> = req.id.into_iter().collect();
            for m in messages {
                if delivery::expired(&m, now_ms) {
                    continue;
                }
                let q = delivery::qos(req.qos.min(delivery::published_qos(&m)));
                let p = delivery::to_publish(&m, q, true, self.v5(), &ids, now_ms);
                self.send(session, p, None, out);
            }
        }
    }

    fn v5(&self) -> bool {
        self.version == Version::V5
    }

    /// Sends a PUBLISH (a packet id for QoS 1/2, an alias when allowed) and keeps it in flight
    /// until the client acknowledges it; `ack` is its core acknowledgement.
    fn send(
        &mut self,
        session: &mut SessionState,
        mut p: Publish,
        ack: Option<(Arc<str>, String)>,
        out: &mut VecDeque<Action>,
    ) {
        if p.qos != QoS::AtMostOnce {
            p.pkid = session.next_pkid();
        }
        let wire = self.aliases.apply(&p);
        if codec::publish_size(&wire, self.version) > self.client_max_packet {
            // Larger than the client accepts (v5 Maximum Packet Size): dropped, as the spec says.
            if let Some((group, receipt)) = ack {
                out.push_back(Action::AckCore { group, receipt });
            }
            return;
        }
        metrics::counter!("rocketgate_publishes_sent_total", "gateway" => "mqtt").increment(1);
        out.push_back(Action::Send(Packet::Publish(wire)));
        if p.qos == QoS::AtMostOnce {
            if let Some((group, receipt)) = ack {
                out.push_back(Action::AckCore { group, receipt });
            }
        } else {
            session.outgoing.push_back(Outgoing {
                pkid: p.pkid,
                publish: p,
                ack,
                released: false,
            });
        }
    }
}
