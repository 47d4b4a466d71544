//! Client PUBLISH packets on their way into the core: how many are being stored, which QoS 2
//! packet ids are, and whether one more may be taken (the Receive Maximum the server grants).
//!
//! Invariants:
//! - Every admitted publish (any QoS) counts as being stored until its completion; the
//!   driver reads no more packets while `receive_maximum` are (a 3.1.1 client has no other
//!   limit: its socket just is not read).
//! - QoS 1/2 publishes being stored plus QoS 2 ids awaiting PUBREL never exceed
//!   `receive_maximum` for a v5 client (one more: DISCONNECT 0x93); for a 3.1.1 client only
//!   the ids awaiting PUBREL are held to it.
//! - A QoS 2 packet id is stored once: a retransmission while its first copy is being stored
//!   is dropped (the PUBREC follows), one after it was stored is acknowledged again.
//!
//! Called by the connection's state machine (`machine.rs`) only. Pure: no I/O, no locks.

use std::collections::HashSet;

use rumqttc::v5::mqttbytes::QoS;

/// What to do with a client PUBLISH whose topic is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Store it in the core (it counts until [`Inbound::completed`]).
    Store,
    /// A QoS 2 retransmission whose first copy is being stored: drop it, its PUBREC follows.
    BeingStored,
    /// A QoS 2 retransmission of a message stored already: PUBREC again, do not store.
    AlreadyStored,
    /// Beyond the Receive Maximum: close with 0x93.
    Exceeded,
}

/// The publishes of one connection being stored.
#[derive(Debug)]
pub(crate) struct Inbound {
    receive_maximum: usize,
    /// Publishes handed to the core and not completed (every QoS).
    storing: usize,
    /// Of those, QoS 1 and 2.
    qos_pending: usize,
    /// Packet ids of QoS 2 publishes being stored.
    qos2_storing: HashSet<u16>,
}

impl Inbound {
    /// No publish stored yet; `receive_maximum` as granted (0 counts as 1).
    pub(crate) fn new(receive_maximum: u16) -> Self {
        Self {
            receive_maximum: usize::from(receive_maximum.max(1)),
            storing: 0,
            qos_pending: 0,
            qos2_storing: HashSet::new(),
        }
    }

    /// Whether another packet may be read: fewer than the Receive Maximum are being stored.
    pub(crate) fn can_read(&self) -> bool {
        self.storing < self.receive_maximum
    }

    /// Decides on a client PUBLISH; `unreleased` are the session's QoS 2 ids awaiting PUBREL.
    pub(crate) fn admit(
        &mut self,
        pkid: u16,
        qos: QoS,
        unreleased: &HashSet<u16>,
        v5: bool,
    ) -> Admit {
        if qos != QoS::AtMostOnce {
            if qos == QoS::ExactlyOnce && self.qos2_storing.contains(&pkid) {
                return Admit::BeingStored;
            }
            if qos == QoS::ExactlyOnce && unreleased.contains(&pkid) {
                return Admit::AlreadyStored;
            }
            let full = self.qos_pending + unreleased.len() >= self.receive_maximum;
            if full && (v5 || unreleased.len() >= self.receive_maximum) {
                return Admit::Exceeded;
            }
            self.qos_pending += 1;
            if qos == QoS::ExactlyOnce {
                self.qos2_storing.insert(pkid);
            }
        }
        self.storing += 1;
        Admit::Store
    }

    /// A stored (or refused) publish completed.
    pub(crate) fn completed(&mut self, pkid: u16, qos: QoS) {
        self.storing = self.storing.saturating_sub(1);
        if qos != QoS::AtMostOnce {
            self.qos_pending = self.qos_pending.saturating_sub(1);
        }
        if qos == QoS::ExactlyOnce {
            self.qos2_storing.remove(&pkid);
        }
    }
}
