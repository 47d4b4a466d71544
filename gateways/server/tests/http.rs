//! The HTTP gateway of the real `rocketgate standalone` binary: REST under `/v1` on its HTTP
//! endpoint, the Prometheus recorder the binary installs behind `GET /metrics` (core, gRPC and
//! MQTT metrics in one scrape), and `/openapi.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{http, standalone};

#[test]
fn rest_publish_receive_and_the_metrics_of_every_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "web", &[]);
    let web = node.endpoint("http");
    let (status, body) = http(
        &web,
        "POST",
        "/v1/topics",
        Some(r#"{"name":"orders","queue_count":2}"#),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    for i in 0..3 {
        let (status, body) = http(
            &web,
            "POST",
            "/v1/topics/orders/messages",
            Some(&format!(r#"{{"body":"order {i}","tag":"new"}}"#)),
        );
        assert!((200..300).contains(&status), "{status} {body}");
    }
    let (status, body) = http(
        &web,
        "POST",
        "/v1/groups/billing/receive",
        Some(r#"{"topic":"orders","max":10,"wait_ms":1000}"#),
    );
    assert_eq!(status, 200, "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["messages"].as_array().map(Vec::len), Some(3), "{got}");

    // An MQTT connection is open while the metrics are scraped.
    let mqtt = std::net::TcpStream::connect(node.endpoint("mqtt")).unwrap();
    {
        use std::io::{Read, Write};
        let mut m = &mqtt;
        m.write_all(&[
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'm', b'1',
        ])
        .unwrap();
        let mut connack = [0u8; 4];
        mqtt.set_read_timeout(Some(support::WAIT)).unwrap();
        m.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0]);
    }
    // A gRPC call (the admin tool) before the scrape too.
    let info = support::admin_json(&["--broker", &node.endpoint("grpc"), "broker", "info"]);
    assert!(info.to_string().contains("broker"), "{info}");
    let (status, metrics) = http(&web, "GET", "/metrics", None);
    assert_eq!(status, 200, "{metrics}");
    for want in [
        r#"rocketgate_messages_in_total{topic="orders"} 3"#,
        r#"rocketgate_messages_out_total{group="billing",topic="orders",mode="pop"} 3"#,
        r#"rocketgate_connections_total{gateway="mqtt"}"#,
        r#"rocketgate_connections_total{gateway="grpc"}"#,
        "rocketgate_http_requests_total",
    ] {
        assert!(metrics.contains(want), "no {want} in:\n{metrics}");
    }
    let (status, doc) = http(&web, "GET", "/openapi.json", None);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["paths"]["/v1/topics/{topic}/messages"].is_object());
    drop(mqtt);
    let (status, _) = node.terminate();
    assert!(status.success());
}
