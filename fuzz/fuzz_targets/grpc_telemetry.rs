//! Fuzzes the RocketMQ 5 Telemetry stream: each input is one client's session — commands sent on
//! the stream, Heartbeats and terminations between them, as `[kind][u16 LE length][payload]`
//! records — played through the gateway's real server stack (wire checks, gRPC framing, prost,
//! the service) on a real broker without the network, the answers read back as a client reads
//! them (`rocketgate_gateway_grpc::fuzz::telemetry::TelemetryFuzz::run`). Besides panics, a
//! Settings left unanswered, an answer nobody asked for, or a stream that does not end after the
//! client's half-close is a finding.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run grpc_telemetry /tmp/rg-corpus-grpc_telemetry
//! corpus/grpc_telemetry -- -max_total_time=60 -rss_limit_mb=2048 -malloc_limit_mb=512
//! -timeout=20`. The broker's data is in a `rg-fuzz-grpc_telemetry-*` directory of the temp dir,
//! left behind when libFuzzer exits.
#![no_main]

use std::sync::{Mutex, OnceLock};

use rocketgate_gateway_grpc::fuzz::telemetry::TelemetryFuzz;

fn harness() -> &'static Mutex<TelemetryFuzz> {
    static H: OnceLock<Mutex<TelemetryFuzz>> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rg-fuzz-grpc_telemetry-")
            .tempdir()
            .expect("temp dir")
            .keep();
        Mutex::new(TelemetryFuzz::start(&dir).expect("start the service"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness().lock().expect("harness").run(data);
});
