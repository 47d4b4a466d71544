//! MQTT topic names and filters, and their mapping onto RocketMQ topics and consumer groups.
//!
//! Mapping (documented in `docs/mqtt.md`):
//! - MQTT topic `a/b/c` is stored in the RocketMQ topic `a` (its first level), with the full
//!   MQTT topic in the message property [`PROP_TOPIC`]. A message without that property (sent
//!   over gRPC, REST or WebSocket to topic `a`) is seen by MQTT as topic `a`.
//! - A name with an empty first level (`/a`, `/a/b`, `/`: legal MQTT names) is stored in the
//!   RocketMQ topic [`EMPTY_FIRST_LEVEL_TOPIC`]; so is a name whose first level is that
//!   topic's own name. The full topic in [`PROP_TOPIC`] tells them apart, as it does for every
//!   other topic. A filter with an empty first level (`/a`, `/+/b`, `/#`) reads that topic.
//! - A first level that is not a legal RocketMQ topic name (the core's rule,
//!   `rocketgate_core::rules::topic_name`, without `%` and `|`, which the core keeps for retry
//!   and dead-letter topics: e.g. `a.b` in `a.b/c`) cannot be mapped:
//!   [`TopicError::IllegalFirstLevel`], "topic name invalid" for the client.
//! - `$`-topics (`$SYS/…`; MQTT reserves them for the server) and the prefix
//!   [`RESERVED_PREFIX`] (the gateway's own system topics) are [`TopicError::Reserved`]: a
//!   PUBLISH to them is acknowledged and not stored (see the connection's machine), a
//!   SUBSCRIBE filter on them is refused, except `$share/…` filters.
//! - A filter whose first level is a wildcard (`#`, `+/…`) covers every user topic, present
//!   and future, except system, retry, dead-letter and gateway topics; `$`-topics are never
//!   matched by a wildcard.
//!
//! Matching here is pure string work (MQTT 3.1.1 §4.7): no allocation per match.

/// Message property holding the full MQTT topic.
pub const PROP_TOPIC: &str = "mqttTopic";
/// Message property holding the publish QoS.
pub const PROP_QOS: &str = "mqttQos";
/// Message property set to `true` on a retained publish.
pub const PROP_RETAIN: &str = "mqttRetain";
/// Message property with the publishing client id (for no-local).
pub const PROP_CLIENT: &str = "mqttClientId";
/// Prefix reserved for the gateway's own RocketMQ topics.
pub const RESERVED_PREFIX: &str = "mqtt_sys_";
/// The RocketMQ topic of MQTT topics with an empty first level (`/a`, `/a/b`, `/`).
pub const EMPTY_FIRST_LEVEL_TOPIC: &str = "mqtt_slash";

/// Why a topic or filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty, wildcards in a name, misplaced wildcards in a filter, NUL.
    #[error("malformed MQTT topic")]
    Malformed,
    /// The first level cannot be a RocketMQ topic.
    #[error("the first topic level is not a legal RocketMQ topic name")]
    IllegalFirstLevel,
    /// A `$` topic (reserved for the server) or the gateway's reserved prefix: a valid name
    /// this server does not let clients use.
    #[error("reserved topic")]
    Reserved,
}

/// Whether `level` is a RocketMQ topic name (the core's rule) an MQTT client may name: not
/// with `%` or `|`, which the core's retry and dead-letter topics use.
fn legal_core_name(level: &str) -> bool {
    rocketgate_core::rules::topic_name(level).is_ok() && !level.contains(['%', '|'])
}

fn first_level(s: &str) -> &str {
    s.split('/').next().unwrap_or(s)
}

/// The RocketMQ topic of a first level that is neither reserved nor a wildcard.
fn core_topic_of_level(first: &str) -> Option<&str> {
    if first.is_empty() {
        Some(EMPTY_FIRST_LEVEL_TOPIC)
    } else {
        legal_core_name(first).then_some(first)
    }
}

