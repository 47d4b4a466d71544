//! End-to-end runs of the consuming benchmarks and of `bench mqtt` at toy sizes: each must
//! finish, receive (or store) every message exactly once (`run` fails otherwise), and clean up
//! the directory it created; and `bench mqtt` must refuse to drop its comparison silently.
//!
//! Runs `bench` through its public `BenchArgs` and `run` only; must not leave a directory
//! behind.

use clap::Parser;

use super::BenchArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn run(args: &[&str]) {
    run_in_dir(args, &["--segment-size", "32MiB"]).unwrap();
}

/// Runs `bench <args> --dir <fresh> <extra>`; the directory must be gone afterwards.
fn run_in_dir(args: &[&str], extra: &[&str]) -> crate::error::Result<()> {
    let dir =
        std::env::temp_dir().join(format!("rg-bench-test-{}-{}", std::process::id(), args[0]));
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    let dir_arg = dir.display().to_string();
    argv.extend_from_slice(&["--dir", &dir_arg]);
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(&argv).unwrap();
    let result = super::run(cli.bench);
    assert!(!dir.exists(), "the bench left {} behind", dir.display());
    result
}

#[test]
fn consume_receives_everything_once() {
    run(&[
        "consume",
        "--messages",
        "3000",
        "--consumers",
        "1,3",
        "--rate",
        "2000",
        "--duration",
        "500ms",
        "--runs",
        "2",
        "--json",
    ]);
}

#[test]
fn delay_receives_everything_once() {
    run(&[
        "delay",
        "--messages",
        "2000",
        "--window",
        "1s",
        "--grace",
        "20s",
        "--runs",
        "1",
    ]);
}

#[test]
fn mqtt_stores_every_publish() {
    let args = [
        "mqtt",
        "--no-compare",
        "--runs",
        "1",
        "--clients",
        "2",
        "--duration",
        "300ms",
        "--rate",
        "1000",
        "--json",
    ];
    run_in_dir(&args, &[]).unwrap();
}

#[test]
fn mqtt_without_mosquitto_fails_unless_told() {
    let args = [
        "mqtt",
        "--runs",
        "1",
        "--mosquitto",
        "/nonexistent/mosquitto",
        "--clients",
        "2",
        "--duration",
        "300ms",
        "--rate",
        "1000",
    ];
    let result = run_in_dir(&args, &[]);
    if std::env::var("RG_ALLOW_SKIP").is_ok_and(|v| v == "1") {
        // The opt-out is set in this environment: the bench runs without the comparison.
        result.unwrap();
    } else {
        let e = result.unwrap_err().to_string();
        assert!(e.contains("/nonexistent/mosquitto not found"), "{e}");
        assert!(
            e.contains("--no-compare") && e.contains("RG_ALLOW_SKIP=1"),
            "{e}"
        );
    }
}

#[test]
fn replication_parses_its_flags_and_refuses_a_missing_binary() {
    let parse = |args: &[&str]| {
        let mut argv = vec!["bench", "replication"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
    };
    assert!(parse(&[]).is_ok());
    assert!(parse(&[
        "--slaves",
        "2",
        "--producers",
        "8",
        "--flush-mode",
        "sync",
        "--duration",
        "2s",
        "--sample-every",
        "50ms",
        "--runs",
        "1",
        "--json",
    ])
    .is_ok());
    assert!(parse(&["--clients", "8", "--flush-mode", "ASYNC"]).is_ok());
    assert!(parse(&["--flush-mode", "sometimes"]).is_err());
    assert!(parse(&["--slaves", "-1"]).is_err());
    // Nothing is started (nor any directory created) when the binary is not there.
    let e = super::run(
        parse(&["--bin", "/nonexistent/rocketgate", "--runs", "1"])
            .unwrap()
            .bench,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--bin /nonexistent/rocketgate: no such file"),
        "{e}"
    );
    let e = super::run(parse(&["--slaves", "0"]).unwrap().bench)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--slaves must be 1..=15"), "{e}");
}
