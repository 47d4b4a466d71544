//! Broker authentication to the NameServer: the cluster secret ([`ClusterSecret`]), the
//! signature a broker puts on RegisterBroker / Heartbeat / UnregisterBroker, and its check; and
//! the [`RegistrationId`] that binds a live instance to its registrant.
//!
//! Invariants:
//! - the secret itself is never kept: only a 32-byte key derived from it with BLAKE3's
//!   `derive_key` (context [`KEY_CONTEXT`]); `Debug` prints neither;
//! - a signature is the keyed BLAKE3 hash of the method name, the signed timestamp and every
//!   field of the request except the signature, each length-prefixed (so no two different
//!   requests share an input); it is checked in constant time (`blake3::Hash` equality), and a
//!   timestamp further than the skew window from the NameServer's clock is refused; within the
//!   window the service refuses a signature it accepted before (`replay.rs`). Keyed BLAKE3 is
//!   a MAC (a PRF under the key) and needs no dependency beyond the `blake3` the workspace
//!   already uses for token hashes;
//! - registration ids are 128 random bits from the OS, compared in constant time.
//!
//! Pure, except [`RegistrationId::random`] (the OS random source). Time is an input (`now_ms`).
//! Used by the service (checks) and the client (signs); no I/O, no locks.

use std::fmt;

use rocketgate_proto::cluster::v1 as pb;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::config::ConfigError;

/// The BLAKE3 key-derivation context of the signing key.
pub const KEY_CONTEXT: &str = "rocketgate 2026-12 nameserver cluster secret v1";
/// Shortest accepted cluster secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest accepted cluster secret, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;

/// The secret NameServers and brokers of one cluster share (`nameserver.cluster_secret`,
/// `ROCKETGATE_CLUSTER_SECRET`). Holds only the derived signing key.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ClusterSecret {
    key: [u8; 32],
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// A secret of [`MIN_SECRET_LEN`]..=[`MAX_SECRET_LEN`] bytes.
    ///
    /// # Errors
    /// A [`ConfigError`] on `cluster_secret` when it is shorter or longer (an empty secret
    /// included: a NameServer never runs with one).
    pub fn new(secret: impl AsRef<str>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN || secret.len() > MAX_SECRET_LEN {
            return Err(ConfigError {
                key: "cluster_secret",
                reason: format!(
                    "must be {MIN_SECRET_LEN}..={MAX_SECRET_LEN} bytes (got {}); use a long \
                     random value, e.g. `openssl rand -hex 32`",
                    secret.len()
                ),
            });
        }
        Ok(Self {
            key: blake3::derive_key(KEY_CONTEXT, secret.as_bytes()),
        })
    }

    fn mac<R: Signable>(&self, request: &R, timestamp_ms: u64) -> blake3::Hash {
        let mut input = Input(blake3::Hasher::new_keyed(&self.key));
        input.str(R::METHOD);
        input.u64(timestamp_ms);
        request.feed(&mut input);
        input.0.finalize()
    }

    /// Signs `request` at `now_ms` (the signer's clock, ms since the Unix epoch).
    pub fn sign<R: Signable>(&self, request: &mut R, now_ms: u64) {
        let mac = self.mac(request, now_ms);
        request.set_signature(pb::ClusterSignature {
            timestamp_ms: now_ms,
            mac: mac.as_bytes().to_vec(),
        });
    }

    /// Checks the signature of `request` at `now_ms`, allowing `max_skew_ms` between the
    /// signer's clock and ours.
    ///
    /// # Errors
    /// [`SignatureError`]: missing, stale, or not made with this secret.
    pub fn verify<R: Signable>(
        &self,
        request: &R,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<(), SignatureError> {
        let signature = request.signature().ok_or(SignatureError::Missing)?;
        let skew_ms = now_ms.abs_diff(signature.timestamp_ms);
        let Ok(given) = <[u8; 32]>::try_from(signature.mac.as_slice()) else {
            return Err(SignatureError::Invalid);
        };
        // Computed before the skew is judged, so a stale request costs the same as a fresh one.
        let expected = self.mac(request, signature.timestamp_ms);
        if expected != blake3::Hash::from_bytes(given) {
            return Err(SignatureError::Invalid);
        }
        if skew_ms > max_skew_ms {
            return Err(SignatureError::Stale {
                skew_ms,
                max_skew_ms,
            });
        }
        Ok(())
    }
}

impl TryFrom<String> for ClusterSecret {
    type Error = ConfigError;

    fn try_from(secret: String) -> Result<Self, ConfigError> {
        Self::new(secret)
    }
}

