//! Process tests of authentication on the real binary: `rocketgate standalone` with `[auth]`
//! on and a bootstrap super user from its config file, and `rocketgate admin` as a child
//! process — refused without credentials or with a wrong secret (exit 1, one line naming the
//! refusal), served with the super user's `--ak/--sk` or `ROCKETGATE_ACCESS_KEY` /
//! `ROCKETGATE_SECRET_KEY`. The server is stopped by the test (SIGTERM at the end, kill on drop
//! if the test fails first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};

use support::{run, standalone, BIN, WAIT};

#[test]
fn admin_calls_need_the_credentials_of_a_user_allowed_to_administer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auth.toml");
    std::fs::write(
        &config,
        "[auth]\nenabled = true\nbootstrap_access_key = \"admin\"\nbootstrap_secret_key = \"admin-secret-1\"\n",
    )
    .unwrap();
    let node = standalone(dir.path(), "a", &["--config", config.to_str().unwrap()]);
    let grpc = node.endpoint("grpc");
    let admin = |extra: &[&str]| {
        let mut args = vec!["admin", "--broker", grpc.as_str()];
        args.extend_from_slice(extra);
        run(&args)
    };
    let refused = |out: &std::process::Output, what: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("unauthenticated"),
            "{what}: {stderr}"
        );
        assert!(
            !stderr.contains("admin-secret-1"),
            "{what}: the secret is never echoed"
        );
    };
    refused(&admin(&["topic", "create", "t1"]), "no credentials");
    refused(
        &admin(&[
            "--ak",
            "admin",
            "--sk",
            "wrong-secret",
            "topic",
            "create",
            "t1",
        ]),
        "a wrong secret",
    );
    refused(
        &admin(&["--ak", "ghost", "--sk", "admin-secret-1", "topic", "list"]),
        "an unknown user",
    );
    let out = admin(&[
        "--ak",
        "admin",
        "--sk",
        "admin-secret-1",
        "topic",
        "create",
        "t1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The environment works too (the secret stays out of the process list).
    let mut child = Command::new(BIN)
        .args(["admin", "--json", "--broker", &grpc, "topic", "list"])
        .env("ROCKETGATE_ACCESS_KEY", "admin")
        .env("ROCKETGATE_SECRET_KEY", "admin-secret-1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "admin did not finish");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("t1"));
    // Only one of the two: a usage error of one line.
    let out = admin(&["--ak", "admin", "topic", "list"]);
    assert_ne!(out.status.code(), Some(0));
    // The refusals were audited, without secrets.
    let log = node.log_text();
    assert!(log.contains("audit"), "{log}");
    assert!(
        !log.contains("admin-secret-1") && !log.contains("wrong-secret"),
        "{log}"
    );
    node.terminate();
}
