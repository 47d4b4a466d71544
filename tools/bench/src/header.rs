//! The header of every bench output (table and `--json`): what was measured — the commit the
//! binary was built from, the exact command line, the machine (CPU model and count from
//! `/proc/cpuinfo`, memory, kernel), the build profile, the date, how many runs, and whether
//! any warm-up was excluded from a figure.
//!
//! Owns: [`Header`] (serialised as it is: its field names are part of the JSON contract), its
//! collection from `/proc` and the build, and its printing. The commit and profile come from the
//! build script (`build.rs`): nothing here runs git.
//!
//! Invariants: a field that cannot be read says `unknown`, never a guess; the command line is
//! printed so that it can be pasted back into a shell (arguments quoted when needed); the date
//! is UTC.
//!
//! Called by every bench through [`super::output`]. Reads `/proc` only; prints to stdout only.

use serde::Serialize;

/// The commit the binary was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("RG_BENCH_COMMIT");
/// The build profile and optimisation level.
pub const PROFILE: &str = env!("RG_BENCH_PROFILE");

/// What every output starts with.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    /// `rocketgate bench <bench>`.
    pub bench: String,
    /// `git rev-parse HEAD` when the binary was built, or `unknown`.
    pub commit: String,
    /// The build profile (`release (opt-level 3)`).
    pub profile: String,
    /// The command line, quoted for a shell.
    pub command: String,
    /// `model name` of the first processor in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Processors listed in `/proc/cpuinfo`.
    pub cpus: usize,
    /// CPUs this process may run on.
    pub cpus_available: usize,
    /// `MemTotal` of `/proc/meminfo`, MiB.
    pub memory_mib: Option<u64>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// When the bench started, UTC (`2026-12-05 06:12:03 UTC`).
    pub date: String,
    /// Runs of the whole bench, each with a fresh setup.
    pub runs: usize,
    /// What warm-up was excluded from which figure (`none excluded`).
    pub warmup: String,
    /// Anything else the reader must know about this output (a skipped comparison).
    pub notes: Vec<String>,
}

impl Header {
    /// Collects the header of `bench` with `runs` runs, from this process's command line,
    /// `/proc` and the build.
    pub fn collect(bench: &str, runs: usize) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let (cpu_model, cpus) = parse_cpuinfo(&read("/proc/cpuinfo"));
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            bench: bench.to_owned(),
            commit: COMMIT.to_owned(),
            profile: PROFILE.to_owned(),
            command: shell_line(std::env::args_os().map(|a| a.to_string_lossy().into_owned())),
            cpu_model,
            cpus,
            cpus_available: std::thread::available_parallelism().map_or(1, usize::from),
            memory_mib: parse_meminfo(&read("/proc/meminfo")),
            kernel: if kernel.is_empty() {
                "unknown".into()
            } else {
                kernel
            },
            date: format_utc(now),
            runs,
            warmup: "none excluded".into(),
            notes: Vec::new(),
        }
    }

    /// The header's lines as printed above the tables.
    pub fn lines(&self) -> Vec<String> {
        let memory = self.memory_mib.map_or_else(
            || "unknown memory".into(),
            |m| format!("{:.1} GiB memory", m as f64 / 1024.0),
        );
        let mut out = vec![
            format!("rocketgate bench {}", self.bench),
            format!("commit:  {} ({} build)", self.commit, self.profile),
            format!("command: {}", self.command),
            format!(
                "machine: {} CPUs \"{}\" (/proc/cpuinfo; {} available to this process), {memory}, \
                 Linux {}",
                self.cpus, self.cpu_model, self.cpus_available, self.kernel
            ),
            format!("date:    {}", self.date),
            format!(
                "runs:    {}, each with a fresh setup; every run is shown, then the median and \
                 min-max of each figure; goals are judged on the median",
                self.runs
            ),
            format!("warm-up: {}", self.warmup),
        ];
        out.extend(self.notes.iter().map(|n| format!("note:    {n}")));
        out
    }

    /// Prints [`Header::lines`].
    pub fn print(&self) {
        for l in self.lines() {
            println!("{l}");
        }
    }
}

/// `(model name of the first processor, number of processors)` of a `/proc/cpuinfo` text;
/// `("unknown", 0)` parts where it says nothing.
pub fn parse_cpuinfo(text: &str) -> (String, usize) {
    let value = |l: &str| l.split_once(':').map(|(_, v)| v.trim().to_owned());
    let count = text
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    let model = text
        .lines()
        .find(|l| {
            l.split(':')
                .next()
                .is_some_and(|k| k.trim() == "model name")
        })
        .and_then(value)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown".into());
    (model, count)
}

/// `MemTotal` of a `/proc/meminfo` text, in MiB.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The arguments as one line a POSIX shell splits back into the same arguments.
pub fn shell_line(args: impl IntoIterator<Item = String>) -> String {
    let quote = |a: String| {
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
        if plain {
            a
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    args.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpuinfo_and_meminfo() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpuinfo(cpuinfo), ("AMD EPYC 7B13".into(), 2));
        assert_eq!(parse_cpuinfo(""), ("unknown".into(), 0));
        // arm64 names no model: the count still holds.
        assert_eq!(
            parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\n"),
            ("unknown".into(), 1)
        );
        let meminfo = "MemTotal:       24634144 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(24_056));
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn formats_dates_in_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(format_utc(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn quotes_what_a_shell_would_split() {
        let args = [
            "target/release/rocketgate",
            "bench",
            "mqtt",
            "--duration",
            "5s",
        ];
        let line = shell_line(args.map(String::from));
        assert_eq!(line, "target/release/rocketgate bench mqtt --duration 5s");
        let odd = ["x", "a b", "it's", ""].map(String::from);
        assert_eq!(shell_line(odd), r"x 'a b' 'it'\''s' ''");
    }

    #[test]
    fn header_names_commit_command_machine_and_runs() {
        let mut h = Header::collect("store", 3);
        h.command = "rocketgate bench store --runs 3".into();
        h.warmup = "the first 1 s of sends, from the latency goal (--warmup 1s)".into();
        h.notes
            .push("no Mosquitto comparison (--no-compare)".into());
        assert!(!h.commit.is_empty());
        assert!(h.cpus_available >= 1);
        let lines = h.lines();
        assert_eq!(lines[0], "rocketgate bench store");
        assert!(lines[1].starts_with(&format!("commit:  {COMMIT} (")));
        assert_eq!(lines[2], "command: rocketgate bench store --runs 3");
        assert!(lines[3].starts_with("machine: ") && lines[3].contains("/proc/cpuinfo"));
        assert!(lines[4].starts_with("date:    ") && lines[4].ends_with(" UTC"));
        assert!(lines[5].starts_with("runs:    3, "));
        assert!(lines[6].contains("--warmup 1s"));
        assert_eq!(lines[7], "note:    no Mosquitto comparison (--no-compare)");
        let json = serde_json::to_value(&h).unwrap();
        for key in [
            "commit",
            "command",
            "cpu_model",
            "cpus",
            "memory_mib",
            "kernel",
            "profile",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        assert!(json["date"].as_str().unwrap().ends_with(" UTC"));
    }
}
