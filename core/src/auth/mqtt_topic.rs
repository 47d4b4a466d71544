//! MQTT topic-filter resources of a policy: `MqttTopic:devices/${clientid}/#`. Owns their
//! syntax (checked with bounds when a policy is set), the substitution of the placeholders
//! `${clientid}` and `${username}` from the request's principal, and the two relations the
//! decision needs between a pattern and the topic name or filter a request names:
//!
//! - **covers** (for `Allow`): every topic the requested filter matches, the pattern matches —
//!   so `devices/${clientid}/#` allows `devices/d1/t` and `devices/d1/#` for client `d1`, never
//!   `devices/+/t` or `#`;
//! - **overlaps** (for `Deny`): some topic is matched by both — a deny of `secret/#` refuses a
//!   subscription to `#` too, which could read it.
//!
//! Invariants: a substituted value is always one *literal* level, never a wildcard, whatever it
//! contains (a client id `+` or `#` matches only a level written `+` or `#`, which no topic name
//! has; one containing `/` matches no level): a client cannot widen its own pattern. A pattern
//! whose placeholder has no value (no client id: not an MQTT request) covers nothing; for a deny
//! it stays a (conservative) wildcard over that level.
//!
//! Pure functions: no I/O, no allocation but the substituted levels. Called by `model.rs`.

use std::borrow::Cow;

use super::model::MAX_RESOURCE_NAME;

/// Placeholder for the connection's client id.
pub const CLIENT_ID: &str = "${clientid}";
/// Placeholder for the authenticated user's access key.
pub const USERNAME: &str = "${username}";

/// What the placeholders of a pattern stand for in one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placeholders<'a> {
    /// `${username}`: the access key of the principal.
    pub username: Option<&'a str>,
    /// `${clientid}`: the MQTT client id of the connection.
    pub client_id: Option<&'a str>,
}

/// Checks the text of an `MqttTopic:` pattern: 1..=`MAX_RESOURCE_NAME` bytes, an MQTT topic
/// filter (`+` a whole level, `#` a whole last level), no NUL, and only the known
/// placeholders.
pub(crate) fn check(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > MAX_RESOURCE_NAME {
        return Err(format!("a topic filter of 1..={MAX_RESOURCE_NAME} bytes"));
    }
    if pattern.contains('\0') {
        return Err("no NUL in a topic filter".into());
    }
    let mut levels = pattern.split('/').peekable();
    while let Some(l) = levels.next() {
        let last = levels.peek().is_none();
        if (l.contains('#') && (l != "#" || !last)) || (l.contains('+') && l != "+") {
            return Err("an MQTT topic filter: `+` a whole level, `#` only as the last".into());
        }
        let mut rest = l;
        while let Some(i) = rest.find("${") {
            let tail = &rest[i..];
            let known = [CLIENT_ID, USERNAME]
                .into_iter()
                .find(|p| tail.starts_with(p));
            let Some(p) = known else {
                return Err(format!(
                    "only the placeholders {CLIENT_ID} and {USERNAME} in a topic filter"
                ));
            };
            rest = &tail[p.len()..];
        }
    }
    Ok(())
}

/// A pattern's level after substitution.
#[derive(Debug, PartialEq, Eq)]
enum Level<'a> {
    /// `#`.
    Rest,
    /// `+`.
    One,
    /// A literal level (substituted placeholders included).
    Lit(Cow<'a, str>),
    /// A level whose placeholder has no value.
    Unknown,
}

fn level<'a>(l: &'a str, vars: &Placeholders<'_>) -> Level<'a> {
    match l {
        "#" => return Level::Rest,
        "+" => return Level::One,
        _ => {}
    }
    if !l.contains("${") {
        return Level::Lit(Cow::Borrowed(l));
    }
    let mut out = l.to_owned();
    for (p, v) in [(CLIENT_ID, vars.client_id), (USERNAME, vars.username)] {
        if out.contains(p) {
            match v {
                Some(v) => out = out.replace(p, v),
                None => return Level::Unknown,
            }
        }
    }
    Level::Lit(Cow::Owned(out))
}

