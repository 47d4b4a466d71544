//! Brokers authenticate to the NameServer (issue 14), with real processes of the `rocketgate`
//! binary on 127.0.0.1 ephemeral ports: a NameServer with a cluster secret
//! (`ROCKETGATE_CLUSTER_SECRET`) admits a broker that has it and refuses one that does not; a
//! short secret and an exposed NameServer without one refuse to start. Every process is stopped
//! by its test (or killed on drop).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rocketgate_nameserver::{ClientConfig, NameServerClient};
use support::{exited, Node, BIN, WAIT};

const SECRET: &str = "the-secret-of-the-test-cluster";

/// Runs the binary with `args` and `env` to completion (bounded by [`WAIT`]).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("ROCKETGATE_CLUSTER_SECRET")
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        exited(&mut child, WAIT).is_some(),
        "rocketgate {args:?} did not finish"
    );
    child.wait_with_output().unwrap()
}

/// Starts `rocketgate ARGS` with `env` and waits for its ready file.
fn start_env(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Node {
    let ready = dir.join(format!("{name}.ready"));
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(BIN)
        .args(args)
        .args(["--ready-file", ready.to_str().unwrap()])
        .env_remove("ROCKETGATE_CLUSTER_SECRET")
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Node::adopt(child, &ready, log)
}

fn broker_config(dir: &Path, name: &str, namesrv: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\ndata_dir = \"{data}\"\nsegment_size = 4194304\n\
             [broker]\ncluster = \"TestCluster\"\nname = \"{name}\"\nnamesrv = [\"{namesrv}\"]\n\
             heartbeat_interval_ms = 200\nrpc_timeout_ms = 1000\n\
             [grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nenabled = false\n[mqtt]\nenabled = false\n",
            data = dir.join(name).display(),
        ),
    )
    .unwrap();
    path
}

async fn registered_brokers(address: &str) -> Vec<String> {
    let client = NameServerClient::new(&ClientConfig {
        addresses: vec![address.to_owned()],
        rpc_timeout_ms: 1_000,
        ..ClientConfig::default()
    })
    .unwrap();
    match client.cluster_info().await {
        Ok(info) => info
            .brokers()
            .map(|(_, b)| b.broker_name.to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nameserver_with_a_cluster_secret_admits_only_brokers_that_have_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [("ROCKETGATE_CLUSTER_SECRET", SECRET)];
    let ns = start_env(
        dir.path(),
        "ns",
        &["nameserver", "--nameserver-addr", "127.0.0.1:0"],
        &secret,
    );
    let ns_addr = ns.endpoint("nameserver");

    // Without the secret: the broker is refused at its first registration and exits, saying why.
    let conf = broker_config(dir.path(), "outsider", &ns_addr);
    let out = run_env(&["broker", "--config", conf.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused this broker's registration") && stderr.contains("cluster secret"),
        "{stderr}"
    );
    // With another secret: the same.
    let out = run_env(
        &["broker", "--config", conf.to_str().unwrap()],
        &[(
            "ROCKETGATE_CLUSTER_SECRET",
            "not-the-secret-of-this-cluster",
        )],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("invalid cluster signature"), "{stderr}");
    assert!(registered_brokers(&ns_addr).await.is_empty());

    // With the secret: registered, and it unregisters when it stops.
    let conf = broker_config(dir.path(), "insider", &ns_addr);
    let broker = start_env(
        dir.path(),
        "insider",
        &["broker", "--config", conf.to_str().unwrap()],
        &secret,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while registered_brokers(&ns_addr).await != vec!["insider"] {
        assert!(Instant::now() < deadline, "insider did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = tokio::task::spawn_blocking(move || broker.terminate())
        .await
        .unwrap();
    assert!(status.success());
    assert!(registered_brokers(&ns_addr).await.is_empty());
    let (status, _) = tokio::task::spawn_blocking(move || ns.terminate())
        .await
        .unwrap();
    assert!(status.success());
}

/// A secret too short to be one, and a NameServer off loopback without a secret, refuse to
/// start (before binding anything), each with one line. (That a secret lets an exposed
/// NameServer start is checked in `exposure.rs`'s unit test: starting it here would listen
/// beyond 127.0.0.1.)
#[test]
fn a_short_secret_or_an_exposed_nameserver_without_one_refuses_to_start() {
    for short in ["", "short"] {
        let out = run_env(
            &["nameserver", "--nameserver-addr", "127.0.0.1:0"],
            &[("ROCKETGATE_CLUSTER_SECRET", short)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("invalid ROCKETGATE_CLUSTER_SECRET: must be 16..=1024 bytes"),
            "{stderr}"
        );
    }
    let out = run_env(&["nameserver", "--nameserver-addr", "0.0.0.0:0"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one line: {stderr}");
    assert!(
        errors[0].contains("0.0.0.0:0 (nameserver)")
            && errors[0].contains("ROCKETGATE_CLUSTER_SECRET")
            && errors[0].contains("--allow-unauthenticated-remote"),
        "{stderr}"
    );
}
