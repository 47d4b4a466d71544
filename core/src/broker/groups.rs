//! The `Groups` service of the `Broker`: consumer groups — create, read, list, delete, their
//! subscriptions (filter expressions per topic, persisted) and retry policy (maximum delivery
//! attempts), and the topics a group is involved in.
//!
//! State: the group table (`consumer_group::GroupRegistry`, one KV record per group, durable
//! before a change returns). Groups are created on first use when
//! `consumer.auto_create_groups` is on (RocketMQ's default).
//!
//! Who calls it: gateways. Concurrency: the registry's lock, held across a check and its
//! persist.

use super::consume::*;
use super::consumer_group::*;
use super::filter::*;
use super::retry::DLQ_PREFIX;
use super::retry_policy::*;
use super::*;
use crate::error::{Error, Result};
use std::collections::BTreeSet;

/// Consumer groups: create, read, list, delete, subscriptions and retry policy.
#[derive(Clone, Copy)]
pub struct Groups<'a> {
    pub(super) broker: &'a Broker,
}

impl Groups<'_> {
    /// The topics `group` is involved in, sorted: those it subscribes to, has committed offsets
    /// on or has pop state for, that still exist. Journal (`rmq_sys_`) and dead-letter topics are
    /// left out (dead letters have their own calls); retry topics on which the group consumes
    /// (`%RETRY%<group>`, and the per-topic retry topics of its pops) are kept, since their lag
    /// is redelivery work still pending.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`] (an illegal name as [`Error::IllegalField`]).
    pub fn topics(self, group: &str) -> Result<Vec<String>> {
        let g = self.broker.existing_group(group)?;
        let mut topics: BTreeSet<String> = g.config.subscriptions.keys().cloned().collect();
        topics.extend(self.broker.inner.consumption.consumers.group_topics(group));
        Ok(topics
            .into_iter()
            .filter(|t| !t.starts_with(SYSTEM_TOPIC_PREFIX) && !t.starts_with(DLQ_PREFIX))
            .filter(|t| self.broker.inner.topics.get(t).is_some())
            .collect())
    }

    /// Creates a consumer group.
    ///
    /// # Errors
    /// [`Error::IllegalTopic`]-style name errors (as [`Error::IllegalField`]),
    /// [`Error::GroupExists`], [`Error::IllegalFilter`], [`Error::LimitReached`] past
    /// `limits.max_groups`, [`Error::Denied`] (a principal without `Create` on the group),
    /// [`Error::Metadata`].
    pub fn create(self, config: GroupConfig) -> Result<GroupConfig> {
        self.broker.check_master("creating a consumer group")?;
        validate_group_name(&config.name)?;
        for topic in config.subscriptions.keys() {
            self.broker.topic(topic)?;
        }
        self.broker
            .authorize_create(crate::auth::Resource::group(&config.name))?;
        let max = self.broker.inner.config.limits.max_groups;
        Ok(self
            .broker
            .inner
            .consumption
            .groups
            .upsert_bounded(config, false, max)?
            .config
            .clone())
    }

    /// A group's configuration.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`].
    pub fn get(self, name: &str) -> Result<GroupConfig> {
        self.broker
            .inner
            .consumption
            .groups
            .get(name)
            .map(|g| g.config.clone())
            .ok_or_else(|| Error::GroupNotFound(name.to_owned()))
    }

    /// All groups.
    pub fn list(self) -> Vec<GroupConfig> {
        self.broker.inner.consumption.groups.list()
    }

    /// Deletes a group with its offsets and pop state.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::Metadata`].
    pub fn delete(self, name: &str) -> Result<()> {
        self.broker.check_master("deleting a consumer group")?;
        self.broker.inner.consumption.groups.delete(name)?;
        self.broker.inner.consumption.consumers.forget_group(name);
        Ok(())
    }

    /// Subscribes `group` to `topic` with a tag filter expression (persisted).
    ///
    /// # Errors
    /// [`Error::TopicNotFound`], [`Error::GroupNotFound`] (without auto-creation),
    /// [`Error::IllegalFilter`].
    pub fn subscribe(self, group: &str, topic: &str, expression: FilterExpression) -> Result<()> {
        self.broker.topic(topic)?;
        Filter::parse(&expression)?;
        let g = self.broker.resolve_group(group)?;
        if g.config.subscriptions.get(topic) == Some(&expression) {
            return Ok(());
        }
        let mut config = g.config.clone();
        config.subscriptions.insert(topic.to_owned(), expression);
        self.broker.inner.consumption.groups.upsert(config, true)?;
        Ok(())
    }

    /// Sets how many deliveries (the first included) a message of `group` gets before it is
    /// dead-lettered. Returns the group's new configuration.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::InvalidArgument`] for `attempts` outside
    /// `1..=1024`, [`Error::Metadata`].
    pub fn set_max_delivery_attempts(self, group: &str, attempts: u32) -> Result<GroupConfig> {
        self.broker.check_master("changing a retry policy")?;
        if attempts == 0 || attempts > MAX_DELIVERY_ATTEMPTS {
            return Err(Error::InvalidArgument(format!(
                "max_delivery_attempts must be between 1 and {MAX_DELIVERY_ATTEMPTS}"
            )));
        }
        let g = self.broker.existing_group(group)?;
        if g.config.max_delivery_attempts == attempts {
            return Ok(g.config.clone());
        }
        let mut config = g.config.clone();
        config.max_delivery_attempts = attempts;
        Ok(self
            .broker
            .inner
            .consumption
            .groups
            .upsert(config, true)?
            .config
            .clone())
    }
}
