//! Integration tests: the real gateway on 127.0.0.1:0 with a real `Broker`, driven by the
//! `async-nats` client and by raw sockets (for bad input and exact protocol bytes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod basics;
mod malformed;
mod slow;
mod tls;
