//! Message properties of a raw publish round-trip by name, case included: `rg-properties` (a
//! JSON object) keeps every name exactly, `rg-property-<name>` sets the lower-case name (HTTP
//! header names are case-insensitive), a name given twice is refused, gateway-reserved names
//! (`mqttTopic`) are refused as reserved; receive answers the names as stored. Against the
//! real gateway on 127.0.0.1:0 with reqwest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, start, Server};
use serde_json::{json, Value};

async fn raw(s: &Server, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut r = s
        .http
        .post(s.url("/v1/topics/props/messages"))
        .header("content-type", "text/plain");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    answer(r.body("x").send().await.unwrap()).await
}

#[tokio::test]
async fn raw_publish_keeps_property_names_exactly() {
    let s = start().await;
    let (st, v) = s
        .post("/v1/topics", json!({"name": "props", "queue_count": 1}))
        .await;
    assert_eq!(st, 201, "{v}");

    let (st, published) = raw(
        &s,
        &[
            (
                "rg-properties",
                r#"{"orderId":"o-1","Trace Id":"t 1","caf\u00e9":"cr\u00e8me"}"#,
            ),
            ("rg-property-Color", "red"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{published}");
    let id = published["message_id"].as_str().unwrap();
    let (st, m) = s.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(
        m["properties"],
        json!({"orderId": "o-1", "Trace Id": "t 1", "café": "crème", "color": "red"}),
        "rg-properties exact, rg-property-<name> lower-case"
    );
    // Received the same way (REST receive, like WebSocket deliveries, answers JSON names).
    let (st, got) = s
        .post(
            "/v1/groups/g/receive",
            json!({"topic": "props", "max": 1, "wait_ms": 1000}),
        )
        .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["messages"][0]["properties"]["orderId"], "o-1", "{got}");

    // Refusals: clear 400s, nothing stored.
    let refused: [&[(&str, &str)]; 5] = [
        &[("rg-properties", r#"{"a":1}"#)],
        &[("rg-properties", "orderId=1")],
        &[("rg-properties", r#"{"a":"1"}"#), ("rg-property-a", "2")],
        &[("rg-property-a", "1"), ("rg-property-A", "2")],
        &[("rg-properties", "{}"), ("rg-properties", "{}")],
    ];
    for headers in refused {
        let (st, v) = raw(&s, headers).await;
        assert_eq!(st, 400, "{headers:?}: {v}");
        assert_eq!(v["code"], "invalid_argument", "{v}");
    }
    // A name another gateway owns is refused as such, in either form, not folded.
    let (st, v) = raw(&s, &[("rg-properties", r#"{"mqttTopic":"props/a"}"#)]).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["code"], "permission_denied", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("`mqttTopic` is reserved for the MQTT gateway")),
        "{v}"
    );
    let (st, found) = s.get("/v1/topics/props/messages?max=10").await;
    assert_eq!(st, 200, "{found}");
    assert_eq!(
        found["messages"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    s.stop().await;
}
