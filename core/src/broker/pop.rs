//! Pop consumption state: which messages of a queue a consumer group has been handed, which are
//! in flight until when, and which are acknowledged.
//!
//! Owns: [`QueuePop`] (one per group, topic and queue) and [`TopicPop`] (the queues of one group
//! and topic). Pure state transitions over a [`Source`] of queue entries and messages: no
//! locks, no I/O of its own (the caller holds one mutex per group and topic).
//!
//! Invariants of a `QueuePop`:
//! - every offset below `low` is acknowledged (or filtered out, which counts as acknowledged);
//! - every offset in `[low, next)` is exactly one of: in flight, acknowledged (in `acked`), or
//!   held back (FIFO: its message group had an earlier message in flight); offsets at or past
//!   `next` may be in flight or acknowledged too (a FIFO look-ahead past a full held table), and
//!   a scan skips them;
//! - an in-flight entry carries the delivery `seq` of the one valid receipt handle for it; a
//!   redelivery or a visibility change replaces the seq, so older handles become stale;
//! - FIFO: at most one message per message group is in flight, and a group's messages are
//!   released in queue order. Messages without a group are never held back.
//!
//! Persistence (see `consumer_state.rs`): `low`, `acked` and the attempt counts of in-flight
//! messages are snapshotted; acks are also journaled, so after a restart every unacknowledged
//! message in `[low, …)` is delivered again (attempt + 1) and acknowledged ones are not.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::filter::Filter;
use crate::error::Result;
use crate::message::StoredMessage;
use crate::store::consume_queue::CqEntry;

/// Most entries scanned past a blocked FIFO group before a pop gives up on a queue.
pub const HELD_LIMIT: usize = 1024;
/// Most entries scanned per queue per pop (bounds the work of a pop over filtered-out messages).
pub const SCAN_LIMIT: usize = 4096;

/// Where a pop reads queue entries and messages from (the store, in production).
pub trait Source {
    /// `(min, max)` offsets of a queue.
    fn range(&self, queue_id: u32) -> (u64, u64);
    /// Entries of a queue from `from`.
    fn entries(&self, queue_id: u32, from: u64, max: usize) -> Vec<(u64, CqEntry)>;
    /// The message of an entry.
    ///
    /// # Errors
    /// Store errors (corruption).
    fn message(&self, entry: &CqEntry) -> Result<Option<StoredMessage>>;
}

/// Parameters of one pop.
#[derive(Debug)]
pub struct PopParams<'a> {
    /// The subscription's filter.
    pub filter: &'a Filter,
    /// Now (ms).
    pub now_ms: i64,
    /// Invisible duration of delivered messages (ms).
    pub invisible_ms: i64,
    /// FIFO delivery.
    pub fifo: bool,
    /// Hand expired messages back as [`Expired`] (to be retried through the group's retry
    /// topic) instead of redelivering them in place. FIFO redelivers in place regardless.
    pub revive: bool,
    /// Deliveries after which a message is dead (handed back with `dead = true`).
    pub max_attempts: u32,
    /// How long a handed-back message stays invisible while it is being revived (ms).
    pub revive_grace_ms: i64,
    /// Byte budget of one pop, counted in stored record sizes: a message that would take the
    /// deliveries past it is left for a later pop, unless it would be the first one.
    pub max_bytes: usize,
}

/// What is left of a pop's byte budget ([`PopParams::max_bytes`]).
struct Budget {
    left: usize,
}

impl Budget {
    /// The budget left after what `out` already holds (earlier queues of the same pop).
    fn new(out: &[Delivery], max_bytes: usize) -> Self {
        let used: usize = out.iter().map(|d| d.size as usize).sum();
        Self {
            left: max_bytes.saturating_sub(used),
        }
    }

    /// Whether a record of `size` bytes may be delivered: within the budget, or the first.
    fn fits(&self, out: &[Delivery], size: u32) -> bool {
        out.is_empty() || size as usize <= self.left
    }

    fn take(&mut self, size: u32) {
        self.left = self.left.saturating_sub(size as usize);
    }
}

/// An in-flight message whose invisible time passed and that must be retried elsewhere or
/// dead-lettered. It stays in flight (invisible) until the caller acknowledges it with `seq`.
#[derive(Debug, Clone)]
pub struct Expired {
    /// Queue offset.
    pub offset: u64,
    /// Current delivery seq (ack it with this once revived).
    pub seq: u64,
    /// Its queue entry.
    pub entry: CqEntry,
    /// Deliveries so far, counting those before it was retried.
    pub attempts: u32,
    /// Whether it reached the maximum and goes to the dead-letter queue.
    pub dead: bool,
}

