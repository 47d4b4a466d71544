//! Every shell example of README.md, docs/*.md and the examples' READMEs runs as written: the
//! ```` ```sh ```` blocks are extracted and run with bash (`set -euo pipefail`) against the
//! debug `rocketgate` binary, on ephemeral ports of 127.0.0.1, in a temporary directory; a
//! block that is not to be run carries `<!-- doc-test: skip (reason) -->` and is listed.
//! Markers and conventions: docs/testing.md ("The doc test"). This file owns the grouping of
//! the docs into runs and starts nothing itself; parsing is `blocks.rs`, running `run.rs`.
//! `scripts/test` installs the tools the docs use (curl, jq, mosquitto clients, paho-mqtt).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blocks;
mod run;

use std::path::{Path, PathBuf};

use blocks::{Block, Kind};

/// The docs a newcomer follows in order, on one `rocketgate standalone` (the README's): a doc
/// that collides with an earlier one (a topic created twice) fails here.
const NEWCOMER_PATH: [&str; 5] = [
    "README.md",
    "docs/http.md",
    "docs/mqtt.md",
    "docs/admin.md",
    "examples/README.md",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every Markdown file the doc test covers: the READMEs (the repository's, `examples/` and each
/// example's) and `docs/*.md`.
fn covered_files() -> Vec<String> {
    let mut files = vec!["README.md".to_owned(), "examples/README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut examples: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path().join("README.md"))
        .filter(|p| p.is_file())
        .map(|p| {
            let dir = p.parent().unwrap().file_name().unwrap();
            format!("examples/{}/README.md", dir.to_string_lossy())
        })
        .collect();
    examples.sort();
    files.extend(examples);
    files
}

fn parse(file: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    blocks::parse(file, &text)
        .unwrap_or_else(|problems| panic!("doc-test markers:\n{}", problems.join("\n")))
}

/// The tools the docs' commands use; `None` when all are there, else what to install.
fn missing_tools() -> Option<String> {
    let mut missing: Vec<&str> = ["curl", "jq", "mosquitto_pub", "mosquitto_sub", "python3"]
        .into_iter()
        .filter(|t| run::which(t).is_none())
        .collect();
    let paho = std::process::Command::new("python3")
        .args(["-c", "import paho.mqtt"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !paho {
        missing.push("paho-mqtt (python3 -m pip install 'paho-mqtt==2.1.0')");
    }
    (!missing.is_empty()).then(|| {
        format!(
            "the docs' commands need {}: apt-get install -y curl jq mosquitto-clients \
             python3 and the pip package (scripts/test installs them)",
            missing.join(", ")
        )
    })
}

/// Runs `files` in order in one environment and prints what ran and what was skipped.
fn run_docs(files: &[&str]) {
    if let Some(missing) = missing_tools() {
        if std::env::var("RG_ALLOW_SKIP").is_ok_and(|v| v == "1") {
            eprintln!("NOTE: skipped under RG_ALLOW_SKIP=1: {missing}");
            return;
        }
        panic!("{missing} (or RG_ALLOW_SKIP=1 to skip on purpose, docs/testing.md)");
    }
    let blocks: Vec<Block> = files.iter().flat_map(|f| parse(f)).collect();
    let mut env = run::Env::new(&root(), &blocks);
    for b in &blocks {
        env.block(b);
    }
    if env.summary.is_empty() {
        env.summary.push("(no shell blocks)".into());
    }
    eprintln!(
        "doc test of {}:\n  {}",
        files.join(", "),
        env.summary.join("\n  ")
    );
}

#[test]
fn newcomer_path_readme_http_mqtt_admin_examples() {
    run_docs(&NEWCOMER_PATH);
}

#[test]
fn cluster_two_brokers_on_one_host() {
    run_docs(&["docs/cluster.md"]);
}

#[test]
fn configuration() {
    run_docs(&["docs/configuration.md"]);
}

/// Every other doc, each in an environment of its own.
#[test]
fn the_other_docs() {
    let own = ["docs/cluster.md", "docs/configuration.md"];
    for file in covered_files() {
        if !NEWCOMER_PATH.contains(&file.as_str()) && !own.contains(&file.as_str()) {
            run_docs(&[&file]);
        }
    }
}

/// Every marker is well formed everywhere, and the skipped blocks are listed with their reason.
#[test]
fn markers_parse_and_skips_are_listed() {
    let mut skipped = Vec::new();
    let mut run = 0;
    for file in covered_files() {
        for b in parse(&file) {
            match &b.kind {
                Kind::Skip(reason) => skipped.push(format!("{} ({reason})", b.at())),
                Kind::Run | Kind::Server => run += 1,
                Kind::File(_) | Kind::Inert => {}
            }
        }
    }
    eprintln!(
        "{run} shell blocks run; {} skipped:\n  {}",
        skipped.len(),
        skipped.join("\n  ")
    );
    assert!(run > 0);
}
