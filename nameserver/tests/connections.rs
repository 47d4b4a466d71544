//! The NameServer listener's connection limits with raw `TcpStream`s against a real NameServer
//! on 127.0.0.1:0: a socket that never sends the HTTP/2 preface, and one that completes the
//! handshake but opens no call, are closed within their bounds; past the cap new sockets are
//! closed at once while existing clients keep working. Every wait has a deadline; every server
//! is shut down by its test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use rocketgate_nameserver::{Config, ConnectionLimits};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection preface and an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Reads until the server closes `stream` (EOF or reset); how long that took, or `None` if it
/// is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// Connects, sends the preface and reads the server's first frame header: whether it was served.
async fn served(address: &str) -> anyhow::Result<(bool, TcpStream)> {
    let mut s = TcpStream::connect(address).await?;
    s.write_all(PREFACE).await?;
    let mut header = [0u8; 9];
    let read = tokio::time::timeout(WAIT, s.read_exact(&mut header)).await?;
    // The server's first frame is its SETTINGS (type 4).
    Ok((read.is_ok() && header[3] == 4, s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_sockets_are_closed_within_their_bounds() -> anyhow::Result<()> {
    let ns = RunningNameServer::start(Config {
        connections: ConnectionLimits {
            handshake_timeout_ms: 300,
            idle_timeout_ms: 1_000,
            ..ConnectionLimits::default()
        },
        ..Config::default()
    })
    .await?;

    // Never sends the preface: closed after the handshake timeout.
    let mut silent = TcpStream::connect(ns.addr).await?;
    let took = closed_within(&mut silent, WAIT)
        .await
        .expect("a socket without the HTTP/2 preface must be closed");
    assert!(took >= Duration::from_millis(250), "{took:?}");

    // Completes the handshake, opens no call: closed after the idle timeout, not before.
    let (ok, mut idle) = served(&ns.address()).await?;
    assert!(ok, "the handshake was served");
    let took = closed_within(&mut idle, WAIT)
        .await
        .expect("a connection without calls must be closed");
    assert!(took >= Duration::from_millis(800), "{took:?}");

    // A client with calls is served throughout.
    let c = client(&[&ns.address()], 30_000);
    c.cluster_info().await?;
    ns.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_new_sockets_are_closed_and_existing_clients_keep_working(
) -> anyhow::Result<()> {
    let ns = RunningNameServer::start(Config {
        connections: ConnectionLimits {
            max_connections: 2,
            ..ConnectionLimits::default()
        },
        ..Config::default()
    })
    .await?;
    // One real client (one connection) registers a broker, one raw socket holds the other.
    let c = client(&[&ns.address()], 30_000);
    let a = broker(&c, registration("c1", "a", 0, 1001, &[("orders", 4)])).await?;
    let (ok, holder) = served(&ns.address()).await?;
    assert!(ok, "the second connection is served");

    // The third is closed at once, without a word of HTTP/2.
    let mut third = TcpStream::connect(ns.addr).await?;
    let took = closed_within(&mut third, WAIT)
        .await
        .expect("a connection past the cap must be closed");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // The existing client keeps working.
    assert_eq!(routed_brokers(&c, "orders").await, vec!["a"]);
    assert_eq!(c.cluster_info().await?.brokers().count(), 1);

    // Once a connection closes, a new one is served again.
    drop(holder);
    eventually("a new connection to be served", || async {
        served(&ns.address())
            .await
            .ok()
            .and_then(|(ok, _)| ok.then_some(()))
    })
    .await?;

    assert_eq!(a.unregister().await, 1);
    ns.shutdown().await
}