/// One delivered message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: StoredMessage,
    /// Delivery seq for its receipt handle.
    pub seq: u64,
    /// Invisible until (ms).
    pub deadline_ms: i64,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// Stored record size (bytes), what the pop's byte budget counts.
    pub size: u32,
}

#[derive(Debug, Clone)]
struct Inflight {
    seq: u64,
    deadline_ms: i64,
    attempt: u32,
    /// Deliveries before this copy existed (its record's reconsume count).
    reconsume: u32,
    group: Option<String>,
    entry: CqEntry,
}

/// Why an ack or visibility change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Not in flight with that handle (acked already, redelivered, or superseded).
    NotInFlight,
}

/// Persisted part of a queue's pop state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePopSnapshot {
    /// Everything below is acknowledged.
    pub low: u64,
    /// Acknowledged offsets at or above `low`.
    pub acked: Vec<u64>,
    /// Offset → deliveries so far, for messages in flight.
    pub attempts: Vec<(u64, u32)>,
}

/// Pop state of one queue for one group.
#[derive(Debug, Default)]
pub struct QueuePop {
    started: bool,
    low: u64,
    next: u64,
    inflight: BTreeMap<u64, Inflight>,
    /// `(deadline, offset)` of every in-flight message, to find expired ones without a scan.
    deadlines: BTreeSet<(i64, u64)>,
    acked: BTreeSet<u64>,
    held: BTreeMap<u64, String>,
    attempts: BTreeMap<u64, u32>,
}

impl QueuePop {
    /// State restored from a snapshot.
    pub fn restore(s: &QueuePopSnapshot) -> Self {
        Self {
            started: true,
            low: s.low,
            next: s.low,
            acked: s.acked.iter().copied().filter(|o| *o >= s.low).collect(),
            attempts: s.attempts.iter().copied().collect(),
            ..Self::default()
        }
    }

    /// The persisted part.
    pub fn snapshot(&self) -> QueuePopSnapshot {
        let mut attempts: BTreeMap<u64, u32> = self.attempts.clone();
        for (o, e) in &self.inflight {
            attempts.insert(*o, e.attempt);
        }
        QueuePopSnapshot {
            low: self.low,
            acked: self.acked.iter().copied().collect(),
            attempts: attempts.into_iter().collect(),
        }
    }

    /// Everything below this offset is acknowledged.
    pub fn low(&self) -> u64 {
        self.low
    }

    /// Messages in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Acknowledged messages at or above `low`.
    pub fn acked_above_low(&self) -> usize {
        self.acked.len()
    }

