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
//! | `rocketgate_replication_lag_bytes` | gauge | `slave` (broker id, at most 16) | on a master: CommitLog bytes the slave has not written yet |
//! | `rocketgate_replication_unflushed_lag_bytes` | gauge | `slave` | on a master: bytes the slave has not fsynced yet |
//! | `rocketgate_replication_lag_seconds` | gauge | `slave` | on a master: how long ago the slave last had everything the master had then (−1 before it first caught up) |
//! | `rocketgate_replication_slave_in_sync` | gauge | `slave` | on a master: 1 while the slave is in the in-sync set |
//! | `rocketgate_replication_in_sync_replicas` | gauge | — | on a master: replicas in sync, the master included |
//!
//! Label values are topic and group names; message ids, keys, client ids and session ids are
//! never labels, because a recorder keeps every series it has seen until the process ends:
//!
//! - The MQTT gateway's groups are one per client session (`mqtt-<client id>`) or per share
//!   name a client chose (`mqtt-share-<name>-<hash>`): they are labelled `mqtt-session` and
//!   `mqtt-share`, never by name (300 short-lived clients made 600 series before).
//! - Every other topic or group label is capped: the first [`MAX_LABEL_VALUES`] distinct names
//!   of each label get their own series, any later one is labelled [`OTHER`].
//!
//! Must not touch: anything but the facade. Concurrency: one `RwLock` per capped label (a read
//! per recorded event; a write only for a name not seen yet, while under the cap).

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use parking_lot::RwLock;

/// Distinct names of one label (`topic`, `group`) that get a series of their own.
pub const MAX_LABEL_VALUES: usize = 1000;
/// The label value of every name past the cap.
pub const OTHER: &str = "_other";

/// The distinct values a label has been given, up to a cap.
#[derive(Debug)]
struct LabelCap {
    max: usize,
    seen: RwLock<HashSet<String>>,
}

impl LabelCap {
    fn new(max: usize) -> Self {
        Self {
            max,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// `name` while it is one of the first `max` distinct names, [`OTHER`] after.
    fn value(&self, name: &str) -> String {
        if self.seen.read().contains(name) {
            return name.to_owned();
        }
        let mut seen = self.seen.write();
        if seen.contains(name) || seen.len() < self.max {
            seen.insert(name.to_owned());
            name.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

static TOPICS: LazyLock<LabelCap> = LazyLock::new(|| LabelCap::new(MAX_LABEL_VALUES));
static GROUPS: LazyLock<LabelCap> = LazyLock::new(|| LabelCap::new(MAX_LABEL_VALUES));

/// The label of a group: its kind for the MQTT gateway's per-session and per-share groups, else
/// its (capped) name.
fn group_label(cap: &LabelCap, group: &str) -> String {
    if group.starts_with("mqtt-share-") {
        "mqtt-share".to_owned()
    } else if group.starts_with("mqtt-") {
        "mqtt-session".to_owned()
    } else {
        cap.value(group)
    }
}

fn topic_label(topic: &str) -> String {
    TOPICS.value(topic)
}

/// A message of `bytes` body bytes stored in `topic`, taking `took` in the core.
pub(crate) fn sent(topic: &str, bytes: usize, took: Duration) {
    let topic = topic_label(topic);
    metrics::counter!("rocketgate_messages_in_total", "topic" => topic.clone()).increment(1);
    metrics::counter!("rocketgate_message_bytes_in_total", "topic" => topic)
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
        "group" => group_label(&GROUPS, group),
        "topic" => topic_label(topic),
        "mode" => mode
    )
    .increment(n as u64);
}

/// `n` deliveries acknowledged by `group`.
pub(crate) fn acked(group: &str, n: usize) {
    if n == 0 {
        return;
    }
    metrics::counter!("rocketgate_acks_total", "group" => group_label(&GROUPS, group))
        .increment(n as u64);
}

/// The dispatcher stalled (`true`) or recovered (`false`).
pub(crate) fn dispatch_stalled(stalled: bool) {
    metrics::gauge!("rocketgate_store_dispatch_stalled").set(if stalled { 1.0 } else { 0.0 });
}

/// A dispatch round failed.
pub(crate) fn dispatch_failed() {
    metrics::counter!("rocketgate_store_dispatch_failures_total").increment(1);
}

/// A master's view of one slave (labels are broker ids: at most 16 slaves are tracked).
pub(crate) fn replication_slave(
    id: u64,
    lag_bytes: u64,
    unflushed_lag_bytes: u64,
    lag_ms: Option<u64>,
    in_sync: bool,
) {
    let slave = id.to_string();
    metrics::gauge!("rocketgate_replication_lag_bytes", "slave" => slave.clone())
        .set(lag_bytes as f64);
    metrics::gauge!("rocketgate_replication_unflushed_lag_bytes", "slave" => slave.clone())
        .set(unflushed_lag_bytes as f64);
    metrics::gauge!("rocketgate_replication_lag_seconds", "slave" => slave.clone())
        .set(lag_ms.map_or(-1.0, |ms| ms as f64 / 1000.0));
    metrics::gauge!("rocketgate_replication_slave_in_sync", "slave" => slave)
        .set(f64::from(u8::from(in_sync)));
}

/// Replicas in sync on a master, the master included.
pub(crate) fn replication_in_sync(n: usize) {
    metrics::gauge!("rocketgate_replication_in_sync_replicas").set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_session_and_share_groups_are_never_labelled_by_name() {
        let cap = LabelCap::new(10);
        for id in 0..300 {
            assert_eq!(group_label(&cap, &format!("mqtt-dev-{id}")), "mqtt-session");
        }
        assert_eq!(group_label(&cap, "mqtt-share-w-0a1b2c3d"), "mqtt-share");
        assert_eq!(group_label(&cap, "billing"), "billing");
        assert_eq!(cap.seen.read().len(), 1, "only `billing` took a place");
    }

    #[test]
    fn label_values_are_capped() {
        let cap = LabelCap::new(3);
        let got: Vec<String> = ["a", "b", "a", "c", "d", "e", "b"]
            .iter()
            .map(|n| cap.value(n))
            .collect();
        assert_eq!(got, ["a", "b", "a", "c", OTHER, OTHER, "b"]);
    }
}
