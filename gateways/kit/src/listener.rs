//! [`BoundListener`]: one TCP listener bound for one named endpoint, with the address actually
//! bound read back (port 0 resolved) and a bind failure reported as one line naming both.
//!
//! Used by the gateways' [`crate::Gateway::bind`] implementations and by the node for its
//! embedded NameServer, so that every "port in use" message reads the same. Binding is all it
//! does: no accept loop, no socket options (those belong to each gateway's server).

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::error::GatewayError;
use crate::gateway::Endpoint;

/// A bound TCP listener and the endpoint it serves.
#[derive(Debug)]
pub struct BoundListener {
    listener: TcpListener,
    endpoint: Endpoint,
}

impl BoundListener {
    /// Binds `address` for the endpoint `protocol` (`grpc`, `mqtt_ws`, …).
    ///
    /// # Errors
    /// [`GatewayError::Bind`]: `cannot listen on ADDRESS for PROTOCOL: REASON`.
    pub async fn bind(protocol: &'static str, address: SocketAddr) -> Result<Self, GatewayError> {
        let failed = |error| GatewayError::Bind {
            endpoint: protocol,
            address,
            error,
        };
        let listener = TcpListener::bind(address).await.map_err(failed)?;
        let local = listener.local_addr().map_err(failed)?;
        Ok(Self {
            listener,
            endpoint: Endpoint {
                protocol,
                address: local,
            },
        })
    }

    /// The endpoint: the protocol and the address actually bound.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The listener, for the gateway's `serve` function.
    pub fn into_inner(self) -> TcpListener {
        self.listener
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_reads_back_the_bound_port_and_a_taken_port_names_the_endpoint() {
        let first = BoundListener::bind("grpc", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let bound = first.endpoint();
        assert_eq!(bound.protocol, "grpc");
        assert_ne!(bound.address.port(), 0);
        let err = BoundListener::bind("mqtt_ws", bound.address)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot listen on {} for mqtt_ws: ", bound.address)),
            "{text}"
        );
        assert!(
            std::error::Error::source(&err).is_none(),
            "the reason is in the one line"
        );
    }
}
