//! CORS (`[http.cors]`) against the real gateway on 127.0.0.1:0 with reqwest playing the
//! browser (it sends what a browser would: `Origin`, preflights): preflights of an allowed
//! origin are answered 204 with the headers, before authentication; others are refused 403
//! with no CORS header; answers to an allowed origin (errors too) carry
//! `Access-Control-Allow-Origin`; an allowed origin may open `/v1/ws`; `*` is refused with
//! authentication on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{answer, start_secured, start_with, Server, ADMIN, WAIT};
use reqwest::header::HeaderMap;
use reqwest::Method;
use rocketgate_gateway_http::{CorsConfig, HttpConfig};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "https://app.example";
const EVIL: &str = "https://evil.example";

fn cors(origins: &[&str]) -> CorsConfig {
    CorsConfig {
        allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        ..CorsConfig::default()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn no_cors_headers(h: &HeaderMap) -> bool {
    !h.keys().any(|k| k.as_str().starts_with("access-control-"))
}

async fn preflight(
    s: &Server,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::Response {
    let mut r = s
        .http
        .request(Method::OPTIONS, s.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        r = r.header("access-control-request-headers", headers);
    }
    r.send().await.unwrap()
}

async fn topic(s: &Server, name: &str) {
    let (st, v) = s
        .post("/v1/topics", json!({"name": name, "queue_count": 1}))
        .await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test]
async fn an_allowed_origin_is_answered_and_may_read_and_write() {
    let s = start_with(|_, h| h.cors = cors(&["HTTPS://App.Example:443"])).await;
    topic(&s, "t").await;

    let r = preflight(
        &s,
        "/v1/topics/t/messages",
        APP,
        "POST",
        "Content-Type, rg-tag, rg-property-color, Authorization",
    )
    .await;
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(APP));
    let methods = header(h, "access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = header(h, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "content-type",
        "rg-tag",
        "rg-property-color",
        "authorization",
    ] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert_eq!(header(h, "access-control-max-age"), Some("600"));
    assert_eq!(header(h, "access-control-allow-credentials"), None);
    let vary: Vec<_> = h
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        vary.join(",").to_ascii_lowercase().contains("origin"),
        "{vary:?}"
    );

    // The request itself: a JSON publish and a read, both readable by the page.
    let r = s
        .http
        .post(s.url("/v1/topics/t/messages"))
        .header("origin", APP)
        .json(&json!({"body": "from the app"}))
        .send()
        .await
        .unwrap();
    let expose = header(r.headers(), "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert!(
        expose.contains("www-authenticate") && expose.contains("retry-after"),
        "{expose}"
    );
    let (st, v) = answer(r).await;
    assert_eq!(st, 200, "{v}");
    let r = s
        .http
        .get(s.url("/v1/topics/t"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    // An error answer is readable too (the page sees why).
    let r = s
        .http
        .get(s.url("/v1/topics/missing"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    s.stop().await;
}

#[tokio::test]
async fn other_origins_methods_and_headers_are_refused() {
    let s = start_with(|_, h| {
        h.cors = CorsConfig {
            allowed_methods: vec!["GET".into(), "POST".into()],
            ..cors(&[APP])
        }
    })
    .await;
    topic(&s, "t").await;
    let path = "/v1/topics/t/messages";
    for (origin, method, headers, code) in [
        (EVIL, "POST", "content-type", "origin_not_allowed"),
        ("null", "POST", "", "origin_not_allowed"),
        (
            "https://app.example.evil.example",
            "GET",
            "",
            "origin_not_allowed",
        ),
        (APP, "DELETE", "", "cors_not_allowed"),
        (APP, "POST", "content-type, x-custom", "cors_not_allowed"),
        (APP, "POST", "cookie", "cors_not_allowed"),
    ] {
        let r = preflight(&s, path, origin, method, headers).await;
        assert!(no_cors_headers(r.headers()), "{origin} {method} {headers}");
        let (st, v) = answer(r).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (403, Some(code)),
            "{origin} {method} {headers}: {v}"
        );
    }

    // Requests of another origin: reads carry no CORS header (the page cannot read them),
    // writes are refused by the Origin check as before.
    let r = s
        .http
        .get(s.url("/v1/topics/t"))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(no_cors_headers(r.headers()));
    let r = s
        .http
        .post(s.url(path))
        .header("origin", EVIL)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(no_cors_headers(r.headers()));
    let (st, v) = answer(r).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("origin_not_allowed")),
        "{v}"
    );

    // An OPTIONS that is not a preflight is the router's, with no CORS header.
    let r = s
        .http
        .request(Method::OPTIONS, s.url(path))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 204);
    assert!(no_cors_headers(r.headers()));
    s.stop().await;
}

#[tokio::test]
async fn preflights_need_no_credentials_and_refusals_are_readable() {
    let s = start_secured(|_, h| {
        h.cors = CorsConfig {
            allow_credentials: true,
            ..cors(&[APP])
        }
    })
    .await;
    // A preflight never carries credentials; it is answered before authentication.
    let r = preflight(&s, "/v1/topics", APP, "GET", "authorization").await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert_eq!(
        header(r.headers(), "access-control-allow-credentials"),
        Some("true")
    );
    // Without credentials: 401, which the page can read, WWW-Authenticate included.
    let r = s
        .http
        .get(s.url("/v1/topics"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert!(r.headers().contains_key("www-authenticate"));
    // With them: served.
    let r = s
        .http
        .get(s.url("/v1/topics"))
        .header("origin", APP)
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    // A foreign origin's preflight is refused with authentication on too.
    let r = preflight(&s, "/v1/topics", EVIL, "GET", "authorization").await;
    assert_eq!(r.status(), 403);
    s.stop().await;
}

async fn upgrade_from(s: &Server, origin: &str) -> u16 {
    let mut req = format!("ws://{}/v1/ws", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
    {
        Ok((mut ws, r)) => {
            ws.close(None).await.unwrap();
            r.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn an_origin_allowed_by_cors_may_open_the_websocket() {
    let s = start_with(|_, h| h.cors = cors(&[APP])).await;
    assert_eq!(upgrade_from(&s, APP).await, 101);
    assert_eq!(upgrade_from(&s, EVIL).await, 403);
    s.stop().await;
}

#[tokio::test]
async fn any_origin_only_without_authentication() {
    // Authentication off: `*` answers every page, without credentials.
    let s = start_with(|_, h| h.cors = cors(&["*"])).await;
    let r = preflight(&s, "/v1/topics", EVIL, "POST", "content-type").await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(
        header(r.headers(), "access-control-allow-credentials"),
        None
    );
    let r = s
        .http
        .post(s.url("/v1/topics"))
        .header("origin", EVIL)
        .json(&json!({"name": "from-anywhere", "queue_count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(r.status(), 201);
    s.stop().await;

    // Authentication on: the gateway refuses to start with `*`.
    let dir = tempfile::tempdir().unwrap();
    let mut config = rocketgate_core::Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 8 << 20;
    config.auth.enabled = true;
    let broker = rocketgate_core::Broker::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = HttpConfig {
        cors: cors(&["*"]),
        ..HttpConfig::default()
    };
    let served = tokio::time::timeout(
        WAIT,
        rocketgate_gateway_http::serve_with(listener, broker.clone(), http, None, async {}),
    )
    .await
    .unwrap();
    let err = served.unwrap_err().to_string();
    assert!(
        err.contains("cors.allowed_origins") && err.contains("authentication"),
        "{err}"
    );
    broker.shutdown().unwrap();

    // And a malformed origin is refused whatever the authentication.
    let bad = HttpConfig {
        cors: cors(&["https://app.example/"]),
        ..HttpConfig::default()
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("cors.allowed_origins"), "{err}");
}
