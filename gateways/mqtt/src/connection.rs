//! One MQTT connection, from its first byte to its close: a pure session state machine and a
//! thin I/O driver around it (the sans-IO split of openraft's `Engine`). This file owns the
//! part before the machine exists: reading CONNECT (with its timeout), admitting it, taking
//! the session over from a live connection, and storing the session's start.
//!
//! ```text
//!            socket bytes ──decode──▶ Input::Packet ──┐
//!   core publish completed ─────────▶ Input::Stored ──┤
//!   popped message, timer, shutdown ▶ Input::…       ─┴─▶ Machine ──▶ queue of Action
//!                                                          ▲              │
//!        Input::SubscriptionStarted / Input::Retained ─────┘              ▼
//!   Driver executes: Send (encode) · Flush · Close · Store (Shared::publish) · AckCore ·
//!                    StartSubscription · RefreshPollers · SendRetained
//! ```
//!
//! Layout (pure unless marked I/O):
//! - `connect`: the decisions of a CONNECT: admission, session start, CONNACK, the will.
//! - `machine`: the state machine after CONNECT: `io::Input`s in, `io::Action`s out.
//!   Its parts, one type each: `inbound` (client publishes being stored, Receive Maximum),
//!   `outbound` (deliveries to the client: matching, window, backlog), `subscribe` (a
//!   SUBSCRIBE in progress, coverage, wanted delivery feeds), `alias` (v5 topic aliases).
//! - `io`: the vocabulary between machine and driver.
//! - `driver` (I/O): socket, buffers, timers, delivery feeds, calls into the core; executes
//!   actions and feeds completions back.
//!
//! Why storing a client PUBLISH is an action with a completion event (not an await inside
//! the machine, nor a decision function called around an await in the driver): the rule
//! "PUBACK/PUBREC only after `Producer::send` returned" then lives in the machine alone, which
//! queues the acknowledgement only when `io::Input::Stored` arrives, and is tested there
//! without a core. Stores run concurrently (up to the Receive Maximum) and complete in
//! PUBLISH order (one `FuturesOrdered` in the driver), so acknowledgements keep the PUBLISH
//! order. A SUBSCRIBE's core work and the retained lookup use the same pattern, but the
//! driver feeds their completion at once, before the next packet: a subscription is in place
//! before a PUBLISH that follows it in the stream is stored.
//!
//! Before admission, the CONNECT's credentials (or, without a password, the client certificate
//! the TLS listener verified) are checked by the core (`access.rs`), and its will must be one
//! the client may publish (else "not authorized"); a session taken over keeps only the
//! subscriptions this client may still make. The driver closes the connection when those
//! credentials stop being valid.
//!
//! Invariants: see `machine` (protocol) and `driver` (I/O). A connection that sends no valid
//! CONNECT within `connect_timeout_ms` (or before shutdown) is closed without an answer; a
//! refused CONNECT gets a CONNACK with the reason and is closed; the session is touched only
//! under its guard (waiting at most 3 s for a previous connection to give it up).
//!
//! Called by `server` for every accepted TCP or WebSocket stream. Concurrency: one task per
//! connection (the caller's); the driver spawns the delivery feeds (core subscriptions and their
//! forwarding tasks), the core acknowledgements and
//! a delayed will. The session guard (a `tokio::sync::Mutex`) is held from takeover to close.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{Connect, ConnectReturnCode, LastWill, Login};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, OwnedMutexGuard};

use self::connect::Persist;
use self::machine::{Limits, Machine};
use crate::access::{self, Access};
use crate::codec::{self, Packet, Version};
use crate::session::{self, SessionSlot, SessionState};
use crate::shared::Shared;

mod alias;
mod connect;
mod driver;
mod inbound;
mod io;
mod machine;
mod outbound;
mod subscribe;

fn gauge_conn(delta: f64) {
    metrics::gauge!("rocketgate_connections_active", "gateway" => "mqtt").increment(delta);
}

/// Serves one connection from `peer` until it ends; `certificate` is the common name of the
/// client certificate its TLS handshake verified, if any.
pub async fn run<S>(
    shared: Arc<Shared>,
    mut stream: S,
    peer: Option<IpAddr>,
    certificate: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    metrics::counter!("rocketgate_connections_total", "gateway" => "mqtt").increment(1);
    gauge_conn(1.0);
    let mut rbuf = BytesMut::with_capacity(4096);
    let max = shared.config.max_packet_size;
    let timeout = Duration::from_millis(shared.config.connect_timeout_ms);
    let first = tokio::select! {
        r = tokio::time::timeout(timeout, read_first(&mut stream, &mut rbuf, max)) => r,
        _ = shutdown.changed() => Ok(Err(())),
    };
    if let Ok(Ok((Packet::Connect(c, will, login), version))) = first {
        let hello = Hello {
            version,
            connect: c,
            will,
            login,
            peer,
            certificate,
        };
        connected(shared, stream, rbuf, hello, shutdown).await;
    } else {
        tracing::debug!("MQTT connection closed before a valid CONNECT");
        let _ = stream.shutdown().await;
    }
    gauge_conn(-1.0);
}

