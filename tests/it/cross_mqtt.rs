//! Cross-protocol: MQTT and the RocketMQ 5 gRPC protocol on one broker. The gRPC gateway
//! (from the `grpc_sdk` harness) and the MQTT gateway serve the same `Broker`; real clients on
//! both sides: rumqttc (MQTT 3.1.1) and the official RocketMQ Rust SDK.
//!
//! - an MQTT publish to `sensors/room1/temp` is consumed by an SDK simple consumer of topic
//!   `sensors`, with the MQTT topic as a message property; unacknowledged, it is redelivered
//!   (attempt 2) and then dead-lettered for that consumer group, where the core lists it with
//!   its MQTT properties;
//! - an SDK producer's message to topic `orders` reaches MQTT subscribers of `orders` and of
//!   `orders/#` as MQTT topic `orders`.
//!
//! Every wait is bounded; both gateways are stopped by the test that started them.

use std::time::{Duration, Instant};

use rocketgate_core::{GroupConfig, TopicConfig};
use rocketmq::model::message::MessageBuilder;
use rumqttc::{AsyncClient, EventLoop, Packet, QoS};

use crate::mqtt_client::until;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::grpc_sdk::{call, receive, shutdown_consumer, shutdown_producer, tag, GrpcServer};

/// The MQTT gateway on the harness's broker, on 127.0.0.1:0.
struct Mqtt {
    port: u16,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), rocketgate_gateway_mqtt::Error>>,
}

impl Mqtt {
    async fn start(server: &GrpcServer) -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(rocketgate_gateway_mqtt::serve(
            Some(tcp),
            None,
            server.broker.clone(),
            rocketgate_gateway_mqtt::MqttConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Self { port, stop, join }
    }

    fn client(&self, id: &str) -> (AsyncClient, EventLoop) {
        crate::mqtt_client::connect(self.port, id)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), self.join).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("MQTT gateway did not stop cleanly: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publish_is_consumed_over_grpc_with_retry_and_dead_letter() {
    const GROUP: &str = "cg-mqtt-sensors";
    const INVISIBLE: Duration = Duration::from_secs(10);
    let server = GrpcServer::start().await;
    server
        .broker
        .topics()
        .create(TopicConfig::new("sensors", 4))
        .unwrap();
    let mut g = GroupConfig::new(GROUP);
    g.max_delivery_attempts = 2;
    server.broker.groups().create(g).unwrap();
    let mqtt = Mqtt::start(&server).await;
    let consumer = server.consumer(GROUP, &["sensors"]).await;

    let (device, mut events) = mqtt.client("thermometer-1");
    until(&mut events, Duration::from_secs(5), "CONNACK", |p| {
        matches!(p, Packet::ConnAck(_)).then_some(())
    })
    .await;
    device
        .publish("sensors/room1/temp", QoS::AtLeastOnce, false, "21.5")
        .await
        .unwrap();
    until(&mut events, Duration::from_secs(5), "PUBACK", |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;

    // Attempt 1 over gRPC, with the MQTT topic visible as a property; not acknowledged.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "MQTT message not received over gRPC"
        );
        let got = receive(&consumer, "sensors", &tag("*"), 32, INVISIBLE).await;
        if let Some(m) = got.into_iter().next() {
            break m;
        }
    };
    assert_eq!(first.topic(), "sensors");
    assert_eq!(first.body(), b"21.5");
    assert_eq!(
        first.properties().get("mqttTopic").map(String::as_str),
        Some("sensors/room1/temp"),
        "{:?}",
        first.properties()
    );
    assert_eq!(first.delivery_attempt(), 1);
    let received_at = Instant::now();

    // Attempt 2 after the invisible duration (the group retries at once), not acked either.
    let deadline = Instant::now() + INVISIBLE + Duration::from_secs(15);
    let second = loop {
        assert!(Instant::now() < deadline, "no redelivery over gRPC");
        let got = receive(&consumer, "sensors", &tag("*"), 32, INVISIBLE).await;
        if let Some(m) = got.into_iter().next() {
            break m;
        }
    };
    assert!(received_at.elapsed() >= INVISIBLE - Duration::from_millis(200));
    assert_eq!(second.message_id(), first.message_id());
    assert_eq!(second.delivery_attempt(), 2);

    // Its last attempt expires: dead-lettered for this group, MQTT properties intact.
    let deadline = Instant::now() + INVISIBLE + Duration::from_secs(15);
    let dead = loop {
        assert!(Instant::now() < deadline, "not dead-lettered");
        let r = server
            .broker
            .dead_letters()
            .list(GROUP, 0, 32)
            .await
            .unwrap();
        if let Some(m) = r.messages.into_iter().next() {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead.message_id, first.message_id());
    assert_eq!(&dead.body[..], b"21.5");
    assert_eq!(
        dead.properties.get("mqttTopic").map(String::as_str),
        Some("sensors/room1/temp")
    );
    assert!(
        receive(&consumer, "sensors", &tag("*"), 32, INVISIBLE)
            .await
            .is_empty(),
        "delivered again after the dead-letter queue"
    );

    device.disconnect().await.unwrap();
    shutdown_consumer(consumer).await;
    mqtt.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_message_reaches_mqtt_subscribers_of_the_topic_and_its_wildcard() {
    let server = GrpcServer::start().await;
    server
        .broker
        .topics()
        .create(TopicConfig::new("orders", 2))
        .unwrap();
    let mqtt = Mqtt::start(&server).await;
    let mut subscribers = Vec::new();
    for (id, filter) in [("screen-exact", "orders"), ("screen-wild", "orders/#")] {
        let (client, mut events) = mqtt.client(id);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        until(&mut events, Duration::from_secs(5), "SUBACK", |p| {
            matches!(p, Packet::SubAck(_)).then_some(())
        })
        .await;
        subscribers.push((client, events));
    }

    let producer = server.producer(&["orders"]).await;
    let m = MessageBuilder::builder()
        .set_topic("orders")
        .set_tag("created")
        .set_body(b"order-42".to_vec())
        .build()
        .unwrap();
    call("send", producer.send(m)).await.unwrap();

    for (client, events) in &mut subscribers {
        let p = until(events, Duration::from_secs(10), "PUBLISH", |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(p.topic, "orders");
        assert_eq!(&p.payload[..], b"order-42");
        client.disconnect().await.unwrap();
    }
    shutdown_producer(producer).await;
    mqtt.stop().await;
    server.stop().await;
}
