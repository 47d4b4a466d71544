//! The pure rules of the rulebook that a gateway may need before it has a request for the
//! `Broker` (a resource name in a route query for topics on other brokers, say), and the
//! message properties core gives meaning to. Everything else is checked inside the `Broker`
//! calls; gateways never copy a rule, they call it or map core's typed error
//! ([`crate::Reason`]).
//!
//! Pure functions and constants; no state.

pub use crate::broker::retry::PROP_RETRY_TOPIC;
pub use crate::broker::transaction::PROP_CHECK_IMMUNITY_SECS;
pub use crate::broker::validate::{
    topic_name, MAX_MESSAGE_GROUP, MAX_TOPIC_LEN, RESERVED_PROPERTY_KEYS,
};

/// Checks a consumer or producer group name (the topic name rules).
///
/// # Errors
/// [`crate::Error::IllegalField`] naming [`crate::Field::ConsumerGroup`].
pub fn group_name(name: &str) -> crate::Result<()> {
    crate::broker::validate_group_name(name)
}
