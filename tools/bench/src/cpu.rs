//! Server CPU time of the protocol benches (`bench grpc`, `bench http`, `bench mqtt`): what a
//! message costs the server, read from `/proc` around a case.
//!
//! Owns: [`ServerCpu`] (whose CPU counts as the server's) and the parsing of `stat` files.
//!
//! Invariants:
//! - In process, the server is every thread of this process except the client runtime's
//!   (named [`CLIENT_THREADS`]) and the main thread (which drives the client runtime): the
//!   server runtime, the broker's own threads, the blocking pool. The process's total includes
//!   threads that already exited; the client's part is the live client threads, so a client
//!   thread that exits during a case would count as the server's (tokio keeps its workers for
//!   the runtime's life).
//! - A separate process (`--server-pid`, Mosquitto) is its whole `/proc/<pid>/stat`.
//! - Ticks are USER_HZ = 100 per second, so a reading is good to 10 ms; `None` where `/proc`
//!   cannot be read, never a guess.
//!
//! Who calls it: the protocol benches, around each case. Reads `/proc` only.

/// The name of every client runtime thread of the protocol benches (at most 15 bytes: the
/// kernel keeps no more of a thread name).
pub const CLIENT_THREADS: &str = "rg-bench-client";

/// Whose CPU time is the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCpu {
    /// The server runs in this process (see the module's invariants).
    InProcess,
    /// The server is this process.
    Pid(u32),
    /// Not measured (a `--target` without `--server-pid`).
    Unknown,
}

impl ServerCpu {
    /// The server's CPU seconds so far, if known.
    pub fn secs(self) -> Option<f64> {
        match self {
            Self::InProcess => {
                let all = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
                Some(all.saturating_sub(client_ticks()?) as f64 / 100.0)
            }
            Self::Pid(pid) => {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some(ticks(&stat)? as f64 / 100.0)
            }
            Self::Unknown => None,
        }
    }

    /// What the figure counts, for the settings line.
    pub fn describe(self) -> String {
        match self {
            Self::InProcess => {
                "this process's threads but the client runtime's and the main thread".into()
            }
            Self::Pid(pid) => format!("process {pid}"),
            Self::Unknown => "not measured (--target without --server-pid)".into(),
        }
    }

    /// A reading to compare with a later one.
    pub fn start(self) -> Stamp {
        Stamp {
            server: self,
            secs: self.secs(),
        }
    }
}

/// A reading of a server's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    server: ServerCpu,
    secs: Option<f64>,
}

impl Stamp {
    /// The server's CPU µs per message of the `messages` handled since this reading.
    pub fn per_message_us(self, messages: u64) -> Option<f64> {
        let used = self.server.secs()? - self.secs?;
        (messages > 0).then(|| used.max(0.0) * 1e6 / messages as f64)
    }
}

/// `utime + stime` in ticks of a `stat` line (fields 14 and 15; the command name in
/// parentheses may contain spaces and parentheses, so fields count from the last `)`).
pub fn ticks(stat: &str) -> Option<u64> {
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The command name of a `stat` line.
fn comm(stat: &str) -> Option<&str> {
    let start = stat.find('(')? + 1;
    let end = stat.rfind(')')?;
    stat.get(start..end)
}

/// CPU ticks of this process's client threads (the client runtime's and the main thread).
fn client_ticks() -> Option<u64> {
    let pid = std::process::id().to_string();
    let mut sum = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // exited meanwhile
        };
        let main = entry.file_name().to_str() == Some(pid.as_str());
        if main || comm(&stat) == Some(CLIENT_THREADS) {
            sum += ticks(&stat).unwrap_or(0);
        }
    }
    Some(sum)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        let line = "4242 (rg bench (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 9 0";
        assert_eq!(ticks(line), Some(1290));
        assert_eq!(comm(line), Some("rg bench (x)"));
        assert_eq!(ticks("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let Some(all) = ServerCpu::Pid(std::process::id()).secs() else {
            return; // no /proc
        };
        let server = ServerCpu::InProcess.secs().unwrap();
        assert!(server <= all + 0.011, "{server} > {all}");
        assert_eq!(ServerCpu::Unknown.start().per_message_us(10), None);
        let stamp = ServerCpu::InProcess.start();
        assert!(stamp.per_message_us(1000).unwrap() >= 0.0);
        assert_eq!(stamp.per_message_us(0), None);
    }
}
