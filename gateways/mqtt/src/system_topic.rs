//! The gateway's own RocketMQ topics (`mqtt_sys_retained`, `mqtt_sys_sessions`): created
//! with one queue when missing, and read back whole on start.
//!
//! Invariants: every record lives in queue 0, oldest first; entries whose CommitLog segment
//! retention already deleted form a prefix of the queue and are skipped when reading.
//!
//! Called by `shared` (retained messages) and `session` (session records) when loading and
//! before writing; it depends on nothing of the gateway but the core, so both can use it
//! without depending on each other.
//!
//! Concurrency: stateless; each call reads or creates through the cheap-clone [`Broker`].

use rocketgate_core::{Broker, ErrorKind, StoredMessage, TopicConfig};

/// Creates one of the gateway's own one-queue topics if missing.
///
/// # Errors
/// Core errors.
pub fn ensure(broker: &Broker, name: &str) -> Result<(), rocketgate_core::Error> {
    match broker.topics().create(TopicConfig::new(name, 1)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every message of queue 0 of a gateway topic, oldest first (creating the topic if missing).
///
/// # Errors
/// Core errors.
pub async fn read_all(
    broker: &Broker,
    name: &str,
) -> Result<Vec<StoredMessage>, rocketgate_core::Error> {
    ensure(broker, name)?;
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
