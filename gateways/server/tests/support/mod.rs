//! Shared helpers of the process tests: start the real `rocketgate` binary with a ready file,
//! read its bound endpoints back, stop it (SIGTERM or kill -9) within bounded time, and run
//! `rocketgate admin` as a child process. Every process started here is killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod replication;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rocketgate");

/// Upper bound for a process to become ready or to exit.
pub const WAIT: Duration = Duration::from_secs(30);

/// Flags putting every endpoint of a node on an ephemeral port of 127.0.0.1.
pub const EPHEMERAL: [&str; 10] = [
    "--grpc-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--mqtt-addr",
    "127.0.0.1:0",
    "--mqtt-ws-addr",
    "127.0.0.1:0",
    "--nameserver-addr",
    "127.0.0.1:0",
];

/// Starts `rocketgate standalone` with data in `DIR/NAME`, every endpoint on an ephemeral port,
/// and `extra` flags.
pub fn standalone(dir: &Path, name: &str, extra: &[&str]) -> Node {
    let data = dir.join(name);
    let mut args = vec!["standalone", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(&EPHEMERAL);
    args.extend_from_slice(extra);
    Node::start(dir, name, &args)
}

/// A running `rocketgate` process with its ready file read.
pub struct Node {
    child: Option<Child>,
    /// Its ready file's JSON.
    pub ready: serde_json::Value,
    /// Where its stderr goes (read it when a test fails).
    pub log: PathBuf,
    ready_file: PathBuf,
}

impl Node {
    /// Starts `rocketgate ARGS --ready-file DIR/NAME.ready` and waits until it is ready.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Self {
        let ready = dir.join(format!("{name}.ready"));
        let _ = std::fs::remove_file(&ready);
        let log = dir.join(format!("{name}.log"));
        let mut all: Vec<&str> = args.to_vec();
        all.push("--ready-file");
        all.push(ready.to_str().unwrap());
        let child = Command::new(BIN)
            .args(&all)
            .env(
                "RUST_LOG",
                std::env::var("ROCKETGATE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut node = Self {
            child: Some(child),
            ready: serde_json::Value::Null,
            log,
            ready_file: ready.clone(),
        };
        node.ready = node.wait_ready(&ready);
        node
    }

    /// Waits (bounded) until the node rewrote its ready file with `"mode": mode` (a role
    /// change), and reads it.
    pub fn wait_mode(&mut self, mode: &str) {
        let path = self.ready_file.clone();
        let ready = poll_until(WAIT, "a role change", || {
            let text = std::fs::read_to_string(&path).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            (v["mode"] == mode).then_some(v)
        });
        self.ready =
            ready.unwrap_or_else(|| panic!("not {mode} within {WAIT:?}:\n{}", self.log_text()));
    }

    /// Takes over a process started by the test itself and waits for its ready file.
    pub fn adopt(child: Child, ready: &Path, log: PathBuf) -> Self {
        let mut node = Self {
            child: Some(child),
            ready: serde_json::Value::Null,
            log,
            ready_file: ready.to_owned(),
        };
        node.ready = node.wait_ready(ready);
        node
    }

    fn wait_ready(&mut self, path: &Path) -> serde_json::Value {
        let log = self.log.clone();
        let child = self.child.as_mut().unwrap();
        poll_until(WAIT, "the ready file", || {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("rocketgate exited early ({status}):\n{log}");
            }
            let text = std::fs::read_to_string(path).ok()?;
            serde_json::from_str(&text).ok()
        })
        .unwrap_or_else(|| panic!("not ready within {WAIT:?}:\n{}", self.log_text()))
    }

    /// Waits (bounded) until the ready file names an endpoint for `protocol` (a slave's read
    /// gateways add theirs once they serve) and returns its address.
    pub fn wait_endpoint(&mut self, protocol: &str) -> String {
        let path = self.ready_file.clone();
        let ready = poll_until(WAIT, "an endpoint in the ready file", || {
            let text = std::fs::read_to_string(&path).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["endpoints"][protocol].is_string().then_some(v)
        });
        self.ready = ready.unwrap_or_else(|| {
            panic!(
                "no {protocol} endpoint within {WAIT:?}:\n{}",
                self.log_text()
            )
        });
        self.endpoint(protocol)
    }

    /// The bound address of `protocol` (`grpc`, `http`, `nameserver`).
    pub fn endpoint(&self, protocol: &str) -> String {
        self.ready["endpoints"][protocol]
            .as_str()
            .unwrap_or_else(|| panic!("no {protocol} endpoint in {}", self.ready))
            .to_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the exit; returns the status and how long it took.
    pub fn terminate(mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().unwrap();
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        match exited(&mut child, WAIT) {
            Some(s) => (s, sent.elapsed()),
            None => panic!("no exit within {WAIT:?} of SIGTERM:\n{}", self.log_text()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the binary with `args` to completion (bounded by [`WAIT`]).
pub fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if exited(&mut child, WAIT).is_none() {
        panic!("rocketgate {args:?} did not finish within {WAIT:?}");
    }
    child.wait_with_output().unwrap()
}

/// `rocketgate admin --json ARGS`, which must succeed; its stdout parsed.
pub fn admin_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["admin", "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(
        out.status.success(),
        "rocketgate {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rocketgate {all:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One HTTP/1.1 request (`Connection: close`, JSON body if any) on a raw socket, bounded by
/// [`WAIT`]: the status and the body.
pub fn http(address: &str, method: &str, path: &str, json: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let body = json.unwrap_or("");
    let content = match json {
        Some(_) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ),
        None => String::new(),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{content}Connection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Calls `check` every 20 ms until it returns `Some` (returned), or `None` once `within`
/// passed: a wait for a state, with a deadline.
pub fn poll_until<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            eprintln!("gave up waiting for {what} after {within:?}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit within `within`: its status, or `None` after killing it (SIGKILL,
/// reaped) when it did not. Its stdout and stderr, if piped, are left to read.
pub fn exited(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let status = poll_until(within, "a child process to exit", || {
        child.try_wait().unwrap()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// The opt-out of tests that need a tool: with `RG_ALLOW_SKIP=1` such a test passes with a
/// note where the tool is missing; without it the test fails and says how to install it
/// (`scripts/test` installs every tool; docs/testing.md).
pub const ALLOW_SKIP: &str = "RG_ALLOW_SKIP";

/// `path` when it exists. Otherwise the test fails with `how` to install it, or, only under
/// [`ALLOW_SKIP`], `None` (the caller skips) after a note on stdout.
pub fn tool<'a>(path: &'a str, how: &str) -> Option<&'a Path> {
    let p = Path::new(path);
    if p.exists() {
        return Some(p);
    }
    let what = format!("{path} is missing");
    assert!(
        std::env::var(ALLOW_SKIP).is_ok_and(|v| v == "1"),
        "{what}: {how} (scripts/test does), or set {ALLOW_SKIP}=1 to skip such tests on purpose"
    );
    println!("NOTE: skipped under {ALLOW_SKIP}=1: {what}");
    None
}
