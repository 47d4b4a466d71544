//! The CommitLog record codec: how one message is laid out on disk, and the checks that decide
//! whether bytes read back are a whole, intact record.
//!
//! Owns: encoding a [`RecordDraft`] into bytes and parsing bytes into a borrowed [`RecordView`].
//! It does no I/O and knows nothing of segments, except the [`BLANK_MAGIC`] filler that ends one.
//!
//! # Byte layout, format version 1 (all integers little-endian)
//!
//! ```text
//! off  size  field
//!   0     4  total_len        whole record including this field; FIXED_LEN <= total_len <= max
//!   4     4  magic            RECORD_MAGIC_V1 (0x52_47_4C_01, "RGL" + version 1)
//!   8     4  crc32c           CRC-32C over bytes [12, total_len): every byte after this field
//!  12     8  raft_term        0 until replication fills it
//!  20     8  raft_index       0 until replication fills it
//!  28     4  queue_id
//!  32     8  queue_offset     logical offset in the ConsumeQueue of (topic, queue_id)
//!  40     8  physical_offset  CommitLog offset of this record (must equal where it is read)
//!  48     8  born_timestamp   ms since the Unix epoch, set by the producer
//!  56     8  store_timestamp  ms since the Unix epoch, set by the store
//!  64     4  reconsume_times
//!  68     4  flags            FLAG_NO_INDEX (1): not indexed by id or key;
//!                               FLAG_QUEUE_KEY (2): the ConsumeQueue stores `prepared_offset`
//!                               in its tag-hash slot (timer records: the delivery time);
//!                               FLAG_STORE_OP (4): a store operation, not a message: tag =
//!                               the operation ("delete_queues"), body = its argument (the
//!                               topic); no ConsumeQueue entry, queue_offset 0 (`store_ops.rs`)
//!  72     8  prepared_offset  CommitLog offset of the half message this one resolves, or
//!                               with FLAG_QUEUE_KEY the queue key; 0 otherwise
//!  80        variable part, in this order:
//!            topic            u16 len + UTF-8
//!            message_id       u16 len + UTF-8
//!            tag              u16 len + UTF-8 (len 0 = no tag)
//!            message_group    u16 len + UTF-8 (len 0 = none)
//!            born_host        u16 len + UTF-8 (len 0 = unknown)
//!            keys             u16 count, then per key u16 len + UTF-8
//!            properties       u16 count, then per pair u16 len + key, u32 len + value
//!            body             u32 len + bytes
//!            (nothing may follow the body: the lengths must add up to total_len exactly)
//! ```
//!
//! A segment whose remaining space cannot hold the next record is closed with a filler:
//! `[total_len = remaining u32][BLANK_MAGIC u32]` (only written when at least 8 bytes remain).
//!
//! Invariants: the CRC covers every byte after it (Kafka's coverage, not RocketMQ's body-only
//! CRC); `total_len` is validated against the bytes available and the hard maximum before any
//! other field is read; parsing never panics and never allocates on the strength of a length
//! field (a [`RecordView`] borrows from the input).

use std::collections::BTreeMap;

use bytes::Bytes;

/// Magic of a version-1 message record.
pub const RECORD_MAGIC_V1: u32 = 0x524C_4701;
/// Magic of the filler that ends a segment.
pub const BLANK_MAGIC: u32 = 0x524C_47FF;
/// Record flag: the record is not indexed by message id or key (internal journals).
pub const FLAG_NO_INDEX: u32 = 1;
/// Record flag: the ConsumeQueue entry's tag-hash slot holds `prepared_offset` instead of the
/// tag's hash (timer records keep their delivery time there).
pub const FLAG_QUEUE_KEY: u32 = 2;
/// Record flag: a store operation applied where it stands in the log (a topic's deletion), not
/// a message. Added in format version 1 without a new magic: an older binary reads it as a
/// message of the internal topic `rmq_sys_store_ops` and ignores the operation.
pub const FLAG_STORE_OP: u32 = 4;

/// Size of the fixed part of a record.
pub const FIXED_LEN: usize = 80;
/// Smallest possible record: fixed part plus empty variable fields.
pub const MIN_RECORD_LEN: usize = FIXED_LEN + 2 * 5 + 2 + 2 + 4;

/// Why bytes are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a header, or `total_len` runs past the available bytes.
    #[error("record truncated")]
    Truncated,
    /// `total_len` below the minimum or above the maximum.
    #[error("record length out of bounds")]
    BadLength,
    /// Unknown magic (not a record of this format version).
    #[error("bad magic")]
    BadMagic,
    /// CRC mismatch.
    #[error("crc mismatch")]
    BadCrc,
    /// Variable fields do not add up to `total_len`, or text is not UTF-8.
    #[error("malformed record fields")]
    Malformed,
    /// The record says it lives at another physical offset than where it was read.
    #[error("record physical offset mismatch")]
    WrongOffset,
}

