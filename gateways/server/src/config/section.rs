//! The sections of the configuration file that belong to a listener: `[nameserver]`, `[grpc]`,
//! `[http]`, `[mqtt]` and `[nats]`. Each holds the keys the server owns for that listener — where it
//! listens (`listen`, and `ws_listen` for MQTT over WebSocket), whether it runs (`enabled`,
//! HTTP and MQTT only: the gRPC endpoint always runs, it carries `BrokerAdmin`) and, for gRPC,
//! its connection limits (`[grpc.connections]`, `rocketgate_nameserver::ConnectionLimits`) — beside the
//! settings the listener's own crate defines (`rocketgate_nameserver::Config`,
//! `MessagingConfig`, `HttpConfig`, `MqttConfig`), in one TOML table.
//!
//! Invariants: unknown keys are still refused (the crate's config rejects them; the server's
//! keys are taken out first, see [`Written`]); values keep their position in the file for error
//! messages (they are read straight from the TOML deserializer, never buffered); a key that is
//! absent stays `None` in the keys as written, so a deprecated alias (`legacy.rs`) can fill it,
//! and the defaults apply only after that.
//!
//! Called by `config.rs` only. Pure data and parsing; no I/O.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use rocketgate_gateway_grpc::MessagingConfig;
use rocketgate_gateway_http::HttpConfig;
use rocketgate_gateway_mqtt::MqttConfig;
use rocketgate_nameserver::ConnectionLimits;
use rocketgate_nats::NatsConfig;
use serde::de::{DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `[nameserver]`: where the NameServer listens (`rocketgate nameserver`, `standalone`), its
/// route expiry and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameServerSection {
    /// `listen` (`127.0.0.1:9876`).
    pub listen: SocketAddr,
    /// Every other key.
    pub config: rocketgate_nameserver::Config,
}

/// `[grpc]`: the broker's gRPC endpoint, `BrokerAdmin` and the RocketMQ 5 protocol. Always
/// runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSection {
    /// `listen` (`127.0.0.1:8081`).
    pub listen: SocketAddr,
    /// `[grpc.connections]`: the listener's connection cap, handshake and idle timeouts and
    /// keepalive.
    pub connections: ConnectionLimits,
    /// Every other key: the RocketMQ 5 protocol's settings.
    pub messaging: MessagingConfig,
}

/// `[http]`: REST, WebSocket and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSection {
    /// `enabled` (`true`).
    pub enabled: bool,
    /// `listen` (`127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Every other key.
    pub config: HttpConfig,
}

/// `[mqtt]`: MQTT over TCP and over WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSection {
    /// `enabled` (`true`): both listeners run, or neither.
    pub enabled: bool,
    /// `listen` (`127.0.0.1:1883`): MQTT over TCP.
    pub listen: SocketAddr,
    /// `ws_listen` (`127.0.0.1:8083`): MQTT over WebSocket, path `/mqtt`.
    pub ws_listen: SocketAddr,
    /// Every other key.
    pub config: MqttConfig,
}

/// `[nats]`: the NATS gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSection {
    /// `enabled` (`false`: a new gateway, opt-in).
    pub enabled: bool,
    /// `listen` (`127.0.0.1:4222`).
    pub listen: SocketAddr,
    /// Every other key.
    pub config: NatsConfig,
}

impl Default for NatsSection {
    fn default() -> Self {
        Written::<HttpKeys, _>::default().into()
    }
}

impl From<Written<HttpKeys, NatsConfig>> for NatsSection {
    fn from(w: Written<HttpKeys, NatsConfig>) -> Self {
        Self {
            enabled: w.keys.enabled.unwrap_or(false),
            listen: w.keys.listen.unwrap_or(local(4222)),
            config: w.settings,
        }
    }
}

impl Default for NameServerSection {
    fn default() -> Self {
        Written::<ListenKeys, _>::default().into()
    }
}

impl Default for GrpcSection {
    fn default() -> Self {
        Written::<GrpcKeys, _>::default().into()
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Written::<HttpKeys, _>::default().into()
    }
}

impl Default for MqttSection {
    fn default() -> Self {
        Written::<MqttKeys, _>::default().into()
    }
}

/// A section as written in the file: the server's keys (`K`, absent ones `None`) and the
/// crate's settings (`C`, with the crate's defaults for absent keys).
#[derive(Debug, Default)]
pub(crate) struct Written<K, C> {
    pub keys: K,
    pub settings: C,
}

/// The keys the server owns in a section.
pub(crate) trait OwnKeys: Default {
    /// Their names.
    const NAMES: &'static [&'static str];

    /// Reads the value of `key`, one of [`Self::NAMES`], from `map` (another key's value is
    /// read and dropped).
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

/// `listen` (`[nameserver]`, `[grpc]`).
#[derive(Debug, Default)]
pub(crate) struct ListenKeys {
    pub listen: Option<SocketAddr>,
}

/// `listen`, `connections` (`[grpc]`).
#[derive(Debug, Default)]
pub(crate) struct GrpcKeys {
    pub listen: Option<SocketAddr>,
    pub connections: Option<ConnectionLimits>,
}

/// `enabled`, `listen` (`[http]`, `[nats]`).
#[derive(Debug, Default)]
pub(crate) struct HttpKeys {
    pub enabled: Option<bool>,
    pub listen: Option<SocketAddr>,
}

