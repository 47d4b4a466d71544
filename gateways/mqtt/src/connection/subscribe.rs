//! The subscriptions of a session seen from one connection: a SUBSCRIBE in progress (one
//! filter at a time, each started in the core by the driver before the next), the RocketMQ
//! topics the session's plain subscriptions already read, and the delivery feeds (one core
//! subscription per (group, topic)) the subscriptions need.
//!
//! Invariants:
//! - Filters of a SUBSCRIBE are handled in packet order, and each filter's core work ends
//!   before the next filter is planned: a later filter sees the earlier ones in the session
//!   (so a topic already read by the session is not repositioned to its end).
//! - A filter that does not parse, or whose RocketMQ topic the core refuses, gets "topic
//!   filter invalid" (a reserved one, `$…` but `$share/…`, "not authorized"; 3.1.1: failure)
//!   and changes nothing; so does one the core does not authorize ("not authorized"; 3.1.1:
//!   failure, 0x80). The SUBACK has one code per filter, in order.
//! - Retained messages are asked for only for plain subscriptions, per the v5 retain handling
//!   (0: always, 1: only for a new subscription, 2: never).
//!
//! Called by the connection's state machine (`machine.rs`) and, for [`wanted_pollers`] and
//! [`Coverage`], its driver. Pure: no I/O, no locks; the one core lookup these need (the
//! RocketMQ topics a wildcard reads) is passed in as a closure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule, Subscribe, SubscribeReasonCode};

use crate::codec::{self, Packet};
use crate::session::Subscription;
use crate::topic::{self, TopicError};

/// A delivery feed: (consumer group, RocketMQ topic).
pub(crate) type PollerKey = (Arc<str>, String);

/// What the driver does in the core before a filter counts as subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionStart {
    /// The filter without its `$share/<name>/` (what authorization asks about).
    pub filter: String,
    /// The filter's RocketMQ topic (created if allowed; refused → "topic filter invalid"), or
    /// `None` for a wildcard first level: every topic wildcards see.
    pub core_topic: Option<String>,
    /// Where the subscription reads from.
    pub target: Target,
}

/// The consumer group of a new subscription and how it is positioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `$share/<name>/<filter>`: the share's group, positioned at the end of each topic only
    /// if it was created now (members that join later keep the group's position).
    Shared {
        /// The share's consumer group.
        group: String,
    },
    /// A plain filter: the session's group, positioned at the end of each topic it does not
    /// read already.
    Plain {
        /// The session's consumer group.
        group: Arc<str>,
        /// What the session read before this filter.
        covered: Coverage,
    },
}

/// The RocketMQ topics a session's plain subscriptions read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Coverage {
    /// Topics named by a filter's first level.
    pub topics: HashSet<String>,
    /// A filter with a wildcard first level reads every visible topic as well.
    pub every_visible: bool,
}

impl Coverage {
    /// The coverage of a session's subscriptions (shared ones excluded).
    pub(crate) fn of(subscriptions: &BTreeMap<String, Subscription>) -> Self {
        let mut out = Self::default();
        for raw in subscriptions.keys() {
            if let Ok(p) = topic::parse_filter(raw) {
                if p.share.is_some() {
                    continue;
                }
                match p.core_topic {
                    Some(t) => {
                        out.topics.insert(t.to_owned());
                    }
                    None => out.every_visible = true,
                }
            }
        }
        out
    }

    /// The covered topics, with `visible()` (the topics wildcards see) when needed.
    pub(crate) fn resolve(self, visible: impl FnOnce() -> Vec<String>) -> HashSet<String> {
        let mut out = self.topics;
        if self.every_visible {
            out.extend(visible());
        }
        out
    }
}

/// The delivery feeds a session's subscriptions need: its own group on every topic its plain
/// subscriptions read, and each shared subscription's group on its topics (with the raw
/// filter, the only one its messages match). `visible()` lists the topics wildcards see;
/// `may_read(group, topic, filter)` (the core's authorization, `access.rs`) keeps a feed
/// out unless some subscription that wants it may read that topic.
pub(crate) fn wanted_pollers(
    subscriptions: &BTreeMap<String, Subscription>,
    group: &Arc<str>,
    mut visible: impl FnMut() -> Vec<String>,
    mut may_read: impl FnMut(&str, &str, &str) -> bool,
) -> HashMap<PollerKey, Option<Arc<str>>> {
    let mut want = HashMap::new();
    let mut all: Option<Vec<String>> = None;
    for raw in subscriptions.keys() {
        let Ok(p) = topic::parse_filter(raw) else {
            continue;
        };
        let (g, shared): (Arc<str>, _) = match p.share {
            Some(share) => (
                topic::shared_group(share, p.filter).into(),
                Some(Arc::from(raw.as_str())),
            ),
            None => (group.clone(), None),
        };
        let topics = match p.core_topic {
            Some(t) => vec![t.to_owned()],
            None => all.get_or_insert_with(&mut visible).clone(),
        };
        for t in topics {
            let key = (g.clone(), t);
            if !want.contains_key(&key) && may_read(&key.0, &key.1, p.filter) {
                want.insert(key, shared.clone());
            }
        }
    }
    want
}

