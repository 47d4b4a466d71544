//! Fuzzes the WebSocket protocol of the HTTP gateway (`/v1/ws`): each input is one text frame on
//! a connection to a real gateway and broker on 127.0.0.1, followed by a synchronising frame
//! (`rocketgate_gateway_http::fuzz::HttpFuzz::ws`). A panic anywhere in the process (tokio
//! tasks included: libFuzzer's panic hook aborts) or a connection dropped without a close frame
//! is a crash.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run http_ws /tmp/rg-corpus-http_ws corpus/http_ws
//! -- -max_total_time=60 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20`. The broker's data
//! is in a `rg-fuzz-*` directory of the temp dir, left behind when libFuzzer exits.
#![no_main]

use std::sync::{Mutex, OnceLock};

use rocketgate_gateway_http::fuzz::HttpFuzz;

fn harness() -> &'static Mutex<HttpFuzz> {
    static H: OnceLock<Mutex<HttpFuzz>> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rg-fuzz-http_ws-")
            .tempdir()
            .expect("temp dir")
            .keep();
        Mutex::new(HttpFuzz::start(&dir).expect("start the gateway"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness().lock().expect("harness").ws(data);
});
