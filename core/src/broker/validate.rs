//! Input validation for the `Broker` API: names, sizes and counts, checked before anything is
//! written so that a refused request leaves no trace.
//!
//! Pure functions; no I/O, no locks.

use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::message::Message;

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

fn field(name: &'static str, value: &str, limits: &LimitsConfig, allow_empty: bool) -> Result<()> {
    if !allow_empty && value.is_empty() {
        return Err(Error::IllegalField {
            field: name,
            reason: "empty".into(),
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
/// [`Error::IllegalTopic`], [`Error::BodyTooLarge`], [`Error::IllegalProperties`] or
/// [`Error::IllegalField`].
pub fn message(m: &Message, limits: &LimitsConfig) -> Result<()> {
    topic_name(&m.topic)?;
    if m.body.len() > limits.max_body_bytes {
        return Err(Error::BodyTooLarge {
            size: m.body.len(),
            max: limits.max_body_bytes,
        });
    }
    if let Some(tag) = &m.tag {
        field("tag", tag, limits, false)?;
        if tag.contains("||") {
            return Err(Error::IllegalField {
                field: "tag",
                reason: "must not contain `||`".into(),
            });
        }
    }
    if m.keys.len() > limits.max_keys {
        return Err(Error::IllegalField {
            field: "keys",
            reason: format!("more than {} keys", limits.max_keys),
        });
    }
    for k in &m.keys {
        field("keys", k, limits, false)?;
    }
    if let Some(g) = &m.message_group {
        field("message_group", g, limits, false)?;
    }
    if let Some(id) = &m.message_id {
        field("message_id", id, limits, false)?;
    }
    if let Some(h) = &m.born_host {
        field("born_host", h, limits, true)?;
    }
    if m.properties.len() > limits.max_properties {
        return Err(Error::IllegalProperties(format!(
            "{} properties, at most {} allowed",
            m.properties.len(),
            limits.max_properties
        )));
    }
    let mut total = 0usize;
    for (k, v) in &m.properties {
        if k.trim().is_empty() {
            return Err(Error::IllegalProperties("blank property key".into()));
        }
        if RESERVED_PROPERTY_KEYS.contains(&k.as_str()) {
            return Err(Error::IllegalProperties(format!(
                "`{k}` is a reserved property key"
            )));
        }
        if k.len() > usize::from(u16::MAX) {
            return Err(Error::IllegalProperties("property key too long".into()));
        }
        total = total.saturating_add(k.len() + v.len());
    }
    if total > limits.max_properties_bytes {
        return Err(Error::IllegalProperties(format!(
            "{total} bytes of properties, at most {} allowed",
            limits.max_properties_bytes
        )));
    }
    Ok(())
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
            Err(Error::IllegalProperties(_))
        ));
        let reserved = Message::new("t", "x").with_property("UNIQ_KEY", "v");
        assert!(matches!(
            message(&reserved, &l),
            Err(Error::IllegalProperties(_))
        ));
        let blank = Message::new("t", "x").with_property(" ", "v");
        assert!(matches!(
            message(&blank, &l),
            Err(Error::IllegalProperties(_))
        ));
        let tag = Message::new("t", "x").with_tag("a||b");
        assert!(matches!(message(&tag, &l), Err(Error::IllegalField { .. })));
        let huge = Message::new("t", "x").with_property("k", "v".repeat(l.max_properties_bytes));
        assert!(matches!(
            message(&huge, &l),
            Err(Error::IllegalProperties(_))
        ));
    }
}
