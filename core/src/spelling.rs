//! How the core's enums are spelled: any ASCII case (and `-` for `_`) on input — the config
//! file, the environment, flags, request bodies — and one canonical spelling on output (the
//! RocketMQ name: `SYNC`, `TRANSACTION`). [`FlushMode`] and [`MessageType`] parse with
//! `FromStr` and deserialize through it; `Display` and `Serialize` write the canonical name.
//!
//! Owns the accepted spellings of those enums; must not hold any other rule. Pure.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::broker::topic::MessageType;
use crate::config::FlushMode;

/// A value that is none of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`: expected {expected} (any case)")]
pub struct UnknownName {
    /// What was parsed (`flush mode`, `message type`, ...).
    pub what: &'static str,
    /// The value given.
    pub value: String,
    /// The canonical spellings.
    pub expected: &'static str,
}

/// The value of `names` that `s` spells, ignoring ASCII case, surrounding blanks and `-`
/// versus `_`.
fn lookup<T: Copy>(
    s: &str,
    what: &'static str,
    expected: &'static str,
    names: &[(&str, T)],
) -> Result<T, UnknownName> {
    let given = s.trim();
    let same = |name: &str| {
        name.len() == given.len()
            && name.bytes().zip(given.bytes()).all(|(a, b)| {
                let norm = |c: u8| {
                    if c == b'-' {
                        b'_'
                    } else {
                        c.to_ascii_uppercase()
                    }
                };
                norm(a) == norm(b)
            })
    };
    names
        .iter()
        .find(|(name, _)| same(name))
        .map(|(_, v)| *v)
        .ok_or_else(|| UnknownName {
            what,
            value: s.chars().take(64).collect(),
            expected,
        })
}

/// `Deserialize` through `FromStr`, so every input accepts the same spellings.
macro_rules! deserialize_from_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

impl FromStr for FlushMode {
    type Err = UnknownName;

    /// `SYNC` (alias `SYNC_FLUSH`) or `ASYNC` (alias `ASYNC_FLUSH`), any case.
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        use FlushMode::*;
        lookup(
            s,
            "flush mode",
            "SYNC or ASYNC",
            &[
                ("SYNC", Sync),
                ("SYNC_FLUSH", Sync),
                ("ASYNC", Async),
                ("ASYNC_FLUSH", Async),
            ],
        )
    }
}

impl FlushMode {
    /// The canonical name: `SYNC` or `ASYNC`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "SYNC",
            Self::Async => "ASYNC",
        }
    }
}

impl fmt::Display for FlushMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

deserialize_from_str!(FlushMode);

impl FromStr for MessageType {
    type Err = UnknownName;

    /// `NORMAL`, `FIFO`, `DELAY`, `TRANSACTION` or `MIXED`, any case.
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        use MessageType::*;
        lookup(
            s,
            "message type",
            "NORMAL, FIFO, DELAY, TRANSACTION or MIXED",
            &[
                ("NORMAL", Normal),
                ("FIFO", Fifo),
                ("DELAY", Delay),
                ("TRANSACTION", Transaction),
                ("MIXED", Mixed),
            ],
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

deserialize_from_str!(MessageType);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn any_case_in_one_spelling_out() {
        for s in ["sync", "SYNC", "Sync", " sync_flush ", "sync-flush"] {
            assert_eq!(s.parse::<FlushMode>(), Ok(FlushMode::Sync), "{s}");
        }
        assert_eq!("async".parse::<FlushMode>(), Ok(FlushMode::Async));
        assert_eq!(FlushMode::Sync.to_string(), "SYNC");
        let e = "fsync".parse::<FlushMode>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown flush mode `fsync`: expected SYNC or ASYNC (any case)"
        );
        for s in ["transaction", "TRANSACTION", "Transaction"] {
            assert_eq!(s.parse::<MessageType>(), Ok(MessageType::Transaction));
        }
        assert_eq!(MessageType::Fifo.to_string(), "FIFO");
        assert!("fifo2".parse::<MessageType>().is_err());
    }

    #[test]
    fn deserialized_as_parsed_and_serialized_canonically() {
        let m: MessageType = serde_json::from_str("\"fifo\"").unwrap();
        assert_eq!(m, MessageType::Fifo);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"FIFO\"");
        let f: FlushMode = serde_json::from_str("\"Sync\"").unwrap();
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"SYNC\"");
        let e = serde_json::from_str::<FlushMode>("\"never\"").unwrap_err();
        assert!(e.to_string().contains("expected SYNC or ASYNC"), "{e}");
    }
}
