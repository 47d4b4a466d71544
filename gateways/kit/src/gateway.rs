//! The [`Gateway`] trait: what the composition root knows about a listener. Two steps, two
//! traits, so the order the node needs is the only order the types allow:
//!
//! 1. [`Gateway::bind`] takes every listener of the gateway (before the store opens: a port in
//!    use fails the start before anything is opened) and returns a [`BoundGateway`];
//! 2. [`BoundGateway::endpoints`] names what was bound (protocol and actual address, port 0
//!    resolved) for the `listening` lines, the ready file and the NameServer registration;
//! 3. [`BoundGateway::serve`] serves a [`Broker`] until the [`Shutdown`] resolves, then lets
//!    work in flight finish (bounded by the gateway) and returns. It fires its [`Ready`] once
//!    every endpoint accepts connections and serves them (after whatever the gateway loads
//!    first): the node says `ready` only when every gateway did. The broker belongs to the
//!    caller: a gateway never shuts it down.
//!
//! Both traits are object-safe (`Box<dyn Gateway>`), so the node keeps one list. What a gateway
//! needs besides its configuration (the gRPC gateway's node description, the HTTP gateway's
//! metrics handle) is given to its constructor, never through these traits: they stay the same
//! for every protocol. Implementors live in the gateway crates (`src/gateway.rs` in each) and
//! must not do more than wrap their crate's `serve` function.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use rocketgate_core::Broker;

use crate::error::GatewayError;
use crate::ready::Ready;
use crate::shutdown::Shutdown;

/// A boxed `Send` future: what the object-safe trait methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One endpoint a gateway listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The protocol name, as in the ready file and the routes: `grpc`, `http`, `mqtt`,
    /// `mqtt_ws`, `nameserver`.
    pub protocol: &'static str,
    /// The address actually bound (never port 0).
    pub address: SocketAddr,
}

/// A configured gateway that does not listen yet.
pub trait Gateway: Send {
    /// The gateway's name in logs and errors (`grpc`, `http`, `mqtt`).
    fn name(&self) -> &'static str;

    /// Binds every listener of the gateway; serves nothing yet.
    ///
    /// # Errors
    /// [`GatewayError::Bind`] naming the endpoint and the address that could not be bound.
    fn bind(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn BoundGateway>, GatewayError>>;
}

/// A gateway whose listeners are bound, ready to serve.
pub trait BoundGateway: Send {
    /// The endpoints bound, in a fixed order (the order of the `listening` lines).
    fn endpoints(&self) -> Vec<Endpoint>;

    /// Serves `broker` until `shutdown` resolves; then stops accepting, lets work in flight
    /// finish (bounded by the gateway) and returns. Fires `ready` once every endpoint of the
    /// gateway accepts connections and serves them; one that fails before drops it unfired.
    ///
    /// # Errors
    /// Whatever made the gateway stop before `shutdown`: [`GatewayError::Serve`] with the
    /// gateway crate's own error, or [`GatewayError::NotGiven`] when the node never handed over
    /// what the constructor was promised.
    fn serve(
        self: Box<Self>,
        broker: Broker,
        shutdown: Shutdown,
        ready: Ready,
    ) -> BoxFuture<'static, Result<(), GatewayError>>;
}
