//! The `rocketgate.cluster.v1.BrokerAdmin` service: what `rocketgate admin` calls on a broker
//! (topics, groups and lag, offset resets, message queries, dead letters, send / pull).
//!
//! Owns: decoding each request (every field checked in `convert.rs` or by core before anything
//! changes), one call to the core [`Broker`], and encoding the answer. No state of its own
//! besides the broker handle and the [`NodeInfo`] the server gives it.
//!
//! Invariants:
//! - Errors are gRPC statuses as mapped in [`crate::status`]; nothing panics on input.
//! - Every count is bounded: `max` fields by `limits.max_batch` (0 means 32), `message_ids` by
//!   `limits.max_batch`, `wait_ms` by `consumer.max_wait_ms`, requests by the decoding limit
//!   (`limits.max_body_bytes` + 1 MiB), and responses carrying messages by a byte budget
//!   ([`response_budget`]): a pull or dead-letter listing is cut short with a `next_offset` to
//!   continue from, a query is marked `truncated`.
//! - Enums: `UNSPECIFIED` means the proto's default where it names one (CreateTopic: NORMAL,
//!   READ_WRITE); an UpdateTopic field set to `UNSPECIFIED`, and any unknown number, is
//!   INVALID_ARGUMENT naming the field.
//!
//! Access: with `auth.enabled` every call is authenticated (the SDKs' MQv2-HMAC-SHA1 signature,
//! as `rocketgate admin --ak/--sk` sends it) and needs its action on `Cluster:*` (reads `Get` or
//! `List`; changes `Create`, `Update` or `Delete`): `UNAUTHENTICATED` / `PERMISSION_DENIED`
//! otherwise. Super users may do everything. A read runs with its caller attached to the
//! broker handle, so what it would create on first use (the group of a PullMessages) also
//! needs `Create` on that group (a fuzzing finding: a read-only user created groups). Status
//! messages are cut to `status::MAX_MESSAGE_BYTES`.
//!
//! Concurrency: tonic runs each call on its own task; calls share the `Broker` (cheap `Clone`,
//! internally synchronised) and hold no lock across an `.await`.

mod convert;
mod node;

use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::auth::{Action, Resource};
use rocketgate_core::DlqSelection;
use rocketgate_core::{
    Broker, Caller, ErrorKind, FilterExpression, GroupPullRequest, Message, QueueSelector,
    SendRequest, TopicConfig, TopicInfo, TopicUpdate,
};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::broker_admin_server::{BrokerAdmin, BrokerAdminServer};
use tonic::{Request, Response, Status};

use self::convert::invalid;
pub use self::node::NodeInfo;
use crate::auth::CoreAuthenticator;
use crate::status::{bounded_message, RequestError};

type Reply<T> = Result<Response<T>, Status>;
type Outcome<T> = Result<T, RequestError>;

/// Room for everything but the body in a request (properties, keys, names).
const REQUEST_OVERHEAD: usize = 1 << 20;
/// Smallest byte budget of the messages of one response.
const MIN_RESPONSE_BUDGET: usize = 16 << 20;

/// The largest request the service decodes: a maximal body plus [`REQUEST_OVERHEAD`].
pub fn request_limit(broker: &Broker) -> usize {
    broker
        .config()
        .limits
        .max_body_bytes
        .saturating_add(REQUEST_OVERHEAD)
}

/// The byte budget of the messages of one response: at least 16 MiB, and always room for one
/// maximal message. The encoding limit is this plus [`request_limit`], so a response that keeps
/// to the budget always encodes; clients should accept responses of that size.
pub fn response_budget(broker: &Broker) -> usize {
    request_limit(broker).max(MIN_RESPONSE_BUDGET)
}

/// The admin service over one broker.
#[derive(Debug, Clone)]
pub struct AdminService {
    broker: Broker,
    node: Arc<NodeInfo>,
}

impl AdminService {
    /// A service answering for `broker`, reporting `node` as its identity.
    pub fn new(broker: Broker, node: NodeInfo) -> Self {
        Self {
            broker,
            node: Arc::new(node),
        }
    }

