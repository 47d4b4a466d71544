//! rocketgate-admin: `rocketgate admin`, the operator's tool (what RocketMQ's mqadmin is for), a
//! client of the brokers' `BrokerAdmin` service and of the NameServers
//! (`proto/rocketgate/cluster/v1/`).
//!
//! Owns the `admin` command tree, its dispatch and the exit code rules. It must not touch the
//! core, a gateway or the binary's configuration: it only talks to servers over the wire.
//!
//! # Layout
//!
//! - `cli.rs`: [`AdminArgs`] (the flags every command takes and the command tree), [`run`]
//!   (prints a command's outcome and picks the exit code).
//! - `target.rs`: which brokers, connecting under the deadline, fan-out and merging.
//! - `topic.rs`, `group.rs` (groups and offset resets), `message.rs` (queries, send, pull),
//!   `dlq.rs`, `cluster.rs` (cluster list and broker info), `controller.rs` (cluster status:
//!   the failover controller): one module per command group.
//! - `output.rs`: tables and JSON, shared by all; `when.rs`: times on the command line;
//!   `spec.rs`: permission and message type tokens; `error.rs`: [`AdminError`], the error
//!   classes.
//!
//! Every command returns an `Outcome` (an answer, possibly partial, and the errors); [`run`]
//! prints it and picks the exit code.
//!
//! Exit codes ([`EXIT_OK`] …): 0 success; 1 the request failed (not found, invalid argument,
//! refused by a server); 2 the command line is wrong (clap's own errors, and a one-broker command
//! given several targets); 3 a server was unreachable or did not answer within `--timeout-ms`.
//! With several brokers, a failure (1) wins over an unreachable broker (3), since retrying cannot
//! fix it.
//!
//! Invariants: stdout carries only the answer (one JSON document with `--json`), stderr at most
//! one line, `rocketgate admin: error: …`; nothing here panics on input or I/O. With several
//! target brokers, whatever some of them answered is printed even when others failed, and the
//! exit code reports the failure.
//!
//! Who calls it: the `rocketgate` binary's `main` only (`rocketgate admin …`). It depends on
//! `rocketgate-proto` and the NameServer client, never on the core or a gateway, and nothing
//! depends on it. Concurrency: one current-thread tokio runtime per command; the calls to
//! several brokers run as tasks on it (see `target.rs`).
//!
//! # Example
//!
//! How the binary embeds the command (`rocketgate admin --help` prints the same text):
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
//!     Admin(rocketgate_admin::AdminArgs),
//! }
//!
//! let cli = Cli::try_parse_from(["rocketgate", "admin", "--json", "topic", "list"]).unwrap();
//! let Command::Admin(args) = cli.command;
//! // `rocketgate_admin::run(args)` would now ask the broker on 127.0.0.1:8081.
//! # let _ = args;
//! ```

mod access;
mod cli;
mod cluster;
mod controller;
mod dlq;
mod error;
mod group;
mod message;
mod output;
mod spec;
mod switch;
mod target;
mod topic;
mod when;

pub use cli::{run, AdminArgs, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
pub use error::AdminError;

// The command modules reach these through the crate root (`super::Outcome`).
pub(crate) use cli::{merged, Outcome};