async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(Packet, Version), ()> {
    loop {
        match codec::decode(buf, None, max) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "bad first packet");
                return Err(());
            }
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(_) => {}
        }
    }
}

/// Refuses a CONNECT with `code` (a 3.1.1 malformed CONNECT: without CONNACK, MQTT-3.1.4-1).
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, version: Version, code: ConnectReturnCode) {
    if version == Version::V4 && code == ConnectReturnCode::MalformedPacket {
        let _ = stream.shutdown().await;
        return;
    }
    let mut out = BytesMut::new();
    let _ = codec::encode(
        &Packet::ConnAck(codec::connack(code, false)),
        version,
        &mut out,
    );
    let _ = driver::write_flush(stream, &out).await;
}

/// Takes the session of `client_id` over from any live connection (asking it to close and
/// waiting up to 3 s for its guard, retrying if the session ended meanwhile).
async fn take_over(
    shared: &Shared,
    client_id: &str,
) -> Option<(Arc<SessionSlot>, OwnedMutexGuard<SessionState>)> {
    for _ in 0..3 {
        let slot = shared.sessions.slot(client_id);
        slot.kick.send_modify(|k| *k = k.wrapping_add(1));
        match tokio::time::timeout(Duration::from_secs(3), slot.state.clone().lock_owned()).await {
            Ok(g) if !g.ended => return Some((slot, g)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// A connection's CONNECT and where it came from.
struct Hello {
    version: Version,
    connect: Connect,
    will: Option<LastWill>,
    login: Option<Login>,
    peer: Option<IpAddr>,
    /// The common name of the verified client certificate (mTLS).
    certificate: Option<String>,
}

/// Authenticates and admits a CONNECT, takes its session over and serves the connection until
/// it ends.
async fn connected<S>(
    shared: Arc<Shared>,
    mut stream: S,
    rbuf: BytesMut,
    hello: Hello,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Hello {
        version,
        connect,
        will,
        login,
        peer,
        certificate,
    } = hello;
    let principal = match access::authenticate(
        &shared.broker,
        &shared.config,
        login.as_ref(),
        certificate.as_deref(),
        peer,
    ) {
        Ok(p) => p,
        Err(code) => {
            // The connection span names the address; never the password.
            tracing::info!(
                client = %connect.client_id,
                user = login.as_ref().map_or("", |l| l.username.as_str()),
                reason = ?code,
                "MQTT authentication failed"
            );
            return refuse(&mut stream, version, code).await;
        }
    };
    let client_id = connect.client_id.clone();
    let assign = || {
        format!(
            "rg-{}",
            rocketgate_core::message_id::generate(rocketgate_core::now_ms())
        )
    };
    let admission = match connect::admit(&shared.config, version, connect, will, assign) {
        Ok(a) => a,
        Err(code) => {
            tracing::info!(client = %client_id, reason = ?code, "MQTT connect refused");
            return refuse(&mut stream, version, code).await;
        }
    };
    let access = Access::new(&shared.broker, principal, &admission.client_id, peer);
    let will_topic = admission
        .will
        .as_ref()
        .map(|w| String::from_utf8_lossy(&w.topic));
    if will_topic.is_some_and(|t| !access.may_publish(&t)) {
        tracing::info!(client = %admission.client_id, "MQTT connect refused: will not authorized");
        return refuse(&mut stream, version, ConnectReturnCode::NotAuthorized).await;
    }
    let Some((slot, mut session)) = take_over(&shared, &admission.client_id).await else {
        return refuse(&mut stream, version, ConnectReturnCode::ServerBusy).await;
    };
    if let Some(w) = slot.will.lock().take() {
        w.abort();
    }
    let start = admission.start_session(&mut session);
    // A session kept from before (another user's, or under an older policy) keeps only what
    // this client may read.
    let group = admission.group();
    session
        .record
        .subscriptions
        .retain(|raw, _| match crate::topic::parse_filter(raw) {
            Ok(p) => {
                let g = match p.share {
                    Some(share) => crate::topic::shared_group(share, p.filter),
                    None => group.to_string(),
                };
                access.may_subscribe(p.core_topic, p.filter, &g)
            }
            Err(_) => false,
        });
    if start.delete_group {
        let group = admission.group();
        if shared.broker.groups().get(&group).is_ok() {
            let _ = shared.broker.groups().delete(&group);
        }
    }
    match &start.persist {
        Persist::Nothing => {}
        Persist::Live(r) => {
            if let Err(e) = session::persist(&shared.broker, &shared.sessions, r).await {
                tracing::error!(error = %e, "could not persist an MQTT session");
                return refuse(&mut stream, version, ConnectReturnCode::ServerUnavailable).await;
            }
        }
        Persist::Ended(r) => {
            let _ = session::persist(&shared.broker, &shared.sessions, r).await;
        }
    }
    tracing::info!(
        client = %admission.client_id,
        version = ?version,
        session_present = start.present,
        "MQTT client connected"
    );
    let connack = admission.connack(&shared.config, start.present);
    let keep_alive = admission.keep_alive;
    let machine = Machine::new(admission, connack, Limits::from(&shared.config), session);
    driver::serve(
        shared, access, stream, rbuf, machine, slot, keep_alive, shutdown,
    )
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
