//! Runs the blocks of a group of docs in one environment: a temporary working directory (the
//! repository's top-level entries linked in, so `examples/...` paths work and `./data` is
//! fresh), a `bin/` put first on `PATH` with wrappers for `rocketgate` (the debug binary under
//! test) and `curl` (fails on an HTTP error), and every documented 127.0.0.1 port moved to a free
//! ephemeral one. It owns every process it starts (one process group per block) and kills them
//! all when dropped. It must not touch the repository's files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::blocks::{Block, Kind};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_rocketgate");
/// How long one `sh` block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the servers of a `server` block may take to log `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The nodes the docs start refuse writes only past this share of the disk (the default is
/// 0.9; test machines are shared and fuller): set in a node started without a configuration
/// file, in `generate-config`'s output and under `[store]` of the files of `file` markers.
const TOLERATED_DISK_USE: f64 = 0.99;
/// The endpoints `rocketgate standalone` listens on by default, and the environment variable
/// that moves each (flags still win).
const DEFAULT_ENDPOINTS: [(u16, &str); 5] = [
    (9876, "ROCKETGATE_NAMESERVER_ADDR"),
    (8081, "ROCKETGATE_GRPC_ADDR"),
    (8080, "ROCKETGATE_HTTP_ADDR"),
    (1883, "ROCKETGATE_MQTT_ADDR"),
    (8083, "ROCKETGATE_MQTT_WS_ADDR"),
];

/// One environment: a working directory, its ports, the processes started in it.
pub struct Env {
    root: PathBuf,
    dir: tempfile::TempDir,
    ports: BTreeMap<u16, u16>,
    groups: Vec<Child>,
    server_running: bool,
    seq: usize,
    /// What ran: one line per block, for the summary.
    pub summary: Vec<String>,
}

impl Env {
    /// An environment for `blocks`: every port they mention on 127.0.0.1/localhost (and the
    /// standalone defaults) gets a free ephemeral port.
    pub fn new(root: &Path, blocks: &[Block]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut documented: Vec<u16> = DEFAULT_ENDPOINTS.iter().map(|(p, _)| *p).collect();
        for b in blocks {
            if matches!(b.kind, Kind::Run | Kind::Server | Kind::File(_)) {
                documented.extend(ports_in(&rewrite_commands(&b.text)));
            }
        }
        documented.sort_unstable();
        documented.dedup();
        // Hold every listener until all are picked, so that no two ports are the same.
        let held: Vec<std::net::TcpListener> = documented
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports = documented
            .iter()
            .zip(&held)
            .map(|(d, l)| (*d, l.local_addr().unwrap().port()))
            .collect();
        drop(held);
        let env = Self {
            root: root.to_owned(),
            dir,
            ports,
            groups: Vec::new(),
            server_running: false,
            seq: 0,
            summary: Vec::new(),
        };
        env.lay_out();
        env
    }

    fn work(&self) -> &Path {
        self.dir.path()
    }