/// The fields the store assigns when it appends a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFields {
    /// Queue the message was placed in.
    pub queue_id: u32,
    /// Its logical offset in that queue.
    pub queue_offset: u64,
    /// Its CommitLog offset.
    pub physical_offset: u64,
    /// When the store appended it (ms).
    pub store_timestamp: i64,
    /// Replication term (0 when not replicated).
    pub raft_term: u64,
    /// Replication index (0 when not replicated).
    pub raft_index: u64,
}

/// Everything about a message that the producer side decides; borrowed for zero-copy encoding.
#[derive(Debug, Clone, Copy)]
pub struct RecordDraft<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Message id (unique).
    pub message_id: &'a str,
    /// Tag, empty for none.
    pub tag: &'a str,
    /// Message group (FIFO) / sharding key, empty for none.
    pub message_group: &'a str,
    /// Producer host, empty for unknown.
    pub born_host: &'a str,
    /// Keys for lookup.
    pub keys: &'a [String],
    /// Properties.
    pub properties: &'a BTreeMap<String, String>,
    /// Payload.
    pub body: &'a [u8],
    /// Producer timestamp (ms).
    pub born_timestamp: i64,
    /// Times consumed before (retries).
    pub reconsume_times: u32,
    /// Flags.
    pub flags: u32,
    /// Offset of a half message resolved by this record, or 0.
    pub prepared_offset: u64,
}

impl RecordDraft<'_> {
    /// Exact encoded size of this record, or `None` if a field is too long for its length
    /// prefix (the caller validates limits first, so this only guards the codec).
    pub fn encoded_len(&self) -> Option<usize> {
        let short = |s: &str| (s.len() <= usize::from(u16::MAX)).then_some(2 + s.len());
        let mut len = FIXED_LEN;
        len += short(self.topic)?;
        len += short(self.message_id)?;
        len += short(self.tag)?;
        len += short(self.message_group)?;
        len += short(self.born_host)?;
        if self.keys.len() > usize::from(u16::MAX) || self.properties.len() > usize::from(u16::MAX)
        {
            return None;
        }
        len += 2;
        for k in self.keys {
            len += short(k)?;
        }
        len += 2;
        for (k, v) in self.properties {
            len += short(k)?;
            u32::try_from(v.len()).ok()?;
            len += 4 + v.len();
        }
        u32::try_from(self.body.len()).ok()?;
        len += 4 + self.body.len();
        u32::try_from(len).ok()?;
        Some(len)
    }

    /// Appends the encoded record to `out` (which is cleared first).
    ///
    /// # Errors
    /// `DecodeError::BadLength` if a field exceeds its length prefix.
    pub fn encode(&self, fields: &StoreFields, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let len = self.encoded_len().ok_or(DecodeError::BadLength)?;
        out.clear();
        out.reserve(len);
        // Lengths were all checked by `encoded_len`, so the `as` casts below cannot truncate.
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&RECORD_MAGIC_V1.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&fields.raft_term.to_le_bytes());
        out.extend_from_slice(&fields.raft_index.to_le_bytes());
        out.extend_from_slice(&fields.queue_id.to_le_bytes());
        out.extend_from_slice(&fields.queue_offset.to_le_bytes());
        out.extend_from_slice(&fields.physical_offset.to_le_bytes());
        out.extend_from_slice(&self.born_timestamp.to_le_bytes());
        out.extend_from_slice(&fields.store_timestamp.to_le_bytes());
        out.extend_from_slice(&self.reconsume_times.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.prepared_offset.to_le_bytes());
        let short = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s);
        };
        short(out, self.topic.as_bytes());
        short(out, self.message_id.as_bytes());
        short(out, self.tag.as_bytes());
        short(out, self.message_group.as_bytes());
        short(out, self.born_host.as_bytes());
        out.extend_from_slice(&(self.keys.len() as u16).to_le_bytes());
        for k in self.keys {
            short(out, k.as_bytes());
        }
        out.extend_from_slice(&(self.properties.len() as u16).to_le_bytes());
        for (k, v) in self.properties {
            short(out, k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out.extend_from_slice(self.body);
        debug_assert_eq!(out.len(), len);
        let crc = crc32c::crc32c(&out[12..]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }
}

/// What the first eight bytes at a position say is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Zeros: nothing was ever written here.
    Empty,
    /// The segment-ending filler covering `len` bytes.
    Blank {
        /// Bytes covered, including the filler header.
        len: usize,
    },
    /// A record header claiming `len` bytes (not yet verified).
    Record {
        /// Claimed total length.
        len: usize,
    },
    /// Anything else: garbage.
    Garbage,
}

/// Looks at the length and magic at the start of `buf` without trusting them.
pub fn peek(buf: &[u8]) -> Peek {
    let (Some(len), Some(magic)) = (read_u32(buf, 0), read_u32(buf, 4)) else {
        return if buf.iter().all(|b| *b == 0) {
            Peek::Empty
        } else {
            Peek::Garbage
        };
    };
    match (len, magic) {
        (0, 0) => Peek::Empty,
        (len, BLANK_MAGIC) => Peek::Blank { len: len as usize },
        (len, RECORD_MAGIC_V1) => Peek::Record { len: len as usize },
        _ => Peek::Garbage,
    }
}

