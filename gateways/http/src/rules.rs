//! The rules of a REST request, stated once: the OpenAPI document states them ([`apply`]) and
//! the handlers check them ([`receipt_handle`], [`Limits`]) with the same constants and the same
//! configured limits, so `/openapi.json` describes what the server really accepts.
//!
//! Owns: the JSON Schema fragments of names, handles, ranges and list sizes, and the table that
//! puts them on the document's parameters and component schemas. The rules themselves are
//! core's where core checks them (`rocketgate_core::rules`, the broker's limits): the patterns
//! here restate them in JSON Schema, and `tests/document.rs` (strings through both) and
//! `tests/schemathesis.rs` (every boundary probed) hold the two together. Pure functions over
//! `serde_json::Value`; no I/O, no state.

use rocketgate_core::rules::{MAX_TOPIC_LEN, RESERVED_PROPERTY_KEYS};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Topic and consumer group names (core's `rules::topic_name`): letters, digits, `_ - % |`.
pub(crate) const NAME_PATTERN: &str = "^[A-Za-z0-9_%|-]+$";
/// Longest producer group name (transaction callbacks).
pub(crate) const MAX_PRODUCER_GROUP: usize = 255;
/// Access keys (core's `auth::check_access_key`): letters, digits, `_ - . @`.
pub(crate) const ACCESS_KEY_PATTERN: &str = "^[A-Za-z0-9_.@-]+$";
/// Longest access key (core's `auth::check_access_key`).
pub(crate) const MAX_ACCESS_KEY: usize = 128;
/// Shortest and longest secret key (core's `auth::check_secret_key`).
pub(crate) const MIN_SECRET_KEY: usize = 8;
/// Longest secret key.
pub(crate) const MAX_SECRET_KEY: usize = 256;
/// Secret keys (core's `auth::check_secret_key`): printable ASCII without spaces.
pub(crate) const SECRET_KEY_PATTERN: &str = "^[!-~]+$";
/// Receipt handles: unpadded URL-safe base64 of at least the fixed part of a handle (46 bytes).
pub(crate) const RECEIPT_HANDLE_PATTERN: &str = "^[A-Za-z0-9_-]+$";
/// Shortest receipt handle: base64 of the 30-byte header and the 16-byte MAC.
pub(crate) const MIN_RECEIPT_HANDLE: usize = 62;
/// Longest receipt handle (core's `MAX_HANDLE_LEN`).
pub(crate) const MAX_RECEIPT_HANDLE: usize = 512;
/// Most deliveries of a group's retry policy (core's `retry_policy::MAX_DELIVERY_ATTEMPTS`;
/// the schemathesis test probes the boundary).
pub(crate) const MAX_DELIVERY_ATTEMPTS: u32 = 1024;
/// Longest filter expression, bytes (core's `filter::MAX_EXPRESSION_LEN`).
pub(crate) const MAX_FILTER_EXPRESSION: usize = 4096;
/// Control characters (`char::is_control`: C0, DEL and C1), as a regex class body.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// The limits a request is held to, from the broker's and the gateway's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Longest long-polling wait, ms.
    pub max_wait_ms: u64,
    /// Most handles, ids or messages in one request (`http.max_batch`).
    pub max_batch: usize,
    /// Most messages a pull, a query or a dead-letter listing returns (`limits.max_batch`).
    pub max_read: usize,
    /// Most messages one receive returns.
    pub max_pop: usize,
    /// Invisible durations, ms.
    pub invisible_ms: (u64, u64),
    /// Most queues of a topic.
    pub max_queues: u32,
    /// Longest key, tag, message group, in bytes.
    pub max_field: usize,
    /// Most keys of a message.
    pub max_keys: usize,
    /// Most properties of a message.
    pub max_properties: usize,
    /// Delay levels.
    pub delay_levels: u32,
    /// Longest delay, ms.
    pub max_delay_ms: u64,
    /// Longest token lifetime, ms.
    pub max_token_ttl_ms: u64,
}

impl Limits {
    /// The limits of a running gateway.
    pub(crate) fn of(state: &AppState) -> Self {
        let c = state.broker.config();
        Self {
            max_wait_ms: crate::rest::consume::max_wait_ms(state),
            max_batch: state.config.max_batch,
            max_read: c.limits.max_batch,
            max_pop: c.consumer.max_pop_batch,
            invisible_ms: (c.consumer.min_invisible_ms, c.consumer.max_invisible_ms),
            max_queues: c.limits.max_queues_per_topic,
            max_field: c.limits.max_field_bytes,
            max_keys: c.limits.max_keys,
            max_properties: c.limits.max_properties,
            delay_levels: u32::try_from(c.timer.delay_levels.split_whitespace().count())
                .unwrap_or(u32::MAX),
            max_delay_ms: c.timer.max_delay_ms,
            max_token_ttl_ms: c.auth.max_token_ttl_ms,
        }
    }
}

