//! TLS on the gRPC listener, with a CA made here: a client that trusts the CA is served; plain
//! TCP to the TLS port is not; with authentication on, a verified client certificate whose
//! common name is a user authenticates as that user (allowed what its policy allows, FORBIDDEN
//! otherwise), a connection without one must sign as usual, and a certificate from another CA
//! is refused at the handshake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use messaging_support::*;
use rocketgate_core::auth::{Action, Decision, PolicyEntry, UserKind};
use rocketgate_gateway_grpc::GrpcGateway;
use rocketgate_gateway_kit::test_ca::{Issued, TestCa};
use rocketgate_gateway_kit::tls::{ClientAuth, TlsAcceptor, TlsSettings};
use rocketgate_gateway_kit::{ready, shutdown, Gateway};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

const WAIT: Duration = Duration::from_secs(10);

async fn channel(port: u16, ca: &TestCa, identity: Option<&Issued>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca.ca_pem).unwrap()))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&id.cert).unwrap(),
            std::fs::read(&id.key).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn clients_are_served_over_tls_and_a_client_certificate_names_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let server_cert = ca.server("grpc").unwrap();
    let device = ca.client("device-1", "device-1").unwrap();
    let stranger = TestCa::new(dir.path(), "stranger")
        .unwrap()
        .client("mallory", "device-1")
        .unwrap();

    let mut config = Config::default();
    config.store.data_dir = dir.path().join("data");
    config.store.segment_size = 4 << 20;
    config.auth.enabled = true;
    config.auth.bootstrap_access_key = Some("root".into());
    config.auth.bootstrap_secret_key = Some("root-secret".into());
    let broker = Broker::open(config).unwrap();
    for t in ["t", "other"] {
        broker.topics().create(TopicConfig::new(t, 1)).unwrap();
    }
    let auth = broker.auth();
    auth.create_user("device-1", "device-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy(
        "device-1",
        vec![PolicyEntry {
            resources: vec!["Topic:t".parse().unwrap()],
            actions: vec![Action::Pub],
            decision: Decision::Allow,
            sources: Vec::new(),
        }],
    )
    .unwrap();

    let acceptor = TlsAcceptor::new(
        TlsSettings {
            cert: server_cert.cert.clone(),
            key: server_cert.key.clone(),
            client_ca: Some(ca.ca_pem.clone()),
            client_auth: ClientAuth::Optional,
            handshake_timeout: Duration::from_secs(5),
        },
        &[b"h2"],
    )
    .unwrap();
    let (node_tx, node_rx) = oneshot::channel();
    let gateway = GrpcGateway::new(
        "127.0.0.1:0".parse().unwrap(),
        MessagingConfig::default(),
        node_rx,
    )
    .with_tls(Some(acceptor));
    let bound = Box::new(gateway).bind().await.unwrap();
    let port = bound.endpoints()[0].address.port();
    node_tx
        .send(NodeInfo {
            cluster: "c1".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            endpoints: Vec::new(),
            nameservers: Vec::new(),
            registered_nameservers: Arc::new(|| 0),
            started_at_ms: 0,
            routes: None,
        })
        .unwrap();
    let (trigger, stop) = shutdown::channel();
    let (accepting, accepted) = ready::channel();
    let serving = tokio::spawn(bound.serve(broker.clone(), stop, accepting));
    assert!(bounded(accepted.wait()).await);

    // Plain HTTP/2 to the TLS port: no answer a client could use.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = MessagingServiceClient::new(ch)
            .send_message(req(pb::SendMessageRequest {
                messages: vec![message("t", "ID-PLAIN", pb::MessageType::Normal)],
            }))
            .await;
        assert!(r.is_err(), "plain TCP is not served: {r:?}");
    }

    // TLS without a client certificate and without a signature: UNAUTHORIZED.
    let mut anonymous = MessagingServiceClient::new(channel(port, &ca, None).await.unwrap());
    let r = send(
        &mut anonymous,
        vec![message("t", "ID-ANON", pb::MessageType::Normal)],
    )
    .await;
    assert_eq!(code(&r.status), Code::Unauthorized, "{r:?}");

    // The device's certificate: it is `device-1`, allowed on `t`, not on `other`.
    let mut dev = MessagingServiceClient::new(channel(port, &ca, Some(&device)).await.unwrap());
    let r = send(
        &mut dev,
        vec![message("t", "ID-DEV", pb::MessageType::Normal)],
    )
    .await;
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    let r = send(
        &mut dev,
        vec![message("other", "ID-DEV-2", pb::MessageType::Normal)],
    )
    .await;
    assert_eq!(code(&r.status), Code::Forbidden, "{r:?}");

    // The same name from another CA does not get through the handshake.
    let refused = match channel(port, &ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => MessagingServiceClient::new(ch)
            .send_message(req(pb::SendMessageRequest {
                messages: vec![message("t", "ID-MAL", pb::MessageType::Normal)],
            }))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA is refused");
    assert!(broker.queries().by_id("ID-MAL").await.is_err());

    trigger.trigger();
    bounded(serving).await.unwrap().unwrap();
    broker.shutdown().unwrap();
}