    /// Earliest visibility deadline of an in-flight message.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    fn set_deadline(&mut self, offset: u64, old: Option<i64>, new: Option<i64>) {
        if let Some(d) = old {
            self.deadlines.remove(&(d, offset));
        }
        if let Some(d) = new {
            self.deadlines.insert((d, offset));
        }
    }

    fn start(&mut self, min: u64) {
        if !self.started {
            self.started = true;
            // Acks replayed from the journal before the first pop count from the start.
            self.acked = self.acked.split_off(&min);
            self.low = min;
            while self.acked.remove(&self.low) {
                self.low += 1;
            }
            self.next = self.low;
        }
        if self.next < min {
            // Retention removed messages this group never consumed.
            self.inflight = self.inflight.split_off(&min);
            let inflight = &self.inflight;
            self.deadlines.retain(|(_, o)| inflight.contains_key(o));
            self.acked = self.acked.split_off(&min);
            self.held = self.held.split_off(&min);
            self.attempts = self.attempts.split_off(&min);
            self.low = self.low.max(min);
            self.next = min;
        }
        self.low = self.low.max(min).min(self.next.max(min));
    }

    fn advance_low(&mut self) {
        while self.low < self.next && self.acked.remove(&self.low) {
            self.attempts.remove(&self.low);
            self.low += 1;
        }
    }

    fn deliver(
        &mut self,
        offset: u64,
        entry: CqEntry,
        message: StoredMessage,
        p: &PopParams<'_>,
        seq: &mut dyn FnMut() -> u64,
        out: &mut Vec<Delivery>,
    ) {
        let attempt = self.attempts.remove(&offset).map_or(1, |a| a + 1);
        let reconsume = message.reconsume_times;
        let d = Delivery {
            seq: seq(),
            deadline_ms: p.now_ms + p.invisible_ms,
            attempt: attempt + reconsume,
            size: entry.size,
            message,
        };
        self.set_deadline(offset, None, Some(d.deadline_ms));
        self.inflight.insert(
            offset,
            Inflight {
                seq: d.seq,
                deadline_ms: d.deadline_ms,
                attempt,
                reconsume,
                group: if p.fifo {
                    d.message.message_group.clone()
                } else {
                    None
                },
                entry,
            },
        );
        out.push(d);
    }

    /// Hands out up to `need` messages of queue `queue_id`: expired in-flight ones first
    /// (attempt + 1), then held-back FIFO ones whose group is free, then new ones. Returns
    /// whether the scan stopped at [`SCAN_LIMIT`] with more entries left to look at.
    ///
    /// # Errors
    /// Store errors reading a message.
    // The two outputs and the seq source are separate on purpose: the caller owns them
    // across queues and topics of one pop.
    #[allow(clippy::too_many_arguments)]
    pub fn pop(
        &mut self,
        src: &dyn Source,
        queue_id: u32,
        need: usize,
        p: &PopParams<'_>,
        seq: &mut dyn FnMut() -> u64,
        out: &mut Vec<Delivery>,
        expired_out: &mut Vec<Expired>,
    ) -> Result<bool> {
        let (min, _) = src.range(queue_id);
        self.start(min);
        let target = out.len() + need;
        let mut budget = Budget::new(out, p.max_bytes);

        // 1. In-flight messages whose invisible time passed.
        let mut expired: Vec<u64> = self
            .deadlines
            .iter()
            .take_while(|(d, _)| *d <= p.now_ms)
            .map(|(_, o)| *o)
            .collect();
        expired.sort_unstable();
        for offset in expired {
            let Some(e) = self.inflight.get(&offset).cloned() else {
                continue;
            };
            let attempts = e.attempt + e.reconsume;
            if p.revive || attempts >= p.max_attempts {
                // Retried elsewhere or dead-lettered by the caller; invisible meanwhile.
                let grace = p.now_ms + p.revive_grace_ms;
                self.set_deadline(offset, Some(e.deadline_ms), Some(grace));
                if let Some(f) = self.inflight.get_mut(&offset) {
                    f.deadline_ms = grace;
                }
                expired_out.push(Expired {
                    offset,
                    seq: e.seq,
                    entry: e.entry,
                    attempts,
                    dead: attempts >= p.max_attempts,
                });
                continue;
            }
            if out.len() >= target || !budget.fits(out, e.entry.size) {
                continue;
            }
            match src.message(&e.entry)? {
                Some(message) => {
                    let d = Delivery {
                        seq: seq(),
                        deadline_ms: p.now_ms + p.invisible_ms,
                        attempt: e.attempt + 1 + e.reconsume,
                        size: e.entry.size,
                        message,
                    };
                    self.set_deadline(offset, Some(e.deadline_ms), Some(d.deadline_ms));
                    budget.take(e.entry.size);
                    if let Some(f) = self.inflight.get_mut(&offset) {
                        f.seq = d.seq;
                        f.deadline_ms = d.deadline_ms;
                        f.attempt += 1;
                    }
                    out.push(d);
                }
                None => {
                    // Gone (retention): nothing left to deliver.
                    self.set_deadline(offset, Some(e.deadline_ms), None);
                    self.inflight.remove(&offset);
                    self.acked.insert(offset);
                }
            }
        }

        // 2. FIFO: held-back messages whose group is free now.
        let mut busy: HashSet<String> = self
            .inflight
            .values()
            .filter_map(|e| e.group.clone())
            .collect();
        if p.fifo && !self.held.is_empty() {
            let held: Vec<(u64, String)> = self.held.iter().map(|(o, g)| (*o, g.clone())).collect();
            for (offset, group) in held {
                if out.len() >= target {
                    break;
                }
                if busy.contains(&group) {
                    continue;
                }
                let entry = src
                    .entries(queue_id, offset, 1)
                    .into_iter()
                    .find(|(o, _)| *o == offset);
                if let Some((_, e)) = &entry {
                    if !budget.fits(out, e.size) {
                        break;
                    }
                    budget.take(e.size);
                }
                self.held.remove(&offset);
                busy.insert(group);
                let found = match entry {
                    Some((_, e)) => src.message(&e)?.map(|m| (e, m)),
                    None => None,
                };
                match found {
                    Some((e, m)) => self.deliver(offset, e, m, p, seq, out),
                    None => {
                        self.acked.insert(offset);
                    }
                }
            }
            // Later messages of a group with a held one must wait for it.
            busy.extend(self.held.values().cloned());
        }

        // 3. New messages, from `next`. `next` only advances over offsets that are classified
        // (in flight, acknowledged or held); past a full `held`, a FIFO scan looks ahead for
        // other groups without classifying the busy group's messages, so one long group never
        // blocks the others.
        let mut scanned = 0;
        let mut cursor = self.next;
        let mut contiguous = true;
        let mut more = false;
        'scan: while out.len() < target {
            let entries = src.entries(queue_id, cursor, 64);
            if entries.is_empty() {
                break;
            }
            for (offset, e) in entries {
                if out.len() >= target {
                    break 'scan;
                }
                if scanned >= SCAN_LIMIT {
                    more = true;
                    break 'scan;
                }
                scanned += 1;
                // Holes in the queue (cut entries) count as consumed.
                for hole in cursor..offset {
                    self.acked.insert(hole);
                }
                cursor = offset + 1;
                let classified = self.acked.contains(&offset)
                    || self.inflight.contains_key(&offset)
                    || self.held.contains_key(&offset);
                if classified {
                    if contiguous {
                        self.next = offset + 1;
                    }
                    continue;
                }
                if !p.filter.may_match(e.tag_hash) {
                    self.acked.insert(offset);
                    if contiguous {
                        self.next = offset + 1;
                    }
                    continue;
                }
                if !budget.fits(out, e.size) {
                    break 'scan;
                }
                let Some(m) = src.message(&e)? else {
                    break 'scan;
                };
                if !p.filter.matches(&m) {
                    self.acked.insert(offset);
                    if contiguous {
                        self.next = offset + 1;
                    }
                    continue;
                }
                if p.fifo {
                    if let Some(g) = &m.message_group {
                        if busy.contains(g) {
                            if contiguous && self.held.len() < HELD_LIMIT {
                                self.held.insert(offset, g.clone());
                                self.next = offset + 1;
                            } else {
                                // Look ahead; this one is read again by a later pop.
                                contiguous = false;
                            }
                            continue;
                        }
                        busy.insert(g.clone());
                    }
                }
                if contiguous {
                    self.next = offset + 1;
                }
                budget.take(e.size);
                self.deliver(offset, e, m, p, seq, out);
            }
        }
        self.advance_low();
        Ok(more)
    }

    /// Acknowledges the in-flight message at `offset` delivered with `seq`.
    ///
    /// # Errors
    /// [`Stale`] if it is not in flight under that seq.
    pub fn ack(&mut self, offset: u64, seq: u64) -> Result<(), Stale> {
        match self.inflight.get(&offset) {
            Some(e) if e.seq == seq => {
                let d = e.deadline_ms;
                self.set_deadline(offset, Some(d), None);
                self.inflight.remove(&offset);
                self.acked.insert(offset);
                self.advance_low();
                Ok(())
            }
            _ => Err(Stale::NotInFlight),
        }
    }

    /// Takes the in-flight message at `offset` (handle `seq`) out of circulation for a retry:
    /// it stays invisible until `grace_deadline_ms` while the caller moves it, then acks it.
    ///
    /// # Errors
    /// [`Stale`] if it is not in flight under that seq.
    pub fn take_for_retry(
        &mut self,
        offset: u64,
        seq: u64,
        grace_deadline_ms: i64,
        max_attempts: u32,
    ) -> Result<Expired, Stale> {
        let e = match self.inflight.get(&offset) {
            Some(e) if e.seq == seq => e.clone(),
            _ => return Err(Stale::NotInFlight),
        };
        self.set_deadline(offset, Some(e.deadline_ms), Some(grace_deadline_ms));
        if let Some(f) = self.inflight.get_mut(&offset) {
            f.deadline_ms = grace_deadline_ms;
        }
        let attempts = e.attempt + e.reconsume;
        Ok(Expired {
            offset,
            seq,
            entry: e.entry,
            attempts,
            dead: attempts >= max_attempts,
        })
    }

    /// Marks `offset` acknowledged (journal replay after a restart). Idempotent.
    pub fn replay_ack(&mut self, offset: u64) {
        if !self.started {
            // Where the queue starts is known at the first pop; keep the ack until then.
            self.acked.insert(offset);
            return;
        }
        if offset < self.low {
            return;
        }
        if let Some(e) = self.inflight.remove(&offset) {
            self.set_deadline(offset, Some(e.deadline_ms), None);
        }
        self.held.remove(&offset);
        self.acked.insert(offset);
        while self.acked.remove(&self.low) {
            self.attempts.remove(&self.low);
            self.low += 1;
        }
        self.next = self.next.max(self.low);
    }

    /// Gives the in-flight message at `offset` (handle `seq`) a new deadline and seq.
    ///
    /// # Errors
    /// [`Stale`] if it is not in flight under that seq.
    pub fn change_invisible(
        &mut self,
        offset: u64,
        seq: u64,
        deadline_ms: i64,
        new_seq: u64,
    ) -> Result<u32, Stale> {
        let (old, attempt) = match self.inflight.get_mut(&offset) {
            Some(e) if e.seq == seq => {
                let old = e.deadline_ms;
                e.seq = new_seq;
                e.deadline_ms = deadline_ms;
                (old, e.attempt + e.reconsume)
            }
            _ => return Err(Stale::NotInFlight),
        };
        self.set_deadline(offset, Some(old), Some(deadline_ms));
        Ok(attempt)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