/// Why a signature was refused (the NameServer answers UNAUTHENTICATED).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The request carries no signature.
    #[error(
        "this NameServer requires brokers to sign with the cluster secret \
         (ROCKETGATE_CLUSTER_SECRET / nameserver.cluster_secret); the request is not signed"
    )]
    Missing,
    /// The signature is not this cluster secret's.
    #[error("invalid cluster signature: the broker's cluster secret is not this NameServer's")]
    Invalid,
    /// This exact signed request was accepted before (a replay), or signed no later than the
    /// oldest signature the NameServer had to forget (see `replay.rs`).
    #[error(
        "replayed cluster signature: this signed request was already accepted (or is older than \
         what this NameServer still remembers); brokers sign every request afresh"
    )]
    Replayed,
    /// The signed timestamp is too far from the NameServer's clock.
    #[error(
        "stale cluster signature: signed {skew_ms} ms away from the NameServer's clock \
         (at most {max_skew_ms}); check the clocks"
    )]
    Stale {
        /// How far, in ms.
        skew_ms: u64,
        /// The window, in ms.
        max_skew_ms: u64,
    },
}

/// The signing input: length-prefixed fields into a keyed hasher.
pub struct Input(blake3::Hasher);

impl Input {
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(u64::try_from(b.len()).unwrap_or(u64::MAX));
        self.0.update(b);
    }

    fn u64(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }

    fn identity(&mut self, identity: Option<&pb::BrokerIdentity>) {
        match identity {
            None => self.u64(0),
            Some(i) => {
                self.u64(1);
                self.str(&i.cluster);
                self.str(&i.broker_name);
                self.u64(i.broker_id);
            }
        }
    }

    fn count(&mut self, n: usize) {
        self.u64(u64::try_from(n).unwrap_or(u64::MAX));
    }

    fn int(&mut self, n: i32) {
        // Sign-extended, so every i32 has its own encoding.
        self.u64(i64::from(n) as u64);
    }
}

/// A request a broker signs: RegisterBroker, Heartbeat, UnregisterBroker.
pub trait Signable {
    /// The RPC's name, part of the signed input (a signature of one RPC is not valid for
    /// another).
    const METHOD: &'static str;
    /// Feeds every field but the signature.
    fn feed(&self, input: &mut Input);
    /// The signature, if any.
    fn signature(&self) -> Option<&pb::ClusterSignature>;
    /// Sets the signature.
    fn set_signature(&mut self, signature: pb::ClusterSignature);
}

impl Signable for pb::RegisterBrokerRequest {
    const METHOD: &'static str = "RegisterBroker";

    fn feed(&self, input: &mut Input) {
        input.identity(self.broker.as_ref());
        input.count(self.endpoints.len());
        for e in &self.endpoints {
            input.str(&e.protocol);
            input.str(&e.address);
        }
        input.count(self.topics.len());
        for t in &self.topics {
            input.str(&t.name);
            input.u64(u64::from(t.read_queue_nums));
            input.u64(u64::from(t.write_queue_nums));
            input.int(t.permission);
            input.int(t.message_type);
        }
        input.str(&self.registration_id);
    }

    fn signature(&self) -> Option<&pb::ClusterSignature> {
        self.signature.as_ref()
    }

    fn set_signature(&mut self, signature: pb::ClusterSignature) {
        self.signature = Some(signature);
    }
}

impl Signable for pb::HeartbeatRequest {
    const METHOD: &'static str = "Heartbeat";

    fn feed(&self, input: &mut Input) {
        input.identity(self.broker.as_ref());
        input.str(&self.registration_id);
    }

    fn signature(&self) -> Option<&pb::ClusterSignature> {
        self.signature.as_ref()
    }

    fn set_signature(&mut self, signature: pb::ClusterSignature) {
        self.signature = Some(signature);
    }
}

impl Signable for pb::UnregisterBrokerRequest {
    const METHOD: &'static str = "UnregisterBroker";

    fn feed(&self, input: &mut Input) {
        input.identity(self.broker.as_ref());
        input.str(&self.registration_id);
    }

    fn signature(&self) -> Option<&pb::ClusterSignature> {
        self.signature.as_ref()
    }

    fn set_signature(&mut self, signature: pb::ClusterSignature) {
        self.signature = Some(signature);
    }
}

/// The id of one live registration: returned by RegisterBroker, required to renew, heartbeat
/// or unregister it (so nobody else, not even a holder of the cluster secret, can take over or
/// evict a live broker). 128 random bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy)]
pub struct RegistrationId([u8; 16]);

