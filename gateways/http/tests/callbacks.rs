//! Transaction callbacks are requests from the broker to a URL a client chose, so: off by
//! default; a URL whose host is (or resolves to) a loopback, private or link-local address is
//! refused unless listed in `http.callback_allowed_hosts`; only the registration's owner (or a
//! super user; with authentication off, the first registrant until it is removed) replaces or
//! removes it. Each is a probe finding of issue 14.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, start_secured, start_with, Server, ADMIN, APP};
use serde_json::{json, Value};

async fn put(s: &Server, group: &str, url: &str, who: Option<(&str, &str)>) -> (u16, Value) {
    let mut r = s
        .http
        .put(s.url(&format!("/v1/producers/{group}/callback")))
        .json(&json!({"url": url}));
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    answer(r.send().await.unwrap()).await
}

async fn delete(s: &Server, group: &str, who: Option<(&str, &str)>) -> (u16, Value) {
    let mut r = s
        .http
        .delete(s.url(&format!("/v1/producers/{group}/callback")));
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    answer(r.send().await.unwrap()).await
}

#[tokio::test]
async fn callbacks_are_off_by_default() {
    let s = start_with(|_, _| {}).await;
    let (st, body) = put(&s, "pg", "https://hooks.example/check", None).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("callbacks_disabled")),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_listed() {
    let s = start_with(|_, h| h.allow_callbacks = true).await;
    // The finding: a client made the broker call its own loopback and the cloud metadata
    // endpoint.
    for url in [
        "http://127.0.0.1:9/check",
        "http://127.1:9/check",
        "http://[::1]:9/check",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://10.0.0.7/x",
        "http://192.168.1.1/x",
        "http://0.0.0.0:9/x",
        "http://[::ffff:127.0.0.1]:9/x",
        "http://localhost:9/check",
    ] {
        let (st, body) = put(&s, "pg", url, None).await;
        assert_eq!(
            (st, body["code"].as_str()),
            (400, Some("callback_host_not_allowed")),
            "{url}: {body}"
        );
    }
    let (st, _) = s.get("/v1/producers/pg/callback").await;
    assert_eq!(st, 404, "nothing was registered");
    s.stop().await;
    let s = start_with(|_, h| {
        h.allow_callbacks = true;
        h.callback_allowed_hosts = vec!["127.0.0.1".into(), "localhost".into()];
    })
    .await;
    for (group, url) in [
        ("pg1", "http://127.0.0.1:9/check"),
        ("pg2", "http://localhost:9/check"),
    ] {
        let (st, body) = put(&s, group, url, None).await;
        assert_eq!(st, 200, "{url}: {body}");
    }
    let (st, _) = put(&s, "pg-other", "http://10.0.0.7/x", None).await;
    assert_eq!(st, 400, "only what is listed");
    s.stop().await;
}

#[tokio::test]
async fn only_the_owner_replaces_or_removes_a_callback() {
    let s = start_secured(|_, h| {
        h.allow_callbacks = true;
        h.callback_allowed_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let other = ("other", "other-secret-1");
    s.broker
        .auth()
        .create_user(other.0, other.1, rocketgate_core::auth::UserKind::Normal)
        .unwrap();
    let entries: Vec<rocketgate_core::auth::PolicyEntry> = serde_json::from_value(json!([
        {"resources": ["Group:pg"], "actions": ["Pub"], "decision": "Allow"}
    ]))
    .unwrap();
    for u in [APP.0, other.0] {
        s.broker.auth().set_policy(u, entries.clone()).unwrap();
    }
    let (st, body) = put(&s, "pg", "http://127.0.0.1:9/mine", Some(APP)).await;
    assert_eq!(st, 200, "{body}");
    // The finding: anyone could point another producer group's check-backs elsewhere.
    let (st, body) = put(&s, "pg", "http://127.0.0.1:9/theirs", Some(other)).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("callback_owned")),
        "{body}"
    );
    let (st, _) = delete(&s, "pg", Some(other)).await;
    assert_eq!(st, 403);
    let r = s
        .http
        .get(s.url("/v1/producers/pg/callback"))
        .basic_auth(APP.0, Some(APP.1))
        .send()
        .await
        .unwrap();
    let (_, shown) = answer(r).await;
    assert_eq!(shown["url"], "http://127.0.0.1:9/mine");
    let (st, _) = put(&s, "pg", "http://127.0.0.1:9/mine-too", Some(APP)).await;
    assert_eq!(st, 200, "the owner replaces it");
    let (st, _) = delete(&s, "pg", Some(ADMIN)).await;
    assert_eq!(st, 204, "a super user removes it");
    let (st, _) = put(&s, "pg", "http://127.0.0.1:9/theirs", Some(other)).await;
    assert_eq!(st, 200, "once removed, another may register");
    s.stop().await;
}

#[tokio::test]
async fn with_auth_off_the_first_registrant_keeps_it_until_removed() {
    let s = start_with(|_, h| {
        h.allow_callbacks = true;
        h.callback_allowed_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let (st, _) = put(&s, "pg", "http://127.0.0.1:9/a", None).await;
    assert_eq!(st, 200);
    let (st, _) = put(&s, "pg", "http://127.0.0.1:9/a", None).await;
    assert_eq!(st, 200, "the same URL again changes nothing");
    let (st, body) = put(&s, "pg", "http://127.0.0.1:9/b", None).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("callback_exists")),
        "{body}"
    );
    let (st, _) = delete(&s, "pg", None).await;
    assert_eq!(st, 204);
    let (st, _) = put(&s, "pg", "http://127.0.0.1:9/b", None).await;
    assert_eq!(st, 200);
    s.stop().await;
}
