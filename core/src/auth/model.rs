//! The identity and policy model: users, their kind and status, policy entries (resource
//! patterns × actions × decision × sources), the principal a gateway authenticated, and what a
//! request asks for (a [`Resource`] and an [`Action`]). Parsing and checking of every field
//! taken from an admin request, with bounds.
//!
//! Pure data and pure functions: no I/O, no locks, no clock.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::mqtt_topic::{self, Placeholders};
use crate::error::{Error, Field, Result};

/// Longest access key.
pub const MAX_ACCESS_KEY: usize = 128;
/// Shortest secret key (a longer one is better: it is an HMAC key).
pub const MIN_SECRET_KEY: usize = 8;
/// Longest secret key.
pub const MAX_SECRET_KEY: usize = 256;
/// Most entries in one user's policy.
pub const MAX_POLICY_ENTRIES: usize = 256;
/// Most resources, actions or sources in one entry.
pub const MAX_ENTRY_ITEMS: usize = 64;
/// Longest resource name (a topic or group name, with `*`).
pub const MAX_RESOURCE_NAME: usize = 256;

/// What kind of user: a super user may do everything; a normal user what its policy allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UserKind {
    /// Every action on every resource (RocketMQ ACL 2.0 `Super`).
    Super,
    /// What the user's policy allows (RocketMQ ACL 2.0 `Normal`).
    #[default]
    Normal,
}

/// Whether a user may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UserStatus {
    /// May authenticate.
    #[default]
    Enabled,
    /// Refused as if the secret were wrong (its tokens too).
    Disabled,
}

/// A user as the broker keeps it (the secret is never handed out by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredUser {
    pub(crate) secret_key: String,
    pub(crate) kind: UserKind,
    pub(crate) status: UserStatus,
    pub(crate) created_ms: i64,
}

/// A user as the API shows it: no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The access key (the user's name).
    pub access_key: String,
    /// Super or normal.
    pub kind: UserKind,
    /// Enabled or disabled.
    pub status: UserStatus,
    /// When it was created (ms since the epoch, the broker's clock).
    pub created_ms: i64,
}

/// A change to a user; `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// A new secret key.
    pub secret_key: Option<String>,
    /// A new kind.
    pub kind: Option<UserKind>,
    /// A new status.
    pub status: Option<UserStatus>,
}

/// The kind of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer or producer group.
    Group,
    /// The cluster: administration (topics, groups, users, offsets, nodes).
    Cluster,
    /// An MQTT topic name or filter (`devices/d1/temp`, `devices/d1/#`): what an MQTT client
    /// publishes to or subscribes to, beside the RocketMQ topic it maps to.
    MqttTopic,
}

impl ResourceType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Topic => "Topic",
            Self::Group => "Group",
            Self::Cluster => "Cluster",
            Self::MqttTopic => "MqttTopic",
        }
    }
}

/// What a request touches: a topic, a group or the cluster, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Its kind.
    pub kind: ResourceType,
    /// Its name (`*` for the cluster).
    pub name: String,
}

impl Resource {
    /// The topic `name`.
    pub fn topic(name: impl Into<String>) -> Self {
        Self {
            kind: ResourceType::Topic,
            name: name.into(),
        }
    }

    /// The group `name`.
    pub fn group(name: impl Into<String>) -> Self {
        Self {
            kind: ResourceType::Group,
            name: name.into(),
        }
    }

    /// The MQTT topic name or filter `name`.
    pub fn mqtt_topic(name: impl Into<String>) -> Self {
        Self {
            kind: ResourceType::MqttTopic,
            name: name.into(),
        }
    }

