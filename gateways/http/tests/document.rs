//! The OpenAPI document tells the truth (issue 24), shown without schemathesis: its rules are
//! core's rules (strings the document's schema accepts are exactly those the server accepts),
//! its limits are the configured ones, its links chain the operations that produce and take
//! identifiers, and a body of the wrong JSON type is refused with a problem. The real gateway
//! on 127.0.0.1:0 over a real broker, called with reqwest; schemas checked with `jsonschema`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{start, start_with};
use rocketgate_core::{Caller, Gateway, TopicConfig};
use serde_json::{json, Value};

/// The schema at `pointer` of the document (its `$ref`s resolved against the document).
fn schema(doc: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$ref"] = json!(format!("#{pointer}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {pointer}: {e}"))
}

/// Strings around the edges of the name, field and key rules.
fn corpus() -> Vec<String> {
    let mut c: Vec<String> = [
        "",
        "a",
        "A-z_0|9%",
        "a b",
        " a",
        "a ",
        "a/b",
        "a.b",
        "a@b",
        "é",
        "a#b",
        "a\0",
        "a\u{7f}",
        "a\u{85}",
        "\u{a0}",
        " ",
        "\t",
        "x|y",
        "%RETRY%g",
        "rmq_sys_x",
        "ab\ncd",
        "ab\n",
        "日本語",
        "😀",
        "a\u{2028}",
        "k=v",
        "12345678",
        "1234567",
        "pass word",
        "p@ss-w0rd!",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [127, 128, 255, 256, 257] {
        c.push("a".repeat(n));
    }
    c
}

#[tokio::test]
async fn names_and_keys_in_the_document_are_cores_rules() {
    let s = start().await;
    let (_, doc) = s.get("/openapi.json").await;
    let topic = schema(&doc, "/components/schemas/CreateTopic/properties/name");
    let group = schema(&doc, "/components/schemas/CreateGroup/properties/name");
    let access_key = schema(&doc, "/components/schemas/CreateUser/properties/access_key");
    let secret_key = schema(&doc, "/components/schemas/CreateUser/properties/secret_key");
    for v in corpus() {
        let j = json!(v);
        assert_eq!(
            topic.is_valid(&j),
            rocketgate_core::rules::topic_name(&v).is_ok(),
            "topic name {v:?}"
        );
        assert_eq!(
            group.is_valid(&j),
            rocketgate_core::rules::group_name(&v).is_ok(),
            "group name {v:?}"
        );
        assert_eq!(
            access_key.is_valid(&j),
            rocketgate_core::auth::check_access_key(&v).is_ok(),
            "access key {v:?}"
        );
        assert_eq!(
            secret_key.is_valid(&j),
            rocketgate_core::auth::check_secret_key(&v).is_ok(),
            "secret key {v:?}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn tags_keys_and_groups_the_document_accepts_are_those_the_server_accepts() {
    let s = start().await;
    // MIXED: the topic takes grouped (FIFO) and delayed messages too, so only the field
    // rules decide here.
    let (st, _) = s
        .post(
            "/v1/topics",
            json!({"name": "t", "queue_count": 1, "message_type": "MIXED"}),
        )
        .await;
    assert_eq!(st, 201);
    let (_, doc) = s.get("/openapi.json").await;
    let message = schema(&doc, "/components/schemas/PublishMessage");
    for v in corpus() {
        for body in [
            json!({"body": "x", "tag": v}),
            json!({"body": "x", "keys": [v]}),
            json!({"body": "x", "message_group": v}),
        ] {
            let (st, answer) = s.post("/v1/topics/t/messages", body.clone()).await;
            assert_eq!(message.is_valid(&body), st == 200, "{body}: {st} {answer}");
        }
    }
    // Fields that exclude each other: one delay, one of `tag` and its alias `tags`, and
    // `deliver_at`, the alias of `deliver_at_ms`; a base64 body in canonical base64.
    let at = rocketgate_core::now_ms() + 60_000;
    for body in [
        json!({"body": "x", "deliver_at": at}),
        json!({"body": "x", "deliver_at": at, "deliver_at_ms": at}),
        json!({"body": "x", "deliver_at": null, "deliver_at_ms": at}),
        json!({"body": "x", "deliver_at": at, "delay_ms": 5}),
        json!({"body": "x", "delay_ms": 5, "delay_level": 1}),
        json!({"body": "x", "delay_ms": 5, "delay_level": null}),
        json!({"body": "x", "tag": "a", "tags": "b"}),
        json!({"body": "x", "tag": null, "tags": "b"}),
        json!({"body": "x", "delay_level": 3}),
        json!({"body": "eA==", "body_encoding": "base64"}),
        json!({"body": "eB==", "body_encoding": "base64"}),
        json!({"body": "x", "body_encoding": "base64"}),
    ] {
        let (st, answer) = s.post("/v1/topics/t/messages", body.clone()).await;
        assert_eq!(message.is_valid(&body), st == 200, "{body}: {st} {answer}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_documents_limits_are_the_configured_ones() {
    let s = start_with(|c, h| {
        c.consumer.max_wait_ms = 700;
        h.max_wait_ms = 900;
        h.max_batch = 17;
        c.limits.max_queues_per_topic = 33;
    })
    .await;
    let (_, doc) = s.get("/openapi.json").await;
    let p = |pointer: &str| doc.pointer(pointer).cloned().unwrap_or(Value::Null);
    let receive = "/components/schemas/ReceiveRequest/properties";
    assert_eq!(p(&format!("{receive}/wait_ms/maximum")), 700);
    assert_eq!(p(&format!("{receive}/topic/pattern")), "^[A-Za-z0-9_%|-]+$");
    assert_eq!(
        p("/components/schemas/AckRequest/properties/receipt_handles/maxItems"),
        17
    );
    assert_eq!(
        p("/components/schemas/PublishBatch/properties/messages/maxItems"),
        17
    );
    assert_eq!(
        p("/components/schemas/CreateTopic/properties/queue_count/maximum"),
        33
    );
    // With authentication off no operation asks for credentials.
    assert!(doc.get("security").is_none(), "{}", doc["security"]);
    let op = &doc["paths"]["/v1/topics"]["post"];
    assert!(op["responses"].get("401").is_none(), "{op}");
    assert!(op["responses"].get("400").is_some(), "{op}");
    s.stop().await;
}

#[tokio::test]
async fn links_chain_the_operations_that_produce_and_take_identifiers() {
    let s = start().await;
    let (_, doc) = s.get("/openapi.json").await;
    let links = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["links"].clone()
    };
    let group = links("/v1/groups", "post", "201");
    for (name, target) in [
        ("DeadLetters", "dlq_list"),
        ("Offsets", "offsets"),
        ("Pull", "pull"),
        ("Lag", "lag"),
    ] {
        assert_eq!(group[name]["operationId"], target, "{group}");
        assert_eq!(
            group[name]["parameters"]["group"], "$response.body#/name",
            "{group}"
        );
    }
    let scheduled = links("/v1/scheduled", "get", "200");
    assert_eq!(scheduled["CancelFirst"]["operationId"], "cancel_scheduled");
    assert_eq!(
        scheduled["CancelFirst"]["parameters"]["id"],
        "$response.body#/messages/0/message_id"
    );
    let published = links("/v1/topics/{topic}/messages", "post", "200");
    assert_eq!(published["Message"]["operationId"], "by_id");
    assert_eq!(published["Trace"]["operationId"], "trace");
    assert_eq!(
        published["Trace"]["parameters"]["id"],
        "$response.body#/message_id"
    );
    let received = links("/v1/groups/{group}/receive", "post", "200");
    assert_eq!(
        received["AckFirst"]["requestBody"]["receipt_handle"],
        "$response.body#/messages/0/receipt_handle"
    );
    // Every link names an operation of the document.
    let ids: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str().map(str::to_owned))
        .collect();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for r in op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
            {
                for l in r["links"].as_object().into_iter().flat_map(|l| l.values()) {
                    let target = l["operationId"].as_str().unwrap();
                    assert!(ids.iter().any(|i| i == target), "{target}");
                }
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn bodies_of_the_wrong_json_type_are_refused() {
    let s = start().await;
    let mqtt = s.broker.as_caller(Caller::gateway(Gateway::Mqtt));
    mqtt.topics()
        .create(TopicConfig::new("mqtt_sys_sessions", 1))
        .unwrap();
    let (st, _) = s
        .post("/v1/topics", json!({"name": "t", "queue_count": 1}))
        .await;
    assert_eq!(st, 201);
    // The probe of issue 24: an array read field by field passed for `{}`.
    let (st, v) = s
        .patch("/v1/topics/mqtt_sys_sessions", json!([null, null]))
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_json")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("an array"), "{v}");
    // As an object it reaches the rule: the MQTT gateway's topic is not REST's to change.
    for body in [json!({}), json!({"writable": false})] {
        let (st, v) = s.patch("/v1/topics/mqtt_sys_sessions", body).await;
        assert_eq!(st, 403, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("reserved"), "{v}");
    }
    // A broker-managed topic: well-formed name, not REST's either.
    let (st, v) = s
        .post("/v1/topics", json!({"name": "%DLQ%x", "queue_count": 1}))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("reserved")), "{v}");
    for (path, body) in [
        ("/v1/topics", json!(["t2", 1])),
        ("/v1/topics", json!("t2")),
        ("/v1/topics", json!(null)),
        ("/v1/topics", json!(7)),
        ("/v1/topics/t/messages/batch", json!({"messages": [["x"]]})),
        ("/v1/topics/t/messages/batch", json!({"messages": [null]})),
        (
            "/v1/groups",
            json!({"name": "g", "subscriptions": {"t": ["*"]}}),
        ),
        (
            "/v1/groups/g/receive",
            json!({"topic": "t", "filter": ["TAG", "*"]}),
        ),
        (
            "/v1/topics/t/transactions",
            json!({"producer_group": "p", "message": ["x"]}),
        ),
    ] {
        let (st, v) = s.post(path, body.clone()).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (400, Some("invalid_json")),
            "{path} {body}: {v}"
        );
    }
    // A number with a zero fraction is an integer, for JSON Schema and for the server.
    let (st, v) = s
        .post("/v1/topics", json!({"name": "t3", "queue_count": 2.0}))
        .await;
    assert_eq!((st, v["queue_count"].as_u64()), (201, Some(2)), "{v}");
    let (st, v) = s
        .post("/v1/topics", json!({"name": "t4", "queue_count": 2.5}))
        .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_json")), "{v}");
    // Nothing was created by the refused requests.
    let (_, topics) = s.get("/v1/topics").await;
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"t2"), "{names:?}");
    s.stop().await;
}

#[tokio::test]
async fn identifiers_that_name_nothing_are_not_found_and_stale_handles_conflict() {
    let s = start().await;
    let (st, v) = s.post("/v1/transactions/nope/commit", json!({})).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("unknown_transaction")));
    let (st, v) = s.delete("/v1/auth/tokens/nope").await;
    assert_eq!((st, v["code"].as_str()), (404, Some("token_not_found")));
    // Well-formed, never issued: 409; malformed: 400.
    let (st, v) = s
        .post(
            "/v1/groups/g/nack",
            json!({"receipt_handle": "A".repeat(80)}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("invalid_receipt_handle"))
    );
    let (st, v) = s
        .post("/v1/groups/g/nack", json!({"receipt_handle": "short"}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_receipt_handle"))
    );
    // A queue count may only grow: a smaller one conflicts with the topic.
    let (st, _) = s
        .post("/v1/topics", json!({"name": "t", "queue_count": 2}))
        .await;
    assert_eq!(st, 201);
    let (st, v) = s.patch("/v1/topics/t", json!({"queue_count": 1})).await;
    assert_eq!((st, v["code"].as_str()), (409, Some("conflict")), "{v}");
    s.stop().await;
}
