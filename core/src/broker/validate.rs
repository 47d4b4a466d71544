//! The rulebook of the `Broker` API: names, fields, sizes, counts and message types, checked
//! before anything is written so that a refused request leaves no trace. Every gateway relies on
//! these checks and maps the typed error ([`crate::Reason`]); none repeats them.
//!
//! Pure functions; no I/O, no locks.

use crate::broker::topic::MessageType;
use crate::config::LimitsConfig;
use crate::error::{Error, Field, Result};
use crate::message::Message;

/// Longest message group of a message declared FIFO (RocketMQ's limit).
pub const MAX_MESSAGE_GROUP: usize = 64;

/// Longest topic name (RocketMQ's limit).
pub const MAX_TOPIC_LEN: usize = 127;

/// Property keys the broker reserves for its own use (RocketMQ system properties): producers may
/// not set them.
pub const RESERVED_PROPERTY_KEYS: &[&str] = &[
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "BUYER_ID",
    "ORIGIN_MESSAGE_ID",
    "TRANSFER_FLAG",
    "CORRECTION_FLAG",
    "MQ2_FLAG",
    "RECONSUME_TIME",
    "MSG_REGION",
    "TRACE_ON",
    "UNIQ_KEY",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
    "POP_CK",
    "TIMER_DELIVER_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELAY_MS",
    "__SHARDINGKEY",
    "CLUSTER",
];