/// Whether `pattern` matches every topic that `filter` (a topic name or a topic filter)
/// matches.
pub(crate) fn covers(pattern: &str, filter: &str, vars: &Placeholders<'_>) -> bool {
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next().map(|l| level(l, vars)), f.next()) {
            (Some(Level::Rest), _) => return true,
            (None, None) => return true,
            (Some(Level::One), Some(fl)) if fl != "#" => {}
            (Some(Level::Lit(pl)), Some(fl)) if fl != "#" && fl != "+" && pl == fl => {}
            _ => return false,
        }
    }
}

/// Whether some topic is matched by both `pattern` and `filter`.
pub(crate) fn overlaps(pattern: &str, filter: &str, vars: &Placeholders<'_>) -> bool {
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next().map(|l| level(l, vars)), f.next()) {
            (Some(Level::Rest), _) | (_, Some("#")) => return true,
            // (`a/#` matches `a`: a side that ends meets `#` in the arm above.)
            (None, None) => return true,
            (Some(Level::One | Level::Unknown), Some(_)) => {}
            (Some(Level::Lit(_)), Some("+")) => {}
            (Some(Level::Lit(pl)), Some(fl)) if pl == fl => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D1: Placeholders<'static> = Placeholders {
        username: Some("fleet"),
        client_id: Some("d1"),
    };

    #[test]
    fn patterns_are_mqtt_filters_with_known_placeholders_and_bounded() {
        for ok in [
            "devices/${clientid}/#",
            "u/${username}/${clientid}",
            "#",
            "+/x",
            "a/b",
            "pre-${clientid}-post/+",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a/#/b",
            "a+/b",
            "a/b#",
            "x/${client}/y",
            "x/${",
            "a\0b",
            &"a".repeat(MAX_RESOURCE_NAME + 1),
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_device_pattern_covers_its_own_subtree_only() {
        let p = "devices/${clientid}/#";
        for f in [
            "devices/d1",
            "devices/d1/t",
            "devices/d1/#",
            "devices/d1/+/x",
        ] {
            assert!(covers(p, f, &D1), "{f}");
        }
        for f in [
            "devices/d2/t",
            "devices/+/t",
            "devices/#",
            "#",
            "+/d1/t",
            "devices",
        ] {
            assert!(!covers(p, f, &D1), "{f}");
        }
        assert!(covers("a/+", "a/b", &D1) && covers("a/+", "a/+", &D1));
        assert!(!covers("a/+", "a/#", &D1) && !covers("a/+", "a", &D1));
        assert!(covers("u/${username}", "u/fleet", &D1));
        assert!(covers("x/pre-${clientid}", "x/pre-d1", &D1));
    }

    #[test]
    fn a_substituted_value_is_a_literal_never_a_wildcard() {
        for id in ["+", "#", "a/b", ""] {
            let vars = Placeholders {
                client_id: Some(id),
                ..D1
            };
            assert!(
                !covers("devices/${clientid}/#", "devices/d2/t", &vars),
                "{id}"
            );
            assert!(!covers("devices/${clientid}", "devices/+", &vars), "{id}");
        }
        // No client id (not an MQTT request): covers nothing, denies conservatively.
        let none = Placeholders::default();
        assert!(!covers("devices/${clientid}/#", "devices/d1/t", &none));
        assert!(overlaps("devices/${clientid}/#", "devices/d1/t", &none));
    }

    #[test]
    fn overlap_is_any_topic_in_common() {
        assert!(overlaps("secret/#", "#", &D1));
        assert!(overlaps("secret/#", "+/x", &D1));
        assert!(overlaps("secret/#", "secret", &D1));
        assert!(overlaps("a/+/c", "a/b/+", &D1));
        assert!(overlaps("a", "a/#", &D1));
        assert!(!overlaps("secret/#", "public/#", &D1));
        assert!(!overlaps("a/+", "a", &D1));
        assert!(!overlaps("a/b", "a/b/c", &D1));
        assert!(!overlaps("devices/${clientid}/#", "devices/d2/#", &D1));
    }
}
