//! End-to-end runs of the consuming benchmarks at toy sizes: each must finish and receive every
//! message exactly once (`run` fails otherwise), and clean up the directory it created.
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
    let dir =
        std::env::temp_dir().join(format!("rg-bench-test-{}-{}", std::process::id(), args[0]));
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    let dir_arg = dir.display().to_string();
    argv.extend_from_slice(&["--dir", &dir_arg, "--segment-size", "32MiB"]);
    let cli = Cli::try_parse_from(&argv).unwrap();
    super::run(cli.bench).unwrap();
    assert!(!dir.exists(), "the bench left {} behind", dir.display());
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
    ]);
}
