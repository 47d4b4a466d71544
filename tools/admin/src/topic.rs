//! `admin topic …`: create, update and delete a topic on every target broker, list topics,
//! show a topic's queues (min / max offset, last store time), and ask the NameServers for its
//! route.
//!
//! Invariants: writes go to every target and report per broker (any failure fails the command);
//! `list` and `status` merge the brokers' answers with a `broker` column, and `status` fails
//! with not found only when no broker has the topic. Uses [`super::target`] for every call and
//! [`super::output`] for every rendering.
//!
//! Owns the `topic` commands only; must not call a broker except through `target.rs` nor
//! render except through `output.rs`.

use std::collections::BTreeMap;

use rocketgate_nameserver::{MessageType, Permission, Role, TopicRoute};
use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::{AdminError, Op};
use super::output::{self, endpoints_cell, table, text_cell, time_cell, Doc};
use super::spec::{perm_name, type_name, Perm, TopicType};
use super::target::{self, Ctx};
use super::when::format_ms;
use super::{merged, Outcome};

/// Topic commands.
#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic on every target broker.
    Create {
        /// Topic name: 1..=127 characters of [A-Za-z0-9_%|-].
        name: String,
        /// Number of queues.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
        queues: u32,
        /// Message type: NORMAL, FIFO, DELAY, TRANSACTION or MIXED (any case).
        #[arg(long = "type", value_name = "TYPE", default_value = "NORMAL")]
        kind: TopicType,
        /// Permission: rw, r, w or none.
        #[arg(long, default_value = "rw")]
        perm: Perm,
    },
    /// Change an existing topic on every target broker (queues can only grow).
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Update {
        /// Topic name.
        name: String,
        /// New number of queues (at least the current one).
        #[arg(long, group = "change", value_parser = clap::value_parser!(u32).range(1..))]
        queues: Option<u32>,
        /// New message type: NORMAL, FIFO, DELAY, TRANSACTION or MIXED (any case).
        #[arg(long = "type", value_name = "TYPE", group = "change")]
        kind: Option<TopicType>,
        /// New permission: rw, r, w or none.
        #[arg(long, group = "change")]
        perm: Option<Perm>,
    },
    /// Delete a topic (and its messages' queues) on every target broker.
    Delete {
        /// Topic name.
        name: String,
    },
    /// List the user topics of every target broker.
    List,
    /// A topic's configuration and, per queue, min and max offset and last store time.
    Status {
        /// Topic name.
        name: String,
    },
    /// A topic's route from the NameServers: every broker group's queues, permission and
    /// endpoints.
    Route {
        /// Topic name.
        name: String,
    },
}

/// One queue of a topic.
#[derive(Debug, Serialize)]
struct QueueView {
    queue_id: u32,
    min_offset: u64,
    max_offset: u64,
    /// Messages stored: max - min.
    messages: u64,
    last_store_timestamp_ms: i64,
    last_store_time: Option<String>,
}

/// A topic on one broker.
#[derive(Debug, Serialize)]
struct TopicView {
    broker: String,
    name: String,
    queue_count: u32,
    message_type: String,
    permission: String,
    queues: Vec<QueueView>,
}

impl TopicView {
    fn new(broker: &str, status: pb::TopicStatus) -> Self {
        let spec = status.topic.unwrap_or_default();
        Self {
            broker: broker.to_owned(),
            name: spec.name,
            queue_count: spec.queue_count,
            message_type: type_name(spec.message_type),
            permission: perm_name(spec.permission),
            queues: status
                .queues
                .into_iter()
                .map(|q| QueueView {
                    queue_id: q.queue_id,
                    min_offset: q.min_offset,
                    max_offset: q.max_offset,
                    messages: q.max_offset.saturating_sub(q.min_offset),
                    last_store_timestamp_ms: q.last_store_timestamp_ms,
                    last_store_time: format_ms(q.last_store_timestamp_ms),
                })
                .collect(),
        }
    }
}

