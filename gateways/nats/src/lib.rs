//! rocketgate-nats: the NATS client protocol over TCP on the core [`Broker`] — NATS clients in
//! any language publish and subscribe to RocketMQ topics.
//!
//! # Mapping onto RocketMQ (docs/nats.md)
//!
//! - Subject `orders.eu.new` → RocketMQ topic `orders` (the first token; created on first use),
//!   the full subject in the property `natsSubject`, the reply subject in `natsReply`, headers
//!   as properties, `Nats-Msg-Id` as the message key. Messages of one subject go to one queue
//!   (hash of the subject) and keep their order.
//! - A message stored by another protocol is delivered under its `natsSubject`, else its MQTT
//!   topic with `/` as `.`, else its topic's name.
//! - A plain SUB is broadcast from now on: each connection reads through its own consumer
//!   group, positioned at the end of the topics it subscribes. A queue group is a consumer
//!   group (`nats-q-<queue>-<hash>`): load-balanced, at least once (acknowledged once written
//!   to the socket; redelivered by the core's retry policy otherwise).
//! - A PUB is in the core before `+OK` (verbose) and before the next operation is read.
//!
//! # Layout
//!
//! - [`config`]: [`NatsConfig`], the `[nats]` section.
//! - `parse`: the client operations, with every size bounded; `encode`: the server's frames
//!   and the message ↔ header mapping; `subject`: subjects, wildcards, topics and groups.
//! - `access`: who a client is and what it may do (the core's `Auth`).
//! - `shared`: gateway-wide state (interest for `no_responders`, known topics).
//! - `connection`: one connection (driver, subscriptions, feeds from the core, the writer).
//! - `server`: [`serve`], the accept loop, TLS, shutdown; `gateway`: [`NatsGateway`].
//!
//! # Example
//!
//! ```no_run
//! # async fn run(broker: rocketgate_core::Broker) -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4222").await?;
//! rocketgate_nats::serve(listener, broker, rocketgate_nats::NatsConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Metrics (`metrics` facade, label `gateway="nats"`): `rocketgate_connections_total`,
//! `rocketgate_connections_active`, `rocketgate_connections_rejected_total`,
//! `rocketgate_packets_received_total`, `rocketgate_publishes_received_total`,
//! `rocketgate_publishes_refused_total`, `rocketgate_publishes_sent_total`,
//! `rocketgate_protocol_errors_total`, `rocketgate_auth_failures_total`.

mod access;
pub mod config;
mod connection;
mod encode;
pub mod error;
mod gateway;
mod parse;
mod server;
mod shared;
mod subject;

pub use config::NatsConfig;
pub use error::{Error, ProtocolError};
pub use gateway::NatsGateway;
pub use rocketgate_core::Broker;
pub use server::{serve, serve_ready};
