//! The contract between the time-semantics tests (`it/time_*.rs`) and their child process
//! `rg-time-child`: the broker configuration both open (unit-scale time), the topics, and the
//! lines the child prints.
//!
//! The child has three modes (see `src/bin/time_child.rs`):
//! - `schedule`: sends one message of delay level 1, one of level 2 and one timed at
//!   [`TIMED_AFTER_MS`], prints a [`Line::Scheduled`] per message, then [`Line::Ready`], and waits
//!   to be killed with SIGKILL;
//! - `halves`: sends `n` half messages of [`PRODUCER_GROUP`] to [`TX_TOPIC`], prints a
//!   [`Line::Half`] per half, then `READY`; with `commit` it then commits them one by one,
//!   printing [`Line::Committed`] after each commit returned; then waits to be killed;
//! - `load`: the scale test. Sends `n` timed messages due over a window, pops them all with
//!   long polling, prints one [`Line::Got`] per delivery, then its memory figures
//!   ([`Line::Memory`]) and [`Line::Done`], and exits.
//!
//! Every line is flushed at once; anything else the child prints starts with `ERR`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rocketgate_core::{Config, FlushMode, Message};

/// Topic of delayed and timed messages.
pub const DELAY_TOPIC: &str = "time-delay";
/// Topic of transactional messages.
pub const TX_TOPIC: &str = "time-tx";
/// Topic of the scale test.
pub const LOAD_TOPIC: &str = "time-load";
/// Queues of each topic.
pub const QUEUES: u32 = 4;
/// Producer group of the halves the child sends.
pub const PRODUCER_GROUP: &str = "time-pg";
/// Consumer group of the scale test.
pub const LOAD_GROUP: &str = "time-load-consumer";
/// Delay levels of these tests: level 1 is 1 s, level 2 is 2 s.
pub const DELAY_LEVELS: &str = "1s 2s";
/// Delay level durations in ms, by level (index 0 is level 1).
pub const DELAY_LEVELS_MS: [i64; 2] = [1000, 2000];
/// The timed message of the `schedule` mode is due this long after it is sent.
pub const TIMED_AFTER_MS: i64 = 2500;
/// Retry backoff of these tests, by attempt.
pub const RETRY_BACKOFF: &str = "100ms 200ms 300ms";
/// The same in ms.
pub const RETRY_BACKOFF_MS: [i64; 3] = [100, 200, 300];

/// The broker configuration of the time tests, child and verifier alike: small files, the
/// delay levels [`DELAY_LEVELS`], the retry backoff [`RETRY_BACKOFF`], a 100 ms minimum invisible
/// time, the timer progress persisted every 200 ms, and check-backs scaled down to 300 ms (first)
/// and 300 ms (interval), at most 10, each bounded by 500 ms.
pub fn config(dir: &Path, flush_mode: FlushMode) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 4 << 20;
    c.store.flush_mode = flush_mode;
    c.store.consume_queue_entries_per_file = 16 * 1024;
    c.store.index_slots_per_file = 16 * 1024;
    c.store.index_entries_per_file = 64 * 1024;
    c.timer.delay_levels = DELAY_LEVELS.into();
    c.timer.persist_interval_ms = 200;
    c.consumer.min_invisible_ms = 100;
    c.consumer.retry_backoff = RETRY_BACKOFF.into();
    c.transaction.check_first_ms = 300;
    c.transaction.check_interval_ms = 300;
    c.transaction.max_checks = 10;
    c.transaction.check_timeout_ms = 500;
    c
}

/// The message the child schedules as number `n` (0: delay level 1, 1: level 2, 2: timed at
/// `deliver_at_ms`), with a key and a property naming it.
pub fn scheduled_message(n: u32, deliver_at_ms: i64) -> Message {
    let m = Message::new(DELAY_TOPIC, format!("scheduled-{n}"))
        .with_key(format!("sched-{n}"))
        .with_tag("sched")
        .with_property("n", n.to_string());
    match n {
        0 => m.with_delay_level(1),
        1 => m.with_delay_level(2),
        _ => m.with_deliver_at(deliver_at_ms),
    }
}

/// Half message number `n` of the `halves` mode.
pub fn half_message(n: u64) -> Message {
    Message::new(TX_TOPIC, format!("half-{n}"))
        .with_key(format!("half-{n}"))
        .with_property("n", n.to_string())
}

/// Message `seq` of the scale test: its seq in the body, small.
pub fn load_message(seq: u64, deliver_at_ms: i64) -> Message {
    Message::new(LOAD_TOPIC, seq.to_le_bytes().to_vec()).with_deliver_at(deliver_at_ms)
}

/// The seq in the body of a scale-test message.
pub fn load_seq(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?))
}

