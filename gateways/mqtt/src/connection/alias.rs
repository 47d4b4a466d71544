//! MQTT 5 topic aliases of one connection, both ways: the client's aliases for its PUBLISH
//! packets, and the server's aliases for the messages it delivers.
//!
//! Invariants:
//! - Incoming: an alias is `1..=topic_alias_maximum` (the server's grant, sent in CONNACK); a
//!   PUBLISH with a topic (re)binds its alias, one with an empty topic uses the binding.
//! - Outgoing: at most the client's Topic Alias Maximum aliases, numbered `1..` first come
//!   first served and never rebound; the first PUBLISH of an alias carries the topic, later
//!   ones an empty topic. A 3.1.1 client has a maximum of 0: no alias is ever sent.
//! - Aliases live and die with the connection (retransmissions after a reconnect carry the
//!   topic).
//!
//! Called by the connection's state machine (`machine.rs`, `outbound.rs`) only. Pure: no I/O, no locks.

use std::collections::HashMap;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Publish, PublishProperties};

/// The client's aliases for its PUBLISH packets.
#[derive(Debug, Default)]
pub(crate) struct IncomingAliases {
    /// The server's grant to the client (`topic_alias_maximum`).
    max: u16,
    topics: HashMap<u16, Bytes>,
}

impl IncomingAliases {
    /// No alias bound yet; the client may use `1..=max`.
    pub(crate) fn new(max: u16) -> Self {
        Self {
            max,
            topics: HashMap::new(),
        }
    }

    /// Resolves the alias of a client PUBLISH: binds it, or fills in the topic it stands for.
    ///
    /// # Errors
    /// The DISCONNECT reason: "topic alias invalid" for 0 or beyond the grant, "protocol
    /// error" for an empty topic with an unbound alias.
    pub(crate) fn resolve(&mut self, p: &mut Publish) -> Result<(), DisconnectReasonCode> {
        let Some(alias) = p.properties.as_ref().and_then(|x| x.topic_alias) else {
            return Ok(());
        };
        if alias == 0 || alias > self.max {
            return Err(DisconnectReasonCode::TopicAliasInvalid);
        }
        if p.topic.is_empty() {
            match self.topics.get(&alias) {
                Some(t) => p.topic = t.clone(),
                None => return Err(DisconnectReasonCode::ProtocolError),
            }
        } else {
            self.topics.insert(alias, p.topic.clone());
        }
        Ok(())
    }
}

/// The server's aliases for the messages it sends.
#[derive(Debug, Default)]
pub(crate) struct OutgoingAliases {
    /// The client's Topic Alias Maximum (0: none).
    max: u16,
    aliases: HashMap<Bytes, u16>,
}

impl OutgoingAliases {
    /// No alias used yet; the client accepts `1..=max`.
    pub(crate) fn new(max: u16) -> Self {
        Self {
            max,
            aliases: HashMap::new(),
        }
    }

    /// The packet as sent: with a topic alias when the client allows them (v5). A topic seen
    /// for the first time takes the next free alias, if any (its packet keeps the topic);
    /// a topic with an alias is sent with an empty topic.
    pub(crate) fn apply(&mut self, p: &Publish) -> Publish {
        let mut wire = p.clone();
        if self.max == 0 {
            return wire;
        }
        let props = wire
            .properties
            .get_or_insert_with(PublishProperties::default);
        match self.aliases.get(&p.topic) {
            Some(&a) => {
                props.topic_alias = Some(a);
                wire.topic = Bytes::new();
            }
            None => {
                let next = u16::try_from(self.aliases.len() + 1).unwrap_or(u16::MAX);
                if next <= self.max {
                    self.aliases.insert(p.topic.clone(), next);
                    props.topic_alias = Some(next);
                }
            }
        }
        wire
    }
}
