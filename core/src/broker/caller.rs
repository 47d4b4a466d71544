//! Who is asking: the [`Caller`] a gateway attaches to a [`Broker`] handle
//! ([`Broker::as_caller`]), and the two rules that depend on it — reserved names and
//! auto-creation.
//!
//! Owns: the table of what gateways reserve (topic and property-key prefixes) and the checks
//! against it; the `Create` check of auto-creation.
//!
//! - **Reserved names.** A gateway may keep topics and message properties of its own: the MQTT
//!   gateway its `mqtt_sys_*` topics and `mqtt*` properties (`mqttTopic`, `mqttQos`, ...), the
//!   RocketMQ gRPC gateway its `__RG_V2_*` properties; every other `__RG_*` key is reserved for
//!   gateways to come. Only a caller holding that gateway's capability ([`Caller::gateway`] /
//!   [`Caller::via`]) may create, change, delete, send to or read such a topic, or send a
//!   message with such a property; any other request (a REST client's, an anonymous handle's)
//!   is refused with [`Error::Reserved`] (`ErrorKind::PermissionDenied`). A handle without a
//!   caller is a client without a capability: the safe default. Messages *read* keep their
//!   properties: a gateway decides what it shows.
//! - **Auto-creation.** When a request creates a topic or group on first use (or explicitly
//!   through a handle carrying a principal), the caller's principal needs `Create` on it
//!   ([`crate::Auth::authorize`]); the quotas of `[limits]` bound it either way.
//!
//! Invariants: the rules are decided here only; gateways attach who asks and map the error.
//! Pure checks, no I/O, no locks.

use std::net::IpAddr;
use std::sync::Arc;

use super::Broker;
use crate::auth::{Action, Principal, Resource};
use crate::error::{Error, Result};

/// A gateway that owns reserved names (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Gateway {
    /// The RocketMQ 5 gRPC gateway: properties `__RG_V2_*`.
    Grpc,
    /// The MQTT gateway: topics `mqtt_sys_*`, properties `mqtt*` (`mqtt` and an upper-case
    /// letter).
    Mqtt,
    /// The NATS gateway: properties `nats*` (`nats` and an upper-case letter: `natsSubject`,
    /// `natsReply`).
    Nats,
}

impl Gateway {
    fn name(self) -> &'static str {
        match self {
            Self::Grpc => "the gRPC gateway",
            Self::Mqtt => "the MQTT gateway",
            Self::Nats => "the NATS gateway",
        }
    }
}

/// Topic-name prefixes reserved for a gateway.
const RESERVED_TOPICS: &[(&str, Gateway)] = &[("mqtt_sys_", Gateway::Mqtt)];

/// The owner of a reserved topic name, if it is one.
pub(crate) fn topic_owner(name: &str) -> Option<Gateway> {
    RESERVED_TOPICS
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, g)| *g)
}

/// The owner of a reserved property key (`None` inside the `__RG_` space: no gateway may set
/// it), or `Ok(())` if it is not reserved.
fn property_owner(key: &str) -> std::result::Result<(), Option<Gateway>> {
    if key.starts_with("__RG_V2_") {
        return Err(Some(Gateway::Grpc));
    }
    if key.starts_with("__RG_") {
        return Err(None);
    }
    let b = key.as_bytes();
    if b.len() > 4 && b.starts_with(b"mqtt") && b[4].is_ascii_uppercase() {
        return Err(Some(Gateway::Mqtt));
    }
    if b.len() > 4 && b.starts_with(b"nats") && b[4].is_ascii_uppercase() {
        return Err(Some(Gateway::Nats));
    }
    Ok(())
}

/// Who asks the broker: the principal a gateway authenticated, where from, and the capability
/// of the gateway relaying the request.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    principal: Option<Principal>,
    source: Option<IpAddr>,
    gateway: Option<Gateway>,
    /// The broker itself re-publishing what it stored (dead letters sent back): every
    /// property it holds was accepted once already.
    internal: bool,
}

