//! Names reserved for other gateways, refused over REST (issue 14): the real gateway on
//! 127.0.0.1:0 over a real broker, called with reqwest. The rule itself is core's
//! (`core/src/broker/caller.rs`); this shows the REST client cannot get past it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::start;
use rocketgate_core::{Caller, Gateway, Message, TopicConfig};
use serde_json::json;

#[tokio::test]
async fn rest_cannot_delete_or_write_the_mqtt_gateways_topic() {
    // The probe: `DELETE /v1/topics/mqtt_sys_sessions` lost every persistent MQTT session.
    let s = start().await;
    let mqtt = s.broker.as_caller(Caller::gateway(Gateway::Mqtt));
    let name = "mqtt_sys_sessions";
    mqtt.topics().create(TopicConfig::new(name, 1)).unwrap();
    mqtt.producer()
        .send(Message::new(name, "session").into())
        .await
        .unwrap();

    let (st, v) = s.delete(&format!("/v1/topics/{name}")).await;
    assert_eq!(st, 403, "{v}");
    assert!(v.to_string().contains("reserved"), "{v}");
    let (st, v) = s
        .post(
            &format!("/v1/topics/{name}/messages"),
            json!({"body": "forged"}),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = s
        .post(
            "/v1/topics",
            json!({"name": "mqtt_sys_other", "queue_count": 1}),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    // Still there, untouched.
    let info = mqtt.topics().describe(name).await.unwrap();
    assert_eq!(info.queues[0].max, 1);
    s.stop().await;
}

#[tokio::test]
async fn rest_cannot_set_a_gateways_properties() {
    // The probe: `__RG_V2_ENCODING: GZIP` sent over REST made gRPC consumers see GZIP on a
    // plain body. (`rg-property-*` headers arrive lower-cased, so they cannot name these keys.)
    let s = start().await;
    let (st, v) = s
        .post("/v1/topics", json!({"name": "orders", "queue_count": 1}))
        .await;
    assert_eq!(st, 201, "{v}");
    for key in ["__RG_V2_ENCODING", "mqttTopic"] {
        let (st, v) = s
            .post(
                "/v1/topics/orders/messages",
                json!({"body": "plain", "properties": {key: "GZIP"}}),
            )
            .await;
        assert_eq!(st, 403, "{key}: {v}");
    }
    // An ordinary property is the client's.
    let (st, v) = s
        .post(
            "/v1/topics/orders/messages",
            json!({"body": "plain", "properties": {"encoding": "GZIP"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let info = s.broker.topics().describe("orders").await.unwrap();
    assert_eq!(info.queues[0].max, 1, "only the allowed message was stored");
    s.stop().await;
}
