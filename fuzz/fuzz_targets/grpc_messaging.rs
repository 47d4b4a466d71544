//! Fuzzes the RocketMQ 5 gRPC gateway: each input is one `MessagingService` request (first byte:
//! the RPC; the rest: its protobuf encoding), decoded and handed to the real service on a real
//! broker without the network (`rocketgate_gateway_grpc::fuzz::GrpcFuzz::messaging`).
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run grpc_messaging /tmp/rg-corpus-grpc_messaging
//! corpus/grpc_messaging -- -max_total_time=60 -rss_limit_mb=2048 -malloc_limit_mb=512
//! -timeout=20`. The broker's data is in a `rg-fuzz-*` directory of the temp dir, left behind
//! when libFuzzer exits.
#![no_main]

use std::sync::{Mutex, OnceLock};

use rocketgate_gateway_grpc::fuzz::GrpcFuzz;

fn harness() -> &'static Mutex<GrpcFuzz> {
    static H: OnceLock<Mutex<GrpcFuzz>> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rg-fuzz-grpc_messaging-")
            .tempdir()
            .expect("temp dir")
            .keep();
        Mutex::new(GrpcFuzz::start(&dir).expect("start the service"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness().lock().expect("harness").messaging(data);
});
