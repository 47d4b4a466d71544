//! Cross-protocol: REST with MQTT and with the RocketMQ 5 gRPC protocol on one broker. The
//! gRPC gateway (from the `grpc_sdk` harness), the HTTP gateway and the MQTT gateway serve the
//! same `Broker`; real clients on every side: reqwest, rumqttc and the official RocketMQ SDK.
//!
//! - REST publish → an MQTT subscriber of `telemetry/#` and an SDK simple consumer; the
//!   REST message's properties reach both;
//! - MQTT publish → REST receive (with the `mqttTopic` property) and ack;
//! - SDK producer → REST receive and ack.
//!
//! Every wait is bounded; every gateway is stopped by the test that started it.

use std::time::{Duration, Instant};

use rocketmq::model::message::{Message, MessageBuilder};
use rumqttc::{AsyncClient, EventLoop, Packet, QoS};

use crate::mqtt_client::until;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::grpc_sdk::{
    ack, call, receive, shutdown_consumer, shutdown_producer, tag, GrpcServer, NORMAL_TOPIC,
};

/// The HTTP and MQTT gateways on the harness's broker, on 127.0.0.1:0.
struct Gateways {
    http: String,
    mqtt_port: u16,
    stops: Vec<oneshot::Sender<()>>,
    http_join: JoinHandle<Result<(), rocketgate_gateway_http::Error>>,
    mqtt_join: JoinHandle<Result<(), rocketgate_gateway_mqtt::Error>>,
    client: reqwest::Client,
}

impl Gateways {
    async fn start(server: &GrpcServer) -> Self {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let mqtt = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mqtt_port = mqtt.local_addr().unwrap().port();
        let (stop_http, http_stopped) = oneshot::channel::<()>();
        let (stop_mqtt, mqtt_stopped) = oneshot::channel::<()>();
        let http_join = tokio::spawn(rocketgate_gateway_http::serve_with(
            http,
            server.broker.clone(),
            rocketgate_gateway_http::HttpConfig::default(),
            None,
            async {
                let _ = http_stopped.await;
            },
        ));
        let mqtt_join = tokio::spawn(rocketgate_gateway_mqtt::serve(
            Some(mqtt),
            None,
            server.broker.clone(),
            rocketgate_gateway_mqtt::MqttConfig::default(),
            async {
                let _ = mqtt_stopped.await;
            },
        ));
        Self {
            http: format!("http://{http_addr}"),
            mqtt_port,
            stops: vec![stop_http, stop_mqtt],
            http_join,
            mqtt_join,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
        }
    }

