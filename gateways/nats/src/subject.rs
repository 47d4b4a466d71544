//! NATS subjects and how they map onto RocketMQ: validation, wildcard matching, the RocketMQ
//! topic of a subject, the consumer groups of subscriptions, and the subject under which a
//! stored message is delivered.
//!
//! Mapping (docs/nats.md):
//! - A subject is tokens separated by `.`; a token is non-empty and has no space, tab, CR or
//!   LF. `*` matches one token, `>` (last token only) one or more; a publish subject has
//!   neither.
//! - The first token is the RocketMQ topic: it must be a legal topic name without `%` and `|`
//!   (letters, digits, `_`, `-`, at most 127), else the subject is refused (`Invalid Subject`
//!   / `Invalid Publish Subject`). A subscription whose first token is `*` or `>` reads every
//!   user topic.
//! - A stored message is delivered under its `natsSubject` property when that is a publish
//!   subject of its own topic; else under its `mqttTopic` with `/` turned into `.` when that
//!   makes one (no empty level, no `+`, `#` or `.` in it); else under the topic's name.
//!
//! Pure; no I/O.

use rocketgate_core::StoredMessage;

/// Message property: the full NATS subject of a message published over NATS.
pub const PROP_SUBJECT: &str = "natsSubject";
/// Message property: the reply subject of a NATS publish.
pub const PROP_REPLY: &str = "natsReply";
/// The MQTT gateway's property holding the full MQTT topic (read only).
const PROP_MQTT_TOPIC: &str = "mqttTopic";
/// Longest subject accepted (bytes).
pub const MAX_SUBJECT: usize = 1024;

/// Why a subject is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectError {
    /// Not a subject (empty token, white space, misplaced `>`, wildcard in a publish).
    Malformed,
    /// Its first token is not a RocketMQ topic name.
    Unmappable,
}

fn token_ok(t: &str) -> bool {
    !t.is_empty()
        && !t
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0))
}

/// Whether `t` may be a RocketMQ topic named by a first token.
pub fn topic_token_ok(t: &str) -> bool {
    !t.contains(['%', '|']) && rocketgate_core::rules::topic_name(t).is_ok()
}

/// The RocketMQ topic of a publish subject.
///
/// # Errors
/// [`SubjectError`].
pub fn publish_topic(subject: &str) -> Result<&str, SubjectError> {
    if subject.len() > MAX_SUBJECT {
        return Err(SubjectError::Malformed);
    }
    for t in subject.split('.') {
        if !token_ok(t) || t == "*" || t == ">" {
            return Err(SubjectError::Malformed);
        }
    }
    let first = subject.split('.').next().unwrap_or_default();
    if topic_token_ok(first) {
        Ok(first)
    } else {
        Err(SubjectError::Unmappable)
    }
}

/// A subscription subject, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The subject as given.
    pub subject: String,
    /// Its RocketMQ topic; `None` when the first token is a wildcard (every user topic).
    pub topic: Option<String>,
}

impl Filter {
    /// Parses a subscription subject.
    ///
    /// # Errors
    /// [`SubjectError`].
    pub fn parse(subject: &str) -> Result<Self, SubjectError> {
        if subject.len() > MAX_SUBJECT {
            return Err(SubjectError::Malformed);
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        for (i, t) in tokens.iter().enumerate() {
            if !token_ok(t) || (*t == ">" && i + 1 != tokens.len()) {
                return Err(SubjectError::Malformed);
            }
        }
        let first = tokens[0];
        let topic = match first {
            "*" | ">" => None,
            t if topic_token_ok(t) => Some(t.to_owned()),
            _ => return Err(SubjectError::Unmappable),
        };
        Ok(Self {
            subject: subject.to_owned(),
            topic,
        })
    }

    /// Whether the publish subject `subject` matches.
    pub fn matches(&self, subject: &str) -> bool {
        matches(&self.subject, subject)
    }
}

/// Whether the publish subject `subject` matches the filter `filter`.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether `q` may name a queue group (a token of at most 256 bytes, no wildcards).
pub fn queue_ok(q: &str) -> bool {
    q.len() <= 256 && token_ok(q) && !q.contains(['*', '>'])
}

/// A consumer-group-safe rendering of `raw`: `[A-Za-z0-9_-]` kept, others `_`, cut to 40,
/// plus a hash of the raw text when anything changed.
fn safe(raw: &str) -> String {
    let kept: String = raw
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if kept == raw {
        kept
    } else {
        format!("{kept}-{:08x}", crc32c::crc32c(raw.as_bytes()))
    }
}

/// Prefix of the per-connection groups of plain subscriptions (deleted at disconnect; left
/// over ones are deleted when the gateway starts).
pub const CONNECTION_GROUP_PREFIX: &str = "nats-c-";

/// The consumer group of a connection's plain subscriptions.
pub fn connection_group(connection_id: &str) -> String {
    format!("{CONNECTION_GROUP_PREFIX}{connection_id}")
}

/// The consumer group of queue group `queue` on `subject`: `nats-q-<queue>-<hash(subject)>`.
pub fn queue_group(queue: &str, subject: &str) -> String {
    format!(
        "nats-q-{}-{:08x}",
        safe(queue),
        crc32c::crc32c(subject.as_bytes())
    )
}

/// The subject a stored message is delivered under (see the module doc).
pub fn of_message(m: &StoredMessage) -> String {
    if let Some(s) = m.properties.get(PROP_SUBJECT) {
        if publish_topic(s) == Ok(m.topic.as_str()) {
            return s.clone();
        }
    }
    if let Some(t) = m
        .properties
        .get(PROP_MQTT_TOPIC)
        .filter(|t| !t.contains(['+', '#', '.']))
    {
        let s = t.replace('/', ".");
        if publish_topic(&s) == Ok(m.topic.as_str()) {
            return s;
        }
    }
    m.topic.clone()
}

/// The reply subject of a stored message, when it is a publish subject.
pub fn reply_of(m: &StoredMessage) -> Option<&str> {
    m.properties
        .get(PROP_REPLY)
        .map(String::as_str)
        .filter(|r| {
            r.len() <= MAX_SUBJECT && r.split('.').all(|t| token_ok(t) && t != "*" && t != ">")
        })
}

/// A stored message of `topic` for unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use rocketgate_core::StoredMessage;

