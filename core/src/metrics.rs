//! The core's Prometheus metrics, recorded through the `metrics` facade: nothing is recorded
//! unless the composition root installs a recorder (the `rocketgate` binary installs the
//! Prometheus one; the HTTP gateway renders it at `/metrics`).
//!
//! Owns the names and labels of the core's metrics, in one place:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `rocketgate_messages_in_total` | counter | `topic` | messages stored by `send` (delayed ones when sent) |
//! | `rocketgate_message_bytes_in_total` | counter | `topic` | their body bytes |
//! | `rocketgate_messages_out_total` | counter | `group`, `topic`, `mode` (`pop`/`pull`) | messages delivered to consumers |
//! | `rocketgate_acks_total` | counter | `group` | acknowledged deliveries |
//! | `rocketgate_send_seconds` | histogram | — | time of a `send` in the core (store append, and the fsync under SYNC_FLUSH) |
//! | `rocketgate_store_dispatch_stalled` | gauge | — | 1 while the dispatcher cannot follow the CommitLog (e.g. a full disk): new messages stay invisible |
//! | `rocketgate_store_dispatch_failures_total` | counter | — | failed dispatch rounds (each retried with a backoff) |
//!
//! Label values are topic and group names, which the broker bounds (`limits`); message ids,
//! keys and client ids are never labels. Must not touch: anything but the facade.

use std::time::Duration;

/// A message of `bytes` body bytes stored in `topic`, taking `took` in the core.
pub(crate) fn sent(topic: &str, bytes: usize, took: Duration) {
    metrics::counter!("rocketgate_messages_in_total", "topic" => topic.to_owned()).increment(1);
    metrics::counter!("rocketgate_message_bytes_in_total", "topic" => topic.to_owned())
        .increment(bytes as u64);
    metrics::histogram!("rocketgate_send_seconds").record(took.as_secs_f64());
}

/// `n` messages of `topic` delivered to `group` by a pop or a pull.
pub(crate) fn delivered(group: &str, topic: &str, mode: &'static str, n: usize) {
    if n == 0 {
        return;
    }
    metrics::counter!(
        "rocketgate_messages_out_total",
        "group" => group.to_owned(),
        "topic" => topic.to_owned(),
        "mode" => mode
    )
    .increment(n as u64);
}

/// `n` deliveries acknowledged by `group`.
pub(crate) fn acked(group: &str, n: usize) {
    if n == 0 {
        return;
    }
    metrics::counter!("rocketgate_acks_total", "group" => group.to_owned()).increment(n as u64);
}

/// The dispatcher stalled (`true`) or recovered (`false`).
pub(crate) fn dispatch_stalled(stalled: bool) {
    metrics::gauge!("rocketgate_store_dispatch_stalled").set(if stalled { 1.0 } else { 0.0 });
}

/// A dispatch round failed.
pub(crate) fn dispatch_failed() {
    metrics::counter!("rocketgate_store_dispatch_failures_total").increment(1);
}
