//! The runnable clients in `examples/` against a live `rocketgate standalone`: the raw gRPC
//! Python client (stubs generated from `proto/`, no RocketMQ SDK) sends, receives and acks.
//! `scripts/test` installs its Python packages (grpcio, grpcio-tools).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{admin_json, standalone};

#[test]
fn python_raw_grpc_client_sends_receives_and_acks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("examples/python-grpc/client.py");
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "data", &[]);
    let grpc = node.endpoint("grpc");
    admin_json(&[
        "--broker",
        &grpc,
        "topic",
        "create",
        "test_topic",
        "--queues",
        "4",
    ]);

    let mut child = Command::new("python3")
        .arg(&script)
        .args(["--target", &grpc, "--topic", "test_topic", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs: apt-get install -y python3 (and scripts/test installs grpcio and grpcio-tools)");
    if support::exited(&mut child, Duration::from_secs(90)).is_none() {
        panic!("the Python client did not finish within 90 s");
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the Python packages are missing: python3 -m pip install -r \
         examples/python-grpc/requirements.txt (scripts/test does):\n{stderr}"
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout.matches("sent message_id=").count(), 3, "{stdout}");
    assert!(stdout.contains("acked 3 of 3 sent messages"), "{stdout}");

    // What Python sent is in the store, with its properties, readable through admin.
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent message_id="))
        .unwrap()
        .trim()
        .to_owned();
    let found = admin_json(&["--broker", &grpc, "message", "id", &id]);
    assert!(found.to_string().contains("python-raw-grpc"), "{found}");
    let (status, _) = node.terminate();
    assert!(status.success());
}
