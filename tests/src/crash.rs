//! The contract between the T1a crash test and its child process `rg-crash-writer`: the store
//! configuration both open, the messages the child sends, and the lines it prints.
//!
//! Protocol (stdout, one line each, flushed immediately):
//! - `READY after_crash=<0|1> cut_tail=<0|1> log_end=<u64>` once the store is open;
//! - `ACK <seq> <queue id> <queue offset> <physical offset> <message id>` per acknowledged send;
//! - `ERR <seq> <error kind>` per failed send (none are expected).
//!
//! An ack is printed only after `Producer::send` returned `Ok`: under `SYNC_FLUSH` the record is
//! then durable, under `ASYNC_FLUSH` it is in the page cache, which outlives a killed process.
//! Either way the test holds the store to exactly the acks it has read.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rocketgate_core::{Config, FlushMode, Message, StoredMessage};

use crate::payload;

/// Topic the child writes to.
pub const TOPIC: &str = "crash";
/// Queues of [`TOPIC`].
pub const QUEUES: u32 = 4;
/// CommitLog segment size: small, so that segments roll every few dozen messages and a kill
/// often lands while a segment is being closed or the next one created.
pub const SEGMENT_SIZE: u64 = 128 * 1024;

/// The store configuration of the crash test (child and verifier alike): small segments, small
/// ConsumeQueue and index files so that they roll too.
pub fn config(dir: &Path, flush_mode: FlushMode) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = SEGMENT_SIZE;
    c.store.flush_mode = flush_mode;
    c.store.consume_queue_entries_per_file = 2048;
    c.store.index_slots_per_file = 4096;
    c.store.index_entries_per_file = 16 * 1024;
    c
}

/// The message with sequence number `seq`.
pub fn message(seq: u64) -> Message {
    Message::new(TOPIC, payload::body(seq))
        .with_key(key(seq))
        .with_tag(format!("t{}", seq % 5))
        .with_property("seq", seq.to_string())
}

/// The key of message `seq`.
pub fn key(seq: u64) -> String {
    format!("seq-{seq}")
}

/// Checks a stored message against [`message`] for the seq its body claims; returns the seq.
///
/// # Errors
/// What differs.
pub fn check(m: &StoredMessage) -> Result<u64, String> {
    let seq = payload::verify(&m.body)?;
    let want = message(seq);
    if m.topic != want.topic
        || m.keys != want.keys
        || m.tag != want.tag
        || m.properties != want.properties
    {
        return Err(format!(
            "seq {seq}: metadata differs: topic {:?} keys {:?} tag {:?} properties {:?}",
            m.topic, m.keys, m.tag, m.properties
        ));
    }
    Ok(seq)
}

/// One acknowledged send, as printed by the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Sequence number of the message.
    pub seq: u64,
    /// Queue it went to.
    pub queue_id: u32,
    /// Its offset in that queue.
    pub queue_offset: u64,
    /// Its CommitLog offset.
    pub physical_offset: u64,
    /// Its message id.
    pub message_id: String,
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ACK {} {} {} {} {}",
            self.seq, self.queue_id, self.queue_offset, self.physical_offset, self.message_id
        )
    }
}

impl FromStr for Ack {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let bad = || format!("not an ack line: {line:?}");
        let mut it = line.split(' ');
        if it.next() != Some("ACK") {
            return Err(bad());
        }
        let mut num =
            || -> Result<u64, String> { it.next().and_then(|s| s.parse().ok()).ok_or_else(bad) };
        let (seq, queue_id, queue_offset, physical_offset) = (num()?, num()?, num()?, num()?);
        let message_id = it.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            seq,
            queue_id: u32::try_from(queue_id).map_err(|_| bad())?,
            queue_offset,
            physical_offset,
            message_id: message_id.to_owned(),
        })
    }
}

/// The flush mode as given on the child's command line.
pub fn flush_mode_arg(mode: FlushMode) -> &'static str {
    match mode {
        FlushMode::Sync => "SYNC",
        FlushMode::Async => "ASYNC",
    }
}

/// Parses [`flush_mode_arg`]'s output.
///
/// # Errors
/// Anything else.
pub fn parse_flush_mode(arg: &str) -> Result<FlushMode, String> {
    match arg {
        "SYNC" => Ok(FlushMode::Sync),
        "ASYNC" => Ok(FlushMode::Async),
        _ => Err(format!("flush mode must be SYNC or ASYNC, not {arg:?}")),
    }
}

/// The child's `READY` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The store was recovered after a crash.
    pub after_crash: bool,
    /// Recovery cut a torn tail.
    pub cut_tail: bool,
    /// CommitLog end after recovery.
    pub log_end: u64,
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "READY after_crash={} cut_tail={} log_end={}",
            u8::from(self.after_crash),
            u8::from(self.cut_tail),
            self.log_end
        )
    }
}

impl FromStr for Ready {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let bad = || format!("not a ready line: {line:?}");
        let rest = line.strip_prefix("READY ").ok_or_else(bad)?;
        let mut r = Self {
            after_crash: false,
            cut_tail: false,
            log_end: 0,
        };
        for kv in rest.split(' ') {
            match kv.split_once('=') {
                Some(("after_crash", v)) => r.after_crash = v == "1",
                Some(("cut_tail", v)) => r.cut_tail = v == "1",
                Some(("log_end", v)) => r.log_end = v.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_roundtrip() {
        let a = Ack {
            seq: 7,
            queue_id: 3,
            queue_offset: 9,
            physical_offset: 1234,
            message_id: "01ABC".into(),
        };
        assert_eq!(a.to_string().parse::<Ack>(), Ok(a));
        assert!("ACK 1 2 3".parse::<Ack>().is_err());
        let r = Ready {
            after_crash: true,
            cut_tail: false,
            log_end: 42,
        };
        assert_eq!(r.to_string().parse::<Ready>(), Ok(r));
    }
}
