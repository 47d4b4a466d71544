//! `admin message …`: query messages by id, key or store time (merged over the target
//! brokers), send one message, and pull from one queue for a group (mqadmin sendMessage /
//! consumeMessage), optionally committing the offset.
//!
//! Invariants: queries merge every target's answer — by key newest first, by time oldest first —
//! and keep at most `--max` (`truncated` says when something was left out); `send` and `pull`
//! talk to exactly one broker (a queue and an offset belong to one broker), so several targets
//! are a usage error. Times are resolved against one reading of the clock per command.
//!
//! Owns the `message` commands only; must not call a broker except through `target.rs` nor
//! render except through `output.rs`.

use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::{AdminError, Op};
use super::output::{self, messages_table, table, text_cell, time_cell, Doc, MessageView};
use super::spec::pull_status_name;
use super::target::{self, Ctx};
use super::when::{format_ms, now_ms, When};
use super::{merged, Outcome};

/// Messages a query returns when `--max` is not given (the protocol's default).
const DEFAULT_MAX: u32 = 32;

/// Message commands.
#[derive(clap::Subcommand, Debug)]
pub enum MessageCommand {
    /// Find a message by its id (on every target broker).
    Id {
        /// Message id.
        id: String,
    },
    /// Find a topic's messages by key, newest first.
    Key {
        /// Topic.
        topic: String,
        /// Message key.
        key: String,
        /// Earliest store time (WHEN); default: any.
        #[arg(long, value_name = "WHEN")]
        begin: Option<When>,
        /// Latest store time (WHEN); default: now when --begin is given, else any.
        #[arg(long, value_name = "WHEN")]
        end: Option<When>,
        /// At most this many messages (default 32).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max: Option<u32>,
    },
    /// List a topic's messages stored in a time range, oldest first.
    Time {
        /// Topic.
        topic: String,
        /// Earliest store time (WHEN).
        #[arg(long, value_name = "WHEN")]
        begin: When,
        /// Latest store time (WHEN); default now.
        #[arg(long, value_name = "WHEN")]
        end: Option<When>,
        /// At most this many messages (default 32).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max: Option<u32>,
    },
    /// Send one message (to the one target broker).
    Send {
        /// Topic.
        topic: String,
        /// Body (UTF-8 text).
        body: String,
        /// Tag.
        #[arg(long)]
        tag: Option<String>,
        /// Key; repeat for several.
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
        /// Message group (FIFO topics).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Queue to send to (default: round robin, or the message group's queue).
        #[arg(long, value_name = "Q")]
        queue: Option<u32>,
        /// Delay level 1..=18 (1s 5s 10s 30s 1m 2m 3m … 2h by default).
        #[arg(long, value_name = "L", conflicts_with = "deliver_at",
              value_parser = clap::value_parser!(u32).range(1..))]
        delay_level: Option<u32>,
        /// Deliver at WHEN (a duration means from now: `--deliver-at 10m`).
        #[arg(long, value_name = "WHEN")]
        deliver_at: Option<When>,
    },
    /// Read messages from one queue for a consumer group (mqadmin consumeMessage).
    Pull {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Queue id.
        #[arg(long, value_name = "Q")]
        queue: u32,
        /// Start offset (default: the group's committed offset, or the queue's minimum).
        #[arg(long, value_name = "O")]
        offset: Option<u64>,
        /// At most this many messages (default 32).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max: Option<u32>,
        /// Commit the next offset for the group afterwards.
        #[arg(long)]
        commit: bool,
    },
}

#[derive(Debug, Serialize)]
struct Messages {
    messages: Vec<MessageView>,
    truncated: bool,
}

