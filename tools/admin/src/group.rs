//! `admin group …` and `admin offset reset`: consumer groups, their lag per topic and queue with
//! totals and connected clients, and moving a group's offsets to a time.
//!
//! Invariants: every command merges the target brokers' answers with a `broker` column; a group
//! missing on some brokers is fine as long as one has it. Totals are sums over every broker
//! that answered. Uses [`super::target`] for calls and [`super::output`] for rendering.
//!
//! Owns the `group` and `offset` commands only; must not call a broker except through
//! `target.rs` nor render except through `output.rs`.

use std::collections::BTreeMap;

use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::{AdminError, Op};
use super::output::{self, table, text_cell, Doc};
use super::target::{self, Ctx};
use super::when::{format_ms, now_ms, When};
use super::{merged, Outcome};

/// Consumer group commands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List the consumer groups of every target broker.
    List,
    /// A group's lag per topic and queue, its totals and its connected clients.
    Status {
        /// Consumer group.
        group: String,
        /// Only this topic (default: every topic the group subscribes to or has consumed).
        #[arg(long)]
        topic: Option<String>,
    },
}

/// Offset commands.
#[derive(clap::Subcommand, Debug)]
pub enum OffsetCommand {
    /// Move a group's committed offsets on every queue of a topic to the first message stored
    /// at or after WHEN (on every target broker).
    Reset {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// WHEN: ms since the epoch, an RFC 3339 time (2026-12-03T10:00:00Z), a duration ago
        /// (10m, 2h), or `now`.
        #[arg(long, value_name = "WHEN")]
        time: When,
    },
}

#[derive(Debug, Serialize)]
struct GroupRow {
    broker: String,
    name: String,
    max_delivery_attempts: u32,
    subscriptions: BTreeMap<String, String>,
    client_count: u32,
}

impl GroupRow {
    fn new(broker: &str, g: pb::GroupSummary) -> Self {
        Self {
            broker: broker.to_owned(),
            name: g.name,
            max_delivery_attempts: g.max_delivery_attempts,
            subscriptions: g.subscriptions.into_iter().collect(),
            client_count: g.client_count,
        }
    }
}

fn subscriptions_cell(s: &BTreeMap<String, String>) -> String {
    if s.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = s
        .iter()
        .map(|(t, f)| format!("{}={}", text_cell(t), text_cell(f)))
        .collect();
    parts.join(" ")
}

#[derive(Debug, Serialize)]
struct GroupList {
    groups: Vec<GroupRow>,
}

/// Runs a group command.
pub async fn run(cmd: GroupCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    match cmd {
        GroupCommand::List => list(ctx).await,
        GroupCommand::Status { group, topic } => status(ctx, group, topic).await,
    }
}

async fn list(ctx: &Ctx) -> Result<Outcome, AdminError> {
    let targets = ctx.targets().await?;
    let answers = targets
        .each(&Op::new("group list"), |mut c| async move {
            Ok(c.list_groups(pb::ListGroupsRequest {}).await?.into_inner())
        })
        .await;
    let n = answers.len();
    Ok(merged(target::merge(answers, None), n, |found| {
        let groups: Vec<GroupRow> = found
            .into_iter()
            .flat_map(|(b, reply)| reply.groups.into_iter().map(move |g| GroupRow::new(&b, g)))
            .collect();
        let mut t = table(
            &[
                "broker",
                "group",
                "subscriptions",
                "clients",
                "max_attempts",
            ],
            &["clients", "max_attempts"],
        );
        for g in &groups {
            t.add_row(vec![
                g.broker.clone(),
                text_cell(&g.name),
                subscriptions_cell(&g.subscriptions),
                g.client_count.to_string(),
                g.max_delivery_attempts.to_string(),
            ]);
        }
        let human = output::render(&t, "no consumer groups");
        Doc::new(&GroupList { groups }, human)
    }))
}

