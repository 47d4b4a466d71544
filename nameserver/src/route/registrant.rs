//! Who sends a registration ([`Registrant`]: the registration id it presents, where it came
//! from, whether the cluster secret signed it) and the one case in which a registration that
//! does not present the live instance's id may still replace it: the same broker, restarted
//! after a crash ([`Registrant::restarts`]).
//!
//! "The same broker" means all of:
//! - the request is signed with the cluster secret (a NameServer without one never allows it:
//!   an unsigned request proves nothing);
//! - the same identity (cluster, broker name, broker id — the caller looks the instance up by
//!   it);
//! - the same advertised endpoints, as a set of (protocol, address): a restarted broker points
//!   the routes exactly where the old one did, so replacing it redirects no client;
//! - sent from the same IP address as the registration it replaces (the TCP peer; the port
//!   differs after a restart and is ignored), and, on an mTLS connection, with the same client
//!   certificate (BLAKE3 of its DER; no certificate on both is also the same).
//!
//! Anything else — another endpoint, another source address, another certificate — is refused
//! as before until the old registration is unregistered or expires.
//!
//! Pure data and a predicate: no I/O, no clock, no locks. Built by the service, read by
//! [`super::RouteTables::register`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::model::Endpoint;
use crate::secret::RegistrationId;

/// Where a registration came from, as the NameServer saw it; kept with the registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    /// The IP address the request came from (`None`: unknown, e.g. not over TCP).
    pub peer_ip: Option<IpAddr>,
    /// BLAKE3 of the DER of the client certificate the TLS handshake verified (mTLS).
    pub certificate: Option<[u8; 32]>,
}

/// The sender of a RegisterBroker, beyond the request's fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registrant {
    /// The registration id the request presents.
    pub presented: Option<RegistrationId>,
    /// Where it came from.
    pub origin: Origin,
    /// Whether the request was signed with the cluster secret (checked by the caller).
    pub signed: bool,
}

impl From<Option<RegistrationId>> for Registrant {
    /// An unsigned registrant of unknown origin presenting `presented`.
    fn from(presented: Option<RegistrationId>) -> Self {
        Self {
            presented,
            ..Self::default()
        }
    }
}

impl Registrant {
    /// Whether this registrant is the broker registered from `origin` with `endpoints`,
    /// restarted and asking for `asked` (see the module doc).
    pub fn restarts(&self, origin: &Origin, endpoints: &[Endpoint], asked: &[Endpoint]) -> bool {
        self.signed
            && self.origin.peer_ip.is_some()
            && self.origin == *origin
            && set(endpoints) == set(asked)
    }
}

fn set(endpoints: &[Endpoint]) -> BTreeSet<(&str, &str)> {
    endpoints
        .iter()
        .map(|e| (e.protocol().as_str(), e.address()))
        .collect()
}
