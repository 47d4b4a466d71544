//! TLS on every listener of `rocketgate standalone` (`--tls-cert`/`--tls-key` and `[tls]`),
//! with a CA made in the test and real clients: the broker registers with its own NameServer
//! over TLS; HTTPS (reqwest), MQTT over TLS (`mosquitto_pub --cafile`) and gRPC (tonic) are
//! served; plain clients are not; and a certificate replaced on disk is served to new
//! connections without a restart while connections already open keep working. The node is
//! stopped by the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rocketgate_gateway_kit::test_ca::TestCa;
use rocketgate_nameserver::{ClientConfig, ClientTls, NameServerClient};
use support::{standalone, tool};

const SOON: Duration = Duration::from_secs(15);

fn https(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_and_a_replaced_certificate_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root").unwrap();
    let cert = ca.server("node").unwrap();
    let conf = dir.path().join("tls.toml");
    std::fs::write(
        &conf,
        format!(
            "[tls]\nca = \"{}\"\nreload_interval_ms = 100\n",
            ca.ca_pem.display()
        ),
    )
    .unwrap();
    let node = standalone(
        dir.path(),
        "n",
        &[
            "--config",
            conf.to_str().unwrap(),
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ],
    );
    let port = |p: &str| node.endpoint(p).rsplit(':').next().unwrap().to_owned();

    // The broker registered with its own NameServer, over TLS.
    let ns = NameServerClient::new(&ClientConfig {
        addresses: vec![node.endpoint("nameserver")],
        rpc_timeout_ms: 2_000,
        tls: Some(ClientTls {
            ca_pem: std::fs::read(&ca.ca_pem).unwrap(),
            identity: None,
        }),
        ..ClientConfig::default()
    })
    .unwrap();
    let deadline = Instant::now() + SOON;
    loop {
        let brokers = ns.cluster_info().await.map(|i| i.brokers().count());
        if brokers.as_ref().is_ok_and(|n| *n > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not registered over TLS: {brokers:?}\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plain_ns = NameServerClient::new(&ClientConfig {
        addresses: vec![node.endpoint("nameserver")],
        rpc_timeout_ms: 2_000,
        ..ClientConfig::default()
    })
    .unwrap();
    assert!(
        plain_ns.cluster_info().await.is_err(),
        "plain gRPC to the TLS NameServer"
    );

    // HTTPS: a topic and a message; plain HTTP gets nothing.
    let http = format!("https://127.0.0.1:{}", port("http"));
    let client = https(&ca.ca_pem);
    let r = client
        .post(format!("{http}/v1/topics"))
        .header("content-type", "application/json")
        .body(r#"{"name":"tls-t","queue_count":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = client
        .post(format!("{http}/v1/topics/tls-t/messages"))
        .header("content-type", "application/json")
        .body(r#"{"body":"over https"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/healthz", port("http")))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP to the HTTPS port: {plain:?}");

    // gRPC over TLS.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{}", port("grpc")))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(&ca.ca_pem).unwrap(),
                    ))
                    .domain_name("localhost"),
            )
            .unwrap()
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
    use rocketgate_proto::apache::rocketmq::v2 as pb;
    let mut query = tonic::Request::new(pb::QueryRouteRequest {
        topic: Some(pb::Resource {
            name: "tls-t".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    query
        .metadata_mut()
        .insert("x-mq-client-id", "tls-client".parse().unwrap());
    let route = pb::messaging_service_client::MessagingServiceClient::new(channel)
        .query_route(query)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.status.map(|s| s.code), Some(pb::Code::Ok as i32));

    // MQTT over TLS: a QoS 1 publish is acknowledged (stored).
    if let Some(publish) = tool(
        "/usr/bin/mosquitto_pub",
        "apt-get install mosquitto-clients",
    ) {
        let out = Command::new(publish)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port("mqtt"),
                "-q",
                "1",
                "-t",
                "tls-t/a",
            ])
            .args(["-m", "over mqtts", "-i", "tls-pub", "--cafile"])
            .arg(&ca.ca_pem)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The operator replaces the certificate (a new CA): new connections get it, without a
    // restart; the connection already open keeps working.
    let new_ca = TestCa::new(dir.path(), "renewed").unwrap();
    new_ca.server("node").unwrap();
    let renewed = https(&new_ca.ca_pem);
    let deadline = Instant::now() + SOON;
    while renewed.get(format!("{http}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = client.get(format!("{http}/healthz")).send().await;
    assert!(
        still.is_ok(),
        "the open connection keeps working: {still:?}"
    );
    node.terminate();
}