impl RegistrationId {
    /// A new random id.
    ///
    /// # Errors
    /// The OS random source failed.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// An id from its 32 hex digits; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok()?;
            *bytes.get_mut(i)? = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// An id made of `bytes` (for tests of the pure tables).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl PartialEq for RegistrationId {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for RegistrationId {}

impl fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whoever reads the log must not be able to heartbeat or unregister with it.
        f.write_str("RegistrationId(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn heartbeat(name: &str, id: &str) -> pb::HeartbeatRequest {
        pb::HeartbeatRequest {
            broker: Some(pb::BrokerIdentity {
                cluster: "c1".into(),
                broker_name: name.into(),
                broker_id: 0,
            }),
            registration_id: id.into(),
            signature: None,
        }
    }

    #[test]
    fn short_or_empty_secrets_are_refused_and_never_printed() {
        assert_eq!(ClusterSecret::new("").unwrap_err().key, "cluster_secret");
        assert!(ClusterSecret::new("fifteen-chars-x").is_err());
        assert!(ClusterSecret::new("x".repeat(1025)).is_err());
        let s = ClusterSecret::new("sixteen-chars-xx").unwrap();
        assert_eq!(format!("{s:?}"), "ClusterSecret(<redacted>)");
    }

    #[test]
    fn a_signature_holds_for_its_request_its_secret_and_its_window() {
        let secret = ClusterSecret::new("the-secret-of-this-cluster").unwrap();
        let other = ClusterSecret::new("the-secret-of-another-one").unwrap();
        let now = 1_800_000_000_000;
        let mut r = heartbeat("a", "00");
        assert_eq!(secret.verify(&r, now, 1000), Err(SignatureError::Missing));
        secret.sign(&mut r, now);
        secret.verify(&r, now, 1000).unwrap();
        secret.verify(&r, now + 1000, 1000).unwrap();
        secret.verify(&r, now - 1000, 1000).unwrap();
        assert_eq!(
            secret.verify(&r, now + 1001, 1000),
            Err(SignatureError::Stale {
                skew_ms: 1001,
                max_skew_ms: 1000
            })
        );
        assert_eq!(other.verify(&r, now, 1000), Err(SignatureError::Invalid));

        // Any changed field, or the signature moved to another request, breaks it.
        let mut forged = r.clone();
        forged.broker.as_mut().unwrap().broker_name = "b".into();
        assert_eq!(
            secret.verify(&forged, now, 1000),
            Err(SignatureError::Invalid)
        );
        let mut forged = r.clone();
        forged.registration_id = "01".into();
        assert_eq!(
            secret.verify(&forged, now, 1000),
            Err(SignatureError::Invalid)
        );
        let mut forged = r.clone();
        forged.signature.as_mut().unwrap().timestamp_ms += 1;
        assert_eq!(
            secret.verify(&forged, now, 1000),
            Err(SignatureError::Invalid)
        );
        let moved = pb::UnregisterBrokerRequest {
            broker: r.broker.clone(),
            registration_id: r.registration_id.clone(),
            signature: r.signature.clone(),
        };
        assert_eq!(
            secret.verify(&moved, now, 1000),
            Err(SignatureError::Invalid)
        );
        let mut short = r.clone();
        short.signature.as_mut().unwrap().mac.pop();
        assert_eq!(
            secret.verify(&short, now, 1000),
            Err(SignatureError::Invalid)
        );

        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let mut a = pb::RegisterBrokerRequest {
            endpoints: vec![pb::Endpoint {
                protocol: "ab".into(),
                address: "c".into(),
            }],
            ..Default::default()
        };
        secret.sign(&mut a, now);
        let mut b = a.clone();
        b.endpoints[0] = pb::Endpoint {
            protocol: "a".into(),
            address: "bc".into(),
        };
        assert_eq!(secret.verify(&b, now, 1000), Err(SignatureError::Invalid));
    }

    #[test]
    fn registration_ids_round_trip_and_are_redacted_in_debug() {
        let id = RegistrationId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(RegistrationId::parse(&text), Some(id));
        assert_ne!(RegistrationId::random().unwrap(), id);
        assert_eq!(RegistrationId::parse("xyz"), None);
        assert_eq!(RegistrationId::parse(&"g".repeat(32)), None);
        assert_eq!(RegistrationId::parse(&"é".repeat(16)), None);
        assert_eq!(RegistrationId::parse(&"+f".repeat(16)), None);
        assert_eq!(format!("{id:?}"), "RegistrationId(<redacted>)");
    }
}
