//! rocketgate-bench: `rocketgate bench`, measurements that print throughput and latency
//! percentiles.
//!
//! Owns: the `bench` subcommand tree and its dispatch ([`BenchArgs`], [`run`]). Each benchmark
//! is one subcommand in its own module: `bench store` (`store.rs`: append and read throughput
//! of the store, next to the raw bandwidth of the disk under it), `bench consume`
//! (`consume.rs`: pop + ack throughput and send -> pop latency), `bench delay` (`delay.rs`:
//! scheduling throughput and delivery lateness of timed messages), `bench grpc` (`grpc.rs`:
//! the RocketMQ 5 gRPC protocol end to end), `bench mqtt` (`mqtt.rs`) and `bench http`
//! (`http.rs`), each against an in-process gateway (`in_process.rs`) or a `--target`. Later ones
//! add a variant to the command tree in `cli.rs` and a module beside these.
//!
//! # Layout
//!
//! - `bench store`: `store.rs` (flags, run order, directories), `append.rs` (one append case),
//!   `read.rs` (the read pass), `disk.rs` (the raw-disk yardstick and the machine), `goals.rs`
//!   (the store's goal checks and disk ratios).
//! - Shared by all: `error.rs` ([`BenchError`], and the `Context` / `bail!` helpers),
//!   `dirs.rs` (run and case directories), `popper.rs` (pop + ack consumer tasks, the
//!   exactly-once check), `latency.rs`, `memory.rs`, `load.rs` (how busy other processes kept
//!   the CPUs), `goal.rs` (one goal and whether it is met), `report.rs` (result types, table and
//!   JSON), `units.rs` (flag parsing, MB).
//!
//! Dependencies inside the crate point one way: `goals` → `report` → `goal`, `units`.
//!
//! Invariants: a benchmark only ever writes below the directory it is given (or a fresh one it
//! creates and deletes); it never touches a live broker's data. Human-readable results go to
//! stdout, progress to stderr, so `--json` output can be piped as is.
//!
//! Who calls it: the `rocketgate` binary's `main` only (`rocketgate bench …`). It uses the core
//! through its public API (`Broker`, `Store`) and the gateways through their `serve` functions;
//! it must not touch the binary's configuration or node, and must not be depended on by
//! anything.
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
mod delay;
mod dirs;
mod disk;
mod error;
mod goal;
mod goals;
mod grpc;
mod http;
mod in_process;
mod latency;
mod load;
mod memory;
mod mqtt;
mod popper;
mod read;
mod report;
mod store;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod units;

pub use cli::{run, BenchArgs};
pub use error::BenchError;
