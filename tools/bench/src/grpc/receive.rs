//! The receive + ack case of `bench grpc`: consumers in one group receive (ReceiveMessage, a
//! long poll) and acknowledge (AckMessage) until every message the send cases of the run sent
//! has been acknowledged once, or `--timeout` passed.
//!
//! Owns: the consumer tasks, each on its own connection, and the count of distinct message ids
//! acknowledged (a redelivery is counted as a duplicate).
//!
//! Invariants: a message counts once it is acknowledged with OK; a failed call is counted as an
//! error (the run then fails after printing); the case is complete only when every sent
//! message was acknowledged.
//!
//! Called by [`super::measure`]. Concurrency: one task per consumer on the client runtime.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketgate_proto::apache::rocketmq::v2 as pb;

use super::{connect, ok, request, resource, GrpcArgs, ReceiveResult, GROUP, TOPIC};
use crate::error::{BenchError, Result};
use crate::report::{histogram, Latency};
use crate::units::per_sec;

/// Consumers receive and ack until `expected` distinct messages are acknowledged.
pub(super) async fn receive_case(
    args: &GrpcArgs,
    target: &str,
    expected: u64,
) -> Result<ReceiveResult> {
    let seen = Arc::new(parking_lot::Mutex::new(HashSet::<String>::new()));
    let duplicates = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut tasks = tokio::task::JoinSet::new();
    let pid = std::process::id();
    for i in 0..args.consumers {
        let mut client = connect(target).await?;
        let client_id = format!("bench-consumer@{pid}#{i}");
        let seen = seen.clone();
        let duplicates = duplicates.clone();
        let batch = args.batch;
        tasks.spawn(async move {
            let mut receive_hist = histogram()?;
            let mut ack_hist = histogram()?;
            let mut errors = 0u64;
            let _ = client
                .heartbeat(request(
                    &client_id,
                    pb::HeartbeatRequest {
                        group: resource(GROUP),
                        client_type: pb::ClientType::SimpleConsumer as i32,
                    },
                ))
                .await;
            while (seen.lock().len() as u64) < expected && Instant::now() < deadline {
                let t = Instant::now();
                let req = pb::ReceiveMessageRequest {
                    group: resource(GROUP),
                    message_queue: Some(pb::MessageQueue {
                        topic: resource(TOPIC),
                        ..Default::default()
                    }),
                    filter_expression: Some(pb::FilterExpression {
                        r#type: pb::FilterType::Tag as i32,
                        expression: "*".into(),
                    }),
                    batch_size: batch,
                    invisible_duration: Some(prost_types::Duration {
                        seconds: 60,
                        nanos: 0,
                    }),
                    long_polling_timeout: Some(prost_types::Duration {
                        seconds: 5,
                        nanos: 0,
                    }),
                    ..Default::default()
                };
                let mut r = request(&client_id, req);
                r.set_timeout(Duration::from_secs(30));
                let mut stream = match client.receive_message(r).await {
                    Ok(s) => s.into_inner(),
                    Err(_) => {
                        errors += 1;
                        continue;
                    }
                };
                let mut entries = Vec::new();
                loop {
                    match stream.message().await {
                        Ok(Some(frame)) => {
                            if let Some(pb::receive_message_response::Content::Message(m)) =
                                frame.content
                            {
                                let sp = m.system_properties.unwrap_or_default();
                                entries.push(pb::AckMessageEntry {
                                    message_id: sp.message_id,
                                    receipt_handle: sp.receipt_handle.unwrap_or_default(),
                                });
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                if entries.is_empty() {
                    continue;
                }
                receive_hist.record(
                    u64::try_from(t.elapsed().as_nanos())
                        .unwrap_or(u64::MAX)
                        .max(1),
                )?;
                let ids: Vec<String> = entries.iter().map(|e| e.message_id.clone()).collect();
                let t = Instant::now();
                let acked = client
                    .ack_message(request(
                        &client_id,
                        pb::AckMessageRequest {
                            group: resource(GROUP),
                            topic: resource(TOPIC),
                            entries,
                        },
                    ))
                    .await;
                match acked {
                    Ok(r) if ok(r.get_ref().status.as_ref()) => {
                        ack_hist.record(
                            u64::try_from(t.elapsed().as_nanos())
                                .unwrap_or(u64::MAX)
                                .max(1),
                        )?;
                        let mut s = seen.lock();
                        for id in ids {
                            if !s.insert(id) {
                                duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                    _ => errors += 1,
                }
            }
            Ok::<_, BenchError>((receive_hist, ack_hist, errors))
        });
    }
    let mut receive_hist = histogram()?;
    let mut ack_hist = histogram()?;
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (r, a, e) = joined??;
        receive_hist.add(&r)?;
        ack_hist.add(&a)?;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    let acked = seen.lock().len() as u64;
    Ok(ReceiveResult {
        consumers: args.consumers,
        acked,
        duplicates: duplicates.load(std::sync::atomic::Ordering::Relaxed),
        errors,
        secs,
        msgs_per_sec: per_sec(acked, secs),
        receive_latency: Latency::from(&receive_hist),
        ack_latency: Latency::from(&ack_hist),
        complete: acked >= expected,
    })
}