    /// Links the repository's entries into the working directory and writes the wrappers.
    fn lay_out(&self) {
        for entry in std::fs::read_dir(&self.root).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if ["target", "data", ".git"].iter().any(|n| name == *n) {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), self.work().join(&name)).unwrap();
        }
        let bin = self.work().join(".doc-test/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let port = |p: u16| self.ports[&p];
        let mut servers = String::new();
        for (p, var) in DEFAULT_ENDPOINTS {
            let _ = write!(servers, " {var}=\"${{{var}:-127.0.0.1:{}}}\"", port(p));
        }
        let tolerant = bin.join("disk.toml");
        std::fs::write(
            &tolerant,
            format!("[store]\ndisk_max_used_ratio = {TOLERATED_DISK_USE}\n"),
        )
        .unwrap();
        let rocketgate = format!(
            "#!/bin/sh\n\
             # The doc test's rocketgate: the debug binary under test, its default endpoints\n\
             # moved to this run's ports (flags and the caller's environment still win; a\n\
             # broker with a configuration file listens where the file says).\n\
             case \"$1\" in\n\
             standalone|nameserver) export{servers} ;;\n\
             broker) case \"$*\" in *--config*) ;; *) export{servers} \
             ROCKETGATE_NAMESRV=\"${{ROCKETGATE_NAMESRV:-{ns}}}\" ;; esac ;;\n\
             admin) export ROCKETGATE_ADMIN_BROKER=\"${{ROCKETGATE_ADMIN_BROKER:-{grpc}}}\" \
             ROCKETGATE_NAMESRV=\"${{ROCKETGATE_NAMESRV:-{ns}}}\" ;;\n\
             generate-config) '{BIN}' \"$@\" | sed 's/^disk_max_used_ratio = .*/\
             disk_max_used_ratio = {TOLERATED_DISK_USE}/'; exit ;;\n\
             esac\n\
             case \"$1\" in standalone|broker) case \"$*\" in *--config*) ;; *) \
             export ROCKETGATE_CONFIG=\"${{ROCKETGATE_CONFIG:-{tolerant}}}\" ;; esac ;; esac\n\
             exec '{BIN}' \"$@\"\n",
            grpc = format_args!("127.0.0.1:{}", port(8081)),
            ns = format_args!("127.0.0.1:{}", port(9876)),
            tolerant = tolerant.display(),
        );
        write_exec(&bin.join("rocketgate"), &rocketgate);
        let curl = which("curl").unwrap_or_else(|| "/usr/bin/curl".into());
        write_exec(
            &bin.join("curl"),
            &format!(
                "#!/bin/sh\n\
                 # The doc test's curl: an HTTP error fails the command (and shows the body);\n\
                 # never a proxy, never longer than 30 s.\n\
                 exec '{}' --fail-with-body --noproxy '*' --max-time 30 \"$@\"\n",
                curl.display()
            ),
        );
    }

    /// Moves the documented ports of `text` to this environment's, and runs the debug binary
    /// where the docs build and run a release one.
    pub fn rewrite(&self, text: &str) -> String {
        let text = rewrite_commands(text);
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let hit = ["127.0.0.1:", "localhost:", "-p ", "--port "]
                .iter()
                .filter_map(|p| rest.find(p).map(|i| (i, *p)))
                .min();
            let Some((i, prefix)) = hit else {
                out.push_str(rest);
                break;
            };
            out.push_str(&rest[..i]);
            let after = &rest[i + prefix.len()..];
            let digits = after.chars().take_while(char::is_ascii_digit).count();
            let mapped = after[..digits]
                .parse::<u16>()
                .ok()
                .and_then(|p| self.ports.get(&p));
            let host_prefix = if prefix == "localhost:" {
                "127.0.0.1:"
            } else {
                prefix
            };
            match mapped {
                Some(m) if digits > 0 => {
                    let _ = write!(out, "{host_prefix}{m}");
                    rest = &after[digits..];
                }
                _ => {
                    out.push_str(host_prefix);
                    rest = after;
                }
            }
        }
        out
    }

    /// Runs (or starts, or writes, or records the skip of) one block; panics with the doc's
    /// file and line and the output when it fails.
    pub fn block(&mut self, b: &Block) {
        match &b.kind {
            Kind::Inert => {}
            Kind::Skip(reason) => self.summary.push(format!("skipped {} ({reason})", b.at())),
            Kind::File(name) => {
                let text = self.rewrite(&b.text).replace(
                    "[store]\n",
                    &format!("[store]\ndisk_max_used_ratio = {TOLERATED_DISK_USE}\n"),
                );
                std::fs::write(self.work().join(name), text).unwrap();
                self.summary.push(format!("wrote   {} to {name}", b.at()));
            }
            Kind::Server => self.server(b),
            Kind::Run => {
                if !self.server_running {
                    self.default_standalone();
                }
                self.run(b);
            }
        }
    }

    /// A file that documents no server of its own runs against `rocketgate standalone` with
    /// its defaults (in this environment's working directory, on its ports).
    fn default_standalone(&mut self) {
        let b = Block {
            file: "(standalone started by the doc test)".into(),
            line: 1,
            text: "rocketgate standalone\n".into(),
            kind: Kind::Server,
        };
        self.server(&b);
    }

    fn script(&mut self, b: &Block) -> (PathBuf, PathBuf) {
        self.seq += 1;
        let base = self.work().join(format!(".doc-test/block-{}", self.seq));
        // The trap names the doc's own line of a failing command (the script's header is 3
        // lines long).
        let script = format!(
            "set -euo pipefail\n\
             trap 'echo \"doc-test: {file}:$((LINENO + {offset})): exit status $?\" >&2' ERR\n\
             cd '{work}'\n{text}",
            file = b.file,
            offset = b.line as i64 - 4,
            work = self.work().display(),
            text = self.rewrite(&b.text),
        );
        let path = base.with_extension("sh");
        std::fs::write(&path, script).unwrap();
        (path, base)
    }

    fn spawn(&mut self, script: &Path, stdout: &Path, stderr: &Path) -> usize {
        let path = format!(
            "{}:{}",
            self.work().join(".doc-test/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("bash")
            .arg(script)
            .current_dir(self.work())
            .env("PATH", path)
            .env_remove("ROCKETGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(stdout).unwrap())
            .stderr(if stdout == stderr {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(stderr)
                    .unwrap()
            } else {
                std::fs::File::create(stderr).unwrap()
            })
            .process_group(0)
            .spawn()
            .unwrap();
        self.groups.push(child);
        self.groups.len() - 1
    }

    fn run(&mut self, b: &Block) {
        let (script, base) = self.script(b);
        let (out, err) = (base.with_extension("out"), base.with_extension("err"));
        let started = Instant::now();
        let i = self.spawn(&script, &out, &err);
        let status = loop {
            if let Some(s) = self.groups[i].try_wait().unwrap() {
                break Some(s);
            }
            if started.elapsed() > BLOCK_TIMEOUT {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Whatever the block left running in the background ends with it.
        kill_group(&self.groups[i]);
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let show = || {
            format!(
                "--- the block as run ---\n{}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.rewrite(&b.text)
            )
        };
        match status {
            None => panic!(
                "{}: the block did not finish within {BLOCK_TIMEOUT:?}\n{}",
                b.at(),
                show()
            ),
            Some(s) if !s.success() => panic!("{}: the block failed ({s})\n{}", b.at(), show()),
            Some(_) => {}
        }
        for (n, want) in documented_output(&b.text) {
            assert!(
                stdout.contains(&want),
                "{}:{}: the documented output `{want}` is not in what the block printed\n{}",
                b.file,
                b.line + n,
                show()
            );
        }
        self.summary.push(format!(
            "ran     {} in {} ms",
            b.at(),
            started.elapsed().as_millis()
        ));
    }

    fn server(&mut self, b: &Block) {
        let (script, base) = self.script(b);
        let log = base.with_extension("log");
        let expected = servers_started(&self.rewrite(&b.text));
        assert!(
            expected > 0,
            "{}: a `server` block that starts no `rocketgate standalone|nameserver|broker`",
            b.at()
        );
        let started = Instant::now();
        let i = self.spawn(&script, &log, &log);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let ready = text
                .lines()
                .filter(|l| {
                    ["standalone", "nameserver", "broker", "slave"]
                        .iter()
                        .any(|r| l.contains(&format!("rocketgate {r} ready")))
                })
                .count();
            if ready >= expected {
                break;
            }
            let failed = match self.groups[i].try_wait().unwrap() {
                Some(s) => !s.success(),
                None => false,
            };
            if failed || started.elapsed() > READY_TIMEOUT {
                panic!(
                    "{}: {ready} of the {expected} servers of the block logged `ready` within \
                     {READY_TIMEOUT:?}\n--- the block as run ---\n{}\n--- log ---\n{text}",
                    b.at(),
                    self.rewrite(&b.text)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Nothing listens on a documented port: the test never takes a port it did not pick.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for documented in self.ports.keys() {
            let address = format!("127.0.0.1:{documented}");
            let taken = text
                .match_indices(&address)
                .any(|(i, _)| !text[i + address.len()..].starts_with(|c: char| c.is_ascii_digit()));
            assert!(
                !taken,
                "{}: a server uses the documented {address} itself, not its test port:\n{text}",
                b.at()
            );
        }
        self.server_running = true;
        self.summary.push(format!(
            "started {} ({expected} ready in {} ms)",
            b.at(),
            started.elapsed().as_millis()
        ));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for child in &mut self.groups {
            kill_group(child);
            let _ = child.wait();
        }
    }
}

/// `kill -KILL` of the process group a block's shell leads (its background jobs included).
fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

/// `cargo run --release -- X` and `target/release/rocketgate X` become `rocketgate X`.
fn rewrite_commands(text: &str) -> String {
    text.replace("cargo run --release -- ", "rocketgate ")
        .replace("target/release/rocketgate", "rocketgate")
}

/// The ports after `127.0.0.1:`, `localhost:`, `-p ` and `--port ` in `text`.
fn ports_in(text: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for prefix in ["127.0.0.1:", "localhost:", "-p ", "--port "] {
        for (i, _) in text.match_indices(prefix) {
            let after = &text[i + prefix.len()..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(p) = digits.parse::<u16>() {
                if p >= 1024 {
                    ports.push(p);
                }
            }
        }
    }
    ports
}

/// How many `rocketgate standalone|nameserver|broker` processes the lines of `text` start
/// (comments ignored).
fn servers_started(text: &str) -> usize {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or(""))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| {
            ["standalone", "nameserver", "broker"]
                .iter()
                .any(|r| l.contains(&format!("rocketgate {r}")))
        })
        .count()
}

/// The documented output of a block, checked loosely: in a `# → ...` comment, every
/// double-quoted string (JSON keys and values; not `"..."` placeholders) must be printed.
/// Returns (line within the block, text).
fn documented_output(text: &str) -> Vec<(usize, String)> {
    let mut want = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some((_, comment)) = line.split_once("# → ") else {
            continue;
        };
        let mut parts = comment.split('"');
        parts.next();
        while let (Some(inside), _) = (parts.next(), parts.next()) {
            if !inside.is_empty() && !inside.contains("...") {
                want.push((n, format!("\"{inside}\"")));
            }
        }
    }
    want
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A program on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[test]
fn ports_and_output_are_found() {
    assert_eq!(
        ports_in("curl localhost:8080/x; mosquitto_pub -p 1883 -h 127.0.0.1:9876 -p 80"),
        vec![9876, 8080, 1883]
    );
    assert_eq!(
        servers_started("rocketgate standalone &\nrocketgate admin x # rocketgate broker\n"),
        1
    );
    assert_eq!(
        documented_output("curl x   # → {\"message_id\": \"...\", \"queue_id\": 0}\n"),
        vec![
            (0, "\"message_id\"".to_owned()),
            (0, "\"queue_id\"".to_owned())
        ]
    );
}
