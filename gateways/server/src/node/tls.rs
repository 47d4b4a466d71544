//! A node's TLS (`[tls]`): one reloadable acceptor per listener, each with its protocol's ALPN
//! names (gRPC and the NameServer `h2`; HTTP `h2` and `http/1.1`; MQTT `mqtt`; MQTT over
//! WebSocket `http/1.1`; NATS none: it upgrades after its INFO), built from the same files before anything is bound (a bad file stops
//! the start with one line), the task that reloads them all when the files change, and the
//! client side of the broker's calls to its NameServers (`tls.ca`, presenting the node's own
//! certificate when it has one).
//!
//! Called by `node.rs` (and `main.rs` for `rocketgate nameserver`); no protocol logic.

use std::time::Duration;

use rocketgate_gateway_kit::{Shutdown, TlsAcceptor};
use rocketgate_nameserver as ns;

use crate::config::TlsSection;

/// The acceptors of a node's listeners.
#[derive(Debug, Clone)]
pub(crate) struct Acceptors {
    pub(crate) grpc: TlsAcceptor,
    pub(crate) http: TlsAcceptor,
    pub(crate) mqtt: TlsAcceptor,
    pub(crate) mqtt_ws: TlsAcceptor,
    pub(crate) nats: TlsAcceptor,
    pub(crate) nameserver: TlsAcceptor,
}

impl Acceptors {
    /// Loads `[tls]`; `None` when it is off.
    ///
    /// # Errors
    /// One line naming the file or setting that is wrong.
    pub(crate) fn load(cfg: &TlsSection) -> anyhow::Result<Option<Self>> {
        let Some(settings) = cfg.settings() else {
            return Ok(None);
        };
        let make = |alpn: &[&[u8]]| {
            TlsAcceptor::new(settings.clone(), alpn).map_err(|e| anyhow::anyhow!("{e}"))
        };
        Ok(Some(Self {
            grpc: make(&[b"h2"])?,
            http: make(&[b"h2", b"http/1.1"])?,
            mqtt: make(&[b"mqtt"])?,
            mqtt_ws: make(&[b"http/1.1"])?,
            nats: make(&[])?,
            nameserver: make(&[b"h2"])?,
        }))
    }

    /// Reloads every acceptor whose files changed, every `every`, until `shutdown`.
    pub(crate) async fn watch(self, every: Duration, shutdown: Shutdown) {
        let all = [
            self.grpc,
            self.http,
            self.mqtt,
            self.mqtt_ws,
            self.nats,
            self.nameserver,
        ];
        let mut watching = tokio::task::JoinSet::new();
        for acceptor in all {
            watching.spawn(acceptor.watch(every, shutdown.clone()));
        }
        while watching.join_next().await.is_some() {}
    }
}

/// The TLS of the broker's calls to its NameServers: `tls.ca` to trust, and the node's own
/// certificate as the client identity when TLS is on; `None` without `tls.ca`.
///
/// # Errors
/// An unreadable file, named.
pub(crate) fn nameserver_client(cfg: &TlsSection) -> anyhow::Result<Option<ns::ClientTls>> {
    if cfg.ca.as_os_str().is_empty() {
        return Ok(None);
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("tls: cannot read {}: {e}", p.display()))
    };
    let identity = match cfg.enabled {
        true => Some((read(&cfg.cert)?, read(&cfg.key)?)),
        false => None,
    };
    Ok(Some(ns::ClientTls {
        ca_pem: read(&cfg.ca)?,
        identity,
    }))
}