impl Caller {
    /// A client's request, with the principal the gateway authenticated (if it authenticates)
    /// and the client's address.
    pub fn client(principal: Option<Principal>, source: Option<IpAddr>) -> Self {
        Self {
            principal,
            source,
            gateway: None,
            internal: false,
        }
    }

    /// A gateway acting on its own behalf (its system topics, its bookkeeping).
    pub fn gateway(gateway: Gateway) -> Self {
        Self {
            gateway: Some(gateway),
            ..Self::default()
        }
    }

    /// This request relayed by `gateway`, which may use its own reserved names in it (the
    /// properties it adds to a client's message).
    #[must_use]
    pub fn via(mut self, gateway: Gateway) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// The principal, if the gateway attached one.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

impl Broker {
    /// A handle for requests of `caller`: the same broker, whose rules on reserved names and
    /// auto-creation see who asks (see [`Caller`]). Cheap.
    #[must_use]
    pub fn as_caller(&self, caller: Caller) -> Broker {
        Broker {
            inner: self.inner.clone(),
            caller: Some(Arc::new(caller)),
        }
    }

    /// A handle for the broker's own re-publications (see [`Caller`]'s `internal`).
    pub(super) fn internal(&self) -> Broker {
        self.as_caller(Caller {
            internal: true,
            ..Caller::default()
        })
    }

    pub(super) fn is_internal(&self) -> bool {
        self.caller.as_ref().is_some_and(|c| c.internal)
    }

    fn capability(&self) -> Option<Gateway> {
        self.caller.as_ref().and_then(|c| c.gateway)
    }

    /// Refuses a topic reserved for a gateway the caller is not.
    pub(super) fn check_reserved_topic(&self, name: &str) -> Result<()> {
        if self.is_internal() {
            return Ok(());
        }
        match topic_owner(name) {
            Some(owner) if self.capability() != Some(owner) => Err(Error::Reserved {
                what: format!("topic `{name}`"),
                owner: owner.name(),
            }),
            _ => Ok(()),
        }
    }

    /// Refuses message properties reserved for a gateway the caller is not.
    pub(super) fn check_reserved_properties<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a String>,
    ) -> Result<()> {
        if self.is_internal() {
            return Ok(());
        }
        for key in keys {
            match property_owner(key) {
                Ok(()) => {}
                Err(Some(owner)) if self.capability() == Some(owner) => {}
                Err(owner) => {
                    return Err(Error::Reserved {
                        what: format!("message property `{key}`"),
                        owner: owner.map_or("gateways", Gateway::name),
                    })
                }
            }
        }
        Ok(())
    }

    /// A creation (on first use, or through a handle with a principal) needs `Create` on
    /// `resource` when the caller carries a principal.
    pub(super) fn authorize_create(&self, resource: Resource) -> Result<()> {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        let Some(principal) = &caller.principal else {
            return Ok(());
        };
        self.auth()
            .authorize(principal, &resource, Action::Create, caller.source)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn reserved_property_keys_and_their_owners() {
        assert_eq!(property_owner("__RG_V2_ENCODING"), Err(Some(Gateway::Grpc)));
        assert_eq!(property_owner("__RG_HTTP_X"), Err(None));
        assert_eq!(property_owner("mqttTopic"), Err(Some(Gateway::Mqtt)));
        assert_eq!(property_owner("natsSubject"), Err(Some(Gateway::Nats)));
        assert_eq!(property_owner("Nats-Msg-Id"), Ok(()));
        for free in ["mqtt", "mqtt_x", "mqttopic", "color", "__rg_v2_x", "RG_V2"] {
            assert_eq!(property_owner(free), Ok(()), "{free}");
        }
        assert_eq!(topic_owner("mqtt_sys_sessions"), Some(Gateway::Mqtt));
        assert_eq!(topic_owner("mqtt_sessions"), None);
    }
}