/// A topic or consumer group name.
fn name() -> Value {
    json!({"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_TOPIC_LEN})
}

fn producer_group() -> Value {
    json!({"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_PRODUCER_GROUP})
}

fn handle() -> Value {
    json!({"pattern": RECEIPT_HANDLE_PATTERN,
        "minLength": MIN_RECEIPT_HANDLE, "maxLength": MAX_RECEIPT_HANDLE})
}

/// `fragment` as the schema of a string (an item of an array, a map key).
fn string(mut fragment: Value) -> Value {
    fragment["type"] = json!("string");
    fragment
}

fn range(min: impl Into<Value>, max: impl Into<Value>) -> Value {
    json!({"minimum": min.into(), "maximum": max.into()})
}

/// A field core checks (`validate::field`): not blank, no control characters, at most
/// `max_field` bytes (stated as characters: exact for ASCII); `extra` more forbidden characters.
fn field(max_field: usize, extra: &str) -> Value {
    let ok = format!("[^{extra}{CONTROL}]");
    let solid = format!(r"[^\s{extra}{CONTROL}]");
    json!({"pattern": format!("^{ok}*{solid}{ok}*$"), "minLength": 1, "maxLength": max_field})
}

/// A tag filter expression (core's `Filter::tag`): `*`, empty, or tags joined by `||`.
fn tag_expression() -> String {
    let tag = format!(r"[^\s|{CONTROL}]+");
    format!(r"^\s*({tag}(\s*\|\|\s*{tag})*)?\s*$")
}

/// Most entries of a policy, and most items of one entry (core's `auth::check_policy`).
const MAX_POLICY_ENTRIES: usize = 256;
const MAX_ENTRY_ITEMS: usize = 64;

/// A policy entry (core's `auth::PolicyEntry`, `ResourcePattern`, `Source`).
fn policy_entry() -> Value {
    // MQTT filters are stated in printable ASCII (core takes any character but NUL, up to 256
    // bytes: a bound in bytes JSON Schema cannot state for other characters).
    let text =
        r"([\u0020-\u0022\u0025-\u002a\u002c-\u002e\u0030-\u007e]|\$\{(clientid|username)\})";
    let level = format!(r"(\+|{text}*)");
    let mqtt = format!(r"#|(\+|{text}+)(/{level})*(/#)?");
    let resource =
        format!(r"^((Topic|Group):([A-Za-z0-9_%|+-]+\*?|\*)|Cluster:\*|MqttTopic:({mqtt}))$");
    let octet = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let v4 = format!(r"{octet}(\.{octet}){{3}}(/([0-9]|[12][0-9]|3[0-2]))?");
    let h = "[0-9a-fA-F]{1,4}";
    let v6 = format!(
        "(({h}:){{7}}{h}|({h}:){{1,7}}:|({h}:){{1,6}}:{h}|({h}:){{1,5}}(:{h}){{1,2}}\
         |({h}:){{1,4}}(:{h}){{1,3}}|({h}:){{1,3}}(:{h}){{1,4}}|({h}:){{1,2}}(:{h}){{1,5}}\
         |{h}:(:{h}){{1,6}}|:((:{h}){{1,7}}|:))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?"
    );
    let source = format!("^({v4}|{v6})$");
    let items = |item: Value| json!({"type": "array", "items": item, "maxItems": MAX_ENTRY_ITEMS});
    let mut resources = items(json!({"type": "string", "pattern": resource, "maxLength": 256}));
    resources["minItems"] = json!(1);
    let mut actions =
        items(json!({"enum": ["Pub", "Sub", "Create", "Update", "Delete", "Get", "List", "All"]}));
    actions["minItems"] = json!(1);
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["resources", "actions", "decision"],
        "properties": {
            "resources": resources,
            "actions": actions,
            "decision": {"enum": ["Allow", "Deny"]},
            "sources": items(json!({"type": "string", "pattern": source})),
        },
    })
}

/// Merges `extra` into the object at `v` (the schema of a property or parameter); a nullable
/// `oneOf` / `anyOf` gets it on its non-null branch.
fn merge(v: &mut Value, extra: &Value) {
    let Some(extra) = extra.as_object() else {
        return;
    };
    if let Some(branches) = v.get_mut("oneOf").and_then(Value::as_array_mut) {
        for b in branches.iter_mut().filter(|b| b["type"] != "null") {
            merge(b, &Value::Object(extra.clone()));
        }
        return;
    }
    if let Some(obj) = v.as_object_mut() {
        for (k, x) in extra {
            obj.insert(k.clone(), x.clone());
        }
    }
}

fn property<'a>(doc: &'a mut Value, schema: &str, prop: &str) -> Option<&'a mut Value> {
    doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{prop}"))
}

