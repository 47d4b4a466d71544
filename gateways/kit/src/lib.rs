//! rocketgate-gateway-kit: the narrow set of things every gateway shares with the composition
//! root, and nothing else (STYLE.md §A: shared gateway bits live here, never in a `common`).
//!
//! Every listener of a node is a [`Gateway`]: it binds (before the store opens, so a port in use
//! is reported before anything is opened), names the endpoints it bound ([`Endpoint`]: protocol
//! name and the address actually bound, for the `listening` log lines, the ready file and the
//! NameServer registration), serves a [`Broker`] until a [`Shutdown`] resolves, and says when
//! it accepts connections ([`Ready`]: the node's `ready` line waits for every gateway). The
//! composition root (`gateways/server`, `node.rs`) builds a list of them from its configuration
//! instead of wiring each by hand.
//!
//! # Layout
//!
//! - [`gateway`] has the [`Gateway`] and [`BoundGateway`] traits, [`Endpoint`], [`BoxFuture`].
//! - [`listener`] has [`BoundListener`], one TCP listener bound for a named endpoint.
//! - [`shutdown`] has [`Shutdown`] / [`ShutdownTrigger`], the one stop signal of a node.
//! - [`ready`] has [`Ready`] / [`ReadyWait`], a gateway's "accepting connections" signal.
//! - [`error`] has [`GatewayError`], why a gateway could not bind or stopped.
//! - [`tls`] has [`TlsAcceptor`], every listener's TLS (reloadable, optional mTLS), and
//!   [`MaybeTls`]; [`handshakes`] has [`Handshakes`], concurrent handshakes for pull-style
//!   accept loops; `test_ca` (feature `test-ca`) a throw-away CA for tests.
//!
//! Depends on `rocketgate-core` (for [`Broker`]), tokio and rustls only. It must not depend on a wire
//! protocol crate or on any gateway; every gateway crate may depend on it. It holds no state and
//! spawns no task of its own (the handshakes of [`Handshakes`] live in the value that owns
//! them): what runs, and where, is the gateways' and the node's business.
//!
//! # Example
//!
//! A gateway that accepts connections and closes them, bound, served and stopped the way the
//! node does it:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::SocketAddr;
//!
//! use rocketgate_core::{Broker, Config};
//! use rocketgate_gateway_kit::{
//!     ready, shutdown, BoundGateway, BoundListener, BoxFuture, Endpoint, Gateway, GatewayError,
//!     Ready, Shutdown,
//! };
//!
//! struct Hangup(SocketAddr);
//! struct BoundHangup(BoundListener);
//!
//! impl Gateway for Hangup {
//!     fn name(&self) -> &'static str {
//!         "hangup"
//!     }
//!     fn bind(self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn BoundGateway>, GatewayError>> {
//!         Box::pin(async move {
//!             let listener = BoundListener::bind("hangup", self.0).await?;
//!             Ok(Box::new(BoundHangup(listener)) as Box<dyn BoundGateway>)
//!         })
//!     }
//! }
//!
//! impl BoundGateway for BoundHangup {
//!     fn endpoints(&self) -> Vec<Endpoint> {
//!         vec![self.0.endpoint()]
//!     }
//!     fn serve(
//!         self: Box<Self>,
//!         _broker: Broker,
//!         shutdown: Shutdown,
//!         ready: Ready,
//!     ) -> BoxFuture<'static, Result<(), GatewayError>> {
//!         Box::pin(async move {
//!             let listener = self.0.into_inner();
//!             ready.accepting(); // nothing to load before accepting
//!             let stopped = shutdown.wait();
//!             tokio::pin!(stopped);
//!             loop {
//!                 tokio::select! {
//!                     () = &mut stopped => return Ok(()),
//!                     accepted = listener.accept() => drop(accepted.map_err(GatewayError::serve)?),
//!                 }
//!             }
//!         })
//!     }
//! }
//!
//! let gateways: Vec<Box<dyn Gateway>> = vec![Box::new(Hangup("127.0.0.1:0".parse()?))];
//! let mut bound = Vec::new();
//! for gateway in gateways {
//!     bound.push(gateway.bind().await?); // a port in use fails here
//! }
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::default();
//! config.store.data_dir = dir.path().into();
//! config.store.segment_size = 1 << 20;
//! let broker = Broker::open(config)?;
//! let (trigger, shutdown) = shutdown::channel();
//! let mut tasks = Vec::new();
//! let mut waits = Vec::new();
//! for gateway in bound {
//!     assert_eq!(gateway.endpoints()[0].protocol, "hangup");
//!     let (accepting, wait) = ready::channel();
//!     tasks.push(tokio::spawn(gateway.serve(broker.clone(), shutdown.clone(), accepting)));
//!     waits.push(wait);
//! }
//! for wait in waits {
//!     assert!(wait.wait().await, "every gateway accepts before the node says ready");
//! }
//! trigger.trigger();
//! for task in tasks {
//!     task.await??;
//! }
//! broker.shutdown()?;
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod gateway;
pub mod handshakes;
pub mod listener;
pub mod ready;
pub mod shutdown;
#[cfg(any(test, feature = "test-ca"))]
pub mod test_ca;
pub mod tls;

pub use error::GatewayError;
pub use gateway::{BoundGateway, BoxFuture, Endpoint, Gateway};
pub use handshakes::Handshakes;
pub use listener::BoundListener;
pub use ready::{Ready, ReadyWait};
pub use rocketgate_core::Broker;
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use tls::{ClientAuth, MaybeTls, TlsAcceptor, TlsError, TlsSettings};
