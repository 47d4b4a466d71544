//! Short fuzz runs of the RocketMQ 5 gRPC gateway (issue 14), without the network:
//! - protobuf requests of every unary and server-streaming `MessagingService` RPC, from the
//!   corpus of the cargo-fuzz target `grpc_messaging` and its mutations (`fuzz.rs`), decoded
//!   and handed to the real service on a real broker
//!   ([`rocketgate_gateway_grpc::fuzz::GrpcFuzz`]): no input may panic the decoder, the
//!   service or the core;
//! - Telemetry sessions (commands on the stream, Heartbeats and terminations between them),
//!   from the corpus of `grpc_telemetry` and its mutations, through the service's server stack
//!   ([`rocketgate_gateway_grpc::fuzz::telemetry::TelemetryFuzz`]): besides never panicking,
//!   every Settings is answered once, in the protocol's terms, and the stream ends after the
//!   client's half-close.
//!
//! Each test closes its broker.

use rocketgate_gateway_grpc::fuzz::telemetry::{self, TelemetryFuzz};
use rocketgate_gateway_grpc::fuzz::GrpcFuzz;

use crate::fuzz::{check_seeds, short_run, PROTO_TOKENS};

#[test]
fn mutated_messaging_requests_never_panic_the_service() {
    check_seeds("grpc_messaging", rocketgate_gateway_grpc::fuzz::seeds());
    let dir = tempfile::tempdir().unwrap();
    let mut h = GrpcFuzz::start(dir.path()).unwrap();
    short_run("grpc_messaging", 20_000, PROTO_TOKENS, |input| {
        h.messaging(input)
    });
    // The seeds reached the core: the valid send was stored after the 8 messages of `start`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let info = rt.block_on(h.broker().topics().describe("fuzz")).unwrap();
    let stored: u64 = info.queues.iter().map(|q| q.max).sum();
    h.close().unwrap();
    assert!(stored > 8, "no seed message was stored");
}

#[test]
fn mutated_telemetry_sessions_keep_the_stream_invariants() {
    check_seeds("grpc_telemetry", telemetry::seeds());
    let dir = tempfile::tempdir().unwrap();
    let mut h = TelemetryFuzz::start(dir.path()).unwrap();
    short_run("grpc_telemetry", 3_000, PROTO_TOKENS, |input| h.run(input));
    // The seeds reached the core: the push consumer's subscription was recorded in its group.
    let group = h
        .broker()
        .groups()
        .get(rocketgate_gateway_grpc::fuzz::GROUP)
        .unwrap();
    h.close().unwrap();
    assert!(
        group.subscriptions.contains_key("fuzz"),
        "no seed subscription was recorded: {group:?}"
    );
}
