//! Fuzzes the `rocketgate.cluster.v1.BrokerAdmin` service: each input is one request
//! (`[principal][rpc][protobuf request]`), signed as a super user, a normal user allowed to read
//! the cluster, nobody or a forger, and handed to the real service on a real broker with
//! authentication on, without the network
//! (`rocketgate_gateway_grpc::fuzz::admin::AdminFuzz::broker_admin`). Besides panics, a status outside
//! the service's table or with an oversized message, an oversized answer, a call let through
//! that the principal may not make, or any change to the broker by a principal that may not
//! change it is a finding.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run grpc_admin /tmp/rg-corpus-grpc_admin
//! corpus/grpc_admin -- -max_total_time=60 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20`.
//! The broker's data is in a `rg-fuzz-grpc_admin-*` directory of the temp dir, left behind when
//! libFuzzer exits.
#![no_main]

use std::sync::{Mutex, OnceLock};

use rocketgate_gateway_grpc::fuzz::admin::AdminFuzz;

fn harness() -> &'static Mutex<AdminFuzz> {
    static H: OnceLock<Mutex<AdminFuzz>> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rg-fuzz-grpc_admin-")
            .tempdir()
            .expect("temp dir")
            .keep();
        Mutex::new(AdminFuzz::start(&dir).expect("start the services"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness().lock().expect("harness").broker_admin(data);
});
