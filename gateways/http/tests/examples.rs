//! The curl walkthrough (`examples/http-curl/walkthrough.sh`) against a real gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_walkthrough_runs_clean() {
    // Fails without curl, unless RG_ALLOW_SKIP=1 (docs/testing.md).
    if common::tool(&["curl"], "apt-get install -y curl").is_none() {
        return;
    }
    let s = common::start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/http-curl/walkthrough.sh"
    );
    let child = tokio::process::Command::new("bash")
        .arg(script)
        .env("ROCKETGATE_HTTP", &s.base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the walkthrough ends in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("walkthrough done"));
    s.stop().await;
}
