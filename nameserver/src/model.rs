//! The NameServer's domain types: validated names, broker identities, endpoints, topic configs,
//! and the shapes of a topic route and of the cluster layout.
//!
//! Invariants: a value of a name type ([`ClusterName`], [`BrokerName`], [`TopicName`]) is 1..=127
//! characters of `[A-Za-z0-9_%|-]` (RocketMQ's topic rule, the same one `rocketgate-core`
//! applies); a [`Protocol`] is 1..=16 characters of `[a-z0-9_-]`; an [`Endpoint`] address is
//! 1..=255 bytes of printable ASCII without spaces. Constructors reject anything else with an
//! [`InvalidInput`] that names the field and never echoes more than a short prefix of the value.
//!
//! Plain data: no I/O, no locks, no dependency on the wire types (conversions live in
//! `convert.rs`). Used by the route tables, the gRPC service and the client.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// Longest cluster, broker or topic name, in bytes (RocketMQ's topic limit).
pub const MAX_NAME_LEN: usize = 127;
/// Longest endpoint protocol token, in bytes.
pub const MAX_PROTOCOL_LEN: usize = 16;
/// Longest endpoint address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 255;
/// Most endpoints one broker instance may advertise.
pub const MAX_ENDPOINTS: usize = 16;

/// A request field that breaks a documented rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    /// Which field, as a path such as `topics[3].name`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidInput {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error, reported at `field` instead.
    #[must_use]
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

fn check_name(kind: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::new(kind, "empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(InvalidInput::new(
            kind,
            format!(
                "{} bytes, longer than the limit of {MAX_NAME_LEN}",
                value.len()
            ),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'%' | b'|'))
    {
        return Err(InvalidInput::new(
            kind,
            "only letters, digits and `_ - % |` are allowed",
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as a name.
            ///
            /// # Errors
            /// [`InvalidInput`] when it is empty, longer than [`MAX_NAME_LEN`] bytes or has a
            /// character outside `[A-Za-z0-9_%|-]`.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
                let value = value.into();
                check_name($kind, &value)?;
                Ok(Self(value))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(value: String) -> Result<Self, InvalidInput> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidInput;
            fn try_from(value: &str) -> Result<Self, InvalidInput> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidInput;
            fn from_str(value: &str) -> Result<Self, InvalidInput> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
    };
}

name_type!(
    /// A cluster name (RocketMQ `brokerClusterName`).
    ClusterName,
    "cluster"
);
name_type!(
    /// A broker group's name, shared by a master and its slaves (RocketMQ `brokerName`).
    BrokerName,
    "broker_name"
);
name_type!(
    /// A topic name.
    TopicName,
    "topic"
);

/// A broker instance's id within its group; 0 is the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerId(pub u64);

impl BrokerId {
    /// The master's id.
    pub const MASTER: BrokerId = BrokerId(0);

    /// Whether this is the master's id.
    pub fn is_master(self) -> bool {
        self == Self::MASTER
    }

    /// The role this id stands for.
    pub fn role(self) -> Role {
        if self.is_master() {
            Role::Master
        } else {
            Role::Slave
        }
    }
}

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A broker instance's role, derived from its [`BrokerId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `broker_id` 0: takes writes.
    Master,
    /// Any other id: follows the master and serves reads.
    Slave,
}

/// Who a broker instance is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerIdentity {
    /// Its cluster.
    pub cluster: ClusterName,
    /// Its group.
    pub broker_name: BrokerName,
    /// Its id in the group.
    pub broker_id: BrokerId,
}

impl fmt::Display for BrokerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}#{}",
            self.cluster, self.broker_name, self.broker_id
        )
    }
}

/// The protocol an endpoint speaks, e.g. `grpc`, `http`, `ws`, `mqtt`, `replication`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Protocol(String);

impl Protocol {
    /// The RocketMQ v2 gRPC gateway.
    pub const GRPC: &'static str = "grpc";
    /// The HTTP gateway.
    pub const HTTP: &'static str = "http";
    /// The WebSocket gateway.
    pub const WS: &'static str = "ws";
    /// The MQTT gateway.
    pub const MQTT: &'static str = "mqtt";
    /// Master → slave CommitLog replication.
    pub const REPLICATION: &'static str = "replication";

