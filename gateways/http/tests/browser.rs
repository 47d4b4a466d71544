//! The browser example (`examples/browser/index.html`, served at `/ui`) in headless Chromium:
//! the page subscribes over the WebSocket, receives a message published over REST, acks it, and
//! publishes one of its own; the test reads the page's state over the DevTools protocol (the
//! page writes it into the DOM) and checks the broker through the REST API.
//!
//! Needs Debian's `chromium` (`/usr/bin/chromium`, installed by `scripts/test`): the test
//! fails without it, unless `RG_ALLOW_SKIP=1` (docs/testing.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::start;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_page_receives_acks_and_publishes() {
    let Some(chromium) = common::tool(
        &["chromium", "chromium-browser"],
        "apt-get install -y chromium",
    ) else {
        return;
    };
    let s = start().await;
    let (st, _) = s
        .post("/v1/topics", json!({"name": "demo", "queue_count": 1}))
        .await;
    assert_eq!(st, 201);
    let (st, sent) = s
        .post("/v1/topics/demo/messages", json!({"body": "hello-browser"}))
        .await;
    assert_eq!(st, 200);
    let id = sent["message_id"].as_str().unwrap().to_owned();
    let profile = tempfile::tempdir().unwrap();
    let url = s.url("/ui?topic=demo&group=browser&autoack=1&connect=1&publish=from-page");
    let mut child = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // A generous bound: the page is done within a few seconds.
    let state = tokio::time::timeout(Duration::from_secs(60), page_state(&s, profile.path(), &id))
        .await
        .expect("the page acked the REST message and published in time");
    let _ = child.kill().await;
    assert_eq!(state["acked"], id.as_str(), "{state}");
    // The page published too: its id is in the DOM and the broker has the message.
    let published = state["published"].as_str().unwrap_or_default().to_owned();
    assert!(!published.is_empty(), "the page published: {state}");
    let (st, m) = s.get(&format!("/v1/messages/{published}")).await;
    assert_eq!((st, m["body"].as_str()), (200, Some("from-page")));
    // Acknowledged: the REST message is not in flight nor waiting for the group.
    let (st, lag) = s.get("/v1/groups/browser/lag?topic=demo").await;
    assert_eq!(st, 200);
    let unacked: Vec<_> = lag["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["unacked"].as_u64().unwrap())
        .collect();
    println!("browser group lag after the page: {lag}");
    assert!(
        unacked.iter().sum::<u64>() <= 1,
        "at most the page's own message is unacked: {lag}"
    );
    let (st, r) = s
        .post(
            "/v1/groups/browser/receive",
            json!({"topic": "demo", "max": 8, "wait_ms": 0}),
        )
        .await;
    assert_eq!(st, 200);
    assert!(
        r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["message_id"] != id.as_str()),
        "the acked message is not delivered again: {r}"
    );
    s.stop().await;
}

/// Reads the page's state over the DevTools protocol until it shows `id` acked and its own
/// publish: `{"acked": <message id>, "published": <message id>}`. Polls (the DevTools port
/// file, the page list, the DOM) every 100 ms; the caller bounds the whole wait.
async fn page_state(s: &common::Server, profile: &std::path::Path, id: &str) -> serde_json::Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let port_file = profile.join("DevToolsActivePort");
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            if let Some(p) = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<u16>().ok())
            {
                break p;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let page = loop {
        let list: Option<serde_json::Value> = match s
            .http
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let found = list.as_ref().and_then(|l| l.as_array()).and_then(|pages| {
            pages
                .iter()
                .find(|p| {
                    p["type"] == "page" && p["url"].as_str().is_some_and(|u| u.contains("/ui"))
                })
                .and_then(|p| p["webSocketDebuggerUrl"].as_str())
                .map(str::to_owned)
        });
        if let Some(u) = found {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut cdp, _) = tokio_tungstenite::connect_async(page).await.unwrap();
    let expression = "JSON.stringify({acked: [...document.querySelectorAll('li[data-acked]')].map(l => l.dataset.messageId), \
        published: document.getElementById('status').dataset.published, \
        status: document.getElementById('status').textContent})";
    for n in 1.. {
        let call = json!({"id": n, "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": true}});
        cdp.send(Message::text(call.to_string())).await.unwrap();
        let value = loop {
            let Some(Ok(Message::Text(t))) = cdp.next().await else {
                panic!("the DevTools connection closed");
            };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == n {
                break v["result"]["result"]["value"]
                    .as_str()
                    .unwrap_or("{}")
                    .to_owned();
            }
        };
        let state: serde_json::Value = serde_json::from_str(&value).unwrap();
        let acked = state["acked"]
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m == id));
        if acked && state["published"].as_str().is_some_and(|p| !p.is_empty()) {
            return json!({"acked": id, "published": state["published"], "status": state["status"]});
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}