    /// Lets the call through if its caller may do `action` on the cluster (see the module doc),
    /// and answers the service to run it on. For a read (`Get`, `List`) that is this one with
    /// the caller attached to the broker handle, so that what core would create on first use
    /// (the group of a PullMessages) needs the caller's `Create` right on it: reading must not
    /// let a caller without rights to change the cluster create anything. A change let through
    /// (create, update, delete) is logged on the `audit` target with the RPC and the user, with
    /// authentication on or off.
    fn admit<T>(
        &self,
        req: &Request<T>,
        rpc: &'static str,
        action: Action,
    ) -> Result<Self, Status> {
        let auth = self.broker.auth();
        let source = req.remote_addr().map(|a| a.ip());
        let who = if auth.enabled() {
            let who = crate::auth::authenticate_request(
                &CoreAuthenticator::new(self.broker.clone()),
                req,
            )
            .map_err(|e| Status::unauthenticated(bounded_message(e.to_string())))?;
            auth.authorize(&who, &Resource::cluster(), action, source)
                .map_err(|e| match e.kind() {
                    ErrorKind::Unauthenticated => {
                        Status::unauthenticated(bounded_message(e.to_string()))
                    }
                    _ => Status::permission_denied(bounded_message(e.to_string())),
                })?;
            Some(who)
        } else {
            None
        };
        if matches!(action, Action::Create | Action::Update | Action::Delete) {
            let user = who.as_ref().and_then(|w| w.user()).unwrap_or("-");
            let source = req.remote_addr().map(|a| a.to_string());
            tracing::info!(
                target: "audit",
                action = "admin",
                rpc,
                user,
                source = source.as_deref().unwrap_or("-"),
                "allowed"
            );
        }
        let broker = if matches!(action, Action::Get | Action::List) {
            self.broker.as_caller(Caller::client(who, source))
        } else {
            self.broker.clone()
        };
        Ok(Self {
            broker,
            node: self.node.clone(),
        })
    }

    /// The tonic server for this service, with its size limits: requests up to
    /// [`request_limit`] (larger ones are refused with `OUT_OF_RANGE` before decoding),
    /// responses up to [`response_budget`] + [`request_limit`].
    pub fn into_server(self) -> BrokerAdminServer<Self> {
        let decode = request_limit(&self.broker);
        let encode = response_budget(&self.broker).saturating_add(decode);
        BrokerAdminServer::new(self)
            .max_decoding_message_size(decode)
            .max_encoding_message_size(encode)
    }

    fn limits(&self) -> &rocketgate_core::LimitsConfig {
        &self.broker.config().limits
    }

    fn max(&self, value: u32) -> Outcome<usize> {
        convert::max("max", value, self.limits().max_batch)
    }

    fn topic_status(&self, info: TopicInfo) -> Outcome<pb::TopicStatus> {
        let name = &info.config.name;
        let mut queues = Vec::with_capacity(info.queues.len());
        for q in &info.queues {
            let last = self.broker.queries().last_store_time(name, q.queue_id)?;
            queues.push(pb::QueueStatus {
                queue_id: q.queue_id,
                min_offset: q.min,
                max_offset: q.max,
                last_store_timestamp_ms: last.unwrap_or(0),
            });
        }
        Ok(pb::TopicStatus {
            topic: Some(convert::topic_spec(&info.config)),
            queues,
        })
    }

    fn create(&self, req: pb::CreateTopicRequest) -> Outcome<pb::TopicStatus> {
        let spec = req.topic.ok_or_else(|| invalid("topic", "required"))?;
        convert::topic(&spec.name)?;
        let config = TopicConfig {
            message_type: convert::message_type(
                "topic.message_type",
                spec.message_type,
                Some(rocketgate_core::MessageType::Normal),
            )?,
            permission: convert::permission(
                "topic.permission",
                spec.permission,
                Some(rocketgate_core::Permission::default()),
            )?,
            ..TopicConfig::new(spec.name, spec.queue_count)
        };
        let info = self.broker.topics().create(config)?;
        self.topic_status(info)
    }

