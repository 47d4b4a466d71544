//! REST authentication and authorization through the core (`auth.enabled`): every route of
//! the OpenAPI document but the probes refuses a request without credentials (`401` with
//! `WWW-Authenticate`) and one from a user whose policy allows nothing (`403`); bearer tokens
//! and HTTP Basic are served as the user's policy allows, with the caller's address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, start_secured, Server, ADMIN, APP};
use rocketgate_core::auth::PolicyEntry;
use serde_json::{json, Value};

async fn secured() -> Server {
    start_secured(|_, _| {}).await
}

fn policy(json: Value) -> Vec<PolicyEntry> {
    serde_json::from_value(json).unwrap()
}

enum Cred<'a> {
    None,
    Basic((&'a str, &'a str)),
    Bearer(&'a str),
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    cred: Cred<'_>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = s.http.request(method.parse().unwrap(), s.url(path));
    r = match cred {
        Cred::None => r,
        Cred::Basic((u, p)) => r.basic_auth(u, Some(p)),
        Cred::Bearer(t) => r.bearer_auth(t),
    };
    if let Some(b) = body {
        r = r.json(&b);
    }
    answer(r.send().await.unwrap()).await
}

/// Every operation of the OpenAPI document, with its path parameters filled in.
async fn operations(s: &Server) -> Vec<(String, String)> {
    let doc: Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                let concrete = path.replace("{queue}", "0").replace(['{', '}'], "");
                out.push((method.to_uppercase(), concrete));
            }
        }
    }
    assert!(out.len() > 30, "{out:?}");
    out
}

