//! Wire ↔ core conversions of the admin service, and the checks of wire fields that core does
//! not make itself (defaults of `max`, enum numbers, counts of repeated fields).
//!
//! Invariants: a wire value is either converted exactly or refused with
//! [`RequestError::InvalidField`] naming the field; nothing here panics or truncates silently.
//! Pure functions, no I/O.

use std::collections::HashMap;

use rocketgate_core::rules as validate;
use rocketgate_core::{MessageType, Permission, PullStatus, StoredMessage, TopicConfig};
use rocketgate_proto::cluster::v1 as pb;

use crate::status::RequestError;

/// `max` when a request leaves it 0 (capped by the broker's `limits.max_batch`).
pub(crate) const DEFAULT_MAX: usize = 32;

/// Shows at most this many characters of a refused value.
const SHOWN_CHARS: usize = 128;

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RequestError {
    RequestError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(SHOWN_CHARS).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    s
}

/// A topic name, checked by core's rules (the error names the topic and the rule).
pub(crate) fn topic(name: &str) -> Result<&str, RequestError> {
    validate::topic_name(name)?;
    Ok(name)
}

/// A consumer group name: the topic name rules.
pub(crate) fn group(name: &str) -> Result<&str, RequestError> {
    if validate::topic_name(name).is_err() {
        return Err(invalid(
            "group",
            format!(
                "`{}` is not 1..=127 characters of letters, digits and `_ - % |`",
                shown(name)
            ),
        ));
    }
    Ok(name)
}

/// A non-empty string field of at most `max_bytes` bytes (ids, keys).
pub(crate) fn short_field<'a>(
    field: &'static str,
    value: &'a str,
    max_bytes: usize,
) -> Result<&'a str, RequestError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max_bytes {
        return Err(invalid(
            field,
            format!("{} bytes, at most {max_bytes} allowed", value.len()),
        ));
    }
    Ok(value)
}

/// A `max` field: 0 means [`DEFAULT_MAX`] (or `limit` if smaller), above `limit` is refused.
pub(crate) fn max(field: &'static str, value: u32, limit: usize) -> Result<usize, RequestError> {
    let value = usize::try_from(value).unwrap_or(usize::MAX);
    match value {
        0 => Ok(DEFAULT_MAX.min(limit).max(1)),
        v if v > limit => Err(invalid(
            field,
            format!("{v} is more than the broker's limit of {limit}"),
        )),
        v => Ok(v),
    }
}

/// A store-time range `[begin, end]`.
pub(crate) fn time_range(begin_ms: i64, end_ms: i64) -> Result<(i64, i64), RequestError> {
    if begin_ms > end_ms {
        return Err(invalid(
            "begin_ms",
            format!("{begin_ms} is after end_ms {end_ms}"),
        ));
    }
    Ok((begin_ms, end_ms))
}

/// A message type; `UNSPECIFIED` is `default` when given (CreateTopic) and refused otherwise.
pub(crate) fn message_type(
    field: &'static str,
    value: i32,
    default: Option<MessageType>,
) -> Result<MessageType, RequestError> {
    match pb::MessageType::try_from(value) {
        Ok(pb::MessageType::Unspecified) => default.ok_or_else(|| {
            invalid(
                field,
                "MESSAGE_TYPE_UNSPECIFIED is not a message type (leave the field unset to keep \
                 the current one)",
            )
        }),
        Ok(pb::MessageType::Normal) => Ok(MessageType::Normal),
        Ok(pb::MessageType::Fifo) => Ok(MessageType::Fifo),
        Ok(pb::MessageType::Delay) => Ok(MessageType::Delay),
        Ok(pb::MessageType::Transaction) => Ok(MessageType::Transaction),
        Ok(pb::MessageType::Mixed) => Ok(MessageType::Mixed),
        Err(_) => Err(invalid(field, format!("unknown message type {value}"))),
    }
}

/// A permission; `UNSPECIFIED` is `default` when given (CreateTopic) and refused otherwise.
pub(crate) fn permission(
    field: &'static str,
    value: i32,
    default: Option<Permission>,
) -> Result<Permission, RequestError> {
    let p = |read, write| Ok(Permission { read, write });
    match pb::Permission::try_from(value) {
        Ok(pb::Permission::Unspecified) => default.ok_or_else(|| {
            invalid(
                field,
                "PERMISSION_UNSPECIFIED is not a permission (leave the field unset to keep the \
                 current one)",
            )
        }),
        Ok(pb::Permission::None) => p(false, false),
        Ok(pb::Permission::Read) => p(true, false),
        Ok(pb::Permission::Write) => p(false, true),
        Ok(pb::Permission::ReadWrite) => p(true, true),
        Err(_) => Err(invalid(field, format!("unknown permission {value}"))),
    }
}

fn message_type_to_proto(t: MessageType) -> pb::MessageType {
    match t {
        MessageType::Normal => pb::MessageType::Normal,
        MessageType::Fifo => pb::MessageType::Fifo,
        MessageType::Delay => pb::MessageType::Delay,
        MessageType::Transaction => pb::MessageType::Transaction,
        MessageType::Mixed => pb::MessageType::Mixed,
    }
}