    async fn update(&self, req: pb::UpdateTopicRequest) -> Outcome<pb::TopicStatus> {
        convert::topic(&req.name)?;
        let update = TopicUpdate {
            queue_count: req.queue_count,
            message_type: req
                .message_type
                .map(|t| convert::message_type("message_type", t, None))
                .transpose()?,
            permission: req
                .permission
                .map(|p| convert::permission("permission", p, None))
                .transpose()?,
        };
        self.broker.topics().update(&req.name, update)?;
        let info = self.broker.topics().describe(&req.name).await?;
        self.topic_status(info)
    }

    async fn status(&self, req: pb::GetTopicStatusRequest) -> Outcome<pb::TopicStatus> {
        convert::topic(&req.name)?;
        let info = self.broker.topics().describe(&req.name).await?;
        self.topic_status(info)
    }

    fn group_summary(&self, g: rocketgate_core::GroupConfig) -> pb::GroupSummary {
        let clients = self.broker.consumer().clients(&g.name).len();
        pb::GroupSummary {
            max_delivery_attempts: g.max_delivery_attempts,
            subscriptions: g
                .subscriptions
                .into_iter()
                .map(|(topic, filter)| (topic, filter.expression))
                .collect(),
            client_count: u32::try_from(clients).unwrap_or(u32::MAX),
            name: g.name,
        }
    }