    /// `POST path` with a JSON body; the status and the JSON answer.
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.http))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// REST receives one message (`max` 1) for `group` from `topic`, waiting at most 15 s.
    async fn receive_one(&self, group: &str, topic: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                Instant::now() < deadline,
                "REST receive from {topic}: nothing"
            );
            let (status, got) = self
                .post(
                    &format!("/v1/groups/{group}/receive"),
                    json!({"topic": topic, "max": 1, "wait_ms": 2000, "invisible_ms": 30000}),
                )
                .await;
            assert_eq!(status, 200, "{got}");
            if let Some(m) = got["messages"].as_array().and_then(|m| m.first()) {
                return m.clone();
            }
        }
    }

    /// REST ack of a received message; it must be accepted.
    async fn ack(&self, group: &str, received: &Value) {
        let handle = received["receipt_handle"].as_str().unwrap();
        let (status, answer) = self
            .post(
                &format!("/v1/groups/{group}/ack"),
                json!({ "receipt_handle": handle }),
            )
            .await;
        assert!((200..300).contains(&status), "{status} {answer}");
    }

    fn mqtt(&self, id: &str) -> (AsyncClient, EventLoop) {
        crate::mqtt_client::connect(self.mqtt_port, id)
    }

    async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), self.http_join).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("HTTP gateway did not stop cleanly: {other:?}"),
        }
        match tokio::time::timeout(Duration::from_secs(10), self.mqtt_join).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("MQTT gateway did not stop cleanly: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_publish_reaches_mqtt_and_grpc_and_mqtt_publish_reaches_rest() {
    let server = GrpcServer::start().await;
    let gw = Gateways::start(&server).await;
    let (status, created) = gw
        .post("/v1/topics", json!({"name": "telemetry", "queue_count": 2}))
        .await;
    assert!((200..300).contains(&status), "{status} {created}");
    server.broker.topics().describe("telemetry").await.unwrap();

    // An MQTT subscriber of telemetry/# and an SDK consumer of `telemetry`.
    let (sub, mut sub_events) = gw.mqtt("dashboard");
    sub.subscribe("telemetry/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut sub_events, Duration::from_secs(5), "SUBACK", |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await;
    let consumer = server.consumer("cg-rest-sdk", &["telemetry"]).await;

    let (status, published) = gw
        .post(
            "/v1/topics/telemetry/messages",
            json!({"body": "from rest", "tag": "t1", "keys": ["k-1"], "properties": {"origin": "curl"}}),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {published}");
    let id = published["message_id"].as_str().unwrap().to_owned();

    let p = until(
        &mut sub_events,
        Duration::from_secs(10),
        "PUBLISH",
        |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(p.topic, "telemetry");
    assert_eq!(&p.payload[..], b"from rest");

    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        assert!(
            Instant::now() < deadline,
            "REST message not received over gRPC"
        );
        let got = receive(
            &consumer,
            "telemetry",
            &tag("*"),
            32,
            Duration::from_secs(30),
        )
        .await;
        if let Some(m) = got.into_iter().next() {
            break m;
        }
    };
    assert_eq!(m.message_id(), id);
    assert_eq!(m.body(), b"from rest");
    assert_eq!(m.tag(), Some("t1"));
    assert_eq!(m.keys(), ["k-1".to_owned()]);
    assert_eq!(
        m.properties().get("origin").map(String::as_str),
        Some("curl")
    );
    ack(&consumer, &m).await;

    // MQTT → REST: the MQTT topic is visible as a property; ack over REST.
    let (device, mut events) = gw.mqtt("device-7");
    until(&mut events, Duration::from_secs(5), "CONNACK", |p| {
        matches!(p, Packet::ConnAck(_)).then_some(())
    })
    .await;
    device
        .publish("telemetry/device-7/battery", QoS::AtLeastOnce, false, "87")
        .await
        .unwrap();
    until(&mut events, Duration::from_secs(5), "PUBACK", |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;
    // The REST group also sees the REST message (stored first): ack whatever else comes.
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let m = gw.receive_one("cg-rest", "telemetry").await;
        if m["body"] == "87" {
            break m;
        }
        gw.ack("cg-rest", &m).await;
        assert!(
            Instant::now() < deadline,
            "the MQTT message never came over REST"
        );
    };
    assert_eq!(got["body"], "87", "{got}");
    assert_eq!(
        got["properties"]["mqttTopic"], "telemetry/device-7/battery",
        "{got}"
    );
    gw.ack("cg-rest", &got).await;

    device.disconnect().await.unwrap();
    sub.disconnect().await.unwrap();
    shutdown_consumer(consumer).await;
    gw.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_message_is_received_and_acked_over_rest() {
    let server = GrpcServer::start().await;
    let gw = Gateways::start(&server).await;
    let producer = server.producer(&[NORMAL_TOPIC]).await;
    let mut props = std::collections::HashMap::new();
    props.insert("region".to_owned(), "eu".to_owned());
    let mut m = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag("paid")
        .set_keys(vec!["order-9"])
        .set_properties(props)
        .set_body(b"order 9 paid".to_vec())
        .build()
        .unwrap();
    let id = m.take_message_id();
    call("send", producer.send(m)).await.unwrap();

    let got = gw.receive_one("cg-rest-reader", NORMAL_TOPIC).await;
    let message = &got;
    assert_eq!(message["message_id"], id.as_str(), "{got}");
    assert_eq!(message["body"], "order 9 paid");
    assert_eq!(message["tag"], "paid");
    assert_eq!(message["keys"][0], "order-9");
    assert_eq!(message["properties"]["region"], "eu");
    gw.ack("cg-rest-reader", &got).await;
    // Acknowledged: not delivered to that group again.
    let (status, again) = gw
        .post(
            "/v1/groups/cg-rest-reader/receive",
            json!({"topic": NORMAL_TOPIC, "max": 10, "wait_ms": 500}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        again["messages"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );

    shutdown_producer(producer).await;
    gw.stop().await;
    server.stop().await;
}

/// A raw REST publish's camelCase property names (`rg-properties`) reach an MQTT 5 subscriber
/// (as user properties) and the SDK with their case: HTTP header names are case-insensitive,
/// the JSON header is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_raw_publish_property_names_keep_their_case_over_mqtt_and_grpc() {
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    use rumqttc::v5::mqttbytes::QoS as QoS5;

    let server = GrpcServer::start().await;
    let gw = Gateways::start(&server).await;
    let (status, created) = gw
        .post("/v1/topics", json!({"name": "sensors", "queue_count": 1}))
        .await;
    assert!((200..300).contains(&status), "{status} {created}");

    let mut o = rumqttc::v5::MqttOptions::new("props-reader", "127.0.0.1", gw.mqtt_port);
    o.set_keep_alive(Duration::from_secs(30));
    let (sub, mut events) = rumqttc::v5::AsyncClient::new(o, 16);
    sub.subscribe("sensors/#", QoS5::AtLeastOnce).await.unwrap();
    while !matches!(next5(&mut events).await, Packet5::SubAck(_)) {}
    let consumer = server.consumer("cg-props-sdk", &["sensors"]).await;

    let r = gw
        .client
        .post(format!("{}/v1/topics/sensors/messages", gw.http))
        .header("content-type", "text/plain")
        .header("rg-properties", r#"{"orderId":"o-7","deviceType":"probe"}"#)
        .header("rg-property-site", "north")
        .body("21.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let publish = loop {
        if let Packet5::Publish(p) = next5(&mut events).await {
            break p;
        }
    };
    assert_eq!(&publish.payload[..], b"21.5");
    let user = publish
        .properties
        .map(|p| p.user_properties)
        .unwrap_or_default();
    for (k, v) in [
        ("orderId", "o-7"),
        ("deviceType", "probe"),
        ("site", "north"),
    ] {
        assert!(
            user.contains(&(k.to_owned(), v.to_owned())),
            "{k}={v} not among {user:?}"
        );
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        assert!(Instant::now() < deadline, "not received over gRPC");
        let got = receive(&consumer, "sensors", &tag("*"), 32, Duration::from_secs(30)).await;
        if let Some(m) = got.into_iter().next() {
            break m;
        }
    };
    assert_eq!(m.body(), b"21.5");
    let props = m.properties();
    assert_eq!(props.get("orderId").map(String::as_str), Some("o-7"));
    assert_eq!(props.get("deviceType").map(String::as_str), Some("probe"));
    assert_eq!(props.get("site").map(String::as_str), Some("north"));
    ack(&consumer, &m).await;

    sub.disconnect().await.unwrap();
    shutdown_consumer(consumer).await;
    gw.stop().await;
    server.stop().await;
}

/// The next packet an MQTT 5 event loop receives, within 10 s.
async fn next5(events: &mut rumqttc::v5::EventLoop) -> rumqttc::v5::mqttbytes::v5::Packet {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "MQTT 5: nothing within 10 s");
        match tokio::time::timeout(left, events.poll()).await {
            Ok(Ok(rumqttc::v5::Event::Incoming(p))) => return p,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT 5 connection failed: {e}"),
            Err(_) => panic!("MQTT 5: nothing within 10 s"),
        }
    }
}