fn set(doc: &mut Value, schema: &str, prop: &str, extra: Value) {
    match property(doc, schema, prop) {
        Some(p) => merge(p, &extra),
        None => tracing::error!(schema, prop, "openapi: no such property to constrain"),
    }
}

/// The constraints of a parameter, by its place (`in`), its name and its path.
fn parameter(path: &str, place: &str, param: &str, l: &Limits) -> Option<Value> {
    Some(match (place, param) {
        ("path", "group") if path.starts_with("/v1/producers/") => producer_group(),
        ("path", "topic" | "group") | ("query", "topic") => name(),
        ("path", "access_key") => {
            json!({"pattern": ACCESS_KEY_PATTERN, "minLength": 1, "maxLength": MAX_ACCESS_KEY})
        }
        ("path", "id") => json!({"minLength": 1}),
        ("query", "max") => range(1, l.max_read),
        ("query", "wait_ms") => range(0, l.max_wait_ms),
        _ => return None,
    })
}

/// Gives unsigned integers their real range: utoipa writes `u32` / `u64` as `int32` / `int64`
/// from 0, whose upper bounds (2^31 - 1, 2^63 - 1) are not the server's (serde reads up to
/// 2^32 - 1, 2^64 - 1).
fn unsigned(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let from_zero = o.get("minimum").and_then(Value::as_u64) == Some(0);
            let max = match o.get("format").and_then(Value::as_str) {
                Some("int32") if from_zero => Some(json!(u32::MAX)),
                Some("int64") if from_zero => Some(json!(u64::MAX)),
                _ => None,
            };
            if let Some(max) = max {
                o.remove("format");
                o.insert("maximum".into(), max);
            }
            o.values_mut().for_each(unsigned);
        }
        Value::Array(a) => a.iter_mut().for_each(unsigned),
        _ => {}
    }
}

/// States every rule on the document: parameters by name, component schemas by property.
pub(crate) fn apply(doc: &mut Value, l: &Limits) {
    unsigned(doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                    continue;
                };
                for p in params.iter_mut() {
                    let place = p["in"].as_str().unwrap_or_default().to_owned();
                    let name = p["name"].as_str().unwrap_or_default().to_owned();
                    if let Some(extra) = parameter(path, &place, &name, l) {
                        merge(&mut p["schema"], &extra);
                    }
                }
            }
        }
    }
    bodies(doc, l);
}

