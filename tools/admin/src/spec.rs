//! The protocol's enums as operators type and read them: permissions (`rw`, `r`, `w`, `none`),
//! message types (`NORMAL`, `FIFO`, `DELAY`, `TRANSACTION`, `MIXED`: RocketMQ's spelling, as
//! REST and gRPC print them), broker roles and pull statuses.
//!
//! Invariants: the same token is accepted on the command line (in any case, with the long
//! spellings `read-write`, `read`, `write` as aliases) and printed in tables and JSON, so an
//! output value can be fed back as a flag. Unknown wire values print as `unknown(N)`. Pure.
//!
//! Owns the token spellings; must not depend on any other module of the crate.

use std::fmt;
use std::str::FromStr;

use rocketgate_proto::cluster::v1 as pb;

/// Access to a topic's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Producers and consumers: `rw`.
    ReadWrite,
    /// Consumers only: `r`.
    Read,
    /// Producers only: `w`.
    Write,
    /// Neither: `none`.
    None,
}

impl Perm {
    /// The wire value.
    pub fn to_pb(self) -> i32 {
        match self {
            Self::ReadWrite => pb::Permission::ReadWrite,
            Self::Read => pb::Permission::Read,
            Self::Write => pb::Permission::Write,
            Self::None => pb::Permission::None,
        }
        .into()
    }
}

impl FromStr for Perm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rw" | "read-write" | "read_write" => Ok(Self::ReadWrite),
            "r" | "read" => Ok(Self::Read),
            "w" | "write" => Ok(Self::Write),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "`{s}` is not a permission: expected rw, r, w or none"
            )),
        }
    }
}

/// The token for a wire permission (`rw`, `r`, `w`, `none`).
pub fn perm_name(value: i32) -> String {
    match pb::Permission::try_from(value) {
        Ok(pb::Permission::ReadWrite) => "rw".into(),
        Ok(pb::Permission::Read) => "r".into(),
        Ok(pb::Permission::Write) => "w".into(),
        Ok(pb::Permission::None) => "none".into(),
        Ok(pb::Permission::Unspecified) => "unspecified".into(),
        Err(_) => format!("unknown({value})"),
    }
}

/// The kind of messages a topic accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicType {
    /// `NORMAL`.
    Normal,
    /// `FIFO`.
    Fifo,
    /// `DELAY`.
    Delay,
    /// `TRANSACTION`.
    Transaction,
    /// `MIXED`.
    Mixed,
}

impl TopicType {
    /// The wire value.
    pub fn to_pb(self) -> i32 {
        match self {
            Self::Normal => pb::MessageType::Normal,
            Self::Fifo => pb::MessageType::Fifo,
            Self::Delay => pb::MessageType::Delay,
            Self::Transaction => pb::MessageType::Transaction,
            Self::Mixed => pb::MessageType::Mixed,
        }
        .into()
    }
}

impl FromStr for TopicType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "fifo" => Ok(Self::Fifo),
            "delay" => Ok(Self::Delay),
            "transaction" => Ok(Self::Transaction),
            "mixed" => Ok(Self::Mixed),
            _ => Err(format!(
                "`{s}` is not a message type: expected NORMAL, FIFO, DELAY, TRANSACTION or MIXED (any case)"
            )),
        }
    }
}

/// The token for a wire message type (`NORMAL`, `FIFO`, ...).
pub fn type_name(value: i32) -> String {
    match pb::MessageType::try_from(value) {
        Ok(pb::MessageType::Normal) => "NORMAL".into(),
        Ok(pb::MessageType::Fifo) => "FIFO".into(),
        Ok(pb::MessageType::Delay) => "DELAY".into(),
        Ok(pb::MessageType::Transaction) => "TRANSACTION".into(),
        Ok(pb::MessageType::Mixed) => "MIXED".into(),
        Ok(pb::MessageType::Unspecified) => "UNSPECIFIED".into(),
        Err(_) => format!("unknown({value})"),
    }
}

/// The token for a wire broker role (`master`, `slave`).
pub fn role_name(value: i32) -> String {
    match pb::BrokerRole::try_from(value) {
        Ok(pb::BrokerRole::Master) => "master".into(),
        Ok(pb::BrokerRole::Slave) => "slave".into(),
        Ok(pb::BrokerRole::Unspecified) => "unspecified".into(),
        Err(_) => format!("unknown({value})"),
    }
}

/// The token for a wire pull status (`found`, `no_new_message`, ...).
pub fn pull_status_name(value: i32) -> String {
    match pb::PullStatus::try_from(value) {
        Ok(pb::PullStatus::Found) => "found".into(),
        Ok(pb::PullStatus::NoNewMessage) => "no_new_message".into(),
        Ok(pb::PullStatus::OffsetMoved) => "offset_moved".into(),
        Ok(pb::PullStatus::OffsetTooBig) => "offset_too_big".into(),
        Ok(pb::PullStatus::NoMatchedMessage) => "no_matched_message".into(),
        Ok(pb::PullStatus::Unspecified) => "unspecified".into(),
        Err(_) => format!("unknown({value})"),
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&perm_name(self.to_pb()))
    }
}

impl fmt::Display for TopicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&type_name(self.to_pb()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse_and_print_the_same_tokens() {
        for (text, perm) in [
            ("rw", Perm::ReadWrite),
            ("r", Perm::Read),
            ("w", Perm::Write),
            ("none", Perm::None),
        ] {
            assert_eq!(text.parse::<Perm>().unwrap(), perm);
            assert_eq!(perm.to_string(), text);
            assert_eq!(perm_name(perm.to_pb()), text);
        }
        assert_eq!("READ-WRITE".parse::<Perm>().unwrap(), Perm::ReadWrite);
        assert_eq!(" Read ".parse::<Perm>().unwrap(), Perm::Read);
        assert_eq!(Perm::ReadWrite.to_pb(), 4);
        let e = "x".parse::<Perm>().unwrap_err();
        assert!(e.contains("rw, r, w or none"), "{e}");
        assert_eq!(perm_name(0), "unspecified");
        assert_eq!(perm_name(42), "unknown(42)");
    }

    #[test]
    fn message_types_parse_and_print_the_same_tokens() {
        for (text, kind, wire) in [
            ("normal", TopicType::Normal, 1),
            ("fifo", TopicType::Fifo, 2),
            ("delay", TopicType::Delay, 3),
            ("transaction", TopicType::Transaction, 4),
            ("mixed", TopicType::Mixed, 5),
        ] {
            assert_eq!(text.parse::<TopicType>().unwrap(), kind);
            assert_eq!(text.to_uppercase().parse::<TopicType>().unwrap(), kind);
            assert_eq!(kind.to_pb(), wire);
            assert_eq!(type_name(wire), text.to_uppercase());
            let mixed_case = format!("{}{}", &text[..1].to_uppercase(), &text[1..]);
            assert_eq!(mixed_case.parse::<TopicType>().unwrap(), kind);
        }
        assert!("batch".parse::<TopicType>().is_err());
        assert_eq!(type_name(-1), "unknown(-1)");
    }

    #[test]
    fn roles_and_pull_statuses() {
        assert_eq!(role_name(1), "master");
        assert_eq!(role_name(2), "slave");
        assert_eq!(pull_status_name(1), "found");
        assert_eq!(pull_status_name(2), "no_new_message");
        assert_eq!(pull_status_name(9), "unknown(9)");
    }
}