/// Runs a message command.
pub async fn run(cmd: MessageCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    let now = now_ms();
    match cmd {
        MessageCommand::Id { id } => {
            let request = pb::QueryMessageByIdRequest {
                message_id: id.clone(),
            };
            let subject = format!("message `{id}`");
            let op = Op::about(format!("message id `{id}`"), subject.clone());
            query(
                ctx,
                &op,
                Some(&subject),
                Order::Any,
                u32::MAX,
                move |mut c| {
                    let request = request.clone();
                    async move { Ok(c.query_message_by_id(request).await?.into_inner()) }
                },
            )
            .await
        }
        MessageCommand::Key {
            topic,
            key,
            begin,
            end,
            max,
        } => {
            let (begin_ms, end_ms) = match (begin, end) {
                (None, None) => (0, 0),
                (b, e) => (
                    b.map_or(0, |b| b.before(now)),
                    e.map_or(now, |e| e.before(now)),
                ),
            };
            let max = max.unwrap_or(DEFAULT_MAX);
            let request = pb::QueryMessagesByKeyRequest {
                topic: topic.clone(),
                key: key.clone(),
                begin_ms,
                end_ms,
                max,
            };
            let op = Op::new(format!("message key `{key}` on topic `{topic}`"));
            query(ctx, &op, None, Order::NewestFirst, max, move |mut c| {
                let request = request.clone();
                async move { Ok(c.query_messages_by_key(request).await?.into_inner()) }
            })
            .await
        }
        MessageCommand::Time {
            topic,
            begin,
            end,
            max,
        } => {
            let max = max.unwrap_or(DEFAULT_MAX);
            let request = pb::QueryMessagesByTimeRequest {
                topic: topic.clone(),
                begin_ms: begin.before(now),
                end_ms: end.map_or(now, |e| e.before(now)),
                max,
            };
            let op = Op::about(
                format!("message time on topic `{topic}`"),
                format!("topic `{topic}`"),
            );
            let subject = format!("topic `{topic}`");
            query(
                ctx,
                &op,
                Some(&subject),
                Order::OldestFirst,
                max,
                move |mut c| {
                    let request = request.clone();
                    async move { Ok(c.query_messages_by_time(request).await?.into_inner()) }
                },
            )
            .await
        }
        MessageCommand::Send {
            topic,
            body,
            tag,
            keys,
            group,
            queue,
            delay_level,
            deliver_at,
        } => {
            let request = pb::SendMessageRequest {
                topic: topic.clone(),
                body: body.into_bytes(),
                tag: tag.unwrap_or_default(),
                keys,
                message_group: group.unwrap_or_default(),
                properties: Default::default(),
                queue_id: queue,
                delay_level: delay_level.unwrap_or(0),
                deliver_at_ms: deliver_at.map_or(0, |w| w.after(now)),
            };
            send(ctx, topic, request).await
        }
        MessageCommand::Pull {
            group,
            topic,
            queue,
            offset,
            max,
            commit,
        } => {
            let request = pb::PullMessagesRequest {
                group,
                topic,
                queue_id: queue,
                offset,
                max: max.unwrap_or(0),
                filter: String::new(),
                wait_ms: 0,
            };
            pull(ctx, request, commit).await
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Order {
    Any,
    NewestFirst,
    OldestFirst,
}

async fn query<F, Fut>(
    ctx: &Ctx,
    op: &Op,
    subject: Option<&str>,
    order: Order,
    max: u32,
    f: F,
) -> Result<Outcome, AdminError>
where
    F: Fn(target::Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<pb::QueryMessagesResponse, tonic::Status>>
        + Send
        + 'static,
{
    let targets = ctx.targets().await?;
    let answers = targets.each(op, f).await;
    let n = answers.len();
    Ok(merged(target::merge(answers, subject), n, |found| {
        let report = merge_messages(found, order, max);
        let human = messages_table(&report.messages);
        Doc::new(&report, human)
    }))
}

fn merge_messages(
    found: Vec<(String, pb::QueryMessagesResponse)>,
    order: Order,
    max: u32,
) -> Messages {
    let mut truncated = false;
    let mut messages = Vec::new();
    for (broker, reply) in found {
        truncated |= reply.truncated;
        messages.extend(
            reply
                .messages
                .into_iter()
                .map(|m| MessageView::new(&broker, m)),
        );
    }
    match order {
        Order::Any => {}
        // Stable sorts: each broker's own order is kept among equal times.
        Order::NewestFirst => messages.sort_by_key(|m| std::cmp::Reverse(m.store_timestamp_ms)),
        Order::OldestFirst => messages.sort_by_key(|m| m.store_timestamp_ms),
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if messages.len() > max {
        messages.truncate(max);
        truncated = true;
    }
    Messages {
        messages,
        truncated,
    }
}

#[derive(Debug, Serialize)]
struct SendReport {
    broker: String,
    topic: String,
    message_id: String,
    queue_id: u32,
    /// `null` for a delayed message: it gets its queue offset when it is delivered.
    queue_offset: Option<u64>,
    store_timestamp_ms: i64,
    store_time: Option<String>,
    deliver_at_ms: i64,
    deliver_at: Option<String>,
}

async fn send(
    ctx: &Ctx,
    topic: String,
    request: pb::SendMessageRequest,
) -> Result<Outcome, AdminError> {
    let targets = ctx.targets().await?;
    let broker = targets.single("message send")?.to_owned();
    let op = Op::about(
        format!("message send to topic `{topic}`"),
        format!("topic `{topic}`"),
    );
    let reply = target::call(&broker, ctx.timeout, &op, |mut c| async move {
        Ok(c.send_message(request).await?.into_inner())
    })
    .await?;
    let report = SendReport {
        broker,
        topic,
        store_time: format_ms(reply.store_timestamp_ms),
        deliver_at: format_ms(reply.deliver_at_ms),
        message_id: reply.message_id,
        queue_id: reply.queue_id,
        queue_offset: reply.queue_offset,
        store_timestamp_ms: reply.store_timestamp_ms,
        deliver_at_ms: reply.deliver_at_ms,
    };
    let mut t = table(
        &[
            "broker",
            "topic",
            "message_id",
            "queue",
            "offset",
            "store_time",
            "deliver_at",
        ],
        &["queue", "offset"],
    );
    t.add_row(vec![
        report.broker.clone(),
        text_cell(&report.topic),
        text_cell(&report.message_id),
        report.queue_id.to_string(),
        report
            .queue_offset
            .map_or_else(|| "-".to_owned(), |o| o.to_string()),
        time_cell(report.store_timestamp_ms),
        time_cell(report.deliver_at_ms),
    ]);
    let mut human = output::render(&t, "");
    if report.queue_offset.is_none() {
        human.push_str(
            "scheduled: the message gets its queue offset when it is delivered \
             (find or cancel it by its message id meanwhile)\n",
        );
    }
    Ok(Outcome::done(Doc::new(&report, human)))
}

#[derive(Debug, Serialize)]
struct PullReport {
    broker: String,
    group: String,
    topic: String,
    queue_id: u32,
    status: String,
    next_offset: u64,
    min_offset: u64,
    max_offset: u64,
    /// The offset committed with `--commit`, `null` otherwise (or when there was nothing to
    /// commit).
    committed_offset: Option<u64>,
    messages: Vec<MessageView>,
}

async fn pull(
    ctx: &Ctx,
    request: pb::PullMessagesRequest,
    commit: bool,
) -> Result<Outcome, AdminError> {
    let targets = ctx.targets().await?;
    let broker = targets.single("message pull")?.to_owned();
    let (group, topic, queue_id) = (
        request.group.clone(),
        request.topic.clone(),
        request.queue_id,
    );
    let op = Op::new(format!(
        "message pull of group `{group}` from topic `{topic}` queue {queue_id}"
    ));
    let (reply, committed) = target::call(&broker, ctx.timeout, &op, |mut c| async move {
        let reply = c.pull_messages(request.clone()).await?.into_inner();
        let progressed = matches!(
            pb::PullStatus::try_from(reply.status),
            Ok(pb::PullStatus::Found
                | pb::PullStatus::NoMatchedMessage
                | pb::PullStatus::OffsetMoved)
        );
        let mut committed = None;
        if commit && progressed {
            c.commit_offset(pb::CommitOffsetRequest {
                group: request.group,
                topic: request.topic,
                queue_id: request.queue_id,
                offset: reply.next_offset,
            })
            .await?;
            committed = Some(reply.next_offset);
        }
        Ok((reply, committed))
    })
    .await?;
    let report = PullReport {
        status: pull_status_name(reply.status),
        next_offset: reply.next_offset,
        min_offset: reply.min_offset,
        max_offset: reply.max_offset,
        committed_offset: committed,
        messages: reply
            .messages
            .into_iter()
            .map(|m| MessageView::new(&broker, m))
            .collect(),
        broker,
        group,
        topic,
        queue_id,
    };
    let human = format!(
        "{}: next offset {} (queue {} holds {}..{}){}\n\n{}",
        report.status,
        report.next_offset,
        report.queue_id,
        report.min_offset,
        report.max_offset,
        match report.committed_offset {
            Some(o) => format!(", committed {o}"),
            None if commit => ", nothing to commit".to_owned(),
            None => String::new(),
        },
        messages_table(&report.messages)
    );
    Ok(Outcome::done(Doc::new(&report, human)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reply(times: &[i64], truncated: bool) -> pb::QueryMessagesResponse {
        pb::QueryMessagesResponse {
            messages: times
                .iter()
                .map(|&t| pb::StoredMessage {
                    message_id: format!("m{t}"),
                    store_timestamp_ms: t,
                    ..Default::default()
                })
                .collect(),
            truncated,
        }
    }

    #[test]
    fn merged_queries_are_ordered_and_cut_to_max() {
        let found = vec![
            ("a:1".to_owned(), reply(&[5, 1], false)),
            ("b:1".to_owned(), reply(&[3], false)),
        ];
        let m = merge_messages(found, Order::NewestFirst, 2);
        let ids: Vec<&str> = m.messages.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids, ["m5", "m3"]);
        assert!(m.truncated);
        assert_eq!(m.messages[1].broker, "b:1");

        let found = vec![
            ("a:1".to_owned(), reply(&[1, 5], true)),
            ("b:1".to_owned(), reply(&[3], false)),
        ];
        let m = merge_messages(found, Order::OldestFirst, 32);
        let ids: Vec<&str> = m.messages.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m3", "m5"]);
        assert!(m.truncated, "a broker's truncation is kept");
    }
}