    /// The cluster (administration).
    pub fn cluster() -> Self {
        Self {
            kind: ResourceType::Cluster,
            name: "*".into(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

/// An action on a resource (RocketMQ ACL 2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// Publish to a topic.
    Pub,
    /// Subscribe to a topic, or consume as a group.
    Sub,
    /// Create (topics, groups, users).
    Create,
    /// Update (configuration, offsets).
    Update,
    /// Delete.
    Delete,
    /// Read one (describe, status, lag).
    Get,
    /// List.
    List,
    /// Every action (in a policy only).
    All,
}

impl FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "Pub" => Self::Pub,
            "Sub" => Self::Sub,
            "Create" => Self::Create,
            "Update" => Self::Update,
            "Delete" => Self::Delete,
            "Get" => Self::Get,
            "List" => Self::List,
            "All" => Self::All,
            _ => {
                return Err(bad(
                    "action",
                    format!("`{s}`: one of Pub, Sub, Create, Update, Delete, Get, List, All"),
                ))
            }
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Allows what the entry matches (unless a matching deny exists).
    Allow,
    /// Denies what the entry matches, whatever else allows it.
    Deny,
}

/// A resource pattern of a policy: `Topic:orders` (exact), `Topic:orders*` (prefix),
/// `Topic:*` (any topic), likewise `Group:…`, `Cluster:*`, and MQTT topic filters with
/// placeholders, `MqttTopic:devices/${clientid}/#` (see `mqtt_topic.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern {
    kind: ResourceType,
    /// The name without a trailing `*` (an MQTT topic filter as written).
    name: String,
    prefix: bool,
}

impl ResourcePattern {
    /// Whether `r` is matched (an MQTT topic filter: covered, placeholders unknown; see
    /// [`ResourcePattern::applies`]).
    pub fn matches(&self, r: &Resource) -> bool {
        self.applies(r, Decision::Allow, &Placeholders::default())
    }

    /// Whether an entry of `decision` with this pattern applies to `r`, the placeholders of an
    /// MQTT topic filter standing for `vars`: an `Allow` when the pattern covers every topic
    /// `r` names, a `Deny` when it shares one with it (deny wins, so a deny is never narrowed).
    /// Other kinds match the same way for both.
    pub fn applies(&self, r: &Resource, decision: Decision, vars: &Placeholders<'_>) -> bool {
        if self.kind != r.kind {
            return false;
        }
        match self.kind {
            ResourceType::Cluster => return true,
            ResourceType::MqttTopic => {
                return match decision {
                    Decision::Allow => mqtt_topic::covers(&self.name, &r.name, vars),
                    Decision::Deny => mqtt_topic::overlaps(&self.name, &r.name, vars),
                }
            }
            ResourceType::Topic | ResourceType::Group => {}
        }
        if self.prefix {
            r.name.starts_with(&self.name)
        } else {
            r.name == self.name
        }
    }
}

impl FromStr for ResourcePattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            bad(
                "resource",
                format!("`{s}`: write Topic:<name>, Group:<name>, Cluster:* or MqttTopic:<filter>"),
            )
        })?;
        let kind = match kind {
            "Topic" => ResourceType::Topic,
            "Group" => ResourceType::Group,
            "Cluster" => ResourceType::Cluster,
            "MqttTopic" => {
                mqtt_topic::check(name).map_err(|why| bad("resource", format!("`{s}`: {why}")))?;
                return Ok(Self {
                    kind: ResourceType::MqttTopic,
                    name: name.to_owned(),
                    prefix: false,
                });
            }
            _ => {
                return Err(bad(
                    "resource",
                    format!("`{s}`: the type is Topic, Group, Cluster or MqttTopic"),
                ))
            }
        };
        if name.is_empty() || name.len() > MAX_RESOURCE_NAME {
            return Err(bad(
                "resource",
                format!("`{s}`: a name of 1..={MAX_RESOURCE_NAME} bytes"),
            ));
        }
        if kind == ResourceType::Cluster && name != "*" {
            return Err(bad(
                "resource",
                format!("`{s}`: the cluster is written Cluster:*"),
            ));
        }
        let (stem, prefix) = match name.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        if stem.contains('*') {
            return Err(bad("resource", format!("`{s}`: `*` only at the end")));
        }
        if !stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'%' | b'|' | b'+'))
        {
            return Err(bad(
                "resource",
                format!("`{s}`: a topic or group name, optionally ending in `*`"),
            ));
        }
        Ok(Self {
            kind,
            name: stem.to_owned(),
            prefix,
        })
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}{}",
            self.kind.as_str(),
            self.name,
            if self.prefix { "*" } else { "" }
        )
    }
}

