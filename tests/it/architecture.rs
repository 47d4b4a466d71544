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
    "rumqttc",
    "mqttbytes",
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
            crate::support::skip_missing(&format!("cargo is not runnable: {e}"), "install Rust");
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

/// Every `.rs` file of the workspace's own sources (not `target/`), with its path relative to
/// the workspace root.
fn workspace_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules" | ".git") {
                    walk(&path, root, out);
                }
            } else if name.ends_with(".rs") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap();
    let mut out = Vec::new();
    for top in [
        "core",
        "proto",
        "nameserver",
        "gateways",
        "tools",
        "tests",
        "examples",
    ] {
        walk(&root.join(top), &root, &mut out);
    }
    assert!(
        out.iter().any(|(p, _)| p == "core/src/lib.rs"),
        "the workspace walk found no core/src/lib.rs"
    );
    out
}

/// Test code: files under a `tests/` directory, `tests.rs` files and the test-only benches.
fn is_test_code(path: &str) -> bool {
    path.starts_with("tests/")
        || path.contains("/tests/")
        || path.ends_with("/tests.rs")
        || path.contains("/benches/")
}

#[test]
fn no_source_file_is_over_800_lines() {
    let over: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|(p, _)| !is_test_code(p))
        .filter_map(|(p, text)| {
            let n = text.lines().count();
            (n > 800).then(|| format!("{p}: {n} lines"))
        })
        .collect();
    assert!(
        over.is_empty(),
        "non-test source files over 800 lines (split the type, not the impl):\n{}",
        over.join("\n")
    );
}

#[test]
fn nothing_outside_core_reaches_core_internals() {
    // The façade: `rocketgate_core::{store, broker}` are private; `Broker::store()` is gone.
    let doors = [
        ".store()",
        "rocketgate_core::store::",
        "rocketgate_core::broker::",
    ];
    let found: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|(p, _)| !p.starts_with("core/") && p != "tests/it/architecture.rs")
        .flat_map(|(p, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| doors.iter().any(|d| l.contains(d)))
                .map(|(i, l)| format!("{p}:{}: {}", i + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "code outside core reaches core internals:\n{}",
        found.join("\n")
    );
}
