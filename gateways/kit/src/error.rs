//! [`GatewayError`]: why a gateway could not bind or stopped serving, as the node reports it.
//!
//! Invariants: every variant renders as one line. A bind failure carries the OS reason inside
//! that line (`cannot listen on 127.0.0.1:8081 for grpc: Address in use (os error 98)`) and
//! not as a `source()`, so a report that prints the whole chain (`{:#}`) does not repeat it. A
//! gateway crate's own error is kept whole ([`GatewayError::Serve`] is transparent): its message
//! and its source chain are exactly the crate's.

use std::net::SocketAddr;

/// Why a gateway failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A listener could not be bound (address in use, permission, no such interface).
    #[error("cannot listen on {address} for {endpoint}: {error}")]
    Bind {
        /// The endpoint's protocol name (`grpc`, `mqtt_ws`, …).
        endpoint: &'static str,
        /// The address asked for.
        address: SocketAddr,
        /// The OS error (part of the message, not a `source()`).
        error: std::io::Error,
    },
    /// The node never handed over what the gateway's constructor was promised (the node
    /// stopped before serving).
    #[error("the {gateway} gateway was never given {what}")]
    NotGiven {
        /// The gateway.
        gateway: &'static str,
        /// What it waited for.
        what: &'static str,
    },
    /// The gateway's own `serve` failed: its error, unchanged.
    #[error(transparent)]
    Serve(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl GatewayError {
    /// Wraps a gateway crate's error.
    pub fn serve(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Serve(Box::new(error))
    }
}
