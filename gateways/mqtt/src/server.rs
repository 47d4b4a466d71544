//! The gateway's entry point: accept loops for TCP and WebSocket, the session-expiry sweep,
//! and shutdown.
//!
//! Start: the retained messages and sessions are loaded before anything is accepted (a
//! connection that arrives meanwhile waits in the listener's backlog); only then do the
//! accept loops start and `ready` fire, which the node awaits before it says `ready`.
//!
//! TLS: each handshake runs on its connection's task; the common name of a client certificate
//! it verified goes with the connection (`connection::run`), a login for a CONNECT without
//! password (`access.rs`).
//!
//! Shutdown: the `shutdown` future flips a `watch` seen by every connection, which sends a v5
//! DISCONNECT 0x8B ("server shutting down") and persists its session; `serve` waits up to
//! 3 s for connections to finish, then aborts the rest.
//!
//! Concurrency: one task per listener, one per connection (in a `JoinSet`), one sweep task.
//! Retained messages and session records are in the core's KV store, which CommitLog
//! retention never touches: nothing has to rewrite them.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::Broker;
use rocketgate_gateway_kit::{MaybeTls, TlsAcceptor};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::MqttConfig;
use crate::connection;
use crate::error::Error;
use crate::session;
use crate::shared::Shared;
use crate::ws;

/// Serves MQTT on the given listeners (TCP and/or WebSocket at path `/mqtt`, subprotocol
/// `mqtt`) until `shutdown` completes; then closes every connection within 3 s.
///
/// # Errors
/// [`Error::NoListener`]; core errors while loading retained messages and sessions.
pub async fn serve(
    tcp: Option<TcpListener>,
    ws: Option<TcpListener>,
    broker: Broker,
    config: MqttConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_ready(tcp, ws, broker, config, Tls::default(), shutdown, || {}).await
}

/// TLS of the two listeners (`None`: plain).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tls {
    /// MQTT over TLS (port 8883 by convention).
    pub(crate) tcp: Option<TlsAcceptor>,
    /// MQTT over secure WebSocket (`wss://…/mqtt`).
    pub(crate) ws: Option<TlsAcceptor>,
}

/// [`serve`], calling `ready` once both listeners accept connections and serve them: retained
/// messages and sessions loaded, the `MQTT listening` lines logged, the accept loops running.
/// What the node's `ready` waits for (`gateway.rs`).
pub(crate) async fn serve_ready(
    tcp: Option<TcpListener>,
    ws: Option<TcpListener>,
    broker: Broker,
    config: MqttConfig,
    tls: Tls,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce() + Send,
) -> Result<(), Error> {
    if tcp.is_none() && ws.is_none() {
        return Err(Error::NoListener);
    }
    config
        .check(broker.auth().enabled())
        .map_err(Error::Config)?;
    if config.record_refresh_age_ms.is_some() || config.record_refresh_interval_ms.is_some() {
        tracing::warn!(
            "mqtt.record_refresh_age_ms and mqtt.record_refresh_interval_ms are deprecated and \
             ignored: retained messages and sessions are in the KV store, which retention never \
             deletes"
        );
    }
    let shared = Shared::open(broker, config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    if let Some(l) = tcp {
        // The node logs one `listening` line per endpoint; embedders see this at debug.
        tracing::debug!(addr = ?l.local_addr().ok(), "MQTT listening (TCP)");
        tasks.spawn(accept(
            l,
            false,
            tls.tcp.clone(),
            shared.clone(),
            stop_rx.clone(),
            count.clone(),
        ));
    }
    if let Some(l) = ws {
        tracing::debug!(addr = ?l.local_addr().ok(), "MQTT listening (WebSocket /mqtt)");
        tasks.spawn(accept(
            l,
            true,
            tls.ws.clone(),
            shared.clone(),
            stop_rx.clone(),
            count.clone(),
        ));
    }
    tasks.spawn(sweep(shared.clone(), stop_rx.clone()));
    ready();
    shutdown.await;
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(3), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    Ok(())
}

async fn accept(
    listener: TcpListener,
    websocket: bool,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    count: Arc<AtomicUsize>,
) {
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if count.load(Ordering::Relaxed) >= shared.config.max_connections {
            metrics::counter!("rocketgate_connections_rejected_total", "gateway" => "mqtt")
                .increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        count.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let stop = stop.clone();
        let count = count.clone();
        let tls = tls.clone();
        // At info: the connect, refusal and disconnect lines show the client's address.
        let span = tracing::info_span!("conn", gateway = "mqtt", peer = %peer);
        conns.spawn(tracing::Instrument::instrument(
            async move {
                serve_stream(stream, tls, peer.ip(), websocket, shared, stop).await;
                count.fetch_sub(1, Ordering::Relaxed);
            },
            span,
        ));
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(2500), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

async fn serve_stream(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    peer: std::net::IpAddr,
    websocket: bool,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    // TLS first, on the connection's own task, within the acceptor's handshake timeout.
    let stream: MaybeTls<TcpStream> = match tls {
        None => MaybeTls::Plain(stream),
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(s) => MaybeTls::Tls(Box::new(s)),
            Err(e) => {
                tracing::debug!(error = %e, "MQTT TLS handshake failed");
                return;
            }
        },
    };
    // The verified client certificate's name (mTLS): a login for a CONNECT without password.
    let certificate = stream.peer_subject();
    if websocket {
        let timeout = Duration::from_millis(shared.config.connect_timeout_ms);
        match tokio::time::timeout(
            timeout,
            ws::accept(
                stream,
                shared.config.max_packet_size,
                &shared.config.ws_allowed_origins,
            ),
        )
        .await
        {
            Ok(Ok(s)) => connection::run(shared, s, Some(peer), certificate, stop).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "MQTT WebSocket handshake failed"),
            Err(_) => tracing::debug!("MQTT WebSocket handshake timed out"),
        }
    } else {
        connection::run(shared, stream, Some(peer), certificate, stop).await;
    }
}

/// Ends offline sessions whose expiry interval has passed.
async fn sweep(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = shared.broker.now_ms();
        for (id, slot) in shared.sessions.all() {
            let Ok(mut s) = slot.state.clone().try_lock_owned() else {
                continue;
            };
            let (Some(at), Some(exp)) = (s.record.disconnected_at_ms, s.record.expiry_secs) else {
                continue;
            };
            if at + i64::from(exp) * 1000 > now {
                continue;
            }
            s.ended = true;
            let mut r = s.record.clone();
            r.deleted = true;
            if let Err(e) = session::persist(&shared.broker, &shared.sessions, &r).await {
                tracing::warn!(error = %e, "could not persist an MQTT session expiry");
            }
            let group = crate::topic::session_group(&id);
            if shared.broker.groups().get(&group).is_ok() {
                let _ = shared.broker.groups().delete(&group);
            }
            shared.sessions.remove(&id, &slot);
            tracing::debug!(client = %id, "MQTT session expired");
        }
    }
}