fn permission_to_proto(p: Permission) -> pb::Permission {
    match (p.read, p.write) {
        (false, false) => pb::Permission::None,
        (true, false) => pb::Permission::Read,
        (false, true) => pb::Permission::Write,
        (true, true) => pb::Permission::ReadWrite,
    }
}

pub(crate) fn topic_spec(c: &TopicConfig) -> pb::TopicSpec {
    pb::TopicSpec {
        name: c.name.clone(),
        queue_count: c.queue_count,
        message_type: message_type_to_proto(c.message_type) as i32,
        permission: permission_to_proto(c.permission) as i32,
    }
}

pub(crate) fn pull_status(s: PullStatus) -> pb::PullStatus {
    match s {
        PullStatus::Found => pb::PullStatus::Found,
        PullStatus::NoNewMessage => pb::PullStatus::NoNewMessage,
        PullStatus::OffsetMoved => pb::PullStatus::OffsetMoved,
        PullStatus::OffsetTooBig => pb::PullStatus::OffsetTooBig,
        PullStatus::NoMatchedMessage => pb::PullStatus::NoMatchedMessage,
    }
}

pub(crate) fn stored_message(m: StoredMessage) -> pb::StoredMessage {
    pb::StoredMessage {
        message_id: m.message_id,
        topic: m.topic,
        queue_id: m.queue_id,
        queue_offset: m.queue_offset,
        physical_offset: m.physical_offset,
        store_timestamp_ms: m.store_timestamp_ms,
        born_timestamp_ms: m.born_timestamp_ms,
        born_host: m.born_host.unwrap_or_default(),
        tag: m.tag.unwrap_or_default(),
        keys: m.keys,
        message_group: m.message_group.unwrap_or_default(),
        properties: m.properties.into_iter().collect::<HashMap<_, _>>(),
        body: m.body.to_vec(),
        reconsume_times: m.reconsume_times,
    }
}

/// Roughly how many bytes a message takes in a response.
fn encoded_size(m: &StoredMessage) -> usize {
    let text = m.message_id.len()
        + m.topic.len()
        + m.born_host.as_ref().map_or(0, String::len)
        + m.tag.as_ref().map_or(0, String::len)
        + m.message_group.as_ref().map_or(0, String::len);
    let keys: usize = m.keys.iter().map(|k| k.len() + 2).sum();
    let properties: usize = m
        .properties
        .iter()
        .map(|(k, v)| k.len() + v.len() + 8)
        .sum();
    m.body.len() + text + keys + properties + 64
}

/// Keeps the leading messages whose sizes add up to at most `budget` bytes (always the first
/// one). Returns whether some were dropped.
pub(crate) fn fit(messages: &mut Vec<StoredMessage>, budget: usize) -> bool {
    let mut total = 0usize;
    let keep = messages
        .iter()
        .position(|m| {
            total = total.saturating_add(encoded_size(m));
            total > budget
        })
        .map_or(messages.len(), |i| i.max(1));
    let cut = keep < messages.len();
    messages.truncate(keep);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_defaults_and_limits() {
        assert_eq!(max("max", 0, 1024).ok(), Some(32));
        assert_eq!(max("max", 0, 8).ok(), Some(8));
        assert_eq!(max("max", 7, 8).ok(), Some(7));
        let e = max("max", 9, 8).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid `max`: 9 is more than the broker's limit of 8")
        );
    }

    #[test]
    fn enums_map_both_ways_and_refuse_unknown_numbers() {
        for t in [
            MessageType::Normal,
            MessageType::Fifo,
            MessageType::Delay,
            MessageType::Transaction,
            MessageType::Mixed,
        ] {
            let wire = message_type_to_proto(t) as i32;
            assert_eq!(message_type("t", wire, None).ok(), Some(t));
        }
        assert_eq!(
            message_type("t", 0, Some(MessageType::Normal)).ok(),
            Some(MessageType::Normal)
        );
        assert!(message_type("t", 0, None).is_err());
        assert!(message_type("t", 6, None).is_err());
        assert!(message_type("t", -1, None).is_err());
        for (read, write) in [(false, false), (true, false), (false, true), (true, true)] {
            let p = Permission { read, write };
            let wire = permission_to_proto(p) as i32;
            assert_eq!(permission("p", wire, None).ok(), Some(p));
        }
        assert!(permission("p", 0, None).is_err());
        assert!(permission("p", 5, None).is_err());
    }

    #[test]
    fn fit_keeps_at_least_one_message() {
        let m = |n: usize| StoredMessage {
            message_id: "id".into(),
            topic: "t".into(),
            queue_id: 0,
            queue_offset: 0,
            physical_offset: 0,
            size: 0,
            store_timestamp_ms: 0,
            born_timestamp_ms: 0,
            born_host: None,
            tag: None,
            keys: Vec::new(),
            message_group: None,
            properties: Default::default(),
            body: vec![0u8; n].into(),
            reconsume_times: 0,
            flags: 0,
        };
        let mut v = vec![m(1000), m(1000), m(1000)];
        assert!(fit(&mut v, 2500));
        assert_eq!(v.len(), 2);
        let mut v = vec![m(5000), m(10)];
        assert!(fit(&mut v, 100));
        assert_eq!(v.len(), 1);
        let mut v = vec![m(10), m(10)];
        assert!(!fit(&mut v, 1000));
        assert_eq!(v.len(), 2);
    }
}
