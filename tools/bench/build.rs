//! Build script of rocketgate-bench: records what every bench output names as "what was
//! measured", so that nothing needs git (or a checkout) at run time.
//!
//! Sets for the crate:
//! - `RG_BENCH_COMMIT`: `$RG_BENCH_COMMIT` if set when building (for builds outside a git
//!   checkout that know their commit), else `git rev-parse HEAD` of the checkout being built,
//!   else `unknown`. Uncommitted changes are not detected.
//! - `RG_BENCH_PROFILE`: cargo's build profile and optimisation level (`release (opt-level 3)`).
//!
//! It re-runs when HEAD or the branch it points to moves (the files git keeps them in), and
//! never fails the build: a missing git is `unknown`.

use std::path::Path;
use std::process::Command;

/// The trimmed stdout of `git <args>` when git exits 0 with some output.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Re-run this script when the file git keeps `what` in changes (only if it exists: cargo
/// treats a missing file as always changed, which would rebuild the crate every time).
fn watch(what: &str) {
    if let Some(path) = git(&["rev-parse", "--git-path", what]) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=RG_BENCH_COMMIT");
    let commit = match std::env::var("RG_BENCH_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            watch("HEAD");
            watch("packed-refs");
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch(&branch);
            }
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=RG_BENCH_COMMIT={commit}");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "unknown".to_owned());
    println!(
        "cargo:rustc-env=RG_BENCH_PROFILE={} (opt-level {})",
        var("PROFILE"),
        var("OPT_LEVEL")
    );
}
