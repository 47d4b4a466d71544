//! Interop with the official RocketMQ 5 Node.js SDK (npm `rocketmq-client-nodejs` 1.0.8,
//! pinned in `tests/sdk/node/package.json` and `package-lock.json`, installed by
//! `scripts/test` with `npm ci --prefix tests/sdk/node`). The client side is
//! `tests/sdk/node/scenarios.js` (plain CommonJS, no build step), run as a child process by
//! the scenarios of `grpc_sdk_scripts`, which also drive the Python SDK and judge both alike:
//!
//! - a producer's message (tag, keys, properties) received by a SimpleConsumer unchanged; once
//!   acknowledged, not received again;
//! - a PushConsumer gets each message once and its listener's SUCCESS acknowledges it;
//! - FIFO: two message groups in send order, a group held up by its unacknowledged head;
//! - delay: not received before the delivery time, received after it;
//! - transactions: commit delivers, rollback never does, an unresolved half message is
//!   checked back over Telemetry and the checker's COMMIT delivers it.
//!
//! A missing SDK (or another version) fails the test with the install command (no silent
//! skip).

use crate::grpc_sdk_scripts::{self as scenarios, Sdk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_simple_consumer_gets_what_the_producer_sent_and_its_ack_is_final() {
    scenarios::simple_round_trip(Sdk::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_push_consumer_gets_each_message_once_and_acknowledges_it() {
    scenarios::push_consumer(Sdk::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_fifo_groups_arrive_in_send_order_behind_an_unacknowledged_head() {
    scenarios::fifo_order(Sdk::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_delay_message_comes_at_its_delivery_time_not_before() {
    scenarios::delay_on_time(Sdk::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_transactions_commit_rollback_and_check_back_commit() {
    scenarios::transactions(Sdk::Node).await;
}
