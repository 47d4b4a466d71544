//! Short fuzz run of the RocketMQ 5 gRPC gateway (issue 14): protobuf requests of every unary
//! and server-streaming `MessagingService` RPC, from the corpus of the cargo-fuzz target
//! `grpc_messaging` and its mutations (`fuzz.rs`), decoded and handed to the real service on a
//! real broker ([`rocketgate_gateway_grpc::fuzz::GrpcFuzz`]), without the network. No input
//! may panic the decoder, the service or the core. The test closes its broker.

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
