//! Telemetry (bidirectional), Heartbeat and NotifyClientTermination: the client's session.
//!
//! Invariants: the Telemetry response stream is returned at once (RC awaits its headers with
//! no deadline) and its inbound side is read by a spawned task; every Settings is answered
//! with `{status OK, settings: effective settings}` (§1.4 of the brief), a Settings without
//! `pub_sub` with `{status BAD_REQUEST}`, one the caller may not register (`access.rs`) with
//! `{status FORBIDDEN}` and nothing recorded, and the stream stays open while the client lives:
//! the server ends its side only after the client half-closes (or the server stops). Several
//! streams per client id are fine. Heartbeat is lenient (the request's `client_type`, no
//! Settings needed first); NotifyClientTermination always answers OK.
//!
//! Concurrency: one task per Telemetry stream owns its inbound half; replies and server
//! pushes share a bounded mpsc channel whose receiver is the response stream.

use std::time::Duration;

use rocketgate_proto::apache::rocketmq::v2 as pb;
use rocketgate_proto::apache::rocketmq::v2::telemetry_command::Command;
use rocketgate_proto::apache::rocketmq::v2::Code;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::clients::TelemetrySender;
use super::code::{from_core, ok, status};
use super::convert::pb_duration;
use super::route::group_name;
use super::{access, transaction, Context};

/// Commands buffered per Telemetry stream before pushes are dropped (a check is repeated).
const STREAM_BUFFER: usize = 64;

/// Opens a Telemetry stream of `client_id` connected from `peer`; returns the response stream.
/// A client's first stream and the end of its last are its connect and disconnect (logged).
pub(super) fn open(
    ctx: Context,
    client_id: String,
    peer: Option<std::net::SocketAddr>,
    mut inbound: tonic::Streaming<pb::TelemetryCommand>,
) -> ReceiverStream<Result<pb::TelemetryCommand, tonic::Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let (stream, first) = ctx.clients.open_stream(&client_id, tx.clone());
    if first {
        tracing::info!(client = %client_id, peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()), "gRPC client connected");
    }
    let mut stopping = ctx.stopping.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = inbound.message() => next,
                _ = stopping.wait_for(|s| *s) => break,
            };
            match next {
                Ok(Some(cmd)) => handle(&ctx, &client_id, cmd, &tx).await,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, client = %client_id, "telemetry stream failed");
                    break;
                }
            }
        }
        let (change, gone) = ctx.clients.close_stream(&client_id, stream);
        if gone {
            tracing::info!(client = %client_id, peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()), "gRPC client disconnected");
        }
        transaction::apply(&ctx, change);
    });
    ReceiverStream::new(rx)
}

async fn handle(ctx: &Context, client_id: &str, cmd: pb::TelemetryCommand, tx: &TelemetrySender) {
    let reply = match cmd.command {
        Some(Command::Settings(s)) if s.pub_sub.is_none() => pb::TelemetryCommand {
            status: Some(status(
                Code::BadRequest,
                "settings need publishing or subscription",
            )),
            command: None,
        },
        Some(Command::Settings(s)) => {
            // Registering settings is acting on their topics and group: a refused one
            // changes nothing.
            if let Err(refused) = access::check(ctx, &ctx.who, ctx.source, &access::settings(&s)) {
                let reply = pb::TelemetryCommand {
                    status: Some(refused),
                    command: None,
                };
                if tx.send(Ok(reply)).await.is_err() {
                    tracing::debug!(client = %client_id, "telemetry reply dropped: stream closed");
                }
                return;
            }
            let change = ctx.clients.set_settings(client_id, &s);
            transaction::apply(ctx, change);
            if let Some(pb::settings::PubSub::Subscription(sub)) = &s.pub_sub {
                subscribe(ctx, sub);
            }
            pb::TelemetryCommand {
                status: Some(ok()),
                command: Some(Command::Settings(effective(ctx, s))),
            }
        }
        // Answers to commands this server never sends, or commands only a server sends.
        _ => return,
    };
    if tx.send(Ok(reply)).await.is_err() {
        tracing::debug!(client = %client_id, "telemetry reply dropped: stream closed");
    }
}

/// Records the subscriptions a push consumer reports (RC's are empty) in its group.
fn subscribe(ctx: &Context, sub: &pb::Subscription) {
    let Some(group) = sub.group.as_ref() else {
        return;
    };
    for entry in &sub.subscriptions {
        let (Some(topic), Some(filter)) = (
            entry.topic.as_ref(),
            super::receive::filter(entry.expression.as_ref()),
        ) else {
            continue;
        };
        if let Err(e) = ctx
            .broker
            .groups()
            .subscribe(&group.name, &topic.name, filter)
        {
            tracing::debug!(error = %e, group = %group.name, "subscription not recorded");
        }
    }
}

