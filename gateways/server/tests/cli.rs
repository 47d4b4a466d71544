//! Process tests of the `rocketgate` binary: the real executable, started on 127.0.0.1 with
//! ephemeral ports and temporary directories, stopped by every test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rocketgate");

/// Kills the child if the test ends early.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str]) -> Guard {
    let child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Guard(Some(child))
}

fn wait_for_file(path: &Path, guard: &mut Guard) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str(&text) {
                return v;
            }
        }
        if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
            panic!("rocketgate exited early: {status}");
        }
        assert!(Instant::now() < deadline, "no ready file after 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and waits (bounded) for the exit.
fn terminate(mut guard: Guard) -> std::process::ExitStatus {
    let mut child = guard.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rocketgate did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn standalone_starts_with_no_config_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ready = dir.path().join("ready.json");
    let args = [
        "standalone",
        "--data-dir",
        data.to_str().unwrap(),
        "--ready-file",
        ready.to_str().unwrap(),
    ];
    let mut g = spawn(&args);
    let v = wait_for_file(&ready, &mut g);
    assert!(v["pid"].as_u64().is_some());
    assert!(
        data.join("abort").exists(),
        "open store carries the abort marker"
    );
    assert!(terminate(g).success());
    assert!(
        !data.join("abort").exists(),
        "clean shutdown removes the abort marker"
    );
    assert!(data.join("checkpoint").exists());
}

#[test]
fn nameserver_serves_on_an_ephemeral_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let mut g = spawn(&[
        "nameserver",
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        ready.to_str().unwrap(),
    ]);
    let v = wait_for_file(&ready, &mut g);
    let addr = v["nameserver"].as_str().unwrap().to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = rt.block_on(async {
        let client =
            rocketgate_nameserver::NameServerClient::new(&rocketgate_nameserver::ClientConfig {
                addresses: vec![addr.clone()],
                ..Default::default()
            })
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), client.cluster_info())
            .await
            .unwrap()
    });
    assert!(info.is_ok(), "{info:?}");
    assert!(terminate(g).success());
}

#[test]
fn bad_configuration_is_one_clear_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--config".into(),
                write("a.toml", "[store]\nbogus = 1\n")
                    .display()
                    .to_string(),
            ],
            "bogus",
        ),
        (
            vec![
                "--config".into(),
                write("b.toml", "[nope]\nx = 1\n").display().to_string(),
            ],
            "nope",
        ),
        (
            vec![
                "--config".into(),
                write("c.toml", "[store]\ndisk_max_used_ratio = 7.0\n")
                    .display()
                    .to_string(),
            ],
            "disk_max_used_ratio",
        ),
        (
            vec![
                "--config".into(),
                dir.path().join("missing.toml").display().to_string(),
            ],
            "missing.toml",
        ),
        (vec!["--flush-mode".into(), "SOMETIMES".into()], "SOMETIMES"),
        (
            vec![
                "--data-dir".into(),
                "/proc/rocketgate-cannot-write-here".into(),
            ],
            "/proc",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["standalone".to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run(&refs);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} succeeded");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{all:?}: {stderr}");
        assert!(errors[0].contains(needle), "{all:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["nameserver", "--listen", &addr]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}

#[test]
fn generate_config_prints_a_file_that_loads() {
    let out = run(&["generate-config"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rocketgate.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let ready = dir.path().join("ready.json");
    let data = dir.path().join("data");
    let mut g = spawn(&[
        "standalone",
        "--config",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--ready-file",
        ready.to_str().unwrap(),
    ]);
    wait_for_file(&ready, &mut g);
    assert!(terminate(g).success());
}