/// One broker's result of a write.
#[derive(Debug, Serialize)]
struct WriteResult {
    broker: String,
    ok: bool,
    error: Option<String>,
    topic: Option<TopicView>,
}

#[derive(Debug, Serialize)]
struct WriteReport {
    results: Vec<WriteResult>,
}

/// Runs a topic command.
pub async fn run(cmd: TopicCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    match cmd {
        TopicCommand::Create {
            name,
            queues,
            kind,
            perm,
        } => {
            let request = pb::CreateTopicRequest {
                topic: Some(pb::TopicSpec {
                    name: name.clone(),
                    queue_count: queues,
                    message_type: kind.to_pb(),
                    permission: perm.to_pb(),
                }),
            };
            let op = Op::new(format!("topic create `{name}`"));
            write(ctx, &op, "created", move |mut c| {
                let request = request.clone();
                async move { Ok(Some(c.create_topic(request).await?.into_inner())) }
            })
            .await
        }
        TopicCommand::Update {
            name,
            queues,
            kind,
            perm,
        } => {
            let request = pb::UpdateTopicRequest {
                name: name.clone(),
                queue_count: queues,
                message_type: kind.map(TopicType::to_pb),
                permission: perm.map(Perm::to_pb),
            };
            let op = Op::about(format!("topic update `{name}`"), format!("topic `{name}`"));
            write(ctx, &op, "updated", move |mut c| {
                let request = request.clone();
                async move { Ok(Some(c.update_topic(request).await?.into_inner())) }
            })
            .await
        }
        TopicCommand::Delete { name } => {
            let request = pb::DeleteTopicRequest { name: name.clone() };
            let op = Op::about(format!("topic delete `{name}`"), format!("topic `{name}`"));
            write(ctx, &op, "deleted", move |mut c| {
                let request = request.clone();
                async move {
                    c.delete_topic(request).await?;
                    Ok(None)
                }
            })
            .await
        }
        TopicCommand::List => list(ctx).await,
        TopicCommand::Status { name } => status(ctx, name).await,
        TopicCommand::Route { name } => route(ctx, &name).await,
    }
}

