//! Receipt handles: the opaque tokens a pop hands out and an ack or visibility change brings
//! back.
//!
//! Owns: their encoding and authentication. A handle is URL-safe base64 (no padding) of
//! `[version u8 = 1][queue_id u32][queue_offset u64][delivery seq u64][deadline_ms i64]
//! [topic len u8][topic]` followed by a 16-byte keyed BLAKE3 MAC over the consumer group and
//! those bytes. The key is 32 random bytes kept in `<data_dir>/config/receipt.key` (0600), so
//! handles stay valid across restarts, cannot be forged, and a handle of one group is refused for
//! another (the group is under the MAC but not in the handle).
//!
//! Invariant: decoding checks the length (at most [`MAX_HANDLE_LEN`] characters) before
//! decoding and never panics. Whether a valid handle is still *current* (not acked, not
//! superseded by a visibility change) is decided by the pop state, via the delivery seq.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::meta_file;
use super::Consumer;
use crate::error::{Error, Result};

/// Longest handle accepted (characters).
pub const MAX_HANDLE_LEN: usize = 512;
pub(super) const MAC_LEN: usize = 16;
pub(super) const VERSION: u8 = 1;

/// What a handle identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Topic of the message.
    pub topic: String,
    /// Queue.
    pub queue_id: u32,
    /// Offset in the queue.
    pub queue_offset: u64,
    /// Delivery sequence number: changes on every redelivery and visibility change.
    pub seq: u64,
    /// When the message becomes visible again (ms), at the time the handle was made.
    pub deadline_ms: i64,
}

/// Makes and checks handles with the broker's key.
#[derive(Clone)]
pub struct ReceiptKeys {
    key: [u8; 32],
}

impl std::fmt::Debug for ReceiptKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptKeys(..)")
    }
}

impl ReceiptKeys {
    /// Loads the key from `dir/receipt.key`, creating it on first start.
    ///
    /// # Errors
    /// [`Error::Metadata`] if the key cannot be read or created.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let path = dir.join("receipt.key");
        match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&b);
                return Ok(Self { key });
            }
            Ok(_) => return Err(meta_file::meta_err(&path, "receipt key must be 32 bytes")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(meta_file::meta_err(&path, e)),
        }
        let mut key = [0u8; 32];
        let mut f =
            std::fs::File::open("/dev/urandom").map_err(|e| meta_file::meta_err(&path, e))?;
        std::io::Read::read_exact(&mut f, &mut key).map_err(|e| meta_file::meta_err(&path, e))?;
        meta_file::replace(&path, &key)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Self { key })
    }

    fn mac(&self, group: &str, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(group.len() as u32).to_le_bytes());
        h.update(group.as_bytes());
        h.update(payload);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&h.finalize().as_bytes()[..MAC_LEN]);
        out
    }

    /// Encodes a handle for `group`.
    pub fn encode(&self, group: &str, r: &Receipt) -> String {
        let topic = &r.topic.as_bytes()[..r.topic.len().min(255)];
        let mut b = Vec::with_capacity(30 + topic.len() + MAC_LEN);
        b.push(VERSION);
        b.extend_from_slice(&r.queue_id.to_le_bytes());
        b.extend_from_slice(&r.queue_offset.to_le_bytes());
        b.extend_from_slice(&r.seq.to_le_bytes());
        b.extend_from_slice(&r.deadline_ms.to_le_bytes());
        b.push(topic.len() as u8);
        b.extend_from_slice(topic);
        let mac = self.mac(group, &b);
        b.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Decodes and authenticates a handle presented by `group`.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`] if it is malformed, forged, or belongs to another group.
    pub fn decode(&self, group: &str, handle: &str) -> Result<Receipt> {
        let bad = |why| Error::InvalidReceiptHandle(why);
        if handle.is_empty() || handle.len() > MAX_HANDLE_LEN {
            return Err(bad("empty or too long"));
        }
        let b = URL_SAFE_NO_PAD
            .decode(handle)
            .map_err(|_| bad("not a receipt handle"))?;
        if b.len() < 30 + MAC_LEN || b[0] != VERSION {
            return Err(bad("not a receipt handle"));
        }
        let (payload, mac) = b.split_at(b.len() - MAC_LEN);
        let expected = self.mac(group, payload);
        // Constant-time comparison.
        if mac
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(bad("not issued to this consumer group"));
        }
        let u32_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&payload[o..o + 4]);
            u32::from_le_bytes(a)
        };
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&payload[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let tlen = usize::from(payload[29]);
        if payload.len() != 30 + tlen {
            return Err(bad("not a receipt handle"));
        }
        let topic = std::str::from_utf8(&payload[30..]).map_err(|_| bad("not a receipt handle"))?;
        Ok(Receipt {
            topic: topic.to_owned(),
            queue_id: u32_at(1),
            queue_offset: u64_at(5),
            seq: u64_at(13),
            deadline_ms: u64_at(21) as i64,
        })
    }
}

impl Consumer<'_> {
    /// The topic of the message a receipt handle names, checked as an ack checks it (the
    /// broker's key, the group under the MAC), not whether it is still current: what a gateway
    /// authorizes before it acknowledges, nacks or changes the visibility of a handle.
    ///
    /// # Errors
    /// [`Error::InvalidReceiptHandle`] if it is malformed, forged, or belongs to another group.
    pub fn receipt_topic(self, group: &str, handle: &str) -> Result<String> {
        Ok(self
            .broker
            .inner
            .consumption
            .receipts
            .decode(group, handle)?
            .topic)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_forgery_and_foreign_groups() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ReceiptKeys::load_or_create(dir.path()).unwrap();
        let r = Receipt {
            topic: "orders".into(),
            queue_id: 3,
            queue_offset: 42,
            seq: 7,
            deadline_ms: 1_700_000_000_000,
        };
        let h = keys.encode("g1", &r);
        assert_eq!(keys.decode("g1", &h).unwrap(), r);
        assert!(keys.decode("g2", &h).is_err(), "foreign group");
        // Same key after a restart.
        let again = ReceiptKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(again.decode("g1", &h).unwrap(), r);
        // Any change is detected.
        let mut raw = URL_SAFE_NO_PAD.decode(&h).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            assert!(keys.decode("g1", &URL_SAFE_NO_PAD.encode(&raw)).is_err());
            raw[i] ^= 1;
        }
        for bad in ["", "!!!", "AAAA", &"A".repeat(MAX_HANDLE_LEN + 1)] {
            assert!(keys.decode("g1", bad).is_err());
        }
    }
}