    async fn group_status(&self, req: pb::GetGroupStatusRequest) -> Outcome<pb::GroupStatus> {
        let name = convert::group(&req.group)?;
        let group = self.broker.groups().get(name)?;
        let topics = if req.topic.is_empty() {
            self.broker.groups().topics(name)?
        } else {
            vec![convert::topic(&req.topic)?.to_owned()]
        };
        let mut lags = Vec::new();
        for topic in topics {
            let queues = match self.broker.consumer().lag(name, &topic) {
                Ok(q) => q,
                // Deleted since it was listed: it no longer has a lag.
                Err(e) if req.topic.is_empty() && e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            lags.extend(queues.into_iter().map(|q| pb::QueueLag {
                topic: topic.clone(),
                queue_id: q.queue_id,
                max_offset: q.max_offset,
                committed_offset: q.committed,
                pull_lag: q.pull_lag,
                pop_unacked: q.pop_unacked,
                pop_inflight: q.pop_inflight,
            }));
        }
        lags.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
        let mut clients = self.broker.consumer().clients(name);
        clients.sort_unstable();
        Ok(pb::GroupStatus {
            total_pull_lag: lags.iter().fold(0u64, |s, l| s.saturating_add(l.pull_lag)),
            total_pop_unacked: lags
                .iter()
                .fold(0u64, |s, l| s.saturating_add(l.pop_unacked)),
            group: Some(self.group_summary(group)),
            lags,
            clients,
        })
    }

    async fn reset(&self, req: pb::ResetOffsetRequest) -> Outcome<pb::ResetOffsetResponse> {
        let group = convert::group(&req.group)?;
        let topic = convert::topic(&req.topic)?;
        let offsets = self
            .broker
            .consumer()
            .reset_offset_to_time(group, topic, req.timestamp_ms)
            .await?;
        Ok(pb::ResetOffsetResponse {
            offsets: offsets
                .into_iter()
                .map(|o| pb::QueueOffset {
                    queue_id: o.queue_id,
                    offset: o.offset,
                })
                .collect(),
        })
    }

    fn messages(
        &self,
        mut messages: Vec<rocketgate_core::StoredMessage>,
        truncated: bool,
    ) -> pb::QueryMessagesResponse {
        let cut = convert::fit(&mut messages, response_budget(&self.broker));
        pb::QueryMessagesResponse {
            messages: messages.into_iter().map(convert::stored_message).collect(),
            truncated: truncated || cut,
        }
    }

    async fn by_id(&self, req: pb::QueryMessageByIdRequest) -> Outcome<pb::QueryMessagesResponse> {
        let id =
            convert::short_field("message_id", &req.message_id, self.limits().max_field_bytes)?;
        let m = self.broker.queries().by_id(id).await?;
        Ok(self.messages(vec![m], false))
    }

    async fn by_key(
        &self,
        req: pb::QueryMessagesByKeyRequest,
    ) -> Outcome<pb::QueryMessagesResponse> {
        let topic = convert::topic(&req.topic)?;
        let key = convert::short_field("key", &req.key, self.limits().max_field_bytes)?;
        let max = self.max(req.max)?;
        let (begin, end) = match (req.begin_ms, req.end_ms) {
            (0, 0) => (0, i64::MAX),
            (b, e) => convert::time_range(b, e)?,
        };
        let found = self
            .broker
            .queries()
            .by_key(topic, key, begin, end, max)
            .await?;
        let truncated = found.len() >= max;
        Ok(self.messages(found, truncated))
    }

    async fn by_time(
        &self,
        req: pb::QueryMessagesByTimeRequest,
    ) -> Outcome<pb::QueryMessagesResponse> {
        let topic = convert::topic(&req.topic)?;
        let max = self.max(req.max)?;
        let (begin, end) = convert::time_range(req.begin_ms, req.end_ms)?;
        let found = self
            .broker
            .queries()
            .by_time(topic, begin, end, max)
            .await?;
        Ok(self.messages(found.messages, found.truncated))
    }

    async fn dead_letters(
        &self,
        req: pb::ListDeadLettersRequest,
    ) -> Outcome<pb::ListDeadLettersResponse> {
        let group = convert::group(&req.group)?;
        let max = self.max(req.max)?;
        let mut r = self
            .broker
            .dead_letters()
            .list(group, req.offset, max)
            .await?;
        if convert::fit(&mut r.messages, response_budget(&self.broker)) {
            r.next_offset = r
                .messages
                .last()
                .map_or(r.next_offset, |m| m.queue_offset + 1);
        }
        Ok(pb::ListDeadLettersResponse {
            messages: r
                .messages
                .into_iter()
                .map(convert::stored_message)
                .collect(),
            next_offset: r.next_offset,
            min_offset: r.min_offset,
            max_offset: r.max_offset,
        })
    }

    async fn resend(
        &self,
        req: pb::ResendDeadLettersRequest,
    ) -> Outcome<pb::ResendDeadLettersResponse> {
        let group = convert::group(&req.group)?;
        let selection = match (req.all, req.message_ids.is_empty()) {
            (true, true) => DlqSelection::All,
            (false, false) => {
                let limit = self.limits().max_batch;
                if req.message_ids.len() > limit {
                    return Err(invalid(
                        "message_ids",
                        format!("{} ids, at most {limit} allowed", req.message_ids.len()),
                    ));
                }
                let max_bytes = self.limits().max_field_bytes;
                for id in &req.message_ids {
                    convert::short_field("message_ids", id, max_bytes)?;
                }
                DlqSelection::Ids(req.message_ids)
            }
            (true, false) => {
                return Err(invalid(
                    "all",
                    "set either `all` or `message_ids`, not both",
                ))
            }
            (false, true) => {
                return Err(invalid(
                    "message_ids",
                    "empty: list the ids to resend, or set `all`",
                ))
            }
        };
        let resent = self.broker.dead_letters().resend(group, selection).await?;
        Ok(pb::ResendDeadLettersResponse {
            resent: u32::try_from(resent).unwrap_or(u32::MAX),
        })
    }

    async fn send(&self, req: pb::SendMessageRequest) -> Outcome<pb::SendMessageResponse> {
        convert::topic(&req.topic)?;
        if req.delay_level > 0 && req.deliver_at_ms != 0 {
            return Err(invalid(
                "deliver_at_ms",
                "set either `delay_level` or `deliver_at_ms`, not both",
            ));
        }
        if req.deliver_at_ms < 0 {
            return Err(invalid(
                "deliver_at_ms",
                format!("{} is before the Unix epoch", req.deliver_at_ms),
            ));
        }
        let message = Message {
            topic: req.topic,
            body: req.body.into(),
            tag: (!req.tag.is_empty()).then_some(req.tag),
            keys: req.keys,
            message_group: (!req.message_group.is_empty()).then_some(req.message_group),
            properties: req.properties.into_iter().collect(),
            delay_level: (req.delay_level > 0).then_some(req.delay_level),
            deliver_at_ms: (req.deliver_at_ms > 0).then_some(req.deliver_at_ms),
            ..Message::default()
        };
        let queue = req
            .queue_id
            .map_or(QueueSelector::Auto, QueueSelector::Queue);
        let r = self
            .broker
            .producer()
            .send(SendRequest::new(message, queue))
            .await?;
        Ok(pb::SendMessageResponse {
            message_id: r.message_id,
            queue_id: r.queue_id,
            queue_offset: r.queue_offset,
            store_timestamp_ms: r.store_timestamp_ms,
            deliver_at_ms: r.deliver_at_ms.unwrap_or(0),
        })
    }

    async fn pull(&self, req: pb::PullMessagesRequest) -> Outcome<pb::PullMessagesResponse> {
        let group = convert::group(&req.group)?;
        let topic = convert::topic(&req.topic)?;
        let max = self.max(req.max)?;
        let max_wait = self.broker.config().consumer.max_wait_ms;
        if u64::from(req.wait_ms) > max_wait {
            return Err(invalid(
                "wait_ms",
                format!(
                    "{} is more than the broker's maximum of {max_wait}",
                    req.wait_ms
                ),
            ));
        }
        let offset = match req.offset {
            Some(o) => o,
            None => {
                let range = self
                    .broker
                    .topics()
                    .queue_offsets(topic, req.queue_id)
                    .await?;
                match self
                    .broker
                    .consumer()
                    .committed_offset(group, topic, req.queue_id)
                {
                    Ok(committed) => committed.unwrap_or(range.min),
                    // A group not created yet has no offset; the pull creates it (or refuses).
                    Err(e) if e.kind() == ErrorKind::NotFound => range.min,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let mut r = self
            .broker
            .consumer()
            .pull_group(GroupPullRequest {
                group: group.to_owned(),
                topic: topic.to_owned(),
                queue_id: req.queue_id,
                offset,
                max,
                filter: (!req.filter.is_empty()).then(|| FilterExpression::tag(req.filter)),
                wait: Duration::from_millis(u64::from(req.wait_ms)),
            })
            .await?;
        if convert::fit(&mut r.messages, response_budget(&self.broker)) {
            r.next_offset = r
                .messages
                .last()
                .map_or(r.next_offset, |m| m.queue_offset + 1);
        }
        Ok(pb::PullMessagesResponse {
            status: convert::pull_status(r.status) as i32,
            messages: r
                .messages
                .into_iter()
                .map(convert::stored_message)
                .collect(),
            next_offset: r.next_offset,
            min_offset: r.min_offset,
            max_offset: r.max_offset,
        })
    }

    fn commit(&self, req: &pb::CommitOffsetRequest) -> Outcome<pb::CommitOffsetResponse> {
        let group = convert::group(&req.group)?;
        let topic = convert::topic(&req.topic)?;
        self.broker
            .consumer()
            .commit_offset(group, topic, req.queue_id, req.offset)?;
        Ok(pb::CommitOffsetResponse {})
    }
}

fn reply<T>(outcome: Outcome<T>) -> Reply<T> {
    outcome.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl BrokerAdmin for AdminService {
    async fn get_broker_info(
        &self,
        req: Request<pb::GetBrokerInfoRequest>,
    ) -> Reply<pb::GetBrokerInfoResponse> {
        let svc = self.admit(&req, "GetBrokerInfo", Action::Get)?;
        Ok(Response::new(node::broker_info(&svc.broker, &svc.node)))
    }

    async fn create_topic(&self, req: Request<pb::CreateTopicRequest>) -> Reply<pb::TopicStatus> {
        let svc = self.admit(&req, "CreateTopic", Action::Create)?;
        reply(svc.create(req.into_inner()))
    }

    async fn update_topic(&self, req: Request<pb::UpdateTopicRequest>) -> Reply<pb::TopicStatus> {
        let svc = self.admit(&req, "UpdateTopic", Action::Update)?;
        reply(svc.update(req.into_inner()).await)
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Reply<pb::DeleteTopicResponse> {
        let svc = self.admit(&req, "DeleteTopic", Action::Delete)?;
        let req = req.into_inner();
        reply(
            convert::topic(&req.name)
                .and_then(|name| Ok(svc.broker.topics().delete(name)?))
                .map(|()| pb::DeleteTopicResponse {}),
        )
    }

    async fn list_topics(
        &self,
        req: Request<pb::ListTopicsRequest>,
    ) -> Reply<pb::ListTopicsResponse> {
        let svc = self.admit(&req, "ListTopics", Action::List)?;
        let topics = svc.broker.topics().list_user();
        Ok(Response::new(pb::ListTopicsResponse {
            topics: topics.iter().map(convert::topic_spec).collect(),
        }))
    }

    async fn get_topic_status(
        &self,
        req: Request<pb::GetTopicStatusRequest>,
    ) -> Reply<pb::TopicStatus> {
        let svc = self.admit(&req, "GetTopicStatus", Action::Get)?;
        reply(svc.status(req.into_inner()).await)
    }

    async fn list_groups(
        &self,
        req: Request<pb::ListGroupsRequest>,
    ) -> Reply<pb::ListGroupsResponse> {
        let svc = self.admit(&req, "ListGroups", Action::List)?;
        let groups = svc.broker.groups().list();
        Ok(Response::new(pb::ListGroupsResponse {
            groups: groups.into_iter().map(|g| svc.group_summary(g)).collect(),
        }))
    }

    async fn get_group_status(
        &self,
        req: Request<pb::GetGroupStatusRequest>,
    ) -> Reply<pb::GroupStatus> {
        let svc = self.admit(&req, "GetGroupStatus", Action::Get)?;
        reply(svc.group_status(req.into_inner()).await)
    }

    async fn reset_offset(
        &self,
        req: Request<pb::ResetOffsetRequest>,
    ) -> Reply<pb::ResetOffsetResponse> {
        let svc = self.admit(&req, "ResetOffset", Action::Update)?;
        reply(svc.reset(req.into_inner()).await)
    }

    async fn query_message_by_id(
        &self,
        req: Request<pb::QueryMessageByIdRequest>,
    ) -> Reply<pb::QueryMessagesResponse> {
        let svc = self.admit(&req, "QueryMessageById", Action::Get)?;
        reply(svc.by_id(req.into_inner()).await)
    }

    async fn query_messages_by_key(
        &self,
        req: Request<pb::QueryMessagesByKeyRequest>,
    ) -> Reply<pb::QueryMessagesResponse> {
        let svc = self.admit(&req, "QueryMessagesByKey", Action::Get)?;
        reply(svc.by_key(req.into_inner()).await)
    }

    async fn query_messages_by_time(
        &self,
        req: Request<pb::QueryMessagesByTimeRequest>,
    ) -> Reply<pb::QueryMessagesResponse> {
        let svc = self.admit(&req, "QueryMessagesByTime", Action::Get)?;
        reply(svc.by_time(req.into_inner()).await)
    }

    async fn list_dead_letters(
        &self,
        req: Request<pb::ListDeadLettersRequest>,
    ) -> Reply<pb::ListDeadLettersResponse> {
        let svc = self.admit(&req, "ListDeadLetters", Action::List)?;
        reply(svc.dead_letters(req.into_inner()).await)
    }

    async fn resend_dead_letters(
        &self,
        req: Request<pb::ResendDeadLettersRequest>,
    ) -> Reply<pb::ResendDeadLettersResponse> {
        let svc = self.admit(&req, "ResendDeadLetters", Action::Update)?;
        reply(svc.resend(req.into_inner()).await)
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> Reply<pb::SendMessageResponse> {
        let svc = self.admit(&req, "SendMessage", Action::Update)?;
        reply(svc.send(req.into_inner()).await)
    }

    async fn pull_messages(
        &self,
        req: Request<pb::PullMessagesRequest>,
    ) -> Reply<pb::PullMessagesResponse> {
        let svc = self.admit(&req, "PullMessages", Action::Get)?;
        reply(svc.pull(req.into_inner()).await)
    }

    async fn commit_offset(
        &self,
        req: Request<pb::CommitOffsetRequest>,
    ) -> Reply<pb::CommitOffsetResponse> {
        let svc = self.admit(&req, "CommitOffset", Action::Update)?;
        reply(svc.commit(&req.into_inner()))
    }

    async fn switch_master(
        &self,
        req: Request<pb::SwitchMasterRequest>,
    ) -> Reply<pb::SwitchMasterResponse> {
        let svc = self.admit(&req, "SwitchMaster", Action::Update)?;
        reply(node::switch_master(&svc.broker, req.into_inner()).await)
    }
}
