//! The server processes of `bench replication`: a master `rocketgate broker` (replication off,
//! ASYNC or SYNC) and its slaves, each a child process of the bench with its data in a fresh
//! directory, every endpoint on an ephemeral port of 127.0.0.1, found through its ready file.
//!
//! Owns: starting them ([`Group::start`]), their endpoints and CPU time, and killing them
//! (`kill -9`, reaped) when the [`Group`] is dropped — at the end of a case and on any error,
//! so no process outlives its case. A process that exits before it is ready, or is not ready
//! within [`WAIT`], is an error carrying the tail of its log.
//!
//! Invariants: a process only ever writes below the case directory it is given; the bench
//! never reads or writes its data, only its ready file, its log and `/proc/<pid>/stat`.
//!
//! Who calls it: [`super::one_case`], from the main thread (blocking waits, bounded).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Case, FlushMode};
use crate::cpu::ServerCpu;
use crate::error::{bail, Context, Result};

/// Upper bound for a process to become ready.
pub const WAIT: Duration = Duration::from_secs(30);

/// Flags putting every gateway of the master on an ephemeral port of 127.0.0.1.
const EPHEMERAL: [&str; 8] = [
    "--grpc-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--mqtt-addr",
    "127.0.0.1:0",
    "--mqtt-ws-addr",
    "127.0.0.1:0",
];

/// One running `rocketgate` process with its ready file read; killed on drop.
pub struct Node {
    child: Child,
    name: String,
    ready: serde_json::Value,
}

impl Node {
    /// Starts `BIN ARGS --ready-file DIR/NAME.ready --log warn`, stderr to `DIR/NAME.log`, and
    /// waits until its ready file is there.
    fn start(bin: &Path, dir: &Path, name: &str, args: &[String]) -> Result<Self> {
        let ready = dir.join(format!("{name}.ready"));
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(bin)
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .args(["--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {} for the {name}", bin.display()))?;
        let mut node = Self {
            child,
            name: name.to_owned(),
            ready: serde_json::Value::Null,
        };
        node.ready = node.wait_ready(&ready, &log)?;
        Ok(node)
    }

    fn wait_ready(&mut self, path: &Path, log: &Path) -> Result<serde_json::Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the {} exited before it was ready ({status}); the end of its log:\n{}",
                    self.name,
                    tail(log)
                );
            }
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    return Ok(v);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the {} was not ready within {WAIT:?}; the end of its log:\n{}",
                    self.name,
                    tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bound address of `endpoint` (`grpc`, `http`, `replication`) from the ready file.
    pub fn endpoint(&self, endpoint: &str) -> Result<String> {
        self.ready["endpoints"][endpoint]
            .as_str()
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "the {}'s ready file names no {endpoint} endpoint: {}",
                    self.name, self.ready
                )
            })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the process used so far (`None` without `/proc`).
    fn cpu_secs(&self) -> Option<f64> {
        ServerCpu::Pid(self.pid()).secs()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 20 lines of a log file.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A master and its slaves (none when replication is off); every process is killed on drop.
pub struct Group {
    /// Declared first: dropped (killed) before the master.
    pub slaves: Vec<Node>,
    /// The master, which the producers send to.
    pub master: Node,
}

/// CPU seconds of a group so far.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    /// The master's.
    pub master: Option<f64>,
    /// All slaves' together (`None` without slaves).
    pub slaves: Option<f64>,
}

impl Group {
    /// Starts the master of `case` in `dir/master` and, when it replicates, `slaves` slaves in
    /// `dir/slave<N>` (broker ids 1..=N) following it.
    ///
    /// # Errors
    /// A process that cannot be started, exits early, or is not ready in time.
    pub fn start(
        bin: &Path,
        dir: &Path,
        case: Case,
        slaves: usize,
        flush: FlushMode,
    ) -> Result<Self> {
        let data = |name: &str| -> PathBuf { dir.join(name) };
        let mut args: Vec<String> = vec!["broker".into(), "--data-dir".into()];
        args.push(data("master").display().to_string());
        args.extend(EPHEMERAL.iter().map(|s| (*s).to_owned()));
        args.extend(["--flush-mode".into(), flush.flag().into()]);
        if let Some(mode) = case.replication_mode() {
            args.extend([
                "--replication-addr".into(),
                "127.0.0.1:0".into(),
                "--replication-mode".into(),
                mode.into(),
            ]);
        }
        if case == Case::Sync {
            // Every slave must be in sync for a write to be taken: the master and all slaves.
            let conf = dir.join("master.toml");
            std::fs::write(
                &conf,
                format!("[replication]\nmin_in_sync_replicas = {}\n", 1 + slaves),
            )
            .with_context(|| format!("cannot write {}", conf.display()))?;
            args.extend(["--config".into(), conf.display().to_string()]);
        }
        let master = Node::start(bin, dir, "master", &args)?;
        let mut group = Self {
            slaves: Vec::new(),
            master,
        };
        if case.replication_mode().is_none() {
            return Ok(group);
        }
        let replication = group.master.endpoint("replication")?;
        for id in 1..=slaves {
            let name = format!("slave{id}");
            let args: Vec<String> = vec![
                "broker".into(),
                "--data-dir".into(),
                data(&name).display().to_string(),
                "--broker-id".into(),
                id.to_string(),
                "--master-addr".into(),
                replication.clone(),
                // Each slave's standby replication listener (it would serve there once
                // promoted) on its own ephemeral port, not the default 10912.
                "--replication-addr".into(),
                "127.0.0.1:0".into(),
                "--flush-mode".into(),
                flush.flag().into(),
            ];
            group.slaves.push(Node::start(bin, dir, &name, &args)?);
        }
        Ok(group)
    }

    /// The CPU seconds of the master and of all slaves so far.
    pub fn cpu(&self) -> CpuReading {
        let slaves = if self.slaves.is_empty() {
            None
        } else {
            self.slaves
                .iter()
                .map(Node::cpu_secs)
                .try_fold(0.0, |sum, s| s.map(|s| sum + s))
        };
        CpuReading {
            master: self.master.cpu_secs(),
            slaves,
        }
    }
}
