//! Transactions over v2: EndTransaction, and the check-back of orphaned half messages pushed to
//! producers as `RecoverOrphanedTransactionCommand` over their Telemetry streams.
//!
//! Invariants: EndTransaction is idempotent (an already resolved transaction answers OK); an
//! unknown or garbled id is INVALID_TRANSACTION_ID; resolution UNSPECIFIED is BAD_REQUEST and
//! leaves the transaction pending. One [`TelemetryChecker`] is registered in the core per
//! topic that some live producer lists in its Settings `publishing.topics` (the topic is the
//! producer group of its half messages, see `send.rs`), and unregistered when the last such
//! producer goes. A check pushes the command on one live stream of such a producer and
//! answers `Unknown`: the producer's EndTransaction(SOURCE_SERVER_CHECK) resolves it, and an
//! unanswered check is simply repeated by the core later.
//!
//! Concurrency: checks run on the core's check-back worker; they only `try_send` on a channel.

use std::sync::Arc;

use rocketgate_core::Error;
use rocketgate_core::{CheckFuture, CheckResult, HalfMessage, Resolution, TransactionChecker};
use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::Code;

use super::clients::{Change, Clients};
use super::code::{from_core, ok, status};
use super::convert::{self, Delivery};
use super::Context;

/// EndTransaction.
pub(super) async fn end_transaction(
    ctx: &Context,
    req: &pb::EndTransactionRequest,
) -> pb::EndTransactionResponse {
    let answer = |s| pb::EndTransactionResponse { status: Some(s) };
    if req.topic.is_some() {
        if let Err(s) = super::route::topic_name(req.topic.as_ref()) {
            return answer(s);
        }
    }
    if req.transaction_id.trim().is_empty() {
        return answer(status(Code::InvalidTransactionId, "empty transaction_id"));
    }
    let resolution = match pb::TransactionResolution::try_from(req.resolution) {
        Ok(pb::TransactionResolution::Commit) => Resolution::Commit,
        Ok(pb::TransactionResolution::Rollback) => Resolution::Rollback,
        _ => {
            return answer(status(
                Code::BadRequest,
                "resolution must be COMMIT or ROLLBACK; the transaction stays pending",
            ))
        }
    };
    match ctx
        .broker
        .transactions()
        .end(&req.transaction_id, resolution)
        .await
    {
        Ok(()) | Err(Error::TransactionResolved { .. }) => answer(ok()),
        Err(e) => answer(from_core(&e)),
    }
}

/// Asks a live producer of one topic to resolve an orphaned half message.
pub(super) struct TelemetryChecker {
    clients: Arc<Clients>,
    topic: String,
    store_host: String,
}

impl TransactionChecker for TelemetryChecker {
    fn check(&self, half: HalfMessage) -> CheckFuture {
        match self.clients.producer_stream(&self.topic) {
            Some(stream) => {
                let message =
                    convert::to_pb(&half.message, "", &self.store_host, Delivery::default());
                let command = pb::TelemetryCommand {
                    status: Some(ok()),
                    command: Some(
                        pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                            pb::RecoverOrphanedTransactionCommand {
                                message: Some(message),
                                transaction_id: half.transaction_id.clone(),
                            },
                        ),
                    ),
                };
                if stream.try_send(Ok(command)).is_err() {
                    tracing::debug!(topic = %self.topic, "telemetry stream full or closed; check-back later");
                }
            }
            None => {
                tracing::debug!(topic = %self.topic, "no live producer for a check-back");
            }
        }
        Box::pin(async { CheckResult::Unknown })
    }
}

/// Registers checkers for topics that gained a producer and removes those of topics that lost
/// their last one.
pub(super) fn apply(ctx: &Context, change: Change) {
    for topic in change.added {
        let checker = TelemetryChecker {
            clients: ctx.clients.clone(),
            topic: topic.clone(),
            store_host: ctx.store_host(),
        };
        ctx.broker
            .transactions()
            .register_checker(&topic, Arc::new(checker));
    }
    for topic in change.removed {
        // A producer may have come back meanwhile.
        if !ctx.clients.has_producer(&topic) {
            ctx.broker.transactions().unregister_checker(&topic);
        }
    }
}
