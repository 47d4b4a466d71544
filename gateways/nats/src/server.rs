//! The gateway's entry point: the accept loop, the connection cap, TLS, and shutdown.
//!
//! TLS follows NATS: the server sends INFO (with `tls_required`) in the clear, then the client
//! starts the TLS handshake (bounded by the acceptor's handshake timeout); the connection then
//! speaks NATS over TLS. A verified client certificate's common name goes with the connection
//! (a login for a CONNECT without credentials, `access.rs`).
//!
//! Shutdown: the `shutdown` future flips a `watch` every connection sees; `serve` waits up to
//! 3 s for connections to end (each drains what it queued), then aborts the rest.
//!
//! Concurrency: one task for the accept loop, one per connection (in a `JoinSet`). At start,
//! per-connection groups left by a run that did not stop cleanly are deleted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::{Broker, Caller, Gateway};
use rocketgate_gateway_kit::TlsAcceptor;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::NatsConfig;
use crate::connection;
use crate::encode;
use crate::error::{Error, ProtocolError};
use crate::shared::Shared;

/// Serves NATS on `listener` until `shutdown` completes (plain TCP); see [`serve_ready`] for
/// TLS and the ready signal.
///
/// # Errors
/// [`Error::Config`] for invalid settings.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    config: NatsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_ready(listener, broker, config, None, shutdown, || {}).await
}

/// [`serve`] with TLS (`Some`: every connection upgrades after INFO) and `ready`, called once
/// the accept loop runs.
///
/// # Errors
/// [`Error::Config`] for invalid settings.
pub async fn serve_ready(
    listener: TcpListener,
    broker: Broker,
    config: NatsConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce() + Send,
) -> Result<(), Error> {
    config.check()?;
    let broker = broker.as_caller(Caller::gateway(Gateway::Nats));
    let shared = Arc::new(Shared::new(broker, config, tls.is_some()));
    shared.delete_stale_groups();
    let (stop_tx, stop_rx) = watch::channel(false);
    tracing::info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(), "NATS listening");
    let accept = tokio::spawn(accept(listener, tls, shared, stop_rx));
    ready();
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = accept.await;
    Ok(())
}

async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let mut conns = JoinSet::new();
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "NATS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if count.load(Ordering::Relaxed) >= shared.config.max_connections {
            metrics::counter!("rocketgate_connections_rejected_total", "gateway" => "nats")
                .increment(1);
            conns.spawn(async move {
                let e = encode::err(&ProtocolError::MaxConnections.to_string());
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&e)).await;
            });
            continue;
        }
        let _ = stream.set_nodelay(true);
        count.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("rocketgate_connections_total", "gateway" => "nats").increment(1);
        metrics::gauge!("rocketgate_connections_active", "gateway" => "nats").increment(1.0);
        let (shared, stop, count, tls) = (shared.clone(), stop.clone(), count.clone(), tls.clone());
        let span = tracing::debug_span!("conn", gateway = "nats", peer = %peer);
        conns.spawn(tracing::Instrument::instrument(
            async move {
                serve_stream(stream, peer, tls, shared, stop).await;
                count.fetch_sub(1, Ordering::Relaxed);
                metrics::gauge!("rocketgate_connections_active", "gateway" => "nats")
                    .decrement(1.0);
            },
            span,
        ));
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(3), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

async fn serve_stream(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let client_id = shared.next_client_id();
    let Some(acceptor) = tls else {
        connection::run(shared, stream, peer, None, stop, false, client_id).await;
        return;
    };
    // INFO in the clear first, then the client's TLS handshake.
    let info = connection::info(&shared, peer, client_id);
    if stream.write_all(&info).await.is_err() {
        return;
    }
    match acceptor.accept(stream).await {
        Ok(s) => {
            let certificate = rocketgate_gateway_kit::tls::peer_subject(&s);
            connection::run(shared, s, peer, certificate, stop, true, client_id).await;
        }
        Err(e) => tracing::debug!(error = %e, "NATS TLS handshake failed"),
    }
}
