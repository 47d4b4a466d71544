//! The request-head timeout over HTTP/2 (`http.header_timeout_ms`), against the real gateway
//! on 127.0.0.1:0: a raw TCP client that trickles the HTTP/2 preface byte by byte, or sends
//! the preface and SETTINGS and then only PINGs (each resetting the idle timeout), is
//! disconnected at the header timeout; a real HTTP/2 client that sends requests keeps its
//! connection past it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{start_with, WAIT};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
/// A PING frame (8 bytes of opaque data).
const PING: [u8; 17] = [0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];

const HEAD_TIMEOUT_MS: u64 = 1_000;

/// Sends `bytes` in pieces of `chunk` with `pause` between them, forever (the bytes repeat
/// from `repeat_from` once sent), while reading what the server sends; returns how long it
/// took the server to close the connection, or `None` if it did not within [`WAIT`].
async fn trickle(
    bytes: &[u8],
    repeat_from: usize,
    chunk: usize,
    pause: Duration,
    addr: std::net::SocketAddr,
) -> Option<Duration> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let (mut rd, mut wr) = conn.split();
    let send = async {
        let mut at = 0;
        loop {
            let end = (at + chunk).min(bytes.len());
            if wr.write_all(&bytes[at..end]).await.is_err() {
                // Writing fails once the server has closed; wait for the reader to see it.
                std::future::pending::<()>().await;
            }
            at = if end == bytes.len() { repeat_from } else { end };
            // The pause between pieces is the subject of the test (a slow client).
            tokio::time::sleep(pause).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let outcome = tokio::time::timeout(WAIT, async {
        tokio::select! {
            () = closed => {},
            () = send => {},
        }
    })
    .await;
    outcome.ok().map(|()| started.elapsed())
}

#[tokio::test]
async fn a_trickled_http2_preface_is_cut_at_the_header_timeout() {
    let s = start_with(|_, h| h.header_timeout_ms = HEAD_TIMEOUT_MS).await;
    // One byte every 100 ms: the preface alone takes 2.4 s, each byte well within the idle
    // timeout (60 s); then SETTINGS and PINGs the same way.
    let mut bytes = PREFACE.to_vec();
    bytes.extend_from_slice(&SETTINGS);
    let ping_at = bytes.len();
    bytes.extend_from_slice(&PING);
    let took = trickle(&bytes, ping_at, 1, Duration::from_millis(100), s.addr)
        .await
        .expect("the server closes the connection");
    assert!(
        took >= Duration::from_millis(HEAD_TIMEOUT_MS - 100) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_preface_and_settings_without_a_request_is_cut_at_the_header_timeout() {
    let s = start_with(|_, h| h.header_timeout_ms = HEAD_TIMEOUT_MS).await;
    // The preface and SETTINGS at once, then a whole PING every 200 ms (the server answers
    // each), never a HEADERS frame.
    let mut bytes = PREFACE.to_vec();
    bytes.extend_from_slice(&SETTINGS);
    let ping_at = bytes.len();
    bytes.extend_from_slice(&PING);
    let took = trickle(
        &bytes,
        ping_at,
        bytes.len(),
        Duration::from_millis(200),
        s.addr,
    )
    .await
    .expect("the server closes the connection");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    s.stop().await;
}

async fn get(
    sender: &mut hyper::client::conn::http2::SendRequest<String>,
    uri: &str,
) -> hyper::StatusCode {
    let req = hyper::Request::get(uri).body(String::new()).unwrap();
    tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap()
        .status()
}

#[tokio::test]
async fn an_http2_client_that_sends_requests_keeps_its_connection() {
    let s = start_with(|_, h| h.header_timeout_ms = HEAD_TIMEOUT_MS).await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let uri = format!("http://{}/healthz", s.addr);
    assert_eq!(get(&mut sender, &uri).await, 200);
    // Past the header timeout (the subject of the test), the same connection still serves.
    tokio::time::sleep(Duration::from_millis(HEAD_TIMEOUT_MS * 3 / 2)).await;
    assert!(!driver.is_finished(), "the connection was closed");
    assert_eq!(get(&mut sender, &uri).await, 200);
    drop(sender);
    let _ = tokio::time::timeout(WAIT, driver).await;
    s.stop().await;
}