/// One line of the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Everything sent; waiting to be killed (or, in `load` mode, sending starts).
    Ready,
    /// `schedule`: message `n` scheduled with this id, due at this time, for this queue.
    Scheduled {
        /// Which message (see [`scheduled_message`]).
        n: u32,
        /// Message id.
        id: String,
        /// When it is due (ms).
        deliver_at_ms: i64,
        /// Target queue.
        queue_id: u32,
    },
    /// `halves`: half `n` stored with this transaction id and message id.
    Half {
        /// Which half.
        n: u64,
        /// Transaction id.
        transaction_id: String,
        /// Message id.
        message_id: String,
    },
    /// `halves` with commits: the commit of half `n` returned `Ok`.
    Committed {
        /// Which half.
        n: u64,
    },
    /// `load`: sending finished: how many were sent, how many of them were already due when
    /// sent (delivered at once, not through the timer), and how long sending took.
    Sent {
        /// Messages sent.
        n: u64,
        /// Of which already due when sent.
        past: u64,
        /// Sending time (ms).
        took_ms: u64,
    },
    /// `load`: message `seq`, due at `deliver_at_ms`, stored in its topic at `stored_ms` (when
    /// the timer delivered it) and popped at `popped_ms`.
    Got {
        /// Which message.
        seq: u64,
        /// When it was due.
        deliver_at_ms: i64,
        /// When the timer stored it in its topic.
        stored_ms: i64,
        /// When the consumer got it.
        popped_ms: i64,
    },
    /// `load`: peak and current resident set of the child (kB, from `/proc/self/status`) at a
    /// point of the run.
    Memory {
        /// `open`, `sent` or `end`.
        at: String,
        /// VmHWM.
        hwm_kb: u64,
        /// VmRSS.
        rss_kb: u64,
    },
    /// `load`: all delivered (or gave up); the child exits.
    Done,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready => write!(f, "READY"),
            Self::Scheduled {
                n,
                id,
                deliver_at_ms,
                queue_id,
            } => write!(f, "SCHEDULED {n} {id} {deliver_at_ms} {queue_id}"),
            Self::Half {
                n,
                transaction_id,
                message_id,
            } => write!(f, "HALF {n} {transaction_id} {message_id}"),
            Self::Committed { n } => write!(f, "COMMITTED {n}"),
            Self::Sent { n, past, took_ms } => write!(f, "SENT {n} {past} {took_ms}"),
            Self::Got {
                seq,
                deliver_at_ms,
                stored_ms,
                popped_ms,
            } => write!(f, "GOT {seq} {deliver_at_ms} {stored_ms} {popped_ms}"),
            Self::Memory { at, hwm_kb, rss_kb } => write!(f, "MEMORY {at} {hwm_kb} {rss_kb}"),
            Self::Done => write!(f, "DONE"),
        }
    }
}

impl FromStr for Line {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let bad = || format!("not a time-child line: {line:?}");
        let words: Vec<&str> = line.split(' ').collect();
        let word = |i: usize| words.get(i).copied().ok_or_else(bad);
        fn num<T: FromStr>(s: &str, bad: impl Fn() -> String) -> Result<T, String> {
            s.parse().map_err(|_| bad())
        }
        let (parsed, arity) = match word(0)? {
            "READY" => (Self::Ready, 1),
            "DONE" => (Self::Done, 1),
            "SCHEDULED" => (
                Self::Scheduled {
                    n: num(word(1)?, bad)?,
                    id: word(2)?.to_owned(),
                    deliver_at_ms: num(word(3)?, bad)?,
                    queue_id: num(word(4)?, bad)?,
                },
                5,
            ),
            "HALF" => (
                Self::Half {
                    n: num(word(1)?, bad)?,
                    transaction_id: word(2)?.to_owned(),
                    message_id: word(3)?.to_owned(),
                },
                4,
            ),
            "COMMITTED" => (
                Self::Committed {
                    n: num(word(1)?, bad)?,
                },
                2,
            ),
            "SENT" => (
                Self::Sent {
                    n: num(word(1)?, bad)?,
                    past: num(word(2)?, bad)?,
                    took_ms: num(word(3)?, bad)?,
                },
                4,
            ),
            "GOT" => (
                Self::Got {
                    seq: num(word(1)?, bad)?,
                    deliver_at_ms: num(word(2)?, bad)?,
                    stored_ms: num(word(3)?, bad)?,
                    popped_ms: num(word(4)?, bad)?,
                },
                5,
            ),
            "MEMORY" => (
                Self::Memory {
                    at: word(1)?.to_owned(),
                    hwm_kb: num(word(2)?, bad)?,
                    rss_kb: num(word(3)?, bad)?,
                },
                4,
            ),
            _ => return Err(bad()),
        };
        if words.len() != arity {
            return Err(bad());
        }
        Ok(parsed)
    }
}

/// `(VmHWM, VmRSS)` of this process in kB, from `/proc/self/status`.
pub fn memory_kb() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_roundtrip() {
        for l in [
            Line::Ready,
            Line::Done,
            Line::Scheduled {
                n: 2,
                id: "ABC".into(),
                deliver_at_ms: 17,
                queue_id: 3,
            },
            Line::Half {
                n: 9,
                transaction_id: "T".into(),
                message_id: "M".into(),
            },
            Line::Committed { n: 4 },
            Line::Sent {
                n: 5,
                past: 1,
                took_ms: 30,
            },
            Line::Got {
                seq: 1,
                deliver_at_ms: 2,
                stored_ms: 3,
                popped_ms: 4,
            },
            Line::Memory {
                at: "end".into(),
                hwm_kb: 10,
                rss_kb: 9,
            },
        ] {
            assert_eq!(l.to_string().parse::<Line>(), Ok(l));
        }
        assert!("READY 1".parse::<Line>().is_err());
        assert!("GOT 1 2 3".parse::<Line>().is_err());
        assert!("NOPE".parse::<Line>().is_err());
        assert_eq!(load_seq(&load_message(77, 0).body), Some(77));
        assert!(memory_kb().is_some_and(|(hwm, rss)| hwm >= rss && rss > 0));
    }
}
