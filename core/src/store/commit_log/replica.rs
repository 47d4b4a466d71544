//! The CommitLog seen by replication: reading whole records as raw bytes for a follower (on the
//! master) and appending them at the same offsets (on a follower).
//!
//! Owns: the chunk format ([`Chunk`]), the checks a follower makes before it writes anything,
//! and the typed errors of both sides ([`ReplError`]). It must not know any transport, nor
//! epochs (see `crate::replication`).
//!
//! Invariants:
//! - A chunk starts at a record start and holds whole records only, all in one segment, each
//!   verified (magic, length, CRC, physical offset) by the reader and again by the follower.
//! - A follower writes nothing of a chunk unless every record in it passed its checks and the
//!   chunk starts exactly at its write end (a gap or an overlap is refused).
//! - Records keep their bytes: the follower's segment files are byte-identical to the
//!   master's, fillers included (a sealed chunk makes the follower write the same filler).
//! - The follower's per-queue next offsets advance as if it had appended the records itself,
//!   and a topic's deletion marker resets them where it stands in the chunk.

use std::sync::atomic::Ordering;

use super::{CommitLog, RollGuard};
use crate::store::error::Error;
use crate::store::record::{self, Peek, RecordView};
use crate::store::store_ops;

/// A run of whole records read from a master's CommitLog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// CommitLog offset of the first byte of `data`.
    pub(crate) from: u64,
    /// Whole records, back to back (never a filler, never a partial record).
    pub(crate) data: Vec<u8>,
    /// Whether the segment holding `from` ends right after `data` (the master closed it with a
    /// filler, or fewer than 8 bytes were left): the next chunk starts at the next segment.
    pub(crate) seals_segment: bool,
}

/// Why a replication read or append was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplError {
    /// The offset was deleted by retention: the follower must start again from `min` (a
    /// segment start) with an empty log (or from the master's oldest KV snapshot).
    #[error("offset {from} is below the oldest retained offset {min}")]
    BelowRetained {
        /// Requested offset.
        from: u64,
        /// The master's oldest retained offset.
        min: u64,
    },
    /// The offset is past what the master has confirmed.
    #[error("offset {from} is beyond the confirmed end {end}")]
    BeyondEnd {
        /// Requested offset.
        from: u64,
        /// Confirmed end.
        end: u64,
    },
    /// The offset is not where a record starts.
    #[error("offset {0} is not a record start")]
    NotRecordStart(u64),
    /// The chunk starts after the follower's end: records are missing in between.
    #[error("chunk starts at {got}, after the local end {end} (gap)")]
    Gap {
        /// Local end.
        end: u64,
        /// Chunk start.
        got: u64,
    },
    /// The chunk starts before the follower's end: it would overwrite records.
    #[error("chunk starts at {got}, before the local end {end} (overlap)")]
    Overlap {
        /// Local end.
        end: u64,
        /// Chunk start.
        got: u64,
    },
    /// A record of the chunk failed its checks; nothing was written.
    #[error("chunk refused at offset {offset}: {reason}")]
    BadChunk {
        /// Offset of the offending record.
        offset: u64,
        /// What failed.
        reason: String,
    },
    /// A storage error.
    #[error(transparent)]
    Store(#[from] Error),
}

/// The outcome of a follower's append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplAppended {
    /// The new local write end.
    pub(crate) end: u64,
    /// Records written.
    pub(crate) records: u64,
}

fn bad(offset: u64, reason: impl Into<String>) -> ReplError {
    ReplError::BadChunk {
        offset,
        reason: reason.into(),
    }
}

impl CommitLog {
    /// Durably cuts the log at `offset` (a record start at or below the end, checked by the
    /// caller): the recovery's torn-tail cut (zeroes the rest of its segment, deletes later
    /// segments newest first, fsyncs the directory).
    ///
    /// # Errors
    /// I/O errors.
    pub(crate) fn cut_at(&self, offset: u64) -> Result<(), Error> {
        let _w = self.writer.lock();
        let segments = self.segments.read().clone();
        self.cut_after(&segments, offset, true)?;
        self.wrote.store(offset, Ordering::Release);
        self.flushed.store(offset, Ordering::Release);
        Ok(())
    }

