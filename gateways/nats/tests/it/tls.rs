//! NATS over TLS as NATS does it (INFO in the clear with `tls_required`, then the client's
//! handshake), with a client certificate as the login (`auth.enabled`, a CA made here).

use std::time::Duration;

use futures_util::StreamExt;
use rocketgate_core::auth::UserKind;
use rocketgate_gateway_kit::test_ca::TestCa;
use rocketgate_gateway_kit::tls::{ClientAuth, TlsAcceptor, TlsSettings};
use rocketgate_nats::NatsConfig;

use crate::support::{open_auth_broker, Raw, WAIT};

#[tokio::test]
async fn a_verified_client_certificate_logs_in_and_plain_clients_get_tls_required() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca").unwrap();
    let server_cert = ca.server("server").unwrap();
    let client_cert = ca.client("dev", "dev").unwrap();
    let acceptor = TlsAcceptor::new(
        TlsSettings {
            cert: server_cert.cert.clone(),
            key: server_cert.key.clone(),
            client_ca: Some(ca.ca_pem.clone()),
            client_auth: ClientAuth::Optional,
            handshake_timeout: Duration::from_secs(5),
        },
        &[],
    )
    .unwrap();
    let broker = open_auth_broker(&dir.path().join("data"));
    broker
        .auth()
        .create_user("dev", "dev-secret-key", UserKind::Super)
        .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let b = broker.clone();
    let server = tokio::spawn(async move {
        rocketgate_nats::serve_ready(
            l,
            b,
            NatsConfig::default(),
            Some(acceptor),
            async {
                let _ = stopped.await;
            },
            || {},
        )
        .await
        .unwrap();
    });

    // INFO in the clear says TLS is required.
    let raw = Raw::connect(&addr.to_string()).await;
    assert!(raw.info.contains("\"tls_required\":true"), "{}", raw.info);
    drop(raw);

    let client = tokio::time::timeout(
        WAIT,
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(ca.ca_pem.clone())
            .add_client_certificate(client_cert.cert.clone(), client_cert.key.clone())
            .connect(format!("tls://localhost:{}", addr.port())),
    )
    .await
    .unwrap()
    .unwrap();
    let mut sub = client.subscribe("secure.>").await.unwrap();
    crate::support::barrier(&client).await;
    client.publish("secure.x", "over tls".into()).await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"over tls");

    // Without a certificate and without credentials: refused.
    let refused = tokio::time::timeout(
        WAIT,
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(ca.ca_pem.clone())
            .connect(format!("tls://localhost:{}", addr.port())),
    )
    .await
    .unwrap();
    assert!(refused.is_err(), "no credentials over TLS is refused");
    drop(client);
    let _ = stop.send(());
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
}