    /// Validates a protocol token.
    ///
    /// # Errors
    /// [`InvalidInput`] unless it is 1..=16 characters of `[a-z0-9_-]`.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        if value.is_empty() || value.len() > MAX_PROTOCOL_LEN {
            return Err(InvalidInput::new(
                "protocol",
                format!("must be 1..={MAX_PROTOCOL_LEN} bytes"),
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
        {
            return Err(InvalidInput::new(
                "protocol",
                "only lowercase letters, digits, `_` and `-` are allowed",
            ));
        }
        Ok(Self(value))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One address a broker instance listens on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    protocol: Protocol,
    address: String,
}

impl Endpoint {
    /// Validates an endpoint.
    ///
    /// # Errors
    /// [`InvalidInput`] for a bad protocol (see [`Protocol::new`]) or an address that is empty,
    /// longer than [`MAX_ADDRESS_LEN`] bytes, or has spaces or non-printable characters.
    pub fn new(
        protocol: impl Into<String>,
        address: impl Into<String>,
    ) -> Result<Self, InvalidInput> {
        let protocol = Protocol::new(protocol)?;
        let address = address.into();
        if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
            return Err(InvalidInput::new(
                "address",
                format!("must be 1..={MAX_ADDRESS_LEN} bytes"),
            ));
        }
        if !address.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidInput::new(
                "address",
                "only printable ASCII without spaces is allowed",
            ));
        }
        Ok(Self { protocol, address })
    }

    /// The protocol.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// The `host:port` address.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Access to a topic's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Neither.
    None,
    /// Consumers only.
    Read,
    /// Producers only.
    Write,
    /// Both.
    ReadWrite,
}

impl Permission {
    /// Whether consumers may read.
    pub fn readable(self) -> bool {
        matches!(self, Self::Read | Self::ReadWrite)
    }

    /// Whether producers may write.
    pub fn writable(self) -> bool {
        matches!(self, Self::Write | Self::ReadWrite)
    }

    /// The same permission with write access removed.
    #[must_use]
    pub fn without_write(self) -> Self {
        if self.readable() {
            Self::Read
        } else {
            Self::None
        }
    }
}

/// The kind of messages a topic accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// Plain messages.
    Normal,
    /// Ordered by message group.
    Fifo,
    /// Delayed / timed.
    Delay,
    /// Transactional.
    Transaction,
    /// Any of the above.
    Mixed,
}

/// A topic as one broker instance serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Its name.
    pub name: TopicName,
    /// Queues consumers read: `0..read_queues`.
    pub read_queues: u32,
    /// Queues producers write: `0..write_queues`.
    pub write_queues: u32,
    /// Access.
    pub permission: Permission,
    /// Accepted message type.
    pub message_type: MessageType,
}

impl TopicConfig {
    /// A read-write NORMAL topic with `queues` read and write queues.
    pub fn new(name: TopicName, queues: u32) -> Self {
        Self {
            name,
            read_queues: queues,
            write_queues: queues,
            permission: Permission::ReadWrite,
            message_type: MessageType::Normal,
        }
    }
}

/// Everything a broker instance tells the NameServer when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// Who it is.
    pub identity: BrokerIdentity,
    /// Where it listens: 1..=[`MAX_ENDPOINTS`], at most one per protocol.
    pub endpoints: Vec<Endpoint>,
    /// Every topic it serves, each name once.
    pub topics: Vec<TopicConfig>,
}

/// A topic's queues on one broker group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueData {
    /// The group.
    pub broker_name: BrokerName,
    /// Queues consumers read.
    pub read_queues: u32,
    /// Queues producers write.
    pub write_queues: u32,
    /// Access; write access is removed while the group has no live master.
    pub permission: Permission,
    /// Accepted message type.
    pub message_type: MessageType,
}

/// A broker group's cluster and the endpoints of its live members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerData {
    /// Its cluster.
    pub cluster: ClusterName,
    /// Its name.
    pub broker_name: BrokerName,
    /// Endpoints by broker id.
    pub addresses: BTreeMap<BrokerId, Vec<Endpoint>>,
}