/// Retained messages to send after a SUBACK: those matching `filter`, at most `qos`, with
/// the subscription identifier `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetainedRequest {
    /// The filter without its `$share/` prefix.
    pub filter: String,
    /// The subscription's maximum QoS.
    pub qos: u8,
    /// The v5 subscription identifier.
    pub id: Option<usize>,
}

/// A SUBSCRIBE being handled.
#[derive(Debug)]
pub(crate) struct Subscribing {
    pkid: u16,
    id: Option<usize>,
    filters: std::vec::IntoIter<Filter>,
    /// The filter whose core work is under way, and whether it is shared.
    current: Option<(Filter, Option<String>)>,
    codes: Vec<SubscribeReasonCode>,
    retained: Vec<RetainedRequest>,
}

impl Subscribing {
    /// Starts handling `s`.
    pub(crate) fn new(s: Subscribe) -> Self {
        Self {
            pkid: s.pkid,
            id: s.properties.as_ref().and_then(|p| p.id),
            codes: Vec::with_capacity(s.filters.len()),
            filters: s.filters.into_iter(),
            current: None,
            retained: Vec::new(),
        }
    }

    /// The core work of the next valid filter, or `None` when every filter is handled.
    /// Filters that do not parse get their code here.
    pub(crate) fn next(
        &mut self,
        subscriptions: &BTreeMap<String, Subscription>,
        group: &Arc<str>,
    ) -> Option<SubscriptionStart> {
        for f in self.filters.by_ref() {
            let parsed = match topic::parse_filter(&f.path) {
                Ok(parsed) => parsed,
                Err(e) => {
                    self.codes.push(match e {
                        TopicError::Reserved => SubscribeReasonCode::NotAuthorized,
                        TopicError::Malformed | TopicError::IllegalFirstLevel => {
                            SubscribeReasonCode::TopicFilterInvalid
                        }
                    });
                    continue;
                }
            };
            let start = SubscriptionStart {
                filter: parsed.filter.to_owned(),
                core_topic: parsed.core_topic.map(str::to_owned),
                target: match parsed.share {
                    Some(share) => Target::Shared {
                        group: topic::shared_group(share, parsed.filter),
                    },
                    None => Target::Plain {
                        group: group.clone(),
                        covered: Coverage::of(subscriptions),
                    },
                },
            };
            let plain_filter = parsed.share.is_none().then(|| parsed.filter.to_owned());
            self.current = Some((f, plain_filter));
            return Some(start);
        }
        None
    }

    /// The core work of the current filter ended: `Ok` = the subscription is in place, so it
    /// goes into the session; `Err` = refused with that code (not authorized, or topic filter
    /// invalid when the core refused its topic).
    pub(crate) fn started(
        &mut self,
        result: Result<(), SubscribeReasonCode>,
        subscriptions: &mut BTreeMap<String, Subscription>,
    ) {
        let Some((f, plain_filter)) = self.current.take() else {
            return;
        };
        if let Err(code) = result {
            self.codes.push(code);
            return;
        }
        if let Some(filter) = plain_filter {
            let existed = subscriptions.contains_key(&f.path);
            let send = match f.retain_forward_rule {
                RetainForwardRule::OnEverySubscribe => true,
                RetainForwardRule::OnNewSubscribe => !existed,
                RetainForwardRule::Never => false,
            };
            if send {
                self.retained.push(RetainedRequest {
                    filter,
                    qos: f.qos as u8,
                    id: self.id,
                });
            }
        }
        subscriptions.insert(
            f.path.clone(),
            Subscription {
                filter: f.path,
                qos: f.qos as u8,
                no_local: f.nolocal,
                retain_as_published: f.preserve_retain,
                id: self.id,
            },
        );
        self.codes.push(SubscribeReasonCode::Success(f.qos));
    }

    /// The SUBACK and the retained messages to send after it.
    pub(crate) fn finish(self) -> (Packet, Vec<RetainedRequest>) {
        (codec::suback(self.pkid, self.codes), self.retained)
    }
}
