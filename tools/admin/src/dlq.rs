//! `admin dlq …`: a consumer group's dead letters (`%DLQ%<group>`): list them, and send them
//! back to their original topics (by id or all).
//!
//! Invariants: both commands go to every target broker and merge the answers; a group with no
//! dead-letter queue on some brokers is fine as long as one has it, and not found when none
//! has. `resend` reports the number resent per broker and in total.
//!
//! Owns the `dlq` commands only; must not call a broker except through `target.rs` nor render
//! except through `output.rs`.

use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::{AdminError, Op};
use super::output::{self, messages_table, table, text_cell, Doc, MessageView};
use super::target::{self, Ctx};
use super::{merged, Outcome};

/// Dead-letter commands.
#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List a group's dead letters.
    List {
        /// Consumer group.
        group: String,
        /// Start offset in the dead-letter queue (default 0).
        #[arg(long, value_name = "O", default_value_t = 0)]
        offset: u64,
        /// At most this many messages per broker (default 32).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max: Option<u32>,
    },
    /// Send dead letters back to their original topics.
    Resend {
        /// Consumer group.
        group: String,
        /// Message id to resend; repeat for several.
        #[arg(
            long = "id",
            value_name = "ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        ids: Vec<String>,
        /// Resend every dead letter of the group.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Serialize)]
struct DlqQueue {
    broker: String,
    next_offset: u64,
    min_offset: u64,
    max_offset: u64,
}

#[derive(Debug, Serialize)]
struct DlqList {
    group: String,
    queues: Vec<DlqQueue>,
    messages: Vec<MessageView>,
}

#[derive(Debug, Serialize)]
struct Resent {
    broker: String,
    resent: u32,
}

#[derive(Debug, Serialize)]
struct ResendReport {
    group: String,
    resent: u64,
    brokers: Vec<Resent>,
}

/// Runs a dead-letter command.
pub async fn run(cmd: DlqCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    let targets = ctx.targets().await?;
    match cmd {
        DlqCommand::List { group, offset, max } => {
            let subject = format!("the dead-letter queue of consumer group `{group}`");
            let op = Op::about(format!("dlq list `{group}`"), subject.clone());
            let request = pb::ListDeadLettersRequest {
                group: group.clone(),
                offset,
                max: max.unwrap_or(0),
            };
            let answers = targets
                .each(&op, move |mut c| {
                    let request = request.clone();
                    async move { Ok(c.list_dead_letters(request).await?.into_inner()) }
                })
                .await;
            let n = answers.len();
            Ok(merged(target::merge(answers, Some(&subject)), n, |found| {
                let mut queues = Vec::new();
                let mut messages = Vec::new();
                for (broker, reply) in found {
                    messages.extend(
                        reply
                            .messages
                            .into_iter()
                            .map(|m| MessageView::new(&broker, m)),
                    );
                    queues.push(DlqQueue {
                        broker,
                        next_offset: reply.next_offset,
                        min_offset: reply.min_offset,
                        max_offset: reply.max_offset,
                    });
                }
                let mut human = format!("dead letters of consumer group {}\n", text_cell(&group));
                for q in &queues {
                    human.push_str(&format!(
                        "broker {}: offsets {}..{}, next {}\n",
                        q.broker, q.min_offset, q.max_offset, q.next_offset
                    ));
                }
                human.push('\n');
                human.push_str(&messages_table(&messages));
                Doc::new(
                    &DlqList {
                        group,
                        queues,
                        messages,
                    },
                    human,
                )
            }))
        }
        DlqCommand::Resend { group, ids, all } => {
            let subject = format!("the dead-letter queue of consumer group `{group}`");
            let op = Op::new(format!("dlq resend `{group}`"));
            let request = pb::ResendDeadLettersRequest {
                group: group.clone(),
                message_ids: ids,
                all,
            };
            let answers = targets
                .each(&op, move |mut c| {
                    let request = request.clone();
                    async move { Ok(c.resend_dead_letters(request).await?.into_inner()) }
                })
                .await;
            let n = answers.len();
            Ok(merged(target::merge(answers, Some(&subject)), n, |found| {
                let brokers: Vec<Resent> = found
                    .into_iter()
                    .map(|(broker, r)| Resent {
                        broker,
                        resent: r.resent,
                    })
                    .collect();
                let resent = brokers.iter().map(|b| u64::from(b.resent)).sum();
                let mut t = table(&["broker", "resent"], &["resent"]);
                for b in &brokers {
                    t.add_row(vec![b.broker.clone(), b.resent.to_string()]);
                }
                let human = format!(
                    "{resent} dead letters of consumer group {} resent\n\n{}",
                    text_cell(&group),
                    output::render(&t, "")
                );
                Doc::new(
                    &ResendReport {
                        group,
                        resent,
                        brokers,
                    },
                    human,
                )
            }))
        }
    }
}
