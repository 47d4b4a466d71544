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
    // Users, policies and tokens through the CLI, as the super user.
    let root = ["--ak", "admin", "--sk", "admin-secret-1"];
    let with_root = |extra: &[&str]| {
        let mut args: Vec<&str> = root.to_vec();
        args.extend_from_slice(extra);
        admin(&args)
    };
    let ok = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(
        with_root(&["user", "create", "app", "--secret", "app-secret-1"]),
        "user create",
    );
    ok(with_root(&["topic", "create", "audited"]), "topic create");
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"[{"resources":["Topic:t*"],"actions":["Get","List"],"decision":"Allow"}]"#,
    )
    .unwrap();
    let shown = ok(
        with_root(&[
            "user",
            "set-policy",
            "app",
            "--file",
            policy.to_str().unwrap(),
        ]),
        "set-policy",
    );
    assert!(shown.contains("Topic:t*"), "{shown}");
    let list = ok(with_root(&["--json", "user", "list"]), "user list");
    assert!(
        list.contains("\"app\"") && list.contains("\"admin\""),
        "{list}"
    );
    assert!(
        !list.contains("app-secret-1"),
        "no secrets in listings: {list}"
    );
    // A normal user may not administer (its policy names topics, not the cluster), nor manage
    // users.
    let app = ["--ak", "app", "--sk", "app-secret-1"];
    for args in [&["topic", "create", "t2"][..], &["user", "list"][..]] {
        let mut all: Vec<&str> = app.to_vec();
        all.extend_from_slice(args);
        let out = admin(&all);
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("permission denied")
                || stderr.contains("permission_denied")
                || stderr.contains("may not")
                || stderr.contains("super users"),
            "{args:?}: {stderr}"
        );
    }
    // A token: printed once, listed by id, revoked.
    let issued = ok(
        with_root(&["--json", "token", "issue", "app", "--ttl", "1h"]),
        "token issue",
    );
    let issued: serde_json::Value = serde_json::from_str(&issued).unwrap();
    let token = issued["token"].as_str().unwrap();
    assert!(token.starts_with("rgt_"), "{issued}");
    let id = issued["id"].as_str().unwrap();
    let listed = ok(with_root(&["--json", "token", "list", "app"]), "token list");
    assert!(listed.contains(id) && !listed.contains(token), "{listed}");
    ok(with_root(&["token", "revoke", id]), "token revoke");
    ok(with_root(&["user", "delete", "app"]), "user delete");
    let mut all: Vec<&str> = app.to_vec();
    all.extend_from_slice(&["topic", "list"]);
    let out = admin(&all);
    assert_eq!(out.status.code(), Some(1), "a deleted user is refused");
    // The refusals were audited, without secrets.
    let log = node.log_text();
    assert!(log.contains("audit"), "{log}");
    // An admin change is audited with its RPC and its user.
    assert!(
        log.lines().any(|l| l.contains("audit")
            && l.contains("CreateTopic")
            && l.contains("user=\"admin\"")),
        "{log}"
    );
    assert!(
        !log.contains("admin-secret-1") && !log.contains("wrong-secret"),
        "{log}"
    );
    node.terminate();
}

/// Off loopback a listener must authenticate: `standalone` with its HTTP gateway or its gRPC
/// endpoint on `0.0.0.0` without `--auth` exits at once, with
/// one line saying what to do, before binding anything. (That authentication or the opt-out lets
/// it start is checked in `exposure.rs`'s unit test: starting it here would listen beyond
/// 127.0.0.1.)
#[test]
fn a_listener_off_loopback_without_authentication_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    for (flag, name, hint) in [
        ("--http-addr", "http", "--auth"),
        ("--grpc-addr", "grpc", "--auth"),
    ] {
        let mut args = vec!["standalone", "--data-dir", data.to_str().unwrap()];
        let mut eph: Vec<&str> = support::EPHEMERAL.to_vec();
        let i = eph.iter().position(|a| *a == flag).unwrap();
        eph[i + 1] = "0.0.0.0:0";
        args.extend(eph);
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{name}: one line: {stderr}");
        assert!(
            errors[0].contains(&format!("0.0.0.0:0 ({name})"))
                && errors[0].contains(hint)
                && errors[0].contains("--allow-unauthenticated-remote"),
            "{name}: {stderr}"
        );
        assert!(!data.join("lock").exists(), "{name}: nothing was opened");
    }
}
