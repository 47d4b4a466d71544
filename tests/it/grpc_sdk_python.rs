//! Interop with the official RocketMQ 5 Python SDK (PyPI `rocketmq-python-client` 5.1.2,
//! installed by `scripts/test` from `tests/sdk/python/requirements.txt`): redelivery timing
//! (RELIABILITY.md T5, issue 19). The client side is `tests/sdk/python/redelivery.py`, run as
//! a child process against the harness's gRPC server ([`GrpcServer`]) with a deadline; it
//! prints one JSON object that the test judges.
//!
//! - A SimpleConsumer that does not acknowledge gets the message back when its invisible time
//!   ends (≤ 2 s after), not after an extra backoff.
//! - A PushConsumer whose listener fails gets the retry after the backoff the server
//!   advertises (the SDK stretches the invisible time by it), not after twice that.
//!
//! And the scenarios shared with the Node.js SDK (`grpc_sdk_scripts`, script
//! `tests/sdk/python/scenarios.py`): producer and SimpleConsumer (tag, keys, properties, a
//! final ack), PushConsumer (each message once, acknowledged), FIFO (send order per message
//! group, a group held up by its unacknowledged head), delay (not before the delivery time),
//! transactions (commit, rollback, check-back answered COMMIT).
//!
//! A missing SDK (or another version) fails the test with the install command (no silent skip).

use std::path::PathBuf;
use std::time::Duration;

use crate::grpc_sdk::{GrpcServer, NORMAL_TOPIC};
use crate::grpc_sdk_scripts::{self as scenarios, Sdk};

/// Longest a script may run (its own timeout is shorter).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk/python/redelivery.py")
}

async fn require_sdk() {
    Sdk::Python.require().await;
}

/// Runs the script in `mode` against `server`; returns its JSON answer.
async fn run(server: &GrpcServer, mode: &str, extra: &[&str]) -> serde_json::Value {
    require_sdk().await;
    let endpoint = server.access_url();
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script())
        .arg(mode)
        .args([
            "--endpoint",
            &endpoint,
            "--topic",
            NORMAL_TOPIC,
            "--timeout",
            "40",
        ])
        .args(extra)
        .kill_on_drop(true);
    let out = tokio::time::timeout(SCRIPT_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("redelivery.py {mode} did not end within {SCRIPT_LIMIT:?}"))
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "redelivery.py {mode} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("redelivery.py {mode} printed `{stdout}`: {e}"));
    println!("python sdk {mode}: {v}");
    v
}

fn f64_of(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("`{key}` in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_simple_consumer_gets_an_unacked_message_back_when_its_invisible_time_ends() {
    // A backoff that would show: were it added on top, the message would come 5 s late.
    let server = GrpcServer::start_with(|c| c.consumer.retry_backoff = "5s".into()).await;
    let v = run(
        &server,
        "simple",
        &["--group", "py-simple", "--invisible", "3"],
    )
    .await;
    assert_eq!(
        (v["first_attempt"].as_i64(), v["attempt"].as_i64()),
        (Some(1), Some(2))
    );
    let late = f64_of(&v, "after_invisible_end_s");
    assert!(
        (-0.2..=2.0).contains(&late),
        "back {late:.2} s after the invisible time ended (want ≤ 2 s): {v}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_push_consumer_retries_after_the_advertised_backoff() {
    let server = GrpcServer::start_with(|c| c.consumer.retry_backoff = "3s".into()).await;
    let v = run(&server, "push", &["--group", "py-push"]).await;
    assert_eq!(
        (v["first_attempt"].as_i64(), v["attempt"].as_i64()),
        (Some(1), Some(2))
    );
    let after = f64_of(&v, "retry_after_s");
    // The SDK makes the message invisible for the 3 s backoff; the broker redelivers when
    // that ends (the bound leaves 2 s for the reviver's sweep and the SDK's next receive).
    assert!(
        (2.8..=5.0).contains(&after),
        "retry {after:.2} s after the failure (backoff 3 s; twice it would be the bug): {v}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_simple_consumer_gets_what_the_producer_sent_and_its_ack_is_final() {
    scenarios::simple_round_trip(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_push_consumer_gets_each_message_once_and_acknowledges_it() {
    scenarios::push_consumer(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_fifo_groups_arrive_in_send_order_behind_an_unacknowledged_head() {
    scenarios::fifo_order(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_delay_message_comes_at_its_delivery_time_not_before() {
    scenarios::delay_on_time(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_transactions_commit_rollback_and_check_back_commit() {
    scenarios::transactions(Sdk::Python).await;
}