fn bodies(doc: &mut Value, l: &Limits) {
    // Administration.
    set(doc, "CreateTopic", "name", name());
    set(doc, "CreateTopic", "queue_count", range(1, l.max_queues));
    set(doc, "UpdateTopic", "queue_count", range(1, l.max_queues));
    set(doc, "CreateGroup", "name", name());
    let attempts = range(1, MAX_DELIVERY_ATTEMPTS);
    set(
        doc,
        "CreateGroup",
        "max_delivery_attempts",
        attempts.clone(),
    );
    set(doc, "SetRetryPolicy", "max_delivery_attempts", attempts);
    set(
        doc,
        "CreateGroup",
        "subscriptions",
        json!({"propertyNames": string(name())}),
    );
    set(
        doc,
        "ResendRequest",
        "message_ids",
        json!({"maxItems": l.max_batch}),
    );
    // Consuming.
    set(doc, "ReceiveRequest", "topic", name());
    set(doc, "ReceiveRequest", "max", range(1, l.max_pop));
    set(doc, "ReceiveRequest", "wait_ms", range(0, l.max_wait_ms));
    let invisible = range(l.invisible_ms.0, l.invisible_ms.1);
    set(doc, "ReceiveRequest", "invisible_ms", invisible.clone());
    set(doc, "InvisibilityRequest", "invisible_ms", invisible);
    for schema in [
        "NackRequest",
        "InvisibilityRequest",
        "HandleRequest",
        "AckRequest",
    ] {
        set(doc, schema, "receipt_handle", handle());
    }
    set(
        doc,
        "AckRequest",
        "receipt_handles",
        json!({"items": string(handle()), "maxItems": l.max_batch}),
    );
    set(doc, "NackRequest", "delay_ms", range(0, l.max_delay_ms));
    set(
        doc,
        "Filter",
        "expression",
        json!({"maxLength": MAX_FILTER_EXPRESSION}),
    );
    // A TAG expression (the default kind) has a grammar; an SQL one is parsed by the broker.
    if let Some(f) = doc.pointer_mut("/components/schemas/Filter") {
        f["if"] = json!({"properties": {"kind": {"const": "SQL"}}, "required": ["kind"]});
        f["else"] = json!({"properties": {"expression": {"pattern": tag_expression()}}});
    }
    // Publishing.
    set(
        doc,
        "PublishBatch",
        "messages",
        json!({"minItems": 1, "maxItems": l.max_batch}),
    );
    set(doc, "PublishHalf", "producer_group", name());
    for tag in ["tag", "tags"] {
        set(doc, "PublishMessage", tag, field(l.max_field, "|"));
    }
    set(
        doc,
        "PublishMessage",
        "message_group",
        field(l.max_field, ""),
    );
    set(
        doc,
        "PublishMessage",
        "keys",
        json!({"items": string(field(l.max_field, "")), "maxItems": l.max_keys}),
    );
    set(
        doc,
        "PublishMessage",
        "properties",
        json!({"maxProperties": l.max_properties,
            "propertyNames": {"pattern": r"\S", "not": {"enum": RESERVED_PROPERTY_KEYS}}}),
    );
    set(
        doc,
        "PublishMessage",
        "delay_level",
        range(1, l.delay_levels),
    );
    set(doc, "PublishMessage", "delay_ms", range(0, l.max_delay_ms));
    // A base64 body is canonical standard base64 with padding.
    if let Some(m) = doc.pointer_mut("/components/schemas/PublishMessage") {
        let b = "[A-Za-z0-9+/]";
        m["if"] = json!({"properties": {"body_encoding": {"const": "base64"}},
            "required": ["body_encoding"]});
        m["then"] = json!({"properties": {"body": {"pattern":
            format!("^({b}{{4}})*({b}[AQgw]==|{b}{{2}}[AEIMQUYcgkosw048]=)?$")}}});
    }
    // At most one way to delay, and one of `tag` and its alias `tags`: no two of them given
    // (and not null) together.
    if let Some(m) = doc.pointer_mut("/components/schemas/PublishMessage") {
        let pair = |a: &str, b: &str, ty: Value| json!({"required": [a, b], "properties": {a: {"type": ty.clone()}, b: {"type": ty}}});
        // `deliver_at` is serde's alias of `deliver_at_ms`: stated as a deprecated property,
        // never together with it (serde refuses the pair even when one is null).
        let mut alias = m["properties"]["deliver_at_ms"].clone();
        alias["description"] = json!("Alias of `deliver_at_ms` (deprecated).");
        alias["deprecated"] = json!(true);
        m["properties"]["deliver_at"] = alias;
        m["not"] = json!({"anyOf": [
            pair("delay_level", "delay_ms", json!("integer")),
            pair("delay_level", "deliver_at_ms", json!("integer")),
            pair("delay_ms", "deliver_at_ms", json!("integer")),
            pair("delay_level", "deliver_at", json!("integer")),
            pair("delay_ms", "deliver_at", json!("integer")),
            pair("deliver_at", "deliver_at_ms", json!("integer")),
            pair("tag", "tags", json!("string")),
        ]});
    }
    // Access.
    let access_key =
        json!({"pattern": ACCESS_KEY_PATTERN, "minLength": 1, "maxLength": MAX_ACCESS_KEY});
    let secret = json!({"pattern": SECRET_KEY_PATTERN, "minLength": MIN_SECRET_KEY,
        "maxLength": MAX_SECRET_KEY});
    set(doc, "CreateUser", "access_key", access_key);
    set(doc, "CreateUser", "secret_key", secret.clone());
    set(doc, "UpdateUser", "secret_key", secret);
    set(doc, "IssueToken", "ttl_ms", range(1, l.max_token_ttl_ms));
    set(
        doc,
        "PolicyView",
        "entries",
        json!({"items": policy_entry(), "maxItems": MAX_POLICY_ENTRIES}),
    );
    set(
        doc,
        "RegisterCallback",
        "url",
        json!({"pattern": "^https?://", "format": "uri"}),
    );
}

/// Checks the syntax of a receipt handle as the document states it (`400
/// invalid_receipt_handle`); a well-formed handle the broker does not know answers `409`.
///
/// # Errors
/// `400 invalid_receipt_handle`.
pub(crate) fn receipt_handle(h: &str) -> ApiResult<()> {
    if h.len() < MIN_RECEIPT_HANDLE
        || h.len() > MAX_RECEIPT_HANDLE
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_receipt_handle",
            format!(
                "invalid receipt handle: {MIN_RECEIPT_HANDLE}..={MAX_RECEIPT_HANDLE} characters \
                 of unpadded URL-safe base64"
            ),
        ));
    }
    Ok(())
}
