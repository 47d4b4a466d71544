//! The core stays protocol-free: `cargo tree -p rocketgate-core -e normal` names none of the
//! wire-protocol crates (STYLE.md §A). This one assertion replaces a dependency guard script.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::ChildGuard;

const FORBIDDEN: &[&str] = &[
    "tonic",
    "prost",
    "axum",
    "hyper",
    "tungstenite",
    "tokio-tungstenite",
    "rumqttd",
    "rocketgate-proto",
];

#[test]
fn core_depends_on_no_protocol_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spawned = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "rocketgate-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            println!("NOTE: skipped, cargo is not runnable here: {e}");
            return;
        }
    };
    let mut guard = ChildGuard::new(child);
    // Drain both pipes while waiting, so that a large output cannot block the child.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(guard.child().stdout.take().map(|p| Box::new(p) as _));
    let err = drain(guard.child().stderr.take().map(|p| Box::new(p) as _));
    // `cargo tree` may wait for the package cache lock of a concurrent build: bounded wait.
    let started = Instant::now();
    while guard.child().try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "cargo tree did not finish within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = guard.kill();
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "cargo tree failed: {status:?}\n{stderr}");
    let crates: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"rocketgate-core"),
        "unexpected cargo tree output:\n{stdout}"
    );
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| crates.contains(f)).collect();
    assert!(
        found.is_empty(),
        "rocketgate-core depends on protocol crates {found:?}:\n{stdout}"
    );
}
