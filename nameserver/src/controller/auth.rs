//! The cluster signature on controller calls ([`Key`]): keyed BLAKE3 (key derived from the
//! cluster secret under this module's own context, so a controller signature is never valid as a
//! NameServer or replication one) of the method, the timestamp and the encoded request, carried
//! in `x-rg-controller-ts` / `x-rg-controller-mac` metadata.
//!
//! Raft RPCs are checked for the secret and the clock skew but not for replays: Raft refuses a
//! replayed vote or append by its terms and log ids, and a replay of the current leader's own
//! append changes nothing. Broker heartbeats also pass a [`ReplayGuard`] (`service.rs`): a
//! replayed heartbeat would otherwise keep a dead master alive. Pure: time is an input.

use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::config::ConfigError;
use crate::secret::{MAX_SECRET_LEN, MIN_SECRET_LEN};

const CONTEXT: &str = "rocketgate 2026-12 controller cluster secret v1";
const TS: &str = "x-rg-controller-ts";
const MAC: &str = "x-rg-controller-mac";
/// Largest accepted distance between the signer's clock and ours.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// The signing key (never the secret itself).
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// A signature as read from a call: (timestamp ms, MAC).
pub type Signature = (u64, [u8; 32]);

impl Key {
    /// The key of `secret` (the cluster secret: same length rules as the NameServer's).
    ///
    /// # Errors
    /// [`ConfigError`] on `cluster_secret` when it is too short or too long.
    pub fn derive(secret: &str) -> Result<Self, ConfigError> {
        if secret.len() < MIN_SECRET_LEN || secret.len() > MAX_SECRET_LEN {
            return Err(ConfigError {
                key: "cluster_secret",
                reason: format!("must be {MIN_SECRET_LEN}..={MAX_SECRET_LEN} bytes"),
            });
        }
        Ok(Self(blake3::derive_key(CONTEXT, secret.as_bytes())))
    }

    fn mac(&self, method: &str, ts: u64, body: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(&(method.len() as u64).to_le_bytes());
        h.update(method.as_bytes());
        h.update(&ts.to_le_bytes());
        h.update(&(body.len() as u64).to_le_bytes());
        h.update(body);
        h.finalize()
    }

    /// Signs a call of `method` with the encoded request `body`.
    pub fn sign(&self, meta: &mut MetadataMap, method: &str, now_ms: u64, body: &[u8]) {
        let mac = self.mac(method, now_ms, body);
        if let (Ok(ts), Ok(mac)) = (now_ms.to_string().parse(), mac.to_hex().as_str().parse()) {
            meta.insert(TS, ts);
            meta.insert(MAC, mac);
        }
    }

    /// Checks a call's signature; returns it (for a replay guard).
    ///
    /// # Errors
    /// UNAUTHENTICATED: missing, not this secret's, or further than [`MAX_SKEW_MS`] from
    /// `now_ms`.
    pub fn verify(
        &self,
        meta: &MetadataMap,
        method: &str,
        now_ms: u64,
        body: &[u8],
    ) -> Result<Signature, Status> {
        let get = |k: &str| meta.get(k).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(mac)) = (get(TS), get(MAC)) else {
            return Err(Status::unauthenticated(
                "controller calls must be signed with the cluster secret \
                 (ROCKETGATE_CLUSTER_SECRET / nameserver.cluster_secret)",
            ));
        };
        let ts: u64 = ts
            .parse()
            .map_err(|_| Status::unauthenticated("invalid controller signature timestamp"))?;
        let given = blake3::Hash::from_hex(mac)
            .map_err(|_| Status::unauthenticated("invalid controller signature"))?;
        if self.mac(method, ts, body) != given {
            return Err(Status::unauthenticated(
                "invalid controller signature: the caller's cluster secret is not this \
                 controller's",
            ));
        }
        let skew = now_ms.abs_diff(ts);
        if skew > MAX_SKEW_MS {
            return Err(Status::unauthenticated(format!(
                "stale controller signature: signed {skew} ms away from the controller's clock \
                 (at most {MAX_SKEW_MS}); check the clocks"
            )));
        }
        Ok((ts, *given.as_bytes()))
    }
}

/// Milliseconds since the Unix epoch (the signing clock; 0 before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_method_body_secret_and_window() {
        let key = Key::derive("the-secret-of-this-cluster").unwrap();
        let other = Key::derive("the-secret-of-another-one").unwrap();
        assert!(Key::derive("short").is_err());
        let now = 1_800_000_000_000;
        let mut meta = MetadataMap::new();
        assert!(key.verify(&meta, "Vote", now, b"x").is_err());
        key.sign(&mut meta, "Vote", now, b"x");
        assert_eq!(key.verify(&meta, "Vote", now, b"x").unwrap().0, now);
        assert!(key.verify(&meta, "Vote", now + MAX_SKEW_MS, b"x").is_ok());
        assert!(key
            .verify(&meta, "Vote", now + MAX_SKEW_MS + 1, b"x")
            .is_err());
        assert!(key.verify(&meta, "AppendEntries", now, b"x").is_err());
        assert!(key.verify(&meta, "Vote", now, b"y").is_err());
        assert!(other.verify(&meta, "Vote", now, b"x").is_err());
        assert_eq!(format!("{key:?}"), "Key(<redacted>)");
    }
}
