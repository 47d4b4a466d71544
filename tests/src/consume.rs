//! The contract between the consumer crash test (`it/consume_crash.rs`) and its child process
//! `rg-consume-child`: the store and consumer configuration both open, the topics, groups and
//! messages, and the lines the child prints.
//!
//! The test fills the store in-process ([`POP_TOPIC`] and [`PULL_TOPIC`], bodies from
//! [`crate::payload`] so that every message names its own seq), shuts it down, and starts the
//! child, which consumes with SYNC_FLUSH until it is killed with SIGKILL.
//!
//! Protocol (stdout, one line each, flushed immediately):
//! - `READY` once the store is open and the consumers start;
//! - `POPPED <seq> <attempt>` per popped message of [`POP_TOPIC`];
//! - `ACKING <seq>` just *before* `ack` is called and `ACKED <seq>` once it returned `Ok`. A seq
//!   without `ACKING` was never acknowledged; one with `ACKED` was acknowledged durably; one
//!   with only `ACKING` may be either (the kill came during the call);
//! - `COMMITTING <queue> <offset>` just before `commit_offset` on [`PULL_TOPIC`] and
//!   `COMMITTED <queue> <offset>` once it returned; the offsets of a queue only grow;
//! - `ERR <text>` for anything unexpected (none are expected).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rocketgate_core::{Config, FlushMode, Message, StoredMessage};

use crate::payload;

/// Topic the child pops from.
pub const POP_TOPIC: &str = "cpop";
/// Topic the child pulls from, committing offsets.
pub const PULL_TOPIC: &str = "cpull";
/// Queues of each topic.
pub const QUEUES: u32 = 4;
/// The simple-consumer group.
pub const POP_GROUP: &str = "cg-pop";
/// The pull-consumer group.
pub const PULL_GROUP: &str = "cg-pull";
/// Invisible time of the child's pops: far longer than any run, so nothing the child popped is
/// redelivered to it; after a restart in-flight messages come back at once anyway.
pub const POP_INVISIBLE_MS: u64 = 60_000;
/// Most messages per pop of the child.
pub const POP_BATCH: usize = 4;
/// Most messages per pull of the child.
pub const PULL_BATCH: usize = 5;
/// The child leaves about one popped message in `SKIP_ONE_IN` unacknowledged (see [`skipped`]),
/// so that some popped messages are in flight when it is killed.
pub const SKIP_ONE_IN: u64 = 7;

/// The configuration of the crash test (child and verifier alike): SYNC_FLUSH, small files,
/// the consumer snapshot every `persist_interval_ms`, short minimum invisible time.
pub fn config(dir: &Path, persist_interval_ms: u64) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.store.flush_mode = FlushMode::Sync;
    c.store.consume_queue_entries_per_file = 1024;
    c.store.index_slots_per_file = 4096;
    c.store.index_entries_per_file = 16 * 1024;
    c.consumer.offset_persist_interval_ms = persist_interval_ms;
    c.consumer.min_invisible_ms = 100;
    c.consumer.retry_backoff = "0s".into();
    c
}

/// Message `seq` of `topic`: a self-checking body (see [`crate::payload`]), small.
pub fn message(topic: &str, seq: u64) -> Message {
    let mut body = payload::body(seq);
    body.truncate(8 + payload::pattern_len(seq).min(200));
    Message::new(topic, body).with_key(format!("seq-{seq}"))
}

/// Checks a stored message against [`message`]; returns its seq.
///
/// # Errors
/// What differs.
pub fn check(m: &StoredMessage) -> Result<u64, String> {
    let seq = payload::claimed_seq(&m.body).ok_or("body too short")?;
    let want = message(&m.topic, seq);
    if m.body != want.body || m.keys != want.keys {
        return Err(format!("seq {seq}: body or keys differ"));
    }
    Ok(seq)
}

/// Whether the child leaves message `seq` unacknowledged.
pub fn skipped(seq: u64) -> bool {
    payload::mix(seq ^ 0xACC).is_multiple_of(SKIP_ONE_IN)
}

/// One line of the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Store open, consumers starting.
    Ready,
    /// Popped `seq` with this attempt.
    Popped(u64, u32),
    /// About to acknowledge `seq`.
    Acking(u64),
    /// `seq` acknowledged.
    Acked(u64),
    /// About to commit `(queue, offset)`.
    Committing(u32, u64),
    /// Committed `(queue, offset)`.
    Committed(u32, u64),
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready => write!(f, "READY"),
            Self::Popped(s, a) => write!(f, "POPPED {s} {a}"),
            Self::Acking(s) => write!(f, "ACKING {s}"),
            Self::Acked(s) => write!(f, "ACKED {s}"),
            Self::Committing(q, o) => write!(f, "COMMITTING {q} {o}"),
            Self::Committed(q, o) => write!(f, "COMMITTED {q} {o}"),
        }
    }
}

impl FromStr for Line {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let bad = || format!("not a consume-child line: {line:?}");
        let mut it = line.split(' ');
        let word = it.next().ok_or_else(bad)?;
        let mut num =
            || -> Result<u64, String> { it.next().and_then(|s| s.parse().ok()).ok_or_else(bad) };
        let small = |v: u64| u32::try_from(v).map_err(|_| bad());
        let parsed = match word {
            "READY" => Self::Ready,
            "POPPED" => Self::Popped(num()?, small(num()?)?),
            "ACKING" => Self::Acking(num()?),
            "ACKED" => Self::Acked(num()?),
            "COMMITTING" => Self::Committing(small(num()?)?, num()?),
            "COMMITTED" => Self::Committed(small(num()?)?, num()?),
            _ => return Err(bad()),
        };
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_roundtrip() {
        for l in [
            Line::Ready,
            Line::Popped(7, 2),
            Line::Acking(8),
            Line::Acked(9),
            Line::Committing(3, 10),
            Line::Committed(1, 11),
        ] {
            assert_eq!(l.to_string().parse::<Line>(), Ok(l));
        }
        assert!("ACKED".parse::<Line>().is_err());
        assert!("ACKED 1 2".parse::<Line>().is_err());
        assert!("NOPE 1".parse::<Line>().is_err());
        assert!((0..100).any(skipped) && !(0..100).all(skipped));
    }
}