impl Serialize for ResourcePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourcePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A source address range (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source(ipnet::IpNet);

impl Source {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for Source {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Self(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Self(ipnet::IpNet::from(ip)))
            .map_err(|_| bad("source", format!("`{s}`: an address or a CIDR range")))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One entry of a policy: these actions on these resources, from these sources (any when
/// empty), are allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Resource patterns.
    pub resources: Vec<ResourcePattern>,
    /// Actions (`All` for every one).
    pub actions: Vec<Action>,
    /// Allow or deny.
    pub decision: Decision,
    /// Source ranges the entry applies to; empty: every source.
    #[serde(default)]
    pub sources: Vec<Source>,
}

impl PolicyEntry {
    /// Whether the entry applies to `action` on `resource` from `source`, MQTT placeholders
    /// standing for `vars` (see [`ResourcePattern::applies`]). An entry with sources never
    /// applies to a request whose source is unknown.
    pub fn applies(
        &self,
        resource: &Resource,
        action: Action,
        source: Option<IpAddr>,
        vars: &Placeholders<'_>,
    ) -> bool {
        self.resources
            .iter()
            .any(|p| p.applies(resource, self.decision, vars))
            && self
                .actions
                .iter()
                .any(|a| *a == Action::All || *a == action)
            && (self.sources.is_empty()
                || source.is_some_and(|ip| self.sources.iter().any(|s| s.contains(ip))))
    }
}

/// Checks a policy's bounds.
///
/// # Errors
/// [`Error::IllegalField`] naming what is out of bounds.
pub fn check_policy(entries: &[PolicyEntry]) -> Result<()> {
    if entries.len() > MAX_POLICY_ENTRIES {
        return Err(bad(
            "policy",
            format!("at most {MAX_POLICY_ENTRIES} entries"),
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.resources.is_empty() || e.actions.is_empty() {
            return Err(bad(
                "policy",
                format!("entry {i}: at least one resource and one action"),
            ));
        }
        if [e.resources.len(), e.actions.len(), e.sources.len()]
            .iter()
            .any(|n| *n > MAX_ENTRY_ITEMS)
        {
            return Err(bad(
                "policy",
                format!("entry {i}: at most {MAX_ENTRY_ITEMS} resources, actions and sources each"),
            ));
        }
    }
    Ok(())
}

/// Checks an access key: 1..=128 characters of letters, digits and `_ - . @`.
///
/// # Errors
/// [`Error::IllegalField`].
pub fn check_access_key(ak: &str) -> Result<()> {
    if ak.is_empty()
        || ak.len() > MAX_ACCESS_KEY
        || !ak
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
    {
        return Err(bad(
            "access key",
            format!("1..={MAX_ACCESS_KEY} letters, digits and `_ - . @`"),
        ));
    }
    Ok(())
}

/// Checks a secret key: 8..=256 printable ASCII characters.
///
/// # Errors
/// [`Error::IllegalField`] (never echoing the secret).
pub fn check_secret_key(sk: &str) -> Result<()> {
    if sk.len() < MIN_SECRET_KEY
        || sk.len() > MAX_SECRET_KEY
        || !sk.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad(
            "secret key",
            format!(
                "{MIN_SECRET_KEY}..={MAX_SECRET_KEY} printable ASCII characters without spaces"
            ),
        ));
    }
    Ok(())
}

fn bad(what: &str, reason: String) -> Error {
    Error::IllegalField {
        field: Field::Auth,
        reason: format!("{what} {reason}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(
        resources: &[&str],
        actions: &[&str],
        decision: Decision,
        sources: &[&str],
    ) -> PolicyEntry {
        PolicyEntry {
            resources: resources.iter().map(|r| r.parse().unwrap()).collect(),
            actions: actions.iter().map(|a| a.parse().unwrap()).collect(),
            decision,
            sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn patterns_match_exactly_by_prefix_or_any() {
        let p = |s: &str| s.parse::<ResourcePattern>().unwrap();
        assert!(p("Topic:orders").matches(&Resource::topic("orders")));
        assert!(!p("Topic:orders").matches(&Resource::topic("orders2")));
        assert!(p("Topic:orders*").matches(&Resource::topic("orders2")));
        assert!(p("Topic:orders*").matches(&Resource::topic("orders")));
        assert!(!p("Topic:orders*").matches(&Resource::group("orders")));
        assert!(p("Topic:*").matches(&Resource::topic("anything")));
        assert!(p("Cluster:*").matches(&Resource::cluster()));
        assert_eq!(p("Group:g-1*").to_string(), "Group:g-1*");
        let own = p("MqttTopic:devices/${clientid}/#");
        assert_eq!(own.to_string(), "MqttTopic:devices/${clientid}/#");
        let d1 = Placeholders {
            username: None,
            client_id: Some("d1"),
        };
        let t = |n: &str| Resource::mqtt_topic(n);
        assert!(own.applies(&t("devices/d1/x"), Decision::Allow, &d1));
        assert!(!own.applies(&t("devices/d2/x"), Decision::Allow, &d1));
        assert!(!own.applies(&Resource::topic("devices"), Decision::Allow, &d1));
        assert!(p("MqttTopic:s/#").applies(&t("#"), Decision::Deny, &d1));
        assert!(!p("MqttTopic:s/#").applies(&t("#"), Decision::Allow, &d1));
        for bad in [
            "orders",
            "Queue:x",
            "Topic:",
            "Topic:a*b",
            "Cluster:x",
            "Topic:a b",
            "Topic:a/b",
            "MqttTopic:",
            "MqttTopic:a/#/b",
            "MqttTopic:x/${nope}",
        ] {
            assert!(bad.parse::<ResourcePattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_apply_by_resource_action_and_source() {
        let none = Placeholders::default();
        let e = entry(&["Topic:t*"], &["Pub"], Decision::Allow, &["10.0.0.0/8"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(e.applies(&Resource::topic("t1"), Action::Pub, ip("10.1.2.3"), &none));
        assert!(!e.applies(&Resource::topic("t1"), Action::Sub, ip("10.1.2.3"), &none));
        assert!(!e.applies(
            &Resource::topic("t1"),
            Action::Pub,
            ip("192.168.0.1"),
            &none
        ));
        assert!(
            !e.applies(&Resource::topic("t1"), Action::Pub, None, &none),
            "unknown source"
        );
        let any = entry(&["Group:g"], &["All"], Decision::Allow, &[]);
        assert!(any.applies(&Resource::group("g"), Action::Delete, None, &none));
        assert!("::1"
            .parse::<Source>()
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!("nope".parse::<Source>().is_err());
    }

    #[test]
    fn policies_parse_from_json_and_refuse_what_is_out_of_bounds() {
        let json = r#"[{"resources":["Topic:orders*","Group:g1"],"actions":["Pub","Sub"],"decision":"Allow","sources":["127.0.0.1"]}]"#;
        let entries: Vec<PolicyEntry> = serde_json::from_str(json).unwrap();
        assert_eq!(entries[0].resources[0].to_string(), "Topic:orders*");
        assert_eq!(entries[0].sources[0].to_string(), "127.0.0.1/32");
        assert!(check_policy(&entries).is_ok());
        assert!(serde_json::from_str::<Vec<PolicyEntry>>(
            r#"[{"resources":["Nope:x"],"actions":["Pub"],"decision":"Allow"}]"#
        )
        .is_err());
        assert!(serde_json::from_str::<Vec<PolicyEntry>>(
            r#"[{"resources":["Topic:x"],"actions":["Fly"],"decision":"Allow"}]"#
        )
        .is_err());
        let empty = entry(&["Topic:x"], &[], Decision::Allow, &[]);
        assert!(check_policy(&[empty]).is_err());
        let many =
            vec![entry(&["Topic:x"], &["Pub"], Decision::Allow, &[]); MAX_POLICY_ENTRIES + 1];
        assert!(check_policy(&many).is_err());
    }

    #[test]
    fn keys_are_checked_without_echoing_secrets() {
        assert!(check_access_key("app-1@team.x").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(129)] {
            assert!(check_access_key(bad).is_err(), "{bad}");
        }
        assert!(check_secret_key("s3cret-key!").is_ok());
        let err = check_secret_key("short").unwrap_err().to_string();
        assert!(!err.contains("short"), "{err}");
        assert!(check_secret_key("has space in it").is_err());
    }
}