/// Checks a topic name: 1..=127 characters of `[A-Za-z0-9_%|-]`.
///
/// # Errors
/// [`Error::IllegalTopic`].
pub fn topic_name(name: &str) -> Result<()> {
    let err = |reason| {
        Err(Error::IllegalTopic {
            name: name.chars().take(MAX_TOPIC_LEN + 1).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return err("empty");
    }
    if name.len() > MAX_TOPIC_LEN {
        return err("longer than 127 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'%' | b'|'))
    {
        return err("only letters, digits and `_ - % |` are allowed");
    }
    Ok(())
}

fn field(name: Field, value: &str, limits: &LimitsConfig, allow_empty: bool) -> Result<()> {
    if !allow_empty && value.trim().is_empty() {
        return Err(Error::IllegalField {
            field: name,
            reason: "empty or blank".into(),
        });
    }
    if value.len() > limits.max_field_bytes {
        return Err(Error::IllegalField {
            field: name,
            reason: format!("longer than {} bytes", limits.max_field_bytes),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(Error::IllegalField {
            field: name,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

/// Checks a message against the limits (the topic's existence is checked by the caller).
///
/// # Errors
/// [`Error::IllegalTopic`], [`Error::BodyTooLarge`], [`Error::PropertiesTooLarge`],
/// [`Error::IllegalPropertyKey`] or [`Error::IllegalField`].
pub fn message(m: &Message, limits: &LimitsConfig) -> Result<()> {
    topic_name(&m.topic)?;
    if m.body.len() > limits.max_body_bytes {
        return Err(Error::BodyTooLarge {
            size: m.body.len(),
            max: limits.max_body_bytes,
        });
    }
    if let Some(tag) = &m.tag {
        field(Field::Tag, tag, limits, false)?;
        if tag.contains('|') {
            return Err(Error::IllegalField {
                field: Field::Tag,
                reason: "must not contain `|` (it separates tags in filter expressions)".into(),
            });
        }
    }
    if m.keys.len() > limits.max_keys {
        return Err(Error::IllegalField {
            field: Field::Key,
            reason: format!("more than {} keys", limits.max_keys),
        });
    }
    for k in &m.keys {
        field(Field::Key, k, limits, false)?;
    }
    if let Some(g) = &m.message_group {
        field(Field::MessageGroup, g, limits, false)?;
    }
    if let Some(id) = &m.message_id {
        field(Field::MessageId, id, limits, false)?;
    }
    if let Some(h) = &m.born_host {
        field(Field::BornHost, h, limits, true)?;
    }
    if m.properties.len() > limits.max_properties {
        return Err(Error::PropertiesTooLarge(format!(
            "{} properties, at most {} allowed",
            m.properties.len(),
            limits.max_properties
        )));
    }
    let mut total = 0usize;
    for (k, v) in &m.properties {
        if k.trim().is_empty() {
            return Err(Error::IllegalPropertyKey("blank property key".into()));
        }
        if RESERVED_PROPERTY_KEYS.contains(&k.as_str()) {
            return Err(Error::IllegalPropertyKey(format!(
                "`{k}` is a reserved property key"
            )));
        }
        if k.len() > usize::from(u16::MAX) {
            return Err(Error::IllegalPropertyKey("property key too long".into()));
        }
        total = total.saturating_add(k.len() + v.len());
    }
    if total > limits.max_properties_bytes {
        return Err(Error::PropertiesTooLarge(format!(
            "{total} bytes of properties, at most {} allowed",
            limits.max_properties_bytes
        )));
    }
    Ok(())
}

/// The type a message's fields make it, as RocketMQ 5 reads it from a send
/// (`TopicMessageType.parseFromMessageProperty`): a half message is TRANSACTION, one with a
/// delay level or delivery time DELAY, one with a message group FIFO, any other NORMAL.
pub fn inferred_type(m: &Message, half: bool) -> MessageType {
    if half {
        MessageType::Transaction
    } else if m.delay_level.is_some() || m.deliver_at_ms.is_some() {
        MessageType::Delay
    } else if m.message_group.is_some() {
        MessageType::Fifo
    } else {
        MessageType::Normal
    }
}

/// Checks a message that declares its type (`declared`) against what the type needs. `half`
/// tells a transactional half send from a plain one.
///
/// # Errors
/// [`Error::IllegalField`] for a FIFO message without a proper message group,
/// [`Error::MessageTypeConflict`] for a DELAY message without a delivery time, a TRANSACTION
/// message outside a half send (or the reverse), or MIXED (a topic type only).
pub fn declared_type(m: &Message, declared: MessageType, half: bool) -> Result<()> {
    match declared {
        MessageType::Fifo => {
            let g = m.message_group.as_deref().unwrap_or("");
            if g.trim().is_empty()
                || g.chars().count() > MAX_MESSAGE_GROUP
                || g.chars().any(char::is_control)
            {
                return Err(Error::IllegalField {
                    field: Field::MessageGroup,
                    reason: format!(
                        "a FIFO message needs a message group of 1-{MAX_MESSAGE_GROUP} characters"
                    ),
                });
            }
        }
        MessageType::Delay if m.deliver_at_ms.is_none() && m.delay_level.is_none() => {
            return Err(Error::MessageTypeConflict(
                "a DELAY message needs a delivery time".into(),
            ));
        }
        MessageType::Transaction if !half => {
            return Err(Error::MessageTypeConflict(
                "a TRANSACTION message is sent as a half message".into(),
            ));
        }
        MessageType::Mixed => {
            return Err(Error::MessageTypeConflict(
                "MIXED is a topic type, not a message type".into(),
            ));
        }
        _ => {}
    }
    if half && declared != MessageType::Transaction {
        return Err(Error::MessageTypeConflict(format!(
            "a half message is a TRANSACTION message, not {}",
            declared.as_str()
        )));
    }
    Ok(())
}

/// Checks that a topic of type `topic_type` accepts a message of type `actual` (declared, or
/// [`inferred_type`]): a MIXED topic takes every type, any other topic only its own (RocketMQ
/// 5's `TopicMessageTypeValidator`).
///
/// # Errors
/// [`Error::MessageTypeConflict`] naming both types.
pub fn topic_accepts(topic: &str, topic_type: MessageType, actual: MessageType) -> Result<()> {
    if topic_type == MessageType::Mixed || topic_type == actual {
        return Ok(());
    }
    let hint = match actual {
        MessageType::Normal if topic_type == MessageType::Fifo => {
            " (a FIFO message needs a message group)"
        }
        MessageType::Normal if topic_type == MessageType::Delay => {
            " (a DELAY message needs a delay or delivery time)"
        }
        MessageType::Normal if topic_type == MessageType::Transaction => {
            " (a TRANSACTION message is sent as a half message and committed)"
        }
        _ => "",
    };
    Err(Error::MessageTypeConflict(format!(
        "topic `{topic}` accepts {} messages, not {}{hint}",
        topic_type.as_str(),
        actual.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(topic_name("a").is_ok());
        assert!(topic_name("%RETRY%g|x-1_2").is_ok());
        assert!(topic_name("").is_err());
        assert!(topic_name(&"a".repeat(127)).is_ok());
        assert!(topic_name(&"a".repeat(128)).is_err());
        for bad in ["a b", "a/b", "a.b", "é", "a#b", "a\0"] {
            assert!(topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_limits() {
        let l = LimitsConfig::default();
        let ok = Message::new("t", vec![0u8; 10]).with_tag("a").with_key("k");
        assert!(message(&ok, &l).is_ok());
        let big = Message::new("t", vec![0u8; l.max_body_bytes + 1]);
        assert!(matches!(message(&big, &l), Err(Error::BodyTooLarge { .. })));
        let mut many = Message::new("t", "x");
        for i in 0..=l.max_properties {
            many.properties.insert(format!("k{i}"), "v".into());
        }
        assert!(matches!(
            message(&many, &l),
            Err(Error::PropertiesTooLarge(_))
        ));
        let reserved = Message::new("t", "x").with_property("UNIQ_KEY", "v");
        assert!(matches!(
            message(&reserved, &l),
            Err(Error::IllegalPropertyKey(_))
        ));
        let blank = Message::new("t", "x").with_property(" ", "v");
        assert!(matches!(
            message(&blank, &l),
            Err(Error::IllegalPropertyKey(_))
        ));
        for bad in ["a||b", "a|b", " ", ""] {
            let tag = Message::new("t", "x").with_tag(bad);
            assert!(
                matches!(
                    message(&tag, &l),
                    Err(Error::IllegalField {
                        field: Field::Tag,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let key = Message::new("t", "x").with_key("  ");
        assert!(matches!(
            message(&key, &l),
            Err(Error::IllegalField {
                field: Field::Key,
                ..
            })
        ));
        let huge = Message::new("t", "x").with_property("k", "v".repeat(l.max_properties_bytes));
        assert!(matches!(
            message(&huge, &l),
            Err(Error::PropertiesTooLarge(_))
        ));
    }

    #[test]
    fn declared_types() {
        use MessageType::*;
        let normal = Message::new("t", "x");
        let fifo = Message::new("t", "x").with_group("g");
        let delayed = Message::new("t", "x").with_deliver_at(1);
        let conflict = |r: Result<()>| matches!(r, Err(Error::MessageTypeConflict(_)));
        assert!(declared_type(&normal, Normal, false).is_ok());
        assert!(declared_type(&fifo, Fifo, false).is_ok());
        let group = |r: Result<()>| {
            matches!(
                r,
                Err(Error::IllegalField {
                    field: Field::MessageGroup,
                    ..
                })
            )
        };
        assert!(group(declared_type(&normal, Fifo, false)));
        let long = Message::new("t", "x").with_group("g".repeat(MAX_MESSAGE_GROUP + 1));
        assert!(group(declared_type(&long, Fifo, false)));
        assert!(conflict(declared_type(&normal, Delay, false)));
        assert!(declared_type(&delayed, Delay, false).is_ok());
        assert!(conflict(declared_type(&normal, Transaction, false)));
        assert!(declared_type(&normal, Transaction, true).is_ok());
        assert!(conflict(declared_type(&normal, Normal, true)));
        assert!(conflict(declared_type(&normal, Mixed, false)));
    }

    #[test]
    fn inferred_types_and_what_topics_accept() {
        use MessageType::*;
        let normal = Message::new("t", "x");
        let fifo = Message::new("t", "x").with_group("g");
        let delayed = Message::new("t", "x").with_group("g").with_deliver_at(1);
        assert_eq!(inferred_type(&normal, false), Normal);
        assert_eq!(inferred_type(&fifo, false), Fifo);
        assert_eq!(
            inferred_type(&delayed, false),
            Delay,
            "a delay wins over a group"
        );
        assert_eq!(inferred_type(&fifo, true), Transaction);
        let all = [Normal, Fifo, Delay, Transaction];
        for actual in all {
            assert!(topic_accepts("t", Mixed, actual).is_ok());
            for topic in all {
                let r = topic_accepts("t", topic, actual);
                assert_eq!(r.is_ok(), topic == actual, "{topic:?} <- {actual:?}");
                if let Err(e) = r {
                    assert!(matches!(e, Error::MessageTypeConflict(_)));
                    assert!(e.to_string().contains(topic.as_str()), "{e}");
                }
            }
        }
    }
}
