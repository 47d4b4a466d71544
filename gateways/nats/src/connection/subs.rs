//! A connection's subscriptions: which consumer group each reads through, where that group
//! starts on each topic, which feeds (group, topic) they need, and which subscriptions a
//! popped message is for.
//!
//! Invariants:
//! - Plain subscriptions read through the connection's own group, created at its first SUB
//!   (through the gateway's handle: the group is the gateway's bookkeeping; the client is
//!   asked for `Sub` on it) and deleted at close. Each topic is positioned at its end
//!   (`pop_from_end`) the first time a subscription of the connection names it, before the
//!   SUB is answered; topics created later are read from their start (all they hold is new).
//! - A queue subscription reads through its queue group's group (`nats-q-<queue>-<hash of the
//!   subject>`), positioned at the end only when the group is created now: members joining
//!   later, and members coming back, continue where the group is. The group outlives its
//!   members (the core keeps what arrives meanwhile).
//! - `UNSUB sid max`: the subscription ends after `max` messages in all; at once if it had
//!   that many already.
//!
//! Called by the connection's driver only. No locks; the core calls are the positioning and
//! the group's creation and deletion.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rocketgate_core::{Broker, ErrorKind, GroupConfig};

use super::feeds::FeedKey;
use crate::access::Access;
use crate::error::ProtocolError;
use crate::shared::Shared;
use crate::subject::{self, Filter};

#[derive(Debug)]
struct Sub {
    filter: Filter,
    /// The queue group's consumer group, for a queue subscription.
    queue: Option<Arc<str>>,
    max: Option<u64>,
    delivered: u64,
}

impl Sub {
    fn exhausted(&self) -> bool {
        self.max.is_some_and(|m| self.delivered >= m)
    }

    fn reads(&self, topic: &str, s: &str) -> bool {
        self.filter.topic.as_deref().is_none_or(|t| t == topic) && self.filter.matches(s)
    }
}

/// A connection's subscriptions.
#[derive(Debug)]
pub(crate) struct Subs {
    group: Arc<str>,
    group_created: bool,
    by_sid: HashMap<String, Sub>,
    positioned: HashSet<String>,
}

/// Creates a consumer group if missing; `true` when it was created now.
fn ensure_group(broker: &Broker, name: &str) -> Result<bool, rocketgate_core::Error> {
    match broker.groups().get(name) {
        Ok(_) => Ok(false),
        Err(_) => match broker.groups().create(GroupConfig::new(name)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        },
    }
}