/// Checks a topic name for PUBLISH and returns its RocketMQ topic.
///
/// # Errors
/// [`TopicError`].
pub fn core_topic_of_name(name: &str) -> Result<&str, TopicError> {
    if name.is_empty() || name.len() > 65_535 || name.contains(['+', '#', '\0']) {
        return Err(TopicError::Malformed);
    }
    let first = first_level(name);
    if first.starts_with('$') || first.starts_with(RESERVED_PREFIX) {
        return Err(TopicError::Reserved);
    }
    core_topic_of_level(first).ok_or(TopicError::IllegalFirstLevel)
}

/// A parsed subscription filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    /// The share name of a `$share/<name>/<filter>` subscription.
    pub share: Option<&'a str>,
    /// The topic filter proper.
    pub filter: &'a str,
    /// The RocketMQ topic it reads, or `None` for a wildcard first level (every topic).
    pub core_topic: Option<&'a str>,
}

/// Parses and checks a SUBSCRIBE filter.
///
/// # Errors
/// [`TopicError`].
pub fn parse_filter(raw: &str) -> Result<ParsedFilter<'_>, TopicError> {
    let (share, filter) = match raw.strip_prefix("$share/") {
        Some(rest) => {
            let (name, f) = rest.split_once('/').ok_or(TopicError::Malformed)?;
            if name.is_empty() || name.contains(['+', '#']) || !legal_core_name(name) {
                return Err(TopicError::Malformed);
            }
            (Some(name), f)
        }
        None => (None, raw),
    };
    if filter.is_empty() || filter.contains('\0') {
        return Err(TopicError::Malformed);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(l) = levels.next() {
        let last = levels.peek().is_none();
        if (l.contains('#') && (l != "#" || !last)) || (l.contains('+') && l != "+") {
            return Err(TopicError::Malformed);
        }
    }
    let first = first_level(filter);
    let core_topic = match first {
        "#" | "+" => None,
        f if f.starts_with('$') || f.starts_with(RESERVED_PREFIX) => {
            return Err(TopicError::Reserved)
        }
        f => Some(core_topic_of_level(f).ok_or(TopicError::IllegalFirstLevel)?),
    };
    Ok(ParsedFilter {
        share,
        filter,
        core_topic,
    })
}

/// Whether a RocketMQ topic is one MQTT wildcard subscriptions read.
pub fn wildcard_visible(core_topic: &str) -> bool {
    legal_core_name(core_topic)
        && !core_topic.starts_with(RESERVED_PREFIX)
        && !core_topic.starts_with("rmq_sys_")
}

/// MQTT topic matching (`+` one level, `#` the rest, `$`-topics not matched by a leading
/// wildcard).
pub fn matches(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = topic.split('/');
    let mut f = filter.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn sanitized(prefix: &str, raw: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + raw.len().min(80) + 9);
    s.push_str(prefix);
    let mut changed = false;
    for c in raw.chars().take(80) {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            s.push(c);
        } else {
            s.push('_');
            changed = true;
        }
    }
    if changed || raw.chars().count() > 80 {
        s.push_str(&format!("-{:08x}", crc32c::crc32c(raw.as_bytes())));
    }
    s
}

/// The consumer group of a session's plain (broadcast) subscriptions.
pub fn session_group(client_id: &str) -> String {
    sanitized("mqtt-", client_id)
}

