//! The KV log: the append-only record files `<data_dir>/kv/log-<first seq, 20 digits>.kv`.
//!
//! Owns the record codec and the reading of a log file (replay with torn-tail detection).
//!
//! # Byte layout (all integers little-endian)
//!
//! A log file starts with the 8-byte file magic `RGKVLOG1`, then records back to back:
//!
//! ```text
//! offset  size  field
//!      0     4  record magic 0x52474B56 ("RGKV" read big-endian)
//!      4     4  len: bytes after the crc field (16 + ns + key + value)
//!      8     4  crc32c over those `len` bytes
//!     12     8  sequence number (u64, +1 per record, never reused)
//!     20     1  op: 1 = put, 2 = delete
//!     21     1  namespace length (1..=64)
//!     22     2  key length (1..=1024)
//!     24     4  value length (0 for a delete)
//!     28     …  namespace, key, value
//! ```
//!
//! Invariants: `len` is checked against the bytes left in the file and against [`MAX_RECORD`]
//! before anything is allocated; a record is valid only if its magic, length, CRC and the
//! field lengths inside agree. Replay stops at the first invalid or torn record: everything
//! before it is the file's valid prefix (the caller truncates the rest of the active log).
//!
//! Called by `kv` (its parent) only; no locking here: the parent serialises appends under its
//! writer lock and reads files only while opening.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use bytes::Bytes;

use super::Error;

/// First bytes of every log file.
pub(super) const FILE_MAGIC: &[u8; 8] = b"RGKVLOG1";
/// First bytes of every record.
const RECORD_MAGIC: u32 = 0x5247_4B56;
/// Magic, len, crc.
const HEAD: usize = 12;
/// Sequence, op, three lengths.
const FIXED: usize = 16;
/// Hard bound of `len` (whatever the configuration says), checked before allocating.
pub(super) const MAX_RECORD: usize = 256 << 20;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One change: `value` `None` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) namespace: String,
    pub(crate) key: Bytes,
    pub(crate) value: Option<Bytes>,
}

/// Appends the encoding of one record to `out`.
pub(super) fn encode(seq: u64, ns: &str, key: &[u8], value: Option<&[u8]>, out: &mut Vec<u8>) {
    let v = value.unwrap_or_default();
    let len = FIXED + ns.len() + key.len() + v.len();
    out.reserve(HEAD + len);
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(if value.is_some() { OP_PUT } else { OP_DELETE });
    out.push(ns.len() as u8);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(ns.as_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(v);
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the body of a record (the `len` bytes after the crc) whose CRC matched.
fn decode_body(body: &[u8]) -> Option<Record> {
    let fixed = body.get(..FIXED)?;
    let seq = u64::from_le_bytes(fixed[0..8].try_into().ok()?);
    let op = fixed[8];
    let ns_len = usize::from(fixed[9]);
    let key_len = usize::from(u16::from_le_bytes(fixed[10..12].try_into().ok()?));
    let value_len = u32::from_le_bytes(fixed[12..16].try_into().ok()?) as usize;
    if FIXED + ns_len + key_len + value_len != body.len() || ns_len == 0 || key_len == 0 {
        return None;
    }
    let rest = &body[FIXED..];
    let namespace = std::str::from_utf8(&rest[..ns_len]).ok()?.to_owned();
    let key = Bytes::copy_from_slice(&rest[ns_len..ns_len + key_len]);
    let value = match op {
        OP_PUT => Some(Bytes::copy_from_slice(&rest[ns_len + key_len..])),
        OP_DELETE if value_len == 0 => None,
        _ => return None,
    };
    Some(Record {
        seq,
        namespace,
        key,
        value,
    })
}

/// How a replay of one file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Replayed {
    /// Bytes of the valid prefix (file magic included).
    pub(super) valid_len: u64,
    /// Bytes in the file.
    pub(super) file_len: u64,
    /// Why replay stopped before the end, if it did.
    pub(super) stopped: Option<&'static str>,
}

/// Reads the log file at `path` and hands each valid record to `apply`, in file order, up to
/// the first torn or invalid one. A file shorter than its magic (a crash while creating it)
/// has a valid prefix of 0 bytes.
///
/// # Errors
/// I/O errors, a wrong file magic, or an error of `apply`.
pub(super) fn replay(
    path: &Path,
    mut apply: impl FnMut(Record) -> Result<(), Error>,
) -> Result<Replayed, Error> {
    let io = |e| Error::io(path, e);
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    if file_len < FILE_MAGIC.len() as u64 {
        return Ok(Replayed {
            valid_len: 0,
            file_len,
            stopped: Some("file shorter than its magic"),
        });
    }
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(io)?;
    if &magic != FILE_MAGIC {
        return Err(Error::Corrupted {
            path: path.to_path_buf(),
            offset: 0,
            reason: "not a KV log file (bad file magic)",
        });
    }
    let mut pos = FILE_MAGIC.len() as u64;
    let mut body = Vec::new();
    let stop = |pos, why| Replayed {
        valid_len: pos,
        file_len,
        stopped: Some(why),
    };
    loop {
        let left = file_len - pos;
        if left == 0 {
            return Ok(Replayed {
                valid_len: pos,
                file_len,
                stopped: None,
            });
        }
        if left < HEAD as u64 {
            return Ok(stop(pos, "torn record header"));
        }
        let mut head = [0u8; HEAD];
        r.read_exact(&mut head).map_err(io)?;
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        if word(0) != RECORD_MAGIC {
            return Ok(stop(pos, "bad record magic"));
        }
        let len = word(4) as usize;
        if !(FIXED..=MAX_RECORD).contains(&len) {
            return Ok(stop(pos, "record length out of bounds"));
        }
        if len as u64 > left - HEAD as u64 {
            return Ok(stop(pos, "torn record"));
        }
        body.resize(len, 0);
        r.read_exact(&mut body).map_err(io)?;
        if crc32c::crc32c(&body) != word(8) {
            return Ok(stop(pos, "record CRC mismatch"));
        }
        let Some(record) = decode_body(&body) else {
            return Ok(stop(pos, "malformed record fields"));
        };
        apply(record)?;
        pos += (HEAD + len) as u64;
    }
}

/// The size of the encoding of a record.
pub(super) fn encoded_len(ns: &str, key: &[u8], value: Option<&[u8]>) -> usize {
    HEAD + FIXED + ns.len() + key.len() + value.map_or(0, <[u8]>::len)
}