/// A write on every target; `done` is the word for success in the table.
async fn write<F, Fut>(ctx: &Ctx, op: &Op, done: &str, f: F) -> Result<Outcome, AdminError>
where
    F: Fn(target::Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Option<pb::TopicStatus>, tonic::Status>>
        + Send
        + 'static,
{
    let targets = ctx.targets().await?;
    let (answers, errors) = target::all(targets.each(op, f).await);
    let n = answers.len();
    let any_ok = answers.iter().any(|a| a.result.is_ok());
    let results: Vec<WriteResult> = answers
        .into_iter()
        .map(|a| match a.result {
            Ok(status) => WriteResult {
                topic: status.map(|s| TopicView::new(&a.broker, s)),
                broker: a.broker,
                ok: true,
                error: None,
            },
            Err(e) => WriteResult {
                broker: a.broker,
                ok: false,
                error: Some(e.to_string()),
                topic: None,
            },
        })
        .collect();
    let with_topic = results.iter().any(|r| r.topic.is_some());
    let headers: &[&str] = if with_topic {
        &["broker", "result", "topic", "queues", "type", "perm"]
    } else {
        &["broker", "result"]
    };
    let mut t = table(headers, &["queues"]);
    for r in &results {
        let (topic, queues, kind, perm) = match &r.topic {
            Some(v) => (
                text_cell(&v.name),
                v.queue_count.to_string(),
                v.message_type.clone(),
                v.permission.clone(),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let result = match &r.error {
            None => done.to_owned(),
            Some(e) => format!("error: {e}"),
        };
        let mut row = vec![r.broker.clone(), result, topic, queues, kind, perm];
        row.truncate(headers.len());
        t.add_row(row);
    }
    let doc = any_ok.then(|| Doc::new(&WriteReport { results }, output::render(&t, "")));
    Ok(Outcome::partial(doc, errors, n))
}

#[derive(Debug, Serialize)]
struct TopicRow {
    broker: String,
    name: String,
    queue_count: u32,
    message_type: String,
    permission: String,
}

#[derive(Debug, Serialize)]
struct TopicList {
    topics: Vec<TopicRow>,
}

async fn list(ctx: &Ctx) -> Result<Outcome, AdminError> {
    let targets = ctx.targets().await?;
    let op = Op::new("topic list");
    let answers = targets
        .each(&op, |mut c| async move {
            Ok(c.list_topics(pb::ListTopicsRequest {}).await?.into_inner())
        })
        .await;
    let n = answers.len();
    Ok(merged(target::merge(answers, None), n, |found| {
        let topics: Vec<TopicRow> = found
            .into_iter()
            .flat_map(|(broker, reply)| {
                reply.topics.into_iter().map(move |t| TopicRow {
                    broker: broker.clone(),
                    name: t.name,
                    queue_count: t.queue_count,
                    message_type: type_name(t.message_type),
                    permission: perm_name(t.permission),
                })
            })
            .collect();
        let mut t = table(&["broker", "topic", "queues", "type", "perm"], &["queues"]);
        for r in &topics {
            t.add_row(vec![
                r.broker.clone(),
                text_cell(&r.name),
                r.queue_count.to_string(),
                r.message_type.clone(),
                r.permission.clone(),
            ]);
        }
        let human = output::render(&t, "no topics");
        Doc::new(&TopicList { topics }, human)
    }))
}

/// One queue of a topic on one broker.
#[derive(Debug, Serialize)]
struct QueueRow {
    broker: String,
    #[serde(flatten)]
    queue: QueueView,
}

#[derive(Debug, Serialize)]
struct TopicStatusReport {
    topic: String,
    /// The topic's configuration on each broker that has it.
    brokers: Vec<TopicRow>,
    /// Every queue of every broker, in (broker, queue id) order.
    queues: Vec<QueueRow>,
}

fn status_report(name: String, found: Vec<(String, pb::TopicStatus)>) -> TopicStatusReport {
    let mut brokers = Vec::new();
    let mut queues = Vec::new();
    for (broker, status) in found {
        let v = TopicView::new(&broker, status);
        queues.extend(v.queues.into_iter().map(|queue| QueueRow {
            broker: broker.clone(),
            queue,
        }));
        brokers.push(TopicRow {
            broker,
            name: v.name,
            queue_count: v.queue_count,
            message_type: v.message_type,
            permission: v.permission,
        });
    }
    TopicStatusReport {
        topic: name,
        brokers,
        queues,
    }
}

fn status_human(r: &TopicStatusReport) -> String {
    let mut human = String::new();
    for b in &r.brokers {
        human.push_str(&format!(
            "topic {} on broker {}: {} queues, type {}, perm {}\n",
            text_cell(&b.name),
            b.broker,
            b.queue_count,
            b.message_type,
            b.permission
        ));
    }
    human.push('\n');
    let mut t = table(
        &[
            "broker",
            "queue",
            "min_offset",
            "max_offset",
            "messages",
            "last_store_time",
        ],
        &["queue", "min_offset", "max_offset", "messages"],
    );
    for q in &r.queues {
        t.add_row(vec![
            q.broker.clone(),
            q.queue.queue_id.to_string(),
            q.queue.min_offset.to_string(),
            q.queue.max_offset.to_string(),
            q.queue.messages.to_string(),
            time_cell(q.queue.last_store_timestamp_ms),
        ]);
    }
    human.push_str(&output::render(&t, "no queues"));
    human
}

async fn status(ctx: &Ctx, name: String) -> Result<Outcome, AdminError> {
    let targets = ctx.targets().await?;
    let subject = format!("topic `{name}`");
    let op = Op::about(format!("topic status `{name}`"), subject.clone());
    let request = pb::GetTopicStatusRequest { name: name.clone() };
    let answers = targets
        .each(&op, move |mut c| {
            let request = request.clone();
            async move { Ok(c.get_topic_status(request).await?.into_inner()) }
        })
        .await;
    let n = answers.len();
    Ok(merged(target::merge(answers, Some(&subject)), n, |found| {
        let report = status_report(name, found);
        let human = status_human(&report);
        Doc::new(&report, human)
    }))
}

#[derive(Debug, Serialize)]
struct RouteQueue {
    broker_name: String,
    read_queues: u32,
    write_queues: u32,
    permission: String,
    message_type: String,
}

#[derive(Debug, Serialize)]
struct RouteAddress {
    broker_id: u64,
    role: String,
    endpoints: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct RouteBroker {
    cluster: String,
    broker_name: String,
    addresses: Vec<RouteAddress>,
}

#[derive(Debug, Serialize)]
struct RouteReport {
    topic: String,
    queues: Vec<RouteQueue>,
    brokers: Vec<RouteBroker>,
}

/// The token of a NameServer permission.
pub fn domain_perm(p: Permission) -> &'static str {
    match p {
        Permission::ReadWrite => "rw",
        Permission::Read => "r",
        Permission::Write => "w",
        Permission::None => "none",
    }
}

/// The token of a NameServer message type.
pub fn domain_type(t: MessageType) -> &'static str {
    match t {
        MessageType::Normal => "NORMAL",
        MessageType::Fifo => "FIFO",
        MessageType::Delay => "DELAY",
        MessageType::Transaction => "TRANSACTION",
        MessageType::Mixed => "MIXED",
    }
}

/// The token of a NameServer role.
pub fn domain_role(r: Role) -> &'static str {
    match r {
        Role::Master => "master",
        Role::Slave => "slave",
    }
}

fn route_report(route: TopicRoute) -> RouteReport {
    RouteReport {
        topic: route.topic.to_string(),
        queues: route
            .queues
            .iter()
            .map(|q| RouteQueue {
                broker_name: q.broker_name.to_string(),
                read_queues: q.read_queues,
                write_queues: q.write_queues,
                permission: domain_perm(q.permission).into(),
                message_type: domain_type(q.message_type).into(),
            })
            .collect(),
        brokers: route
            .brokers
            .iter()
            .map(|b| RouteBroker {
                cluster: b.cluster.to_string(),
                broker_name: b.broker_name.to_string(),
                addresses: b
                    .addresses
                    .iter()
                    .map(|(id, endpoints)| RouteAddress {
                        broker_id: id.0,
                        role: domain_role(id.role()).into(),
                        endpoints: endpoints
                            .iter()
                            .map(|e| (e.protocol().to_string(), e.address().to_owned()))
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn route_human(r: &RouteReport) -> String {
    let mut t = table(
        &[
            "broker_name",
            "cluster",
            "read_queues",
            "write_queues",
            "perm",
            "type",
            "broker_id",
            "role",
            "endpoints",
        ],
        &["read_queues", "write_queues", "broker_id"],
    );
    for q in &r.queues {
        let broker = r.brokers.iter().find(|b| b.broker_name == q.broker_name);
        let cluster = broker.map_or_else(|| "-".to_owned(), |b| b.cluster.clone());
        let addresses = broker.map(|b| b.addresses.as_slice()).unwrap_or_default();
        let row = |id: String, role: String, endpoints: String| {
            vec![
                q.broker_name.clone(),
                cluster.clone(),
                q.read_queues.to_string(),
                q.write_queues.to_string(),
                q.permission.clone(),
                q.message_type.clone(),
                id,
                role,
                endpoints,
            ]
        };
        if addresses.is_empty() {
            t.add_row(row("-".into(), "-".into(), "-".into()));
        }
        for a in addresses {
            t.add_row(row(
                a.broker_id.to_string(),
                a.role.clone(),
                endpoints_cell(&a.endpoints),
            ));
        }
    }
    format!(
        "route of topic {}\n\n{}",
        text_cell(&r.topic),
        output::render(&t, "no broker serves it")
    )
}

async fn route(ctx: &Ctx, name: &str) -> Result<Outcome, AdminError> {
    let client = ctx.nameserver_client()?;
    let route = client
        .route(name)
        .await
        .map_err(|e| ctx.nameserver_error(e))?;
    let report = route_report(route);
    let human = route_human(&report);
    Ok(Outcome::done(Doc::new(&report, human)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rocketgate_nameserver::{BrokerData, BrokerId, Endpoint, QueueData, TopicName};

    #[test]
    fn route_renders_every_member() {
        let route = TopicRoute {
            topic: TopicName::new("orders").unwrap(),
            queues: vec![QueueData {
                broker_name: "broker-a".parse().unwrap(),
                read_queues: 8,
                write_queues: 8,
                permission: Permission::ReadWrite,
                message_type: MessageType::Fifo,
            }],
            brokers: vec![BrokerData {
                cluster: "DefaultCluster".parse().unwrap(),
                broker_name: "broker-a".parse().unwrap(),
                addresses: [
                    (
                        BrokerId(0),
                        vec![Endpoint::new("grpc", "127.0.0.1:8081").unwrap()],
                    ),
                    (
                        BrokerId(1),
                        vec![Endpoint::new("grpc", "127.0.0.1:8082").unwrap()],
                    ),
                ]
                .into_iter()
                .collect(),
            }],
        };
        let report = route_report(route);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["queues"][0]["permission"], "rw");
        assert_eq!(v["queues"][0]["message_type"], "FIFO");
        assert_eq!(v["brokers"][0]["addresses"][1]["role"], "slave");
        assert_eq!(
            v["brokers"][0]["addresses"][0]["endpoints"]["grpc"],
            "127.0.0.1:8081"
        );
        let human = route_human(&report);
        assert!(human.contains("broker_name"), "{human}");
        assert!(human.contains("grpc=127.0.0.1:8082"), "{human}");
        assert_eq!(human.lines().count(), 6, "{human}");
    }

    #[test]
    fn status_lists_every_queue_with_its_broker() {
        let status = |queues: u32| pb::TopicStatus {
            topic: Some(pb::TopicSpec {
                name: "t".into(),
                queue_count: queues,
                message_type: 2,
                permission: 2,
            }),
            queues: (0..queues)
                .map(|q| pb::QueueStatus {
                    queue_id: q,
                    max_offset: u64::from(q) + 1,
                    last_store_timestamp_ms: 1_796_292_000_000,
                    ..Default::default()
                })
                .collect(),
        };
        let r = status_report(
            "t".into(),
            vec![("a:1".into(), status(2)), ("b:1".into(), status(1))],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["topic"], "t");
        assert_eq!(v["brokers"][1]["broker"], "b:1");
        assert_eq!(v["brokers"][0]["message_type"], "FIFO");
        assert_eq!(v["brokers"][0]["permission"], "r");
        assert_eq!(v["queues"].as_array().unwrap().len(), 3);
        assert_eq!(v["queues"][1]["broker"], "a:1");
        assert_eq!(v["queues"][1]["queue_id"], 1);
        assert_eq!(v["queues"][1]["max_offset"], 2);
        assert_eq!(
            v["queues"][2]["last_store_time"],
            "2026-12-03T10:00:00.000Z"
        );
        let human = status_human(&r);
        assert!(human.contains("last_store_time"), "{human}");
        assert!(
            human.contains("topic t on broker b:1: 1 queues, type FIFO, perm r"),
            "{human}"
        );
    }

    #[test]
    fn topic_view_counts_messages_and_formats_times() {
        let v = TopicView::new(
            "b:1",
            pb::TopicStatus {
                topic: Some(pb::TopicSpec {
                    name: "t".into(),
                    queue_count: 1,
                    message_type: 1,
                    permission: 4,
                }),
                queues: vec![pb::QueueStatus {
                    queue_id: 0,
                    min_offset: 2,
                    max_offset: 5,
                    last_store_timestamp_ms: 0,
                }],
            },
        );
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["queues"][0]["messages"], 3);
        assert_eq!(j["queues"][0]["last_store_time"], serde_json::Value::Null);
        assert_eq!(j["message_type"], "NORMAL");
        assert_eq!(j["permission"], "rw");
    }
}