/// The consumer group of a shared subscription (one per share name and filter).
pub fn shared_group(share: &str, filter: &str) -> String {
    format!(
        "{}-{:08x}",
        sanitized("mqtt-share-", share),
        crc32c::crc32c(filter.as_bytes())
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_their_first_level() {
        assert_eq!(core_topic_of_name("a/b/c"), Ok("a"));
        assert_eq!(core_topic_of_name("a"), Ok("a"));
        assert_eq!(core_topic_of_name("/a"), Ok(EMPTY_FIRST_LEVEL_TOPIC));
        assert_eq!(core_topic_of_name("/TopicA/b"), Ok(EMPTY_FIRST_LEVEL_TOPIC));
        assert_eq!(core_topic_of_name("/"), Ok(EMPTY_FIRST_LEVEL_TOPIC));
        assert_eq!(core_topic_of_name("//"), Ok(EMPTY_FIRST_LEVEL_TOPIC));
        assert_eq!(
            core_topic_of_name("mqtt_slash/a"),
            Ok(EMPTY_FIRST_LEVEL_TOPIC)
        );
        assert_eq!(
            core_topic_of_name("%RETRY%g/x"),
            Err(TopicError::IllegalFirstLevel)
        );
        assert_eq!(
            core_topic_of_name(&format!("{}/x", "a".repeat(128))),
            Err(TopicError::IllegalFirstLevel)
        );
        assert_eq!(core_topic_of_name("$TopicA/B"), Err(TopicError::Reserved));
        assert_eq!(
            core_topic_of_name("a.b/c"),
            Err(TopicError::IllegalFirstLevel)
        );
        assert_eq!(core_topic_of_name("a/+"), Err(TopicError::Malformed));
        assert_eq!(core_topic_of_name(""), Err(TopicError::Malformed));
        assert_eq!(core_topic_of_name("$SYS/x"), Err(TopicError::Reserved));
        assert_eq!(
            core_topic_of_name("mqtt_sys_retained/x"),
            Err(TopicError::Reserved)
        );
    }

    #[test]
    fn filters_parse_with_shares_and_wildcards() {
        let f = parse_filter("$share/g1/a/+/c").unwrap();
        assert_eq!(
            (f.share, f.filter, f.core_topic),
            (Some("g1"), "a/+/c", Some("a"))
        );
        assert_eq!(parse_filter("#").unwrap().core_topic, None);
        assert_eq!(parse_filter("+/x").unwrap().core_topic, None);
        for f in ["/TopicA", "/+/b", "/#", "/", "$share/g//a"] {
            assert_eq!(
                parse_filter(f).unwrap().core_topic,
                Some(EMPTY_FIRST_LEVEL_TOPIC),
                "{f}"
            );
        }
        assert_eq!(parse_filter("$TopicA/#"), Err(TopicError::Reserved));
        assert_eq!(parse_filter("a.b/#"), Err(TopicError::IllegalFirstLevel));
        assert!(parse_filter("a/#/b").is_err());
        assert!(parse_filter("a/b#").is_err());
        assert!(parse_filter("a+/b").is_err());
        assert!(parse_filter("$share/g").is_err());
        assert!(parse_filter("").is_err());
    }

    #[test]
    fn matching_follows_the_spec() {
        assert!(matches("a/b/c", "a/#"));
        assert!(matches("a", "a/#"));
        assert!(matches("a/b", "a/+"));
        assert!(!matches("a/b/c", "a/+"));
        assert!(matches("a/b/c", "+/b/+"));
        assert!(matches("a/b", "#"));
        assert!(!matches("$SYS/x", "#"));
        assert!(!matches("$SYS/x", "+/x"));
        assert!(matches("$SYS/x", "$SYS/#"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("a//b", "a/+/b"));
        assert!(matches("/TopicA", "/TopicA"));
        assert!(matches("/TopicA", "/+"));
        assert!(matches("/TopicA", "/#"));
        assert!(matches("/TopicA", "+/+"));
        assert!(matches("/TopicA", "#"));
        assert!(!matches("/TopicA", "TopicA"));
        assert!(!matches("/TopicA", "+"));
        assert!(wildcard_visible(EMPTY_FIRST_LEVEL_TOPIC));
    }

    #[test]
    fn group_names_are_legal_and_distinct() {
        assert_eq!(session_group("dev-1"), "mqtt-dev-1");
        let odd = session_group("dev/1 é");
        assert!(odd
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert_ne!(session_group("a.b"), session_group("a,b"));
        assert!(session_group(&"x".repeat(500)).len() <= 127);
        assert_ne!(shared_group("g", "a/b"), shared_group("g", "a/c"));
    }
}