#[derive(Debug, Serialize)]
struct LagRow {
    broker: String,
    topic: String,
    queue_id: u32,
    max_offset: u64,
    committed_offset: Option<u64>,
    pull_lag: u64,
    pop_unacked: u64,
    pop_inflight: u64,
}

#[derive(Debug, Serialize)]
struct GroupOnBroker {
    broker: String,
    max_delivery_attempts: u32,
    subscriptions: BTreeMap<String, String>,
    client_count: u32,
    clients: Vec<String>,
    total_pull_lag: u64,
    total_pop_unacked: u64,
}

#[derive(Debug, Serialize)]
struct GroupStatusReport {
    group: String,
    total_pull_lag: u64,
    total_pop_unacked: u64,
    brokers: Vec<GroupOnBroker>,
    lags: Vec<LagRow>,
}

fn status_report(group: String, found: Vec<(String, pb::GroupStatus)>) -> GroupStatusReport {
    let mut brokers = Vec::new();
    let mut lags = Vec::new();
    for (broker, s) in found {
        let summary = s.group.unwrap_or_default();
        lags.extend(s.lags.into_iter().map(|l| LagRow {
            broker: broker.clone(),
            topic: l.topic,
            queue_id: l.queue_id,
            max_offset: l.max_offset,
            committed_offset: l.committed_offset,
            pull_lag: l.pull_lag,
            pop_unacked: l.pop_unacked,
            pop_inflight: l.pop_inflight,
        }));
        brokers.push(GroupOnBroker {
            broker,
            max_delivery_attempts: summary.max_delivery_attempts,
            subscriptions: summary.subscriptions.into_iter().collect(),
            client_count: summary.client_count,
            clients: s.clients,
            total_pull_lag: s.total_pull_lag,
            total_pop_unacked: s.total_pop_unacked,
        });
    }
    GroupStatusReport {
        group,
        total_pull_lag: brokers.iter().map(|b| b.total_pull_lag).sum(),
        total_pop_unacked: brokers.iter().map(|b| b.total_pop_unacked).sum(),
        brokers,
        lags,
    }
}

