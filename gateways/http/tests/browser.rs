//! The browser example (`examples/browser/index.html`, served at `/ui`) in headless Chromium:
//! the page subscribes over the WebSocket, receives a message published over REST, acks it, and
//! publishes one of its own; the test reads the page's state from the dumped DOM and checks the
//! broker through the REST API.
//!
//! Needs Debian's `chromium` (`/usr/bin/chromium`); when it is missing the test runs
//! `apt-get install -y chromium` once. `ROCKETGATE_SKIP_BROWSER=1` skips it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::start;
use serde_json::json;

fn chromium() -> Option<String> {
    let find = || {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(str::to_owned)
    };
    if let Some(p) = find() {
        return Some(p);
    }
    eprintln!("chromium missing: trying apt-get install -y chromium");
    let _ = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    find()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_page_receives_acks_and_publishes() {
    if std::env::var_os("ROCKETGATE_SKIP_BROWSER").is_some() {
        eprintln!("skipped: ROCKETGATE_SKIP_BROWSER is set");
        return;
    }
    let chromium = chromium().expect("chromium is installed (apt-get install -y chromium)");
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
    let child = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--run-all-compositor-stages-before-draw",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chromium ends in time")
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(&format!("data-message-id=\"{id}\"")),
        "the page shows the REST message:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("data-acked=\"true\""),
        "the page acked it:\n{dom}"
    );
    // The page published too: its id is in the DOM and the broker has the message.
    let published = dom
        .split("data-published=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned();
    assert!(!published.is_empty(), "the page published:\n{dom}");
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
