//! Fuzzes the REST API of the HTTP gateway: each input is one request (route, path parameter or
//! query string, headers, body) to a real gateway and broker on 127.0.0.1
//! (`rocketgate_gateway_http::fuzz::HttpFuzz::rest`). A panic anywhere in the process (tokio
//! tasks included: libFuzzer's panic hook aborts) or an unanswered request is a crash.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run http_rest /tmp/rg-corpus-http_rest corpus/http_rest
//! -- -max_total_time=60 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20`. The broker's data
//! is in a `rg-fuzz-*` directory of the temp dir, left behind when libFuzzer exits.
#![no_main]

use std::sync::{Mutex, OnceLock};

use rocketgate_gateway_http::fuzz::HttpFuzz;

fn harness() -> &'static Mutex<HttpFuzz> {
    static H: OnceLock<Mutex<HttpFuzz>> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rg-fuzz-http_rest-")
            .tempdir()
            .expect("temp dir")
            .keep();
        Mutex::new(HttpFuzz::start(&dir).expect("start the gateway"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness().lock().expect("harness").rest(data);
});