impl BrokerData {
    /// The address of member `id` for `protocol`, if it advertises one.
    pub fn endpoint(&self, id: BrokerId, protocol: &str) -> Option<&str> {
        self.addresses
            .get(&id)?
            .iter()
            .find(|e| e.protocol().as_str() == protocol)
            .map(Endpoint::address)
    }

    /// The master's address for `protocol`, if the group has a live master advertising one.
    pub fn master_endpoint(&self, protocol: &str) -> Option<&str> {
        self.endpoint(BrokerId::MASTER, protocol)
    }
}

/// The route of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    /// The topic.
    pub topic: TopicName,
    /// Its queues on each broker group that serves it, sorted by broker name.
    pub queues: Vec<QueueData>,
    /// Those groups, sorted by broker name.
    pub brokers: Vec<BrokerData>,
}

impl TopicRoute {
    /// The group named `broker_name`, if it serves the topic.
    pub fn broker(&self, broker_name: &str) -> Option<&BrokerData> {
        self.brokers
            .iter()
            .find(|b| b.broker_name.as_str() == broker_name)
    }
}

/// One live broker instance, as [`ClusterInfo`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Its group.
    pub broker_name: BrokerName,
    /// Its id.
    pub broker_id: BrokerId,
    /// Its role (from the id).
    pub role: Role,
    /// Where it listens.
    pub endpoints: Vec<Endpoint>,
    /// Its last registration or heartbeat, in ms since the Unix epoch.
    pub last_heartbeat_ms: u64,
    /// Topics in its latest registration.
    pub topic_count: u32,
}

/// One cluster and its live broker instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEntry {
    /// The cluster.
    pub name: ClusterName,
    /// Its instances, sorted by (broker name, broker id).
    pub brokers: Vec<BrokerInfo>,
}

/// Every live broker instance, grouped by cluster (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterInfo {
    /// The clusters.
    pub clusters: Vec<ClusterEntry>,
}

impl ClusterInfo {
    /// Every instance of every cluster, with its cluster.
    pub fn brokers(&self) -> impl Iterator<Item = (&ClusterName, &BrokerInfo)> {
        self.clusters
            .iter()
            .flat_map(|c| c.brokers.iter().map(move |b| (&c.name, b)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_topic_rule() {
        assert!(TopicName::new("Orders_v2-%RETRY%|x").is_ok());
        assert_eq!(TopicName::new("").unwrap_err().reason, "empty");
        assert_eq!(TopicName::new("a.b").unwrap_err().field, "topic");
        assert!(BrokerName::new("x".repeat(MAX_NAME_LEN)).is_ok());
        let long = ClusterName::new("x".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert_eq!(long.field, "cluster");
        assert!(long.reason.contains("128 bytes"), "{long}");
    }

    #[test]
    fn endpoints_are_checked() {
        let e = Endpoint::new("grpc", "127.0.0.1:8081").unwrap();
        assert_eq!(e.protocol().as_str(), Protocol::GRPC);
        assert_eq!(e.address(), "127.0.0.1:8081");
        assert_eq!(Endpoint::new("GRPC", "a:1").unwrap_err().field, "protocol");
        assert_eq!(Endpoint::new("", "a:1").unwrap_err().field, "protocol");
        assert_eq!(Endpoint::new("grpc", "").unwrap_err().field, "address");
        assert_eq!(Endpoint::new("grpc", "a b:1").unwrap_err().field, "address");
        assert!(Endpoint::new("grpc", "a".repeat(MAX_ADDRESS_LEN + 1)).is_err());
    }

    #[test]
    fn permission_without_write() {
        assert_eq!(Permission::ReadWrite.without_write(), Permission::Read);
        assert_eq!(Permission::Write.without_write(), Permission::None);
        assert!(Permission::Read.readable() && !Permission::Read.writable());
        assert_eq!(BrokerId(0).role(), Role::Master);
        assert_eq!(BrokerId(2).role(), Role::Slave);
    }
}