/// Encodes the segment filler for `len` remaining bytes (`len >= 8`).
pub fn blank(len: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&len.to_le_bytes());
    b[4..].copy_from_slice(&BLANK_MAGIC.to_le_bytes());
    b
}

/// A verified record, borrowing its variable fields from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Total encoded length.
    pub total_len: usize,
    /// Store-assigned fields.
    pub fields: StoreFields,
    /// Producer timestamp.
    pub born_timestamp: i64,
    /// Retry count.
    pub reconsume_times: u32,
    /// Flags.
    pub flags: u32,
    /// Half-message offset resolved by this record, or 0.
    pub prepared_offset: u64,
    /// Topic.
    pub topic: &'a str,
    /// Message id.
    pub message_id: &'a str,
    /// Tag ("" = none).
    pub tag: &'a str,
    /// Message group ("" = none).
    pub message_group: &'a str,
    /// Producer host ("" = unknown).
    pub born_host: &'a str,
    keys_raw: &'a [u8],
    key_count: u16,
    props_raw: &'a [u8],
    prop_count: u16,
    /// Payload.
    pub body: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Parses and fully verifies the record at the start of `buf`.
    ///
    /// `max_len` is the hard maximum record size; `expected_offset`, when given, must equal the
    /// record's physical offset field.
    ///
    /// # Errors
    /// A [`DecodeError`] saying which check failed. Never panics, whatever `buf` holds.
    pub fn parse(
        buf: &'a [u8],
        max_len: usize,
        expected_offset: Option<u64>,
    ) -> Result<Self, DecodeError> {
        let total = read_u32(buf, 0).ok_or(DecodeError::Truncated)? as usize;
        let magic = read_u32(buf, 4).ok_or(DecodeError::Truncated)?;
        if magic != RECORD_MAGIC_V1 {
            return Err(DecodeError::BadMagic);
        }
        if !(MIN_RECORD_LEN..=max_len).contains(&total) {
            return Err(DecodeError::BadLength);
        }
        let rec = buf.get(..total).ok_or(DecodeError::Truncated)?;
        let crc = read_u32(rec, 8).ok_or(DecodeError::Truncated)?;
        if crc32c::crc32c(&rec[12..]) != crc {
            return Err(DecodeError::BadCrc);
        }
        let u64_at = |o| read_u64(rec, o).ok_or(DecodeError::Truncated);
        let u32_at = |o| read_u32(rec, o).ok_or(DecodeError::Truncated);
        let fields = StoreFields {
            raft_term: u64_at(12)?,
            raft_index: u64_at(20)?,
            queue_id: u32_at(28)?,
            queue_offset: u64_at(32)?,
            physical_offset: u64_at(40)?,
            store_timestamp: u64_at(56)? as i64,
        };
        if expected_offset.is_some_and(|o| o != fields.physical_offset) {
            return Err(DecodeError::WrongOffset);
        }
        let mut cur = Cursor {
            buf: rec,
            pos: FIXED_LEN,
        };
        let topic = cur.short_str()?;
        let message_id = cur.short_str()?;
        let tag = cur.short_str()?;
        let message_group = cur.short_str()?;
        let born_host = cur.short_str()?;
        let key_count = cur.u16()?;
        let keys_start = cur.pos;
        for _ in 0..key_count {
            cur.short_str()?;
        }
        let keys_raw = &rec[keys_start..cur.pos];
        let prop_count = cur.u16()?;
        let props_start = cur.pos;
        for _ in 0..prop_count {
            cur.short_str()?;
            cur.long_bytes(true)?;
        }
        let props_raw = &rec[props_start..cur.pos];
        let body = cur.long_bytes(false)?;
        if cur.pos != total {
            return Err(DecodeError::Malformed);
        }
        Ok(Self {
            total_len: total,
            fields,
            born_timestamp: u64_at(48)? as i64,
            reconsume_times: u32_at(64)?,
            flags: u32_at(68)?,
            prepared_offset: u64_at(72)?,
            topic,
            message_id,
            tag,
            message_group,
            born_host,
            keys_raw,
            key_count,
            props_raw,
            prop_count,
            body,
        })
    }

    /// The message keys.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut cur = Cursor {
            buf: self.keys_raw,
            pos: 0,
        };
        (0..self.key_count).map_while(move |_| cur.short_str().ok())
    }

    /// The properties, in key order.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut cur = Cursor {
            buf: self.props_raw,
            pos: 0,
        };
        (0..self.prop_count).map_while(move |_| {
            let k = cur.short_str().ok()?;
            let v = cur.long_bytes(true).ok()?;
            Some((k, std::str::from_utf8(v).ok()?))
        })
    }

    /// Copies the body out.
    pub fn body_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.body)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Malformed)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Malformed)?;
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn short_str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(usize::from(n))?).map_err(|_| DecodeError::Malformed)
    }
    fn long_bytes(&mut self, utf8: bool) -> Result<&'a [u8], DecodeError> {
        let b = self.take(4)?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let s = self.take(n)?;
        if utf8 && std::str::from_utf8(s).is_err() {
            return Err(DecodeError::Malformed);
        }
        Ok(s)
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