impl Subs {
    /// No subscriptions; the connection's group is `nats-c-<key>`.
    pub(crate) fn new(key: String) -> Self {
        Self {
            group: subject::connection_group(&key).into(),
            group_created: false,
            by_sid: HashMap::new(),
            positioned: HashSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_sid.len()
    }

    pub(crate) fn contains(&self, sid: &str) -> bool {
        self.by_sid.contains_key(sid)
    }

    /// Whether a subscription reads every topic (a wildcard first token).
    pub(crate) fn reads_every_topic(&self) -> bool {
        self.by_sid.values().any(|s| s.filter.topic.is_none())
    }

    /// Whether `group` is a queue group's (not the connection's own).
    pub(crate) fn is_queue_group(&self, group: &str) -> bool {
        *self.group != *group
    }

    /// Makes subscription `sid` (replacing one of the same id) after checking it with the
    /// core; see the module doc for the positioning.
    pub(crate) async fn subscribe(
        &mut self,
        shared: &Shared,
        client: &Broker,
        access: &Access,
        filter: Filter,
        queue: Option<String>,
        sid: String,
    ) -> Result<(), ProtocolError> {
        let queue_group = queue
            .as_deref()
            .map(|q| subject::queue_group(q, &filter.subject));
        let group = queue_group
            .clone()
            .unwrap_or_else(|| self.group.to_string());
        if !access.may_subscribe(filter.topic.as_deref(), &group) {
            return Err(ProtocolError::SubscribeDenied(filter.subject));
        }
        let topics = match &filter.topic {
            Some(t) => {
                shared
                    .ensure_topic(client, t)
                    .map_err(|_| ProtocolError::InvalidSubject)?;
                vec![t.clone()]
            }
            None => visible_topics(shared),
        };
        let gateway = &shared.broker;
        let created = ensure_group(gateway, &group).map_err(|e| {
            tracing::warn!(error = %e, group = %group, "could not create a NATS consumer group");
            ProtocolError::SubscribeDenied(filter.subject.clone())
        })?;
        if queue_group.is_none() {
            self.group_created = true;
        }
        for t in &topics {
            let position = match &queue_group {
                Some(_) => created,
                None => !self.positioned.contains(t),
            };
            if position {
                if let Err(e) = gateway.consumer().pop_from_end(&group, t).await {
                    tracing::debug!(error = %e, group = %group, topic = %t, "NATS subscription not positioned");
                    if filter.topic.is_some() {
                        return Err(ProtocolError::InvalidSubject);
                    }
                }
            }
            if queue_group.is_none() {
                self.positioned.insert(t.clone());
            }
        }
        if let Some(old) = self.by_sid.remove(&sid) {
            shared.remove_interest(&old.filter.subject);
        }
        shared.add_interest(&filter.subject);
        self.by_sid.insert(
            sid,
            Sub {
                filter,
                queue: queue_group.map(Arc::from),
                max: None,
                delivered: 0,
            },
        );
        Ok(())
    }

    /// `UNSUB sid [max]`.
    pub(crate) fn unsubscribe(&mut self, shared: &Shared, sid: &str, max: Option<u64>) {
        let Some(s) = self.by_sid.get_mut(sid) else {
            return;
        };
        s.max = max;
        if max.is_none() || s.exhausted() {
            if let Some(s) = self.by_sid.remove(sid) {
                shared.remove_interest(&s.filter.subject);
            }
        }
    }

    /// Ends the subscriptions that received their `max`; `true` if any ended.
    pub(crate) fn take_exhausted(&mut self, shared: &Shared) -> bool {
        let before = self.by_sid.len();
        self.by_sid.retain(|_, s| {
            let keep = !s.exhausted();
            if !keep {
                shared.remove_interest(&s.filter.subject);
            }
            keep
        });
        before != self.by_sid.len()
    }

    /// The feeds the subscriptions need: (group, topic) per subscription and topic it reads
    /// (for a wildcard first token, every visible topic `access` may read).
    pub(crate) fn wanted_feeds(&self, access: &Access) -> HashSet<FeedKey> {
        let mut out = HashSet::new();
        let mut every: Option<Vec<String>> = None;
        for s in self.by_sid.values() {
            let g = s.queue.clone().unwrap_or_else(|| self.group.clone());
            match &s.filter.topic {
                Some(t) => {
                    out.insert((g, t.clone()));
                }
                None => {
                    let all = every.get_or_insert_with(|| visible_topics_of(access));
                    for t in all.iter() {
                        out.insert((g.clone(), t.clone()));
                    }
                }
            }
        }
        out
    }

    /// The subscription ids a message of `topic` with subject `s`, popped through `group`, is
    /// for (counted as delivered). `None`: no subscription reads through `group` any more (a
    /// queue group's member left: the message goes back to the group). `Some(empty)`: none
    /// matches; it is acknowledged and dropped.
    pub(crate) fn targets(&mut self, group: &str, topic: &str, s: &str) -> Option<Vec<String>> {
        if *self.group == *group {
            let mut out = Vec::new();
            for (sid, sub) in &mut self.by_sid {
                if sub.queue.is_none() && !sub.exhausted() && sub.reads(topic, s) {
                    sub.delivered += 1;
                    out.push(sid.clone());
                }
            }
            return Some(out);
        }
        let mut members = self
            .by_sid
            .iter_mut()
            .filter(|(_, sub)| sub.queue.as_deref() == Some(group) && !sub.exhausted())
            .peekable();
        members.peek()?;
        for (sid, sub) in members {
            if sub.reads(topic, s) {
                sub.delivered += 1;
                return Some(vec![sid.clone()]);
            }
        }
        Some(Vec::new())
    }

    /// The subscriptions (any kind) matching the publish subject `s`.
    pub(crate) fn matching_sids(&self, s: &str) -> Vec<String> {
        self.by_sid
            .iter()
            .filter(|(_, sub)| sub.filter.matches(s))
            .map(|(sid, _)| sid.clone())
            .collect()
    }

    /// Removes every subscription and deletes the connection's group.
    pub(crate) fn clear(&mut self, shared: &Shared) {
        for (_, s) in self.by_sid.drain() {
            shared.remove_interest(&s.filter.subject);
        }
        if self.group_created {
            if let Err(e) = shared.broker.groups().delete(&self.group) {
                tracing::debug!(error = %e, group = %self.group, "NATS connection group not deleted");
            }
            self.group_created = false;
        }
    }
}

/// The user topics a wildcard first token reads (no gateway system topics).
fn visible_topics(shared: &Shared) -> Vec<String> {
    shared
        .broker
        .topics()
        .list_user()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| subject::topic_token_ok(n) && !n.starts_with("mqtt_sys_"))
        .collect()
}

fn visible_topics_of(access: &Access) -> Vec<String> {
    access
        .broker()
        .topics()
        .list_user()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| subject::topic_token_ok(n) && !n.starts_with("mqtt_sys_") && access.may_read(n))
        .collect()
}