    /// The segment size (a follower's must equal its master's).
    pub(crate) fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Reads whole records from `from` (a record start, or `limit`) up to `max_bytes` (at
    /// least one record when one is there) and below `limit`, all from one segment.
    ///
    /// # Errors
    /// [`ReplError::BelowRetained`], [`ReplError::BeyondEnd`], [`ReplError::NotRecordStart`].
    pub(crate) fn read_chunk(
        &self,
        from: u64,
        max_bytes: usize,
        limit: u64,
    ) -> Result<Chunk, ReplError> {
        let min = self.min_offset();
        if from < min {
            return Err(ReplError::BelowRetained { from, min });
        }
        if from > limit {
            return Err(ReplError::BeyondEnd { from, end: limit });
        }
        let mut chunk = Chunk {
            from,
            data: Vec::new(),
            seals_segment: false,
        };
        if from == limit {
            return Ok(chunk);
        }
        let Some(seg) = self.segment_at(from) else {
            return Err(ReplError::NotRecordStart(from));
        };
        let len = seg.file.len();
        let start = (from - seg.base) as usize;
        let mut at = start;
        loop {
            let pos = seg.base + at as u64;
            if pos >= limit {
                break;
            }
            let remaining = len - at;
            if remaining < 8 {
                chunk.seals_segment = true;
                break;
            }
            match seg.file.slice(at, 8).map(record::peek) {
                Some(Peek::Blank { len: b }) if b == remaining => {
                    chunk.seals_segment = true;
                    break;
                }
                Some(Peek::Record { len: r }) if r <= remaining && pos + r as u64 <= limit => {
                    if at > start && at - start + r > max_bytes {
                        break;
                    }
                    let buf = seg.file.slice(at, r).unwrap_or(&[]);
                    if RecordView::parse(buf, len, Some(pos)).is_err() {
                        if at == start {
                            return Err(ReplError::NotRecordStart(from));
                        }
                        return Err(Error::Corrupted {
                            path: seg.file.path().to_path_buf(),
                            offset: pos,
                            reason: "record failed verification",
                        }
                        .into());
                    }
                    at += r;
                }
                _ if at == start => return Err(ReplError::NotRecordStart(from)),
                _ => {
                    return Err(Error::Corrupted {
                        path: seg.file.path().to_path_buf(),
                        offset: pos,
                        reason: "no record where one was expected",
                    }
                    .into())
                }
            }
        }
        if let Some(bytes) = seg.file.slice(start, at - start) {
            chunk.data.extend_from_slice(bytes);
        }
        Ok(chunk)
    }

    /// Appends a chunk read from a master's log at the same offsets: every record is checked
    /// first and nothing is written unless all pass. With an empty log the chunk may start at
    /// any multiple of the segment size (a follower starting at the master's oldest segment).
    ///
    /// # Errors
    /// [`ReplError::Gap`], [`ReplError::Overlap`], [`ReplError::BadChunk`], storage errors
    /// (poisoned log, disk full, I/O).
    pub(crate) fn append_replicated(
        &self,
        chunk: &Chunk,
        guard: &dyn RollGuard,
    ) -> Result<ReplAppended, ReplError> {
        let mut w = self.writer.lock();
        if self.is_poisoned() {
            return Err(self.poisoned_error().into());
        }
        let end = self.wrote.load(Ordering::Relaxed);
        let current = self.segments.read().last().cloned();
        let empty_start = current.is_none() && chunk.from.is_multiple_of(self.segment_size);
        if chunk.from != end && !empty_start {
            return Err(if chunk.from > end {
                ReplError::Gap {
                    end,
                    got: chunk.from,
                }
            } else {
                ReplError::Overlap {
                    end,
                    got: chunk.from,
                }
            });
        }
        // Check everything before writing anything.
        let mut seg_end = current
            .as_ref()
            .map(|s| s.end())
            .filter(|e| *e > chunk.from);
        let mut pos = chunk.from;
        let mut at = 0usize;
        let mut records = Vec::new();
        // In log order: `(topic, Some(queue), next)` after a record, `(topic, None, 0)` after
        // the topic's deletion marker (its offsets start again from 0).
        let mut next_offsets: Vec<(String, Option<u32>, u64)> = Vec::new();
        while at < chunk.data.len() {
            let rest = &chunk.data[at..];
            let Peek::Record { len } = record::peek(rest) else {
                return Err(bad(pos, "no record header"));
            };
            let limit = *seg_end.get_or_insert(pos + self.segment_size);
            if pos + len as u64 > limit {
                return Err(bad(pos, "record crosses a segment boundary"));
            }
            let view = RecordView::parse(rest, self.segment_size as usize, Some(pos))
                .map_err(|e| bad(pos, e.to_string()))?;
            if store_ops::is_store_op(&view) {
                if let Some(topic) = store_ops::deleted_topic(&view) {
                    next_offsets.push((topic.to_owned(), None, 0));
                }
            } else {
                let (topic, qid, qo) = (view.topic, view.fields.queue_id, view.fields.queue_offset);
                let known = next_offsets
                    .iter()
                    .rev()
                    .find(|(t, q, _)| t == topic && q.is_none_or(|q| q == qid))
                    .map(|e| e.2);
                let next = known.unwrap_or_else(|| queue_next(&w.queue_offsets, topic, qid));
                if qo < next {
                    return Err(bad(
                        pos,
                        format!("queue offset {qo} of {topic}/{qid} below the local next {next}"),
                    ));
                }
                next_offsets.push((topic.to_owned(), Some(qid), qo + 1));
            }
            records.push((pos, at, len));
            at += len;
            pos += len as u64;
            if seg_end == Some(pos) {
                seg_end = None;
            }
        }
        // Write.
        let mut wrote = chunk.from;
        for &(phy, off, len) in &records {
            let seg = self.segment_for_write(phy, len, guard)?;
            if seg.base > phy {
                // Cannot happen after the checks above: the record would move.
                return Err(bad(phy, "record would move to another segment"));
            }
            seg.file
                .write_at((phy - seg.base) as usize, &chunk.data[off..off + len]);
            wrote = phy + len as u64;
            self.wrote.store(wrote, Ordering::Release);
        }
        for (topic, qid, next) in next_offsets {
            let Some(qid) = qid else {
                w.queue_offsets.remove(&topic);
                continue;
            };
            let v = w.queue_offsets.entry(topic).or_default();
            let i = qid as usize;
            if v.len() <= i {
                v.resize(i + 1, 0);
            }
            v[i] = v[i].max(next);
        }
        if chunk.seals_segment {
            let seg = self.segments.read().last().cloned();
            match seg {
                Some(seg) if wrote >= seg.base && wrote <= seg.end() => {
                    let remaining = seg.end() - wrote;
                    if remaining >= 8 {
                        seg.file.write_at(
                            (wrote - seg.base) as usize,
                            &record::blank(remaining as u32),
                        );
                    }
                    wrote = seg.end();
                    self.wrote.store(wrote, Ordering::Release);
                }
                _ => return Err(bad(wrote, "seal without a segment to close")),
            }
        }
        Ok(ReplAppended {
            end: wrote,
            records: records.len() as u64,
        })
    }
}

fn queue_next(offsets: &std::collections::HashMap<String, Vec<u64>>, topic: &str, qid: u32) -> u64 {
    offsets
        .get(topic)
        .and_then(|v| v.get(qid as usize))
        .copied()
        .unwrap_or(0)
}
