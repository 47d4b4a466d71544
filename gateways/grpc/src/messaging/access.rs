//! Authorization of MessagingService requests: what each RPC asks of the core's `Auth`
//! service — the actions on the topics and groups it names (RocketMQ ACL 2.0's mapping) —
//! checked before the RPC runs, and the refusal in the protocol's terms (`UNAUTHORIZED`,
//! `FORBIDDEN` in the response status).
//!
//! | RPC | needs |
//! |---|---|
//! | SendMessage, EndTransaction | `Pub` on the topic |
//! | QueryRoute | `Pub` or `Sub` on the topic |
//! | Heartbeat, NotifyClientTermination | `Sub` on the group, when one is named |
//! | QueryAssignment, ReceiveMessage, AckMessage, ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue, PullMessage, UpdateOffset, GetOffset | `Sub` on the topic and on the group |
//! | QueryOffset (an offset for a time; names no group) | `Sub` on the topic |
//! | Telemetry | authentication to open; each Settings: `Pub` on every publishing topic (a producer is sent the check-backs of its topics' half messages), `Sub` on the subscription's group and every subscribed topic; a refused Settings changes nothing (a producer's check-back answers are `EndTransaction`s) |
//!
//! Owns no state. Must not decide anything itself: the decision is core's.

use std::net::IpAddr;

use rocketgate_core::auth::{Action, Principal, Resource};

use super::code::{from_core, status};
use super::Context;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::Code;

/// What one request asks for: each item is satisfied by any one of its actions.
pub(super) type Needs = Vec<(Resource, &'static [Action])>;

const PUB: &[Action] = &[Action::Pub];
const SUB: &[Action] = &[Action::Sub];
const PUB_OR_SUB: &[Action] = &[Action::Pub, Action::Sub];

fn name(r: Option<&pb::Resource>) -> Option<&str> {
    r.map(|r| r.name.as_str()).filter(|n| !n.is_empty())
}

fn topic(r: Option<&pb::Resource>, actions: &'static [Action]) -> Needs {
    name(r)
        .map(|n| (Resource::topic(n), actions))
        .into_iter()
        .collect()
}

fn topic_and_group(t: Option<&pb::Resource>, g: Option<&pb::Resource>) -> Needs {
    let mut needs = topic(t, SUB);
    needs.extend(name(g).map(|n| (Resource::group(n), SUB)));
    needs
}

fn queue_topic(q: Option<&pb::MessageQueue>) -> Option<&pb::Resource> {
    q.and_then(|q| q.topic.as_ref())
}

pub(super) fn query_route(r: &pb::QueryRouteRequest) -> Needs {
    topic(r.topic.as_ref(), PUB_OR_SUB)
}

pub(super) fn heartbeat(r: &pb::HeartbeatRequest) -> Needs {
    name(r.group.as_ref())
        .map(|n| (Resource::group(n), SUB))
        .into_iter()
        .collect()
}

/// A Telemetry `Settings`: what registering it lets the client do (see the table).
pub(super) fn settings(s: &pb::Settings) -> Needs {
    let mut needs: Needs = Vec::new();
    let mut add = |n: (Resource, &'static [Action])| {
        if !needs.contains(&n) {
            needs.push(n);
        }
    };
    match &s.pub_sub {
        Some(pb::settings::PubSub::Publishing(p)) => {
            for t in &p.topics {
                topic(Some(t), PUB).into_iter().for_each(&mut add);
            }
        }
        Some(pb::settings::PubSub::Subscription(sub)) => {
            if let Some(g) = name(sub.group.as_ref()) {
                add((Resource::group(g), SUB));
            }
            for e in &sub.subscriptions {
                topic(e.topic.as_ref(), SUB).into_iter().for_each(&mut add);
            }
        }
        None => {}
    }
    needs
}

pub(super) fn send(r: &pb::SendMessageRequest) -> Needs {
    let mut needs: Needs = Vec::new();
    for m in &r.messages {
        for n in topic(m.topic.as_ref(), PUB) {
            if !needs.contains(&n) {
                needs.push(n);
            }
        }
    }
    needs
}

pub(super) fn query_assignment(r: &pb::QueryAssignmentRequest) -> Needs {
    topic_and_group(r.topic.as_ref(), r.group.as_ref())
}

pub(super) fn receive(r: &pb::ReceiveMessageRequest) -> Needs {
    topic_and_group(queue_topic(r.message_queue.as_ref()), r.group.as_ref())
}

pub(super) fn ack(r: &pb::AckMessageRequest) -> Needs {
    topic_and_group(r.topic.as_ref(), r.group.as_ref())
}

pub(super) fn forward_to_dlq(r: &pb::ForwardMessageToDeadLetterQueueRequest) -> Needs {
    topic_and_group(r.topic.as_ref(), r.group.as_ref())
}

pub(super) fn pull(r: &pb::PullMessageRequest) -> Needs {
    topic_and_group(queue_topic(r.message_queue.as_ref()), r.group.as_ref())
}

pub(super) fn update_offset(r: &pb::UpdateOffsetRequest) -> Needs {
    topic_and_group(queue_topic(r.message_queue.as_ref()), r.group.as_ref())
}

pub(super) fn get_offset(r: &pb::GetOffsetRequest) -> Needs {
    topic_and_group(queue_topic(r.message_queue.as_ref()), r.group.as_ref())
}

pub(super) fn query_offset(r: &pb::QueryOffsetRequest) -> Needs {
    topic(queue_topic(r.message_queue.as_ref()), SUB)
}

pub(super) fn end_transaction(r: &pb::EndTransactionRequest) -> Needs {
    topic(r.topic.as_ref(), PUB)
}

pub(super) fn notify_termination(r: &pb::NotifyClientTerminationRequest) -> Needs {
    name(r.group.as_ref())
        .map(|n| (Resource::group(n), SUB))
        .into_iter()
        .collect()
}

pub(super) fn change_invisible(r: &pb::ChangeInvisibleDurationRequest) -> Needs {
    topic_and_group(r.topic.as_ref(), r.group.as_ref())
}

/// Asks core for every item of `needs`; the first refusal as a v2 status.
pub(super) fn check(
    ctx: &Context,
    who: &Principal,
    source: Option<IpAddr>,
    needs: &Needs,
) -> Result<(), pb::Status> {
    let auth = ctx.broker.auth();
    if !auth.enabled() {
        return Ok(());
    }
    for (resource, actions) in needs {
        let mut last = None;
        for action in actions.iter() {
            match auth.authorize(who, resource, *action, source) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(from_core(&e));
        }
    }
    Ok(())
}

/// The refusal of a request without usable credentials.
pub(super) fn unauthorized(why: impl Into<String>) -> pb::Status {
    status(Code::Unauthorized, why)
}
