//! The upgrade from the gateway's old one-queue topics (`mqtt_sys_retained`,
//! `mqtt_sys_sessions`), where earlier versions kept retained messages and session records
//! (and rewrote them before CommitLog retention deleted them): read back whole once, so
//! `shared` and `session` can copy the latest record per key into the core's KV store.
//!
//! Invariants: a topic is imported at most once — after the copy, the marker key
//! `imported.<topic>` is written in the KV namespace [`META_NS`]; without the marker the
//! import runs again (copying the same latest records: a crash mid-import loses nothing). The
//! old topics are left for CommitLog retention to empty. Every record lives in queue 0, oldest
//! first; entries whose segment retention already deleted form a prefix and are skipped.
//!
//! Called by `shared` (retained messages) and `session` (session records) when loading; it
//! depends on nothing of the gateway but the core, so both can use it without depending on
//! each other.
//!
//! Concurrency: stateless; each call goes through the cheap-clone [`Broker`].

use rocketgate_core::{Broker, StoredMessage};

/// KV namespace of the gateway's own bookkeeping (the import markers).
pub const META_NS: &str = "mqtt.meta";

fn marker(name: &str) -> String {
    format!("imported.{name}")
}

/// Every message of the old topic `name`, oldest first, if it exists and was not imported
/// yet.
///
/// # Errors
/// Core errors.
pub async fn read_once(
    broker: &Broker,
    name: &str,
) -> Result<Option<Vec<StoredMessage>>, rocketgate_core::Error> {
    if broker.kv().get(META_NS, marker(name).as_bytes())?.is_some()
        || broker.topics().config(name).is_err()
    {
        return Ok(None);
    }
    read_all(broker, name).await.map(Some)
}

/// Records that the old topic `name` was imported.
///
/// # Errors
/// Core errors.
pub async fn mark_imported(broker: &Broker, name: &str) -> Result<(), rocketgate_core::Error> {
    let at = rocketgate_core::now_ms().to_string();
    broker
        .kv()
        .put(META_NS, marker(name).as_bytes(), at.into_bytes())
        .await
        .map(|_| ())
}

/// Every message of queue 0 of an old gateway topic, oldest first.
async fn read_all(
    broker: &Broker,
    name: &str,
) -> Result<Vec<StoredMessage>, rocketgate_core::Error> {
    let batch = broker.config().limits.max_batch.max(1);
    let mut offset = broker.topics().queue_offsets(name, 0).await?.min;
    let mut out = Vec::new();
    loop {
        let r = broker.consumer().pull(name, 0, offset, batch).await?;
        if r.messages.is_empty() {
            // Entries whose CommitLog segment retention already deleted can still be listed
            // below the end (until the queue minimum catches up): they read as nothing. They
            // are a prefix of what is left (retention deletes the oldest segments), so skip to
            // the first readable entry, if any.
            match first_readable(broker, name, offset.max(r.next_offset), r.max_offset).await? {
                Some(next) => offset = next,
                None => return Ok(out),
            }
            continue;
        }
        offset = r.next_offset;
        out.extend(r.messages);
    }
}

/// The first offset in `(from, end)` of queue 0 of `name` that reads as a message (binary
/// search over "readable", which holds for a suffix of the queue).
async fn first_readable(
    broker: &Broker,
    name: &str,
    from: u64,
    end: u64,
) -> Result<Option<u64>, rocketgate_core::Error> {
    let (mut lo, mut hi) = (from.saturating_add(1), end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if broker
            .consumer()
            .pull(name, 0, mid, 1)
            .await?
            .messages
            .is_empty()
        {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok((lo < end).then_some(lo))
}