#[tokio::test]
async fn every_route_but_the_probes_needs_credentials_and_a_policy() {
    let s = secured().await;
    let public = ["/healthz", "/readyz"];
    for (method, path) in operations(&s).await {
        let r = s
            .http
            .request(method.parse().unwrap(), s.url(&path))
            .send()
            .await
            .unwrap();
        if public.contains(&path.as_str()) {
            assert_eq!(r.status(), 200, "{method} {path}");
            continue;
        }
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let (st, body) = answer(r).await;
        assert_eq!(st, 401, "{method} {path}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{method} {path}");
        let challenge = challenge.expect("401 carries WWW-Authenticate");
        assert!(
            challenge.contains("Bearer") && challenge.contains("Basic"),
            "{challenge}"
        );
        // A user whose policy allows nothing.
        let (st, body) = call(&s, &method, &path, Cred::Basic(APP), None).await;
        let handler_checked = path.starts_with("/v1/transactions/") || path == "/v1/ws";
        if handler_checked {
            assert_ne!(st, 401, "{method} {path}: {body}");
            assert!(st != 200 && st != 204, "{method} {path}: {body}");
        } else {
            assert_eq!(st, 403, "{method} {path}: {body}");
            assert_eq!(body["code"], "forbidden", "{method} {path}");
        }
    }
    // Also outside the document: /health and an unknown route.
    let (st, _) = call(&s, "GET", "/health", Cred::None, None).await;
    assert_eq!(st, 401);
    let (st, _) = call(&s, "GET", "/v1/nothing-here", Cred::None, None).await;
    assert_eq!(st, 401);
    let (st, _) = call(&s, "GET", "/v1/nothing-here", Cred::Basic(ADMIN), None).await;
    assert_eq!(st, 404);
    for page in ["/openapi.json", "/docs"] {
        let r = s.http.get(s.url(page)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_credentials_are_refused_alike_and_never_say_whether_the_user_exists() {
    let s = secured().await;
    let (st1, wrong) = call(
        &s,
        "GET",
        "/v1/topics",
        Cred::Basic((APP.0, "wrong-secret")),
        None,
    )
    .await;
    let (st2, unknown) = call(
        &s,
        "GET",
        "/v1/topics",
        Cred::Basic(("nobody", "wrong-secret")),
        None,
    )
    .await;
    let (st3, token) = call(&s, "GET", "/v1/topics", Cred::Bearer("rgt_0000"), None).await;
    assert_eq!((st1, st2, st3), (401, 401, 401));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["detail"], token["detail"]);
    let r = s
        .http
        .get(s.url("/v1/topics"))
        .header("authorization", "Digest x")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await.0, 401);
    s.stop().await;
}

#[tokio::test]
async fn tokens_and_basic_are_served_as_the_policy_allows() {
    let s = secured().await;
    let admin = || Cred::Basic(ADMIN);
    for t in ["orders", "secret"] {
        let (st, _) = call(
            &s,
            "POST",
            "/v1/topics",
            admin(),
            // MIXED: plain messages and, below, a transactional half.
            Some(json!({"name": t, "queue_count": 1, "message_type": "MIXED"})),
        )
        .await;
        assert_eq!(st, 201);
    }
    s.broker
        .auth()
        .set_policy(
            APP.0,
            policy(json!([
                {"resources": ["Topic:orders", "Group:billing"], "actions": ["Pub", "Sub"], "decision": "Allow"},
                {"resources": ["Cluster:*"], "actions": ["Get"], "decision": "Allow", "sources": ["10.0.0.0/8"]}
            ])),
        )
        .unwrap();
    let token = s.broker.auth().issue_token(APP.0, None).unwrap().token;
    let app = || Cred::Bearer(&token);
    // An administrator created the group: `Sub` consumes from it (a group created on first
    // use would need `Create`).
    s.broker
        .groups()
        .create(rocketgate_core::GroupConfig::new("billing"))
        .unwrap();

    // Publish: Pub on the topic.
    let (st, _) = call(
        &s,
        "POST",
        "/v1/topics/orders/messages",
        app(),
        Some(json!({"body": "o1"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = call(
        &s,
        "POST",
        "/v1/topics/secret/messages",
        app(),
        Some(json!({"body": "s1"})),
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (st, _) = call(
        &s,
        "POST",
        "/v1/topics/secret/messages",
        admin(),
        Some(json!({"body": "s1"})),
    )
    .await;
    assert_eq!(st, 200);

    // Receive: Sub on the group and on the topic of the body.
    let receive = |topic: &str| json!({"topic": topic, "max": 1, "wait_ms": 1000});
    let (st, got) = call(
        &s,
        "POST",
        "/v1/groups/billing/receive",
        app(),
        Some(receive("orders")),
    )
    .await;
    assert_eq!(st, 200, "{got}");
    let handle = got["messages"][0]["receipt_handle"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, _) = call(
        &s,
        "POST",
        "/v1/groups/billing/receive",
        app(),
        Some(receive("secret")),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &s,
        "POST",
        "/v1/groups/other/receive",
        app(),
        Some(receive("orders")),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &s,
        "POST",
        "/v1/groups/billing/ack",
        app(),
        Some(json!({"receipt_handle": handle})),
    )
    .await;
    assert_eq!(st, 200);

    // A handle of a topic the user may not read, handed over by someone who may: refused.
    let (st, got) = call(
        &s,
        "POST",
        "/v1/groups/billing/receive",
        admin(),
        Some(receive("secret")),
    )
    .await;
    assert_eq!(st, 200, "{got}");
    let foreign = got["messages"][0]["receipt_handle"]
        .as_str()
        .unwrap()
        .to_owned();
    for route in ["ack", "nack", "dead-letter"] {
        let (st, body) = call(
            &s,
            "POST",
            &format!("/v1/groups/billing/{route}"),
            app(),
            Some(json!({"receipt_handle": foreign})),
        )
        .await;
        assert_eq!(st, 403, "{route}: {body}");
    }
    let (st, _) = call(
        &s,
        "POST",
        "/v1/groups/billing/invisibility",
        app(),
        Some(json!({"receipt_handle": foreign, "invisible_ms": 1000})),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &s,
        "POST",
        "/v1/groups/billing/ack",
        app(),
        Some(json!({"receipt_handles": [foreign]})),
    )
    .await;
    assert_eq!(st, 403);

    // Offsets: Sub on topic and group.
    let (st, _) = call(
        &s,
        "GET",
        "/v1/groups/billing/topics/orders/offsets",
        app(),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &s,
        "GET",
        "/v1/groups/billing/topics/secret/offsets",
        app(),
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(&s, "GET", "/v1/groups/billing/lag", app(), None).await;
    assert_eq!(st, 403, "the group's topics include `secret`");
    let (st, _) = call(
        &s,
        "GET",
        "/v1/groups/billing/lag?topic=orders",
        app(),
        None,
    )
    .await;
    assert_eq!(st, 200);

    // Transactions: Pub on the topic of the half.
    let (st, half) = call(
        &s,
        "POST",
        "/v1/topics/secret/transactions",
        admin(),
        Some(json!({"producer_group": "pg", "message": {"body": "h"}})),
    )
    .await;
    assert_eq!(st, 200, "{half}");
    let id = half["transaction_id"].as_str().unwrap();
    let (st, _) = call(
        &s,
        "POST",
        &format!("/v1/transactions/{id}/commit"),
        app(),
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(
        &s,
        "POST",
        &format!("/v1/transactions/{id}/rollback"),
        admin(),
        None,
    )
    .await;
    assert_eq!(st, 204);

    // Administration needs Cluster:*; the policy allows Get only from 10.0.0.0/8.
    let (st, _) = call(&s, "GET", "/v1/topics/orders", app(), None).await;
    assert_eq!(st, 403, "not from 127.0.0.1");
    let (st, _) = call(&s, "DELETE", "/v1/topics/orders", app(), None).await;
    assert_eq!(st, 403);
    let (st, _) = call(&s, "GET", "/v1/topics/orders", admin(), None).await;
    assert_eq!(st, 200);

    // A revoked token stops working.
    let id = s.broker.auth().tokens(Some(APP.0))[0].id.clone();
    s.broker.auth().revoke_token(&id).unwrap();
    let (st, _) = call(
        &s,
        "GET",
        "/v1/groups/billing/topics/orders/offsets",
        app(),
        None,
    )
    .await;
    assert_eq!(st, 401);
    s.stop().await;
}

#[tokio::test]
async fn the_openapi_document_names_the_schemes_and_the_refusals() {
    let s = secured().await;
    let r = s.http.get(s.url("/openapi.json")).send().await.unwrap();
    let doc: Value = r.json().await.unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["basic"]["scheme"], "basic", "{schemes}");
    assert_eq!(doc["security"].as_array().unwrap().len(), 2);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            if path == "/healthz" || path == "/readyz" {
                assert_eq!(op["security"], json!([{}]), "{method} {path}");
                assert!(responses.get("401").is_none(), "{method} {path}");
            } else {
                assert!(responses.get("401").is_some(), "{method} {path}");
                assert!(responses.get("403").is_some(), "{method} {path}");
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn super_users_manage_users_policies_and_tokens_over_rest() {
    let s = secured().await;
    let admin = || Cred::Basic(ADMIN);
    // A normal user, even one allowed everything on the cluster, may not manage users.
    s.broker
        .auth()
        .set_policy(
            APP.0,
            policy(json!([{"resources": ["Cluster:*", "Topic:*", "Group:*"], "actions": ["All"], "decision": "Allow"}])),
        )
        .unwrap();
    for (method, path) in [
        ("GET", "/v1/auth/users"),
        ("GET", "/v1/auth/tokens"),
        ("POST", "/v1/auth/users/app/tokens"),
    ] {
        let (st, body) = call(&s, method, path, Cred::Basic(APP), Some(json!({}))).await;
        assert_eq!(st, 403, "{method} {path}: {body}");
    }
    let (st, _) = call(
        &s,
        "PATCH",
        "/v1/auth/users/app",
        Cred::Basic(APP),
        Some(json!({"super": true})),
    )
    .await;
    assert_eq!(st, 403, "a user may not make itself super");

    // Create, show, list: never a secret.
    let (st, bob) = call(
        &s,
        "POST",
        "/v1/auth/users",
        admin(),
        Some(json!({"access_key": "bob", "secret_key": "bob-secret-1"})),
    )
    .await;
    assert_eq!(st, 201, "{bob}");
    assert_eq!(bob["access_key"], "bob");
    assert_eq!(
        (bob["super"].as_bool(), bob["enabled"].as_bool()),
        (Some(false), Some(true))
    );
    let (st, again) = call(
        &s,
        "POST",
        "/v1/auth/users",
        admin(),
        Some(json!({"access_key": "bob", "secret_key": "bob-secret-1"})),
    )
    .await;
    assert_eq!((st, again["code"].as_str()), (409, Some("user_exists")));
    let (st, list) = call(&s, "GET", "/v1/auth/users", admin(), None).await;
    assert_eq!(st, 200);
    assert!(!list.to_string().contains("secret"), "{list}");
    assert_eq!(list["users"].as_array().unwrap().len(), 3);

    // Policy, then a token that works as the policy allows.
    let entries = json!([{"resources": ["Cluster:*"], "actions": ["List"], "decision": "Allow", "sources": []}]);
    let (st, p) = call(
        &s,
        "PUT",
        "/v1/auth/users/bob/policy",
        admin(),
        Some(json!({"entries": entries})),
    )
    .await;
    assert_eq!(st, 200, "{p}");
    let (st, p) = call(&s, "GET", "/v1/auth/users/bob/policy", admin(), None).await;
    assert_eq!((st, &p["entries"]), (200, &entries));
    let (st, bad) = call(&s, "PUT", "/v1/auth/users/bob/policy", admin(), Some(json!({"entries": [{"resources": ["Nope:x"], "actions": ["Pub"], "decision": "Allow"}]}))).await;
    assert_eq!(st, 400, "{bad}");
    let (st, issued) = call(
        &s,
        "POST",
        "/v1/auth/users/bob/tokens",
        admin(),
        Some(json!({"ttl_ms": 60_000})),
    )
    .await;
    assert_eq!(st, 201, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("rgt_"), "{token}");
    let id = issued["id"].as_str().unwrap().to_owned();
    let (st, _) = call(&s, "GET", "/v1/topics", Cred::Bearer(&token), None).await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &s,
        "POST",
        "/v1/topics",
        Cred::Bearer(&token),
        Some(json!({"name": "t", "queue_count": 1})),
    )
    .await;
    assert_eq!(st, 403);
    let (st, tokens) = call(&s, "GET", "/v1/auth/users/bob/tokens", admin(), None).await;
    assert_eq!(st, 200);
    assert_eq!(tokens["tokens"][0]["id"], id.as_str());
    assert!(
        !tokens.to_string().contains(&token),
        "the token is shown once"
    );

    // Disable: the token stops working; enable: it works again; revoke: it stops for good.
    let (st, u) = call(
        &s,
        "PATCH",
        "/v1/auth/users/bob",
        admin(),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!((st, u["enabled"].as_bool()), (200, Some(false)));
    let (st, _) = call(&s, "GET", "/v1/topics", Cred::Bearer(&token), None).await;
    assert_eq!(st, 401);
    let (st, _) = call(
        &s,
        "PATCH",
        "/v1/auth/users/bob",
        admin(),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = call(&s, "GET", "/v1/topics", Cred::Bearer(&token), None).await;
    assert_eq!(st, 200);
    let (st, _) = call(
        &s,
        "DELETE",
        &format!("/v1/auth/tokens/{id}"),
        admin(),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = call(&s, "GET", "/v1/topics", Cred::Bearer(&token), None).await;
    assert_eq!(st, 401);

    // Delete: gone with its policy.
    let (st, _) = call(&s, "DELETE", "/v1/auth/users/bob", admin(), None).await;
    assert_eq!(st, 204);
    let (st, body) = call(&s, "GET", "/v1/auth/users/bob", admin(), None).await;
    assert_eq!((st, body["code"].as_str()), (404, Some("user_not_found")));
    let (st, _) = call(
        &s,
        "GET",
        "/v1/topics",
        Cred::Basic(("bob", "bob-secret-1")),
        None,
    )
    .await;
    assert_eq!(st, 401);
    s.stop().await;
}
