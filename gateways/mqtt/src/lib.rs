//! rocketgate-gateway-mqtt: MQTT 3.1.1 and 5.0 over TCP and WebSocket on the core [`Broker`].
//!
//! The gateway owns the MQTT session state machine; everything that must survive a restart
//! (messages, subscriptions, delivery positions, retained messages, session records) is stored
//! through the core. A QoS 1 PUBACK / QoS 2 PUBREC leaves only after `Producer::send` returned
//! (durable under `SYNC_FLUSH`).
//!
//! # Why not rumqttd
//!
//! rumqttd's broker acknowledges a publish from its in-memory router before the message is in
//! any log, keeps sessions and retained messages in memory only, and its public codec hides a
//! decoded PUBLISH's QoS and packet id. So the gateway runs its own state machine on the codec
//! of `rumqttc` (`mqttbytes` v4 and v5: public packet fields, a pure framing function). Topic
//! matching and the shared-subscription model follow the MQTT spec directly (rumqttd was a
//! reference for neither; its router is the part we do not want).
//!
//! # Mapping onto RocketMQ (see `docs/mqtt.md`)
//!
//! - MQTT topic `a/b/c` → RocketMQ topic `a` (created with `auto_create_queue_count` queues on
//!   first use), full topic in the property `mqttTopic`, QoS in `mqttQos`, retain in
//!   `mqttRetain`, publisher in `mqttClientId`, v5 user properties as message properties and
//!   the other v5 properties as `mqtt*` properties. A message sent to `a` over another
//!   protocol without `mqttTopic` is MQTT topic `a` (QoS 1). Names with an empty first level
//!   (`/a/b`) go to the RocketMQ topic `mqtt_slash`. `$`-topics are never stored: a PUBLISH to
//!   one is acknowledged and dropped (3.1.1) or refused with 0x87 (v5).
//! - Plain subscriptions are broadcast: each session pops through its own consumer group
//!   `mqtt-<client id>`, started at the end of each topic it subscribes. `$share/<name>/<f>`
//!   pops through the group `mqtt-share-<name>-<hash(f)>`: load-balanced across its members.
//! - Retained messages and session records live in the core's KV store (namespaces
//!   `mqtt.retained` and `mqtt.sessions`, keyed by MQTT topic and client id), which CommitLog
//!   retention never deletes; a retained clear or a session end deletes the key durably before
//!   it is acknowledged. The system topics `mqtt_sys_retained` / `mqtt_sys_sessions` of earlier
//!   versions are imported once on the first start after an upgrade.
//!
//! # Layout
//!
//! - [`config`]: [`MqttConfig`], the `[mqtt]` section.
//! - `access`: who a client is and what it may do, asked of the core's `Auth` service.
//! - [`codec`]: framing and packet decoding/encoding (3.1.1 converted to the v5 model).
//! - [`topic`]: names, filters, matching, the mapping to topics and groups.
//! - `shared`: gateway-wide state, the publish path into the core, retained messages.
//! - `session`: the session registry and durable session records.
//! - `system_topic`: the one-time import of the old system topics, used by `shared` and
//!   `session` (which do not depend on each other the other way round).
//! - `delivery`: the delivery feeds (core subscriptions sharing one credit pool per
//!   connection, see `delivery.rs` for the bound) and the conversion of stored messages into PUBLISH packets.
//! - `connection`: one connection, split sans-IO: a pure session state machine (packets and
//!   events in, actions out; unit-tested without sockets) and a thin I/O driver that owns the
//!   socket, the timers and the calls into the core. `ws`: the WebSocket byte-stream adapter.
//! - `server`: [`serve`], accept loops, session expiry, shutdown.
//!
//! # Example
//!
//! ```no_run
//! # async fn run(broker: rocketgate_core::Broker) -> Result<(), Box<dyn std::error::Error>> {
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:1883").await?;
//! let ws = tokio::net::TcpListener::bind("127.0.0.1:8083").await?;
//! let config = rocketgate_gateway_mqtt::MqttConfig::default();
//! rocketgate_gateway_mqtt::serve(Some(tcp), Some(ws), broker, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Metrics (`metrics` facade, label `gateway="mqtt"`): `rocketgate_connections_total`,
//! `rocketgate_connections_active`, `rocketgate_connections_rejected_total`,
//! `rocketgate_packets_received_total`, `rocketgate_publishes_received_total`,
//! `rocketgate_publishes_refused_total`, `rocketgate_publishes_sent_total`,
//! `rocketgate_protocol_errors_total`, `rocketgate_auth_failures_total`. No label is ever a
//! client id, session id or topic (the core labels the session groups `mqtt-session`).

mod access;
pub mod codec;
pub mod config;
mod connection;
mod delivery;
pub mod error;
mod gateway;
mod server;
mod session;
mod shared;
mod system_topic;
pub mod topic;
mod ws;

pub use config::MqttConfig;
pub use error::Error;
pub use gateway::MqttGateway;
pub use rocketgate_core::Broker;
pub use server::serve;

/// Runs the decoder over arbitrary bytes as a connection would (first as a pre-CONNECT
/// stream, then as 3.1.1 and 5.0 streams): the entry point of the fuzz target. Never panics.
pub fn fuzz_decode(data: &[u8]) {
    let max = 64 * 1024;
    for version in [None, Some(codec::Version::V4), Some(codec::Version::V5)] {
        let mut buf = bytes::BytesMut::from(data);
        let mut v = version;
        for _ in 0..64 {
            match codec::decode(&mut buf, v, max) {
                Ok(Some((_, got))) => v = Some(got),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = topic::parse_filter(&String::from_utf8_lossy(data));
        let _ = topic::core_topic_of_name(&String::from_utf8_lossy(data));
    }
}
