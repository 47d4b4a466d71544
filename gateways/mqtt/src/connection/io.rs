//! The sans-IO boundary of a connection: the [`Input`]s its driver feeds the session state
//! machine, and the [`Action`]s the machine queues for the driver to execute.
//!
//! Invariants (kept by `machine.rs`, relied on by `driver.rs`): actions are executed in the
//! order queued; an action that needs a completion ([`Action::StartSubscription`],
//! [`Action::SendRetained`]) is the last of its batch and its completion is fed before any
//! other input; [`Action::Store`] completions are fed in the order of the stores;
//! [`Action::Close`] is the last action of a connection.
//!
//! Called by `machine.rs` and `driver.rs`. Plain data: no behaviour, no I/O, no locks.

use std::sync::Arc;

use rocketgate_core::auth::Invalidation;
use rocketgate_core::StoredMessage;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, Publish, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;

use super::subscribe::{RetainedRequest, SubscriptionStart};
use crate::codec::{DecodeError, Packet};
use crate::session::Delivery;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// DISCONNECT 0x00: no will.
    Normal,
    /// Abrupt close, protocol error, keep-alive, DISCONNECT 0x04, takeover: the will goes out.
    Abnormal,
    /// Server shutdown: no will.
    Shutdown,
    /// The credentials the connection was admitted with stopped being valid: no will (it
    /// would be published under an identity that no longer holds).
    Revoked,
}

/// A client publish the core finished storing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its packet id.
    pub pkid: u16,
    /// Its QoS.
    pub qos: QoS,
    /// `Err`: the core refused it, with the reason for the client.
    pub result: Result<(), PubAckReason>,
}

/// What happens to the machine.
#[derive(Debug)]
pub(crate) enum Input {
    /// A packet decoded from the client.
    Packet(Packet),
    /// The client's bytes do not decode.
    Undecodable(DecodeError),
    /// Client publishes stored (or refused) by the core, or answered without a store, in the
    /// order of their `Store`s and `Answer`s.
    Stored(Vec<Stored>),
    /// The core work of the last [`Action::StartSubscription`] ended (`Err`: refused, with
    /// the SUBACK code).
    SubscriptionStarted(Result<(), SubscribeReasonCode>),
    /// The retained messages of the last [`Action::SendRetained`], per request.
    Retained {
        /// Each request with the retained messages matching its filter.
        found: Vec<(RetainedRequest, Vec<StoredMessage>)>,
        /// Now, in ms since the epoch (for message expiry).
        now_ms: i64,
    },
    /// A message popped from the core for this session.
    Delivery {
        /// The message and its receipt.
        delivery: Delivery,
        /// Now, in ms since the epoch (for message expiry).
        now_ms: i64,
    },
    /// A driver turn begins: move waiting deliveries into the window.
    Backlog {
        /// Now, in ms since the epoch (for message expiry).
        now_ms: i64,
    },
    /// Nothing came from the client for 1.5 × keep-alive.
    KeepAliveExpired,
    /// Another connection took the session over.
    TakenOver,
    /// The server shuts down.
    Shutdown,
    /// The credentials the connection was admitted with are no longer valid (the core's
    /// `Auth::invalidated`), for this reason.
    Revoked(Invalidation),
}

/// What the machine asks the driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Encode a packet into the write buffer.
    Send(Packet),
    /// Write the write buffer to the socket now (errors ignored: a close follows).
    Flush,
    /// End the connection (without writing what is still buffered).
    Close(End),
    /// Store a client PUBLISH in the core (`Shared::publish`, retained store included), then
    /// feed [`Input::Stored`], in order with the other stores.
    Store {
        /// The packet (topic alias resolved).
        publish: Publish,
        /// Its topic, checked.
        topic: String,
    },
    /// A client PUBLISH that is not stored (a reserved topic, a v5 topic name refused): feed
    /// `result` as its [`Input::Stored`], in order with the stores queued before it, so its
    /// acknowledgement keeps the PUBLISH order.
    Answer {
        /// Its packet id.
        pkid: u16,
        /// Its QoS.
        qos: QoS,
        /// What to acknowledge: `Ok` (success) or the v5 reason.
        result: Result<(), PubAckReason>,
    },
    /// Acknowledge a popped message to the core (batched by the driver).
    AckCore {
        /// The consumer group it was popped for.
        group: Arc<str>,
        /// Its receipt handle.
        receipt: String,
    },
    /// Put a subscription in place in the core, then feed [`Input::SubscriptionStarted`].
    StartSubscription(SubscriptionStart),
    /// Start and stop delivery feeds to match [`super::machine::Machine::subscriptions`].
    RefreshPollers,
    /// Look up retained messages, then feed [`Input::Retained`].
    SendRetained(Vec<RetainedRequest>),
}
