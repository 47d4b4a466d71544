//! Integration tests: the real gateway on 127.0.0.1:0 with a real `Broker`, driven by rumqttc
//! (v4 and v5, TCP and WebSocket), raw sockets and Debian's mosquitto clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod basics;
mod conformance;
mod malformed;
mod metrics;
mod mtls;
mod origin;
mod retention;
mod revocation;
mod sessions;
mod v5;