/// `enabled`, `listen`, `ws_listen` (`[mqtt]`).
#[derive(Debug, Default)]
pub(crate) struct MqttKeys {
    pub enabled: Option<bool>,
    pub listen: Option<SocketAddr>,
    pub ws_listen: Option<SocketAddr>,
}

impl OwnKeys for ListenKeys {
    const NAMES: &'static [&'static str] = &["listen"];

    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "listen" => self.listen = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

impl OwnKeys for GrpcKeys {
    const NAMES: &'static [&'static str] = &["listen", "connections"];

    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "listen" => self.listen = Some(map.next_value()?),
            "connections" => self.connections = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

impl OwnKeys for HttpKeys {
    const NAMES: &'static [&'static str] = &["enabled", "listen"];

    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "enabled" => self.enabled = Some(map.next_value()?),
            "listen" => self.listen = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

impl OwnKeys for MqttKeys {
    const NAMES: &'static [&'static str] = &["enabled", "listen", "ws_listen"];

    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "enabled" => self.enabled = Some(map.next_value()?),
            "listen" => self.listen = Some(map.next_value()?),
            "ws_listen" => self.ws_listen = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

impl From<Written<ListenKeys, rocketgate_nameserver::Config>> for NameServerSection {
    fn from(w: Written<ListenKeys, rocketgate_nameserver::Config>) -> Self {
        Self {
            listen: w.keys.listen.unwrap_or(local(9876)),
            config: w.settings,
        }
    }
}

impl From<Written<GrpcKeys, MessagingConfig>> for GrpcSection {
    fn from(w: Written<GrpcKeys, MessagingConfig>) -> Self {
        Self {
            listen: w.keys.listen.unwrap_or(local(8081)),
            connections: w.keys.connections.unwrap_or_default(),
            messaging: w.settings,
        }
    }
}

impl From<Written<HttpKeys, HttpConfig>> for HttpSection {
    fn from(w: Written<HttpKeys, HttpConfig>) -> Self {
        Self {
            enabled: w.keys.enabled.unwrap_or(true),
            listen: w.keys.listen.unwrap_or(local(8080)),
            config: w.settings,
        }
    }
}

impl From<Written<MqttKeys, MqttConfig>> for MqttSection {
    fn from(w: Written<MqttKeys, MqttConfig>) -> Self {
        Self {
            enabled: w.keys.enabled.unwrap_or(true),
            listen: w.keys.listen.unwrap_or(local(1883)),
            ws_listen: w.keys.ws_listen.unwrap_or(local(8083)),
            config: w.settings,
        }
    }
}

/// One table, split as it is read: the server's keys go to `K`, every other key to `C`'s own
/// `Deserialize` (which refuses the keys it does not know).
impl<'de, K: OwnKeys, C: Deserialize<'de>> Deserialize<'de> for Written<K, C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WrittenVisitor(PhantomData))
    }
}

struct WrittenVisitor<K, C>(PhantomData<(K, C)>);

impl<'de, K: OwnKeys, C: Deserialize<'de>> Visitor<'de> for WrittenVisitor<K, C> {
    type Value = Written<K, C>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut split = Split {
            map,
            keys: K::default(),
        };
        let settings = C::deserialize(serde::de::value::MapAccessDeserializer::new(&mut split))?;
        Ok(Written {
            keys: split.keys,
            settings,
        })
    }
}

/// The table's entries minus the server's keys, which are read into `keys` on the way.
struct Split<A, K> {
    map: A,
    keys: K,
}

impl<'de, A: MapAccess<'de>, K: OwnKeys> MapAccess<'de> for Split<A, K> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let mut seed = seed;
        loop {
            // The key goes through the TOML deserializer's own key handling, so an error about
            // it (an unknown key) carries the key's position in the file.
            match self
                .map
                .next_key_seed(SplitKey::<S, K>(seed, PhantomData))?
            {
                None => return Ok(None),
                Some(Key::Other(value)) => return Ok(Some(value)),
                Some(Key::Own(name, unused)) => {
                    self.keys.take(name, &mut self.map)?;
                    seed = unused;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A key of the table: one of the server's (with the seed, unused) or the crate's.
enum Key<S, V> {
    Own(&'static str, S),
    Other(V),
}

/// Reads a key; hands it to the crate's seed unless it is one of the server's keys.
struct SplitKey<S, K>(S, PhantomData<K>);

impl<'de, S: DeserializeSeed<'de>, K: OwnKeys> DeserializeSeed<'de> for SplitKey<S, K> {
    type Value = Key<S, S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, S: DeserializeSeed<'de>, K: OwnKeys> Visitor<'de> for SplitKey<S, K> {
    type Value = Key<S, S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(name) = K::NAMES.iter().find(|n| **n == key) {
            return Ok(Key::Own(name, self.0));
        }
        let deserializer: serde::de::value::StrDeserializer<'_, E> = key.into_deserializer();
        self.0
            .deserialize(deserializer)
            .map(Key::Other)
            .map_err(|e| {
                // The crate's "unknown field `x`, expected one of …" lists its own keys only.
                let message = e.to_string();
                let message = message.trim_end();
                match message.starts_with("unknown field") {
                    true => E::custom(format_args!(
                        "{message}, {}",
                        K::NAMES
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    false => e,
                }
            })
    }
}
