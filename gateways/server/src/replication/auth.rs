//! The cluster signature on replication calls: the keyed BLAKE3 hash (key derived from the
//! cluster secret with this module's own context, so a replication signature is never valid
//! as a NameServer one) of the method, the timestamp and the caller's identity, carried in
//! the `x-rg-replication-ts` and `x-rg-replication-mac` metadata. The same construction as the
//! NameServer's (`rocketgate_nameserver::secret`), whose input type is not open to other
//! crates. Pure: time is an input.

use tonic::metadata::MetadataMap;
use tonic::Status;

const CONTEXT: &str = "rocketgate 2026-12 replication cluster secret v1";
const TS: &str = "x-rg-replication-ts";
const MAC: &str = "x-rg-replication-mac";
/// Largest accepted distance between the signer's clock and ours.
pub(crate) const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// The signing key (never the secret itself).
#[derive(Clone)]
pub(crate) struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    pub(crate) fn derive(secret: &str) -> Self {
        Self(blake3::derive_key(CONTEXT, secret.as_bytes()))
    }

    fn mac(&self, method: &str, ts: u64, cluster: &str, name: &str, id: u64) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        for part in [method.as_bytes(), cluster.as_bytes(), name.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(&ts.to_le_bytes());
        h.update(&id.to_le_bytes());
        h.finalize()
    }

    /// Signs a call of `method` by broker (`cluster`, `name`, `id`).
    pub(crate) fn sign(
        &self,
        meta: &mut MetadataMap,
        method: &str,
        now_ms: u64,
        who: (&str, &str, u64),
    ) {
        let mac = self.mac(method, now_ms, who.0, who.1, who.2);
        if let (Ok(ts), Ok(mac)) = (now_ms.to_string().parse(), mac.to_hex().as_str().parse()) {
            meta.insert(TS, ts);
            meta.insert(MAC, mac);
        }
    }

    /// Checks a call's signature.
    ///
    /// # Errors
    /// UNAUTHENTICATED: missing, not this secret's, or stale.
    pub(crate) fn verify(
        &self,
        meta: &MetadataMap,
        method: &str,
        now_ms: u64,
        who: (&str, &str, u64),
    ) -> Result<(), Status> {
        let get = |k: &str| meta.get(k).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(mac)) = (get(TS), get(MAC)) else {
            return Err(Status::unauthenticated(
                "replication calls must be signed with the cluster secret \
                 (ROCKETGATE_CLUSTER_SECRET)",
            ));
        };
        let ts: u64 = ts
            .parse()
            .map_err(|_| Status::unauthenticated("invalid replication signature timestamp"))?;
        let given = blake3::Hash::from_hex(mac)
            .map_err(|_| Status::unauthenticated("invalid replication signature"))?;
        if given != self.mac(method, ts, who.0, who.1, who.2) {
            return Err(Status::unauthenticated(
                "invalid replication signature: not this cluster's secret",
            ));
        }
        if now_ms.abs_diff(ts) > MAX_SKEW_MS {
            return Err(Status::unauthenticated(
                "stale replication signature: check the clocks",
            ));
        }
        Ok(())
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_the_secret_the_method_the_identity_and_the_time() {
        let key = Key::derive("0123456789abcdef0123");
        let who = ("c", "broker-a", 1);
        let mut meta = MetadataMap::new();
        key.sign(&mut meta, "Follow", 1_000_000, who);
        assert!(key.verify(&meta, "Follow", 1_000_000, who).is_ok());
        assert!(key.verify(&meta, "Report", 1_000_000, who).is_err());
        assert!(key
            .verify(&meta, "Follow", 1_000_000, ("c", "broker-b", 1))
            .is_err());
        assert!(Key::derive("another secret 0123")
            .verify(&meta, "Follow", 1_000_000, who)
            .is_err());
        assert!(key
            .verify(&meta, "Follow", 1_000_000 + MAX_SKEW_MS + 1, who)
            .is_err());
        assert!(key.verify(&MetadataMap::new(), "Follow", 0, who).is_err());
    }
}
