//! Short fuzz runs of the HTTP gateway (issue 14): REST requests (route, path parameter or query
//! string, headers, JSON or raw bodies) and WebSocket frames of `/v1/ws`, from the corpora of
//! the cargo-fuzz targets `http_rest` and `http_ws` and their mutations (`fuzz.rs`), sent to a
//! real gateway on `127.0.0.1` ([`rocketgate_gateway_http::fuzz::HttpFuzz`]). Every input must
//! be answered: a response, an error frame or a close frame; the gateway never drops a request
//! or a connection and never hangs. Each test stops its gateway and broker.

use rocketgate_gateway_http::fuzz::HttpFuzz;

use crate::fuzz::{short_run, JSON_TOKENS};

#[test]
fn mutated_rest_requests_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = HttpFuzz::start(dir.path()).unwrap();
    short_run("http_rest", 1500, JSON_TOKENS, |input| h.rest(input));
    // The seeds reached the core: the valid publishes were stored.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let info = rt.block_on(h.broker().topics().describe("fuzz")).unwrap();
    let stored: u64 = info.queues.iter().map(|q| q.max).sum();
    h.close().unwrap();
    assert!(stored > 0, "no seed message was stored");
}

#[test]
fn mutated_websocket_frames_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = HttpFuzz::start(dir.path()).unwrap();
    short_run("http_ws", 500, JSON_TOKENS, |input| h.ws(input));
    h.close().unwrap();
}
