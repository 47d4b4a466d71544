//! Filter expressions of subscriptions: tags (`*`, `TagA`, `TagA || TagB`) and SQL92 over
//! properties ([`super::sql_filter`]).
//!
//! Owns: parsing a [`FilterExpression`] into a [`Filter`] and matching it against a message:
//! tag filters first cheaply by the tag hash stored in the ConsumeQueue, then exactly on the
//! message's tag (hashes collide); SQL filters on the message's properties and tag. Pure: no
//! I/O, no locks.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::sql_filter::SqlFilter;
use crate::error::{Error, Result};
use crate::message::StoredMessage;
use crate::store::consume_queue::tag_hash;

/// The language of a filter expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterKind {
    /// `*`, `TagA`, `TagA || TagB`.
    #[default]
    Tag,
    /// SQL92 over properties, e.g. `a > 5 AND b = 'x'`.
    Sql,
}

/// A filter expression as a client gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FilterExpression {
    /// Language.
    #[serde(default)]
    pub kind: FilterKind,
    /// Text.
    pub expression: String,
}

impl FilterExpression {
    /// A tag expression.
    pub fn tag(expression: impl Into<String>) -> Self {
        Self {
            kind: FilterKind::Tag,
            expression: expression.into(),
        }
    }

    /// An SQL92 expression.
    pub fn sql(expression: impl Into<String>) -> Self {
        Self {
            kind: FilterKind::Sql,
            expression: expression.into(),
        }
    }
}

/// Longest accepted expression.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Most tags in one expression.
pub const MAX_TAGS: usize = 64;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Filter {
    /// Everything (`*` or empty).
    #[default]
    All,
    /// Messages whose tag is one of these.
    Tags {
        /// The tags.
        tags: HashSet<String>,
        /// Their hashes, for the ConsumeQueue pre-check.
        hashes: HashSet<u64>,
    },
    /// Messages for which an SQL92 expression is TRUE.
    Sql(Box<SqlFilter>),
}

impl Filter {
    /// Parses an expression of either kind.
    ///
    /// # Errors
    /// [`Error::IllegalFilter`] with the parser's message.
    pub fn parse(e: &FilterExpression) -> Result<Self> {
        match e.kind {
            FilterKind::Tag => Self::tag(&e.expression),
            FilterKind::Sql => SqlFilter::parse(&e.expression)
                .map(|f| Self::Sql(Box::new(f)))
                .map_err(|err| {
                    Error::IllegalFilter(format!("`{}`: {err}", truncate(&e.expression)))
                }),
        }
    }

    /// Parses a tag expression.
    ///
    /// # Errors
    /// [`Error::IllegalFilter`] for an empty alternative (`A ||`), a tag with spaces or control
    /// characters, or an expression over the limits.
    pub fn tag(expression: &str) -> Result<Self> {
        let bad =
            |reason: &str| Error::IllegalFilter(format!("`{}`: {reason}", truncate(expression)));
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(bad("too long"));
        }
        let e = expression.trim();
        if e.is_empty() || e == "*" {
            return Ok(Self::All);
        }
        let mut tags = HashSet::new();
        for part in e.split("||") {
            let t = part.trim();
            if t.is_empty() {
                return Err(bad("empty tag between `||`"));
            }
            if t == "*" {
                return Ok(Self::All);
            }
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) || t.contains('|') {
                return Err(bad(
                    "a tag must not contain spaces, control characters or `|`",
                ));
            }
            tags.insert(t.to_owned());
        }
        if tags.len() > MAX_TAGS {
            return Err(bad("too many tags"));
        }
        let hashes = tags.iter().map(|t| tag_hash(t)).collect();
        Ok(Self::Tags { tags, hashes })
    }

    /// Whether a ConsumeQueue entry with this tag hash may match (no false negatives).
    pub fn may_match(&self, hash: u64) -> bool {
        match self {
            Self::All | Self::Sql(_) => true,
            Self::Tags { hashes, .. } => hashes.contains(&hash),
        }
    }

    /// Whether a message matches.
    pub fn matches(&self, m: &StoredMessage) -> bool {
        match self {
            Self::All => true,
            Self::Tags { tags, .. } => m.tag.as_deref().is_some_and(|t| tags.contains(t)),
            Self::Sql(f) => f.matches(&m.properties, m.tag.as_deref()),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> StoredMessage {
        StoredMessage {
            message_id: String::new(),
            topic: "t".into(),
            queue_id: 0,
            queue_offset: 0,
            physical_offset: 0,
            size: 0,
            store_timestamp_ms: 0,
            born_timestamp_ms: 0,
            born_host: None,
            tag: None,
            keys: vec![],
            message_group: None,
            properties: Default::default(),
            body: Default::default(),
            reconsume_times: 0,
            flags: 0,
        }
    }

    #[test]
    fn parse_and_match() {
        assert_eq!(Filter::tag("*").unwrap(), Filter::All);
        assert_eq!(Filter::tag("  ").unwrap(), Filter::All);
        let f = Filter::tag("TagA || TagB").unwrap();
        let m = |tag: Option<&str>| crate::message::StoredMessage {
            tag: tag.map(str::to_owned),
            ..sample()
        };
        assert!(f.matches(&m(Some("TagA"))) && f.matches(&m(Some("TagB"))));
        assert!(!f.matches(&m(Some("TagC"))) && !f.matches(&m(None)));
        let sql = Filter::parse(&FilterExpression::sql("a > 5 AND TAGS = 'x'")).unwrap();
        let mut hit = m(Some("x"));
        hit.properties.insert("a".into(), "6".into());
        assert!(sql.matches(&hit) && sql.may_match(12345));
        assert!(!sql.matches(&m(Some("x"))));
        assert!(Filter::parse(&FilterExpression::sql("a >")).is_err());
        assert!(f.may_match(tag_hash("TagA")));
        assert!(!f.may_match(tag_hash("TagC")));
        assert!(!f.may_match(0));
        for bad in ["A ||", "|| A", "A || || B", "A B", "A | B"] {
            assert!(Filter::tag(bad).is_err(), "{bad}");
        }
        assert!(Filter::tag(&"a".repeat(MAX_EXPRESSION_LEN + 1)).is_err());
    }
}