/// The settings the server answers: the client's, merged with the server's policy.
fn effective(ctx: &Context, mut s: pb::Settings) -> pb::Settings {
    s.metric = Some(pb::Metric {
        on: false,
        endpoints: None,
    });
    match &mut s.pub_sub {
        Some(pb::settings::PubSub::Publishing(p)) => {
            p.max_body_size =
                i32::try_from(ctx.broker.config().limits.max_body_bytes).unwrap_or(i32::MAX);
            // Clients check a topic's `accept_message_types` before sending exactly when the
            // core does.
            p.validate_message_type = ctx.broker.config().limits.topic_message_type_check;
            s.backoff_policy = Some(pb::RetryPolicy {
                max_attempts: 3,
                strategy: Some(pb::retry_policy::Strategy::ExponentialBackoff(
                    pb::ExponentialBackoff {
                        initial: Some(pb_duration(Duration::from_millis(10))),
                        max: Some(pb_duration(Duration::from_secs(1))),
                        multiplier: 2.0,
                    },
                )),
            });
        }
        Some(pb::settings::PubSub::Subscription(sub)) => {
            let group = sub
                .group
                .as_ref()
                .map(|g| g.name.clone())
                .unwrap_or_default();
            sub.fifo = Some(group_is_fifo(ctx, &group));
            sub.receive_batch_size = Some(ctx.config.receive_batch_size);
            sub.long_polling_timeout = Some(pb_duration(Duration::from_millis(
                ctx.config.max_long_polling_ms,
            )));
            let attempts = ctx
                .broker
                .groups()
                .get(&group)
                .map(|g| g.max_delivery_attempts)
                .unwrap_or(rocketgate_core::GroupConfig::new("").max_delivery_attempts);
            let backoff = ctx
                .broker
                .config()
                .consumer
                .retry_backoff_ms()
                .unwrap_or_default();
            s.backoff_policy = Some(pb::RetryPolicy {
                max_attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
                strategy: Some(pb::retry_policy::Strategy::CustomizedBackoff(
                    pb::CustomizedBackoff {
                        next: backoff
                            .into_iter()
                            .map(|ms| pb_duration(Duration::from_millis(ms)))
                            .collect(),
                    },
                )),
            });
        }
        None => {}
    }
    s
}

/// Whether `group` consumes in FIFO order. In the core, FIFO delivery is a property of the
/// topic: a group is FIFO when it subscribes to, or has consumed, a FIFO topic.
fn group_is_fifo(ctx: &Context, group: &str) -> bool {
    let mut topics: Vec<String> = ctx
        .broker
        .groups()
        .get(group)
        .map(|g| g.subscriptions.into_keys().collect())
        .unwrap_or_default();
    topics.extend(ctx.broker.groups().topics(group).unwrap_or_default());
    topics.iter().any(|t| {
        ctx.broker
            .topics()
            .config(t)
            .is_ok_and(|c| c.message_type == rocketgate_core::MessageType::Fifo)
    })
}

/// Heartbeat.
pub(super) fn heartbeat(
    ctx: &Context,
    client_id: &str,
    req: &pb::HeartbeatRequest,
) -> pb::HeartbeatResponse {
    let answer = |s| pb::HeartbeatResponse { status: Some(s) };
    match pb::ClientType::try_from(req.client_type) {
        Ok(pb::ClientType::Producer) => answer(ok()),
        Ok(
            pb::ClientType::PushConsumer
            | pb::ClientType::SimpleConsumer
            | pb::ClientType::PullConsumer,
        ) => {
            let group = match group_name(req.group.as_ref()) {
                Ok(g) => g,
                Err(s) => return answer(s),
            };
            if let Err(e) = ctx.broker.consumer().heartbeat(group, client_id) {
                return answer(from_core(&e));
            }
            ctx.renewals.seen(client_id, ctx.broker.now_ms());
            ctx.clients.set_group(client_id, group);
            answer(ok())
        }
        _ => answer(status(
            Code::UnrecognizedClientType,
            "client_type must be PRODUCER, PUSH_CONSUMER, SIMPLE_CONSUMER or PULL_CONSUMER",
        )),
    }
}

/// NotifyClientTermination: drops the client's state (in-flight receipt handles stay valid
/// until they expire). Always OK.
pub(super) fn notify_termination(
    ctx: &Context,
    client_id: &str,
    req: &pb::NotifyClientTerminationRequest,
) -> pb::NotifyClientTerminationResponse {
    let (group, change) = ctx.clients.remove(client_id);
    tracing::debug!(client = %client_id, group = ?group, "gRPC client terminated");
    // Its unacked messages are redelivered once their invisibility runs out.
    ctx.renewals.forget_client(client_id);
    let named = req
        .group
        .as_ref()
        .map(|g| g.name.clone())
        .filter(|g| !g.is_empty());
    for g in named.iter().chain(group.iter()) {
        ctx.broker.consumer().unregister_client(g, client_id);
    }
    transaction::apply(ctx, change);
    pb::NotifyClientTerminationResponse { status: Some(ok()) }
}