    pub(crate) fn stored(topic: &str) -> StoredMessage {
        StoredMessage {
            message_id: String::new(),
            topic: topic.into(),
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
            body: Default::default(),
            reconsume_times: 0,
            flags: 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects_map_their_first_token() {
        assert_eq!(publish_topic("orders.eu.new"), Ok("orders"));
        assert_eq!(publish_topic("_INBOX.abc.1"), Ok("_INBOX"));
        assert_eq!(publish_topic("a"), Ok("a"));
        for bad in ["", "a..b", "a.*", "a.>", ".a", "a.", "a b", "a\tb"] {
            assert_eq!(publish_topic(bad), Err(SubjectError::Malformed), "{bad:?}");
        }
        for bad in ["a:b.c", "$JS.API.INFO", "a%b.c", "é.x"] {
            assert_eq!(publish_topic(bad), Err(SubjectError::Unmappable), "{bad:?}");
        }
    }

    #[test]
    fn filters_parse_and_match_as_nats_does() {
        let f = Filter::parse("a.*.c").unwrap();
        assert_eq!(f.topic.as_deref(), Some("a"));
        assert!(f.matches("a.b.c") && !f.matches("a.b") && !f.matches("a.b.c.d"));
        let f = Filter::parse("a.>").unwrap();
        assert!(f.matches("a.b") && f.matches("a.b.c") && !f.matches("a"));
        let f = Filter::parse(">").unwrap();
        assert_eq!(f.topic, None);
        assert!(f.matches("x") && f.matches("x.y"));
        assert_eq!(Filter::parse("*.b").unwrap().topic, None);
        assert_eq!(Filter::parse("a.>.b"), Err(SubjectError::Malformed));
        assert_eq!(Filter::parse("a..b"), Err(SubjectError::Malformed));
        assert_eq!(Filter::parse("bad:x.y"), Err(SubjectError::Unmappable));
    }

    #[test]
    fn groups_are_legal_names() {
        for g in [
            queue_group("workers", "a.b"),
            queue_group("wörk ers.x", "a.*"),
            connection_group("18f3a-1"),
        ] {
            rocketgate_core::rules::group_name(&g).unwrap();
        }
        assert_ne!(queue_group("w", "a.b"), queue_group("w", "a.c"));
    }

    #[test]
    fn messages_from_other_protocols_get_a_subject_of_their_topic() {
        let m = |topic: &str, props: &[(&str, &str)]| {
            let mut s = tests_support::stored(topic);
            for (k, v) in props {
                s.properties.insert((*k).into(), (*v).into());
            }
            s
        };
        assert_eq!(of_message(&m("t", &[])), "t");
        assert_eq!(of_message(&m("t", &[(PROP_SUBJECT, "t.a.b")])), "t.a.b");
        assert_eq!(of_message(&m("t", &[(PROP_SUBJECT, "other.a")])), "t");
        assert_eq!(of_message(&m("t", &[(PROP_SUBJECT, "t.*")])), "t");
        assert_eq!(of_message(&m("t", &[("mqttTopic", "t/x/y")])), "t.x.y");
        assert_eq!(of_message(&m("t", &[("mqttTopic", "t/+/y")])), "t");
        assert_eq!(of_message(&m("t", &[("mqttTopic", "t//y")])), "t");
        assert_eq!(of_message(&m("t", &[("mqttTopic", "t/a.b")])), "t");
    }
}
