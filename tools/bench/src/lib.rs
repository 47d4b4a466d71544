//! rocketgate-bench: `rocketgate bench`, measurements that print throughput and latency
//! percentiles.
//!
//! Owns: the `bench` subcommand tree and its dispatch ([`BenchArgs`], [`run`]). Each benchmark
//! is one subcommand in its own module: `bench store` (`store.rs`: append and read throughput
//! of the store, next to the raw bandwidth of the disk under it), `bench consume`
//! (`consume.rs`: pop + ack throughput and send -> pop latency), `bench delay` (`delay.rs`:
//! scheduling throughput and delivery lateness of timed messages), `bench grpc` (`grpc.rs`:
//! the RocketMQ 5 gRPC protocol end to end), `bench mqtt` (`mqtt.rs`) and `bench http`
//! (`http.rs`), each against an in-process gateway (`in_process.rs`) or a `--target`, and
//! `bench replication` (`replication.rs`: gRPC sends against an unreplicated master, ASYNC and
//! SYNC replication, and the replication lag, with the master and its slaves started as
//! `rocketgate broker` child processes by `replication/nodes.rs`). Later ones add a variant to
//! the command tree in `cli.rs` and a module beside these.
//!
//! # Layout
//!
//! - Every bench runs its whole measurement `--runs` times, each with a fresh setup, and prints
//!   (or serialises with `--json`) the same parts: the header (commit, command line, machine,
//!   build, date, runs, warm-up), its settings, every run in full, the median and min-max of
//!   each figure over the runs, and its goals judged on the medians, `NOT DECIDED` with the
//!   reason where the run cannot decide one. Any error (a lost message, a failed call, a
//!   missing comparison peer) exits non-zero, after the output when there is one.
//! - `bench store`: `store.rs` (flags, run order, directories), `append.rs` (one append case),
//!   `read.rs` (the read pass), `disk.rs` (the raw-disk yardstick and the filesystem),
//!   `goals.rs` (the store's figures, goals and disk ratios), `report.rs` (its result types
//!   and tables).
//! - Shared by all: `header.rs` (the header, and the commit and profile from `build.rs`),
//!   `output.rs` (the runs, and the shape of every output), `summary.rs` (median and min-max),
//!   `goal.rs` (goals and their verdicts), `error.rs` ([`BenchError`], and the `Context` /
//!   `bail!` helpers), `dirs.rs` (run and case directories), `popper.rs` (pop + ack consumer
//!   tasks, the exactly-once check), `latency.rs`, `memory.rs`, `load.rs` (how busy other
//!   processes kept the CPUs), `cpu.rs` (a server's CPU time), `report.rs` (the latency
//!   summaries), `units.rs` (flag parsing, MB).
//!
//! Dependencies inside the crate point one way: the benches → `output` → `goal`, `summary`,
//! `header`; `goals` → `report` → `units`.
//!
//! Invariants: a benchmark only ever writes below the directory it is given (or a fresh one it
//! creates and deletes); it never touches a live broker's data. Human-readable results go to
//! stdout, progress to stderr, so `--json` output can be piped as is.
//!
//! Who calls it: the `rocketgate` binary's `main` only (`rocketgate bench …`). It uses the core
//! through its public API (`Broker`, `Store`) and the gateways through their `serve` functions
//! (`bench replication` starts the binary itself as child processes instead); it must not
//! touch the binary's configuration or node, and must not be depended on by anything.
//!
//! Concurrency: each benchmark builds its own tokio runtime; nothing here is shared.
//!
//! # Example
//!
//! How the binary embeds the command (`rocketgate bench --help` prints the same text):
//!
//! ```
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     Bench(rocketgate_bench::BenchArgs),
//! }
//!
//! let cli = Cli::try_parse_from(["rocketgate", "bench", "store", "--json"]).unwrap();
//! let Command::Bench(args) = cli.command;
//! // `rocketgate_bench::run(args)` would now measure the store in a fresh directory.
//! # let _ = args;
//! ```

mod append;
mod cli;
mod consume;
mod cpu;
mod delay;
mod dirs;
mod disk;
mod error;
mod goal;
mod goals;
mod grpc;
mod header;
mod http;
mod in_process;
mod latency;
mod load;
mod memory;
mod mqtt;
mod output;
mod popper;
mod read;
mod replication;
mod report;
mod store;
mod summary;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod units;

pub use cli::{run, BenchArgs};
pub use error::BenchError;