fn status_human(r: &GroupStatusReport) -> String {
    let mut t = table(
        &[
            "broker",
            "topic",
            "queue",
            "max_offset",
            "committed",
            "pull_lag",
            "pop_unacked",
            "pop_inflight",
        ],
        &[
            "queue",
            "max_offset",
            "committed",
            "pull_lag",
            "pop_unacked",
            "pop_inflight",
        ],
    );
    for l in &r.lags {
        t.add_row(vec![
            l.broker.clone(),
            text_cell(&l.topic),
            l.queue_id.to_string(),
            l.max_offset.to_string(),
            l.committed_offset
                .map_or_else(|| "-".to_owned(), |o| o.to_string()),
            l.pull_lag.to_string(),
            l.pop_unacked.to_string(),
            l.pop_inflight.to_string(),
        ]);
    }
    let mut human = format!("consumer group {}\n\n", text_cell(&r.group));
    human.push_str(&output::render(&t, "no queues consumed or subscribed"));
    human.push_str(&format!(
        "\ntotal pull lag {}, pop unacked {}\n",
        r.total_pull_lag, r.total_pop_unacked
    ));
    for b in &r.brokers {
        let clients = if b.clients.is_empty() {
            "none".to_owned()
        } else {
            b.clients
                .iter()
                .map(|c| text_cell(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        human.push_str(&format!("clients on broker {}: {clients}\n", b.broker));
    }
    human
}

async fn status(ctx: &Ctx, group: String, topic: Option<String>) -> Result<Outcome, AdminError> {
    let targets = ctx.targets().await?;
    let subject = format!("consumer group `{group}`");
    let op = match &topic {
        // NOT_FOUND may be about the group or the topic: the server's message says which.
        Some(t) => Op::new(format!("group status `{group}` (topic `{t}`)")),
        None => Op::about(format!("group status `{group}`"), subject.clone()),
    };
    let request = pb::GetGroupStatusRequest {
        group: group.clone(),
        topic: topic.clone().unwrap_or_default(),
    };
    let answers = targets
        .each(&op, move |mut c| {
            let request = request.clone();
            async move { Ok(c.get_group_status(request).await?.into_inner()) }
        })
        .await;
    let n = answers.len();
    let subject = topic.is_none().then_some(subject);
    Ok(merged(
        target::merge(answers, subject.as_deref()),
        n,
        |found| {
            let report = status_report(group, found);
            let human = status_human(&report);
            Doc::new(&report, human)
        },
    ))
}

#[derive(Debug, Serialize)]
struct OffsetRow {
    broker: String,
    queue_id: u32,
    offset: u64,
}

#[derive(Debug, Serialize)]
struct ResetReport {
    group: String,
    topic: String,
    timestamp_ms: i64,
    time: Option<String>,
    offsets: Vec<OffsetRow>,
}

/// Runs an offset command.
pub async fn run_offset(cmd: OffsetCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    let OffsetCommand::Reset { group, topic, time } = cmd;
    let timestamp_ms = time.before(now_ms());
    let targets = ctx.targets().await?;
    let op = Op::new(format!(
        "offset reset of group `{group}` on topic `{topic}`"
    ));
    let request = pb::ResetOffsetRequest {
        group: group.clone(),
        topic: topic.clone(),
        timestamp_ms,
    };
    let answers = targets
        .each(&op, move |mut c| {
            let request = request.clone();
            async move { Ok(c.reset_offset(request).await?.into_inner()) }
        })
        .await;
    let n = answers.len();
    Ok(merged(target::merge(answers, None), n, |found| {
        let offsets: Vec<OffsetRow> = found
            .into_iter()
            .flat_map(|(b, reply)| {
                reply.offsets.into_iter().map(move |o| OffsetRow {
                    broker: b.clone(),
                    queue_id: o.queue_id,
                    offset: o.offset,
                })
            })
            .collect();
        let report = ResetReport {
            time: format_ms(timestamp_ms),
            group,
            topic,
            timestamp_ms,
            offsets,
        };
        let mut t = table(&["broker", "queue", "offset"], &["queue", "offset"]);
        for o in &report.offsets {
            t.add_row(vec![
                o.broker.clone(),
                o.queue_id.to_string(),
                o.offset.to_string(),
            ]);
        }
        let human = format!(
            "offsets of group {} on topic {} reset to {}\n\n{}",
            text_cell(&report.group),
            text_cell(&report.topic),
            report
                .time
                .clone()
                .unwrap_or_else(|| timestamp_ms.to_string()),
            output::render(&t, "no queues")
        );
        Doc::new(&report, human)
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_sums_over_brokers_and_lists_clients() {
        let s = |lag: u64| pb::GroupStatus {
            group: Some(pb::GroupSummary {
                name: "g".into(),
                max_delivery_attempts: 16,
                subscriptions: [("orders".to_owned(), "*".to_owned())].into(),
                client_count: 1,
            }),
            lags: vec![pb::QueueLag {
                topic: "orders".into(),
                queue_id: 0,
                max_offset: 10,
                committed_offset: Some(10 - lag),
                pull_lag: lag,
                ..Default::default()
            }],
            clients: vec!["c1".into()],
            total_pull_lag: lag,
            total_pop_unacked: 0,
        };
        let r = status_report("g".into(), vec![("a:1".into(), s(3)), ("b:1".into(), s(4))]);
        assert_eq!(r.total_pull_lag, 7);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["lags"][1]["broker"], "b:1");
        assert_eq!(v["lags"][0]["committed_offset"], 7);
        assert_eq!(v["brokers"][0]["subscriptions"]["orders"], "*");
        let human = status_human(&r);
        for needle in [
            "pull_lag",
            "pop_unacked",
            "total pull lag 7",
            "clients on broker a:1: c1",
        ] {
            assert!(human.contains(needle), "{needle}: {human}");
        }
    }
}
