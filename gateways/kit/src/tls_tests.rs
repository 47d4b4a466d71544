//! Tests of [`super`]: handshakes with a CA made here, mTLS, reload while connected, a failed
//! reload, the handshake timeout on paused time, and the errors for bad material.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::test_ca::{Issued, TestCa};

const WAIT: Duration = Duration::from_secs(10);

fn settings(server: &Issued, ca: Option<&Path>, client_auth: ClientAuth) -> TlsSettings {
    TlsSettings {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca: ca.map(Path::to_owned),
        client_auth,
        handshake_timeout: Duration::from_secs(5),
    }
}

/// Serves echo over TLS; each connection sends its peer subject (or `-`) first, then echoes.
async fn echo_server(acceptor: TlsAcceptor) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut stream = MaybeTls::Tls(Box::new(stream));
                let subject = stream.peer_subject().unwrap_or_else(|| "-".into());
                let line = format!("{subject}\n");
                if stream.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

type Client = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(
    addr: std::net::SocketAddr,
    config: ClientConfig,
) -> std::io::Result<(Client, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await??;
    let mut subject = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        tokio::time::timeout(WAIT, stream.read_exact(&mut byte)).await??;
        if byte[0] == b'\n' {
            break;
        }
        subject.push(byte[0]);
    }
    Ok((stream, String::from_utf8(subject).unwrap()))
}

async fn echo(stream: &mut Client, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, text);
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_talks_over_tls_with_the_listeners_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server = ca.server("server").unwrap();
    let acceptor = TlsAcceptor::new(
        settings(&server, None, ClientAuth::Off),
        &[b"h2", b"http/1.1"],
    )
    .unwrap();
    let (addr, task) = echo_server(acceptor).await;
    let (mut stream, subject) = connect(
        addr,
        client_config(&ca.ca_pem, None, &[b"http/1.1"]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(subject, "-", "no client certificate");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    echo(&mut stream, b"hello").await;

    let other = TestCa::new(dir.path(), "other").unwrap();
    assert!(
        connect(addr, client_config(&other.ca_pem, None, &[]).unwrap())
            .await
            .is_err(),
        "a client that does not trust the CA refuses the server"
    );
    task.abort();
}

#[tokio::test]
async fn required_client_certificates_name_the_peer_and_refuse_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server = ca.server("server").unwrap();
    let alice = ca.client("alice", "alice").unwrap();
    let stranger_ca = TestCa::new(dir.path(), "stranger").unwrap();
    let mallory = stranger_ca.client("mallory", "alice").unwrap();
    let acceptor = TlsAcceptor::new(
        settings(&server, Some(&ca.ca_pem), ClientAuth::Required),
        &[],
    )
    .unwrap();
    let (addr, task) = echo_server(acceptor).await;

    let with = |who: &Issued| client_config(&ca.ca_pem, Some((&who.cert, &who.key)), &[]).unwrap();
    let (mut stream, subject) = connect(addr, with(&alice)).await.unwrap();
    assert_eq!(subject, "alice");
    echo(&mut stream, b"mtls").await;

    assert!(
        connect(addr, client_config(&ca.ca_pem, None, &[]).unwrap())
            .await
            .is_err(),
        "no certificate: refused"
    );
    assert!(
        connect(addr, with(&mallory)).await.is_err(),
        "a certificate with the right name from another CA: refused"
    );
    task.abort();
}

#[tokio::test]
async fn optional_client_certificates_let_clients_without_one_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server = ca.server("server").unwrap();
    let bob = ca.client("bob", "bob").unwrap();
    let acceptor = TlsAcceptor::new(
        settings(&server, Some(&ca.ca_pem), ClientAuth::Optional),
        &[],
    )
    .unwrap();
    let (addr, task) = echo_server(acceptor).await;
    let (_, subject) = connect(addr, client_config(&ca.ca_pem, None, &[]).unwrap())
        .await
        .unwrap();
    assert_eq!(subject, "-");
    let (_, subject) = connect(
        addr,
        client_config(&ca.ca_pem, Some((&bob.cert, &bob.key)), &[]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(subject, "bob");
    task.abort();
}

#[tokio::test]
async fn a_new_certificate_is_served_after_reload_while_open_connections_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(dir.path(), "old").unwrap();
    let server = old_ca.server("server").unwrap();
    let acceptor = TlsAcceptor::new(settings(&server, None, ClientAuth::Off), &[]).unwrap();
    let (addr, task) = echo_server(acceptor.clone()).await;
    let trusts_old = || client_config(&old_ca.ca_pem, None, &[]).unwrap();
    let (mut open, _) = connect(addr, trusts_old()).await.unwrap();
    assert!(
        !acceptor.reload_if_changed().unwrap(),
        "nothing changed yet"
    );

    // The operator replaces the files with a certificate from a new CA.
    let new_ca = TestCa::new(dir.path(), "new").unwrap();
    let renewed = new_ca.server("server").unwrap();
    assert_eq!(renewed.cert, server.cert, "same files, new contents");
    assert!(acceptor.reload_if_changed().unwrap(), "the change is seen");

    echo(&mut open, b"still here").await;
    assert!(
        connect(addr, client_config(&new_ca.ca_pem, None, &[]).unwrap())
            .await
            .is_ok(),
        "new connections get the new certificate"
    );
    assert!(
        connect(addr, trusts_old()).await.is_err(),
        "and not the old one"
    );
    task.abort();
}

#[tokio::test]
async fn a_failed_reload_keeps_the_certificate_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server = ca.server("server").unwrap();
    let acceptor = TlsAcceptor::new(settings(&server, None, ClientAuth::Off), &[]).unwrap();
    let (addr, task) = echo_server(acceptor.clone()).await;

    std::fs::write(&server.cert, "not a certificate").unwrap();
    let err = acceptor.reload_if_changed().unwrap_err().to_string();
    assert!(err.contains("server.pem"), "{err}");
    assert!(
        connect(addr, client_config(&ca.ca_pem, None, &[]).unwrap())
            .await
            .is_ok(),
        "the old certificate still serves"
    );
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_the_handshake_is_dropped_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server = ca.server("server").unwrap();
    let acceptor = TlsAcceptor::new(settings(&server, None, ClientAuth::Off), &[]).unwrap();
    let (_silent_client, server_side) = tokio::io::duplex(1024);
    let started = tokio::time::Instant::now();
    let err = acceptor.accept(server_side).await.unwrap_err();
    assert!(matches!(err, TlsError::HandshakeTimeout(_)), "{err}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "exactly the configured time"
    );
}

#[test]
fn bad_material_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server = ca.server("server").unwrap();
    let other = ca.server("other").unwrap();

    let missing = TlsSettings {
        cert: dir.path().join("nope.pem"),
        ..settings(&server, None, ClientAuth::Off)
    };
    let err = TlsAcceptor::new(missing, &[]).unwrap_err().to_string();
    assert!(err.contains("nope.pem"), "{err}");

    let mismatched = TlsSettings {
        key: other.key.clone(),
        ..settings(&server, None, ClientAuth::Off)
    };
    let err = TlsAcceptor::new(mismatched, &[]).unwrap_err().to_string();
    assert!(err.contains("do not make a server identity"), "{err}");

    let err = TlsAcceptor::new(settings(&server, None, ClientAuth::Required), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no client CA"), "{err}");

    let err = read_key(&server.cert).unwrap_err().to_string();
    assert!(
        err.contains("no usable private key") && !err.contains("BEGIN"),
        "{err}"
    );
}
