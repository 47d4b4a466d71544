//! Filter expressions of subscriptions: tags (`*`, `TagA`, `TagA || TagB`).
//!
//! Owns: parsing an expression into a [`Filter`] and matching it against a message, first
//! cheaply by the tag hash stored in the ConsumeQueue, then exactly on the message's tag (hashes
//! collide). Pure: no I/O, no locks.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::store::consume_queue::tag_hash;

/// Longest accepted expression.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Most tags in one expression.
pub const MAX_TAGS: usize = 64;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
}

impl Filter {
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
            Self::All => true,
            Self::Tags { hashes, .. } => hashes.contains(&hash),
        }
    }

    /// Whether a message with this tag matches.
    pub fn matches(&self, tag: Option<&str>) -> bool {
        match self {
            Self::All => true,
            Self::Tags { tags, .. } => tag.is_some_and(|t| tags.contains(t)),
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

    #[test]
    fn parse_and_match() {
        assert_eq!(Filter::tag("*").unwrap(), Filter::All);
        assert_eq!(Filter::tag("  ").unwrap(), Filter::All);
        let f = Filter::tag("TagA || TagB").unwrap();
        assert!(f.matches(Some("TagA")) && f.matches(Some("TagB")));
        assert!(!f.matches(Some("TagC")) && !f.matches(None));
        assert!(f.may_match(tag_hash("TagA")));
        assert!(!f.may_match(tag_hash("TagC")));
        assert!(!f.may_match(0));
        for bad in ["A ||", "|| A", "A || || B", "A B", "A | B"] {
            assert!(Filter::tag(bad).is_err(), "{bad}");
        }
        assert!(Filter::tag(&"a".repeat(MAX_EXPRESSION_LEN + 1)).is_err());
    }
}
