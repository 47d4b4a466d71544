//! `rocketgate admin`: the operator's tool (what RocketMQ's mqadmin is for), a client of the
//! brokers' `BrokerAdmin` service and of the NameServers (`proto/rocketgate/cluster/v1/`).
//!
//! Owns the `admin` command tree, its dispatch and the exit code rules. Layout: [`target`]
//! (which brokers, connecting under the deadline, fan-out and merging), [`topic`], [`group`]
//! (groups and offset resets), [`message`] (queries, send, pull), [`dlq`], [`cluster`] (cluster
//! list and broker info), [`output`] (tables and JSON, shared by all), [`when`] (times on the
//! command line), [`spec`] (permission and message type tokens), [`error`] (the error classes).
//! Every command returns an [`Outcome`]; [`run`] prints it and picks the exit code.
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
//! Who calls it: `main` only. It depends on `rocketgate-proto` and the NameServer client, never
//! on the core or a gateway. Concurrency: one current-thread tokio runtime per command; the
//! calls to several brokers run as tasks on it (see [`target`]).

mod cluster;
mod dlq;
mod error;
mod group;
mod message;
mod output;
mod spec;
mod target;
mod topic;
mod when;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub use error::AdminError;
use output::Doc;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The request failed: not found, invalid argument, refused.
pub const EXIT_FAILED: u8 = 1;
/// A usage error (clap uses 2 for its own).
pub const EXIT_USAGE: u8 = 2;
/// A server was unreachable or timed out.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Flags and subcommands of `rocketgate admin`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Times (WHEN): ms since the epoch (1796292000000), an RFC 3339 time (2026-12-03T10:00:00Z), a \
duration ago (10m, 2h, 1h 30m), or `now`. For --deliver-at a duration means from now.

Exit codes: 0 success; 1 the request failed (not found, invalid argument, refused); 2 usage \
error; 3 a server was unreachable or timed out.")]
pub struct AdminArgs {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: AdminCommand,
}

/// The help heading of the flags every admin command takes.
const GLOBAL: &str = "Global options";

/// Flags every admin command takes.
#[derive(clap::Args, Debug)]
struct Global {
    /// A broker's gRPC address (host:port); repeat, or separate with commas, for several.
    /// Default: $ROCKETGATE_ADMIN_BROKER (same syntax) if set and --cluster is not given, else
    /// 127.0.0.1:8081.
    #[arg(
        long = "broker",
        value_name = "ADDR",
        global = true,
        help_heading = GLOBAL,
        value_delimiter = ',',
        value_parser = target::parse_address
    )]
    brokers: Vec<String>,
    /// NameServer addresses, for `cluster list`, `topic route` and `--cluster`.
    #[arg(
        long = "namesrv",
        value_name = "ADDR[,ADDR...]",
        global = true,
        help_heading = GLOBAL,
        env = "ROCKETGATE_NAMESRV",
        value_delimiter = ',',
        default_value = "127.0.0.1:9876",
        value_parser = target::parse_address
    )]
    nameservers: Vec<String>,
    /// Send broker commands to every master (broker id 0) of this cluster, found through the
    /// NameServers (instead of --broker).
    #[arg(long, value_name = "NAME", global = true,
        help_heading = GLOBAL, conflicts_with = "brokers")]
    cluster: Option<String>,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// Bound on connecting to a server and its answer, in ms.
    #[arg(
        long,
        value_name = "MS",
        global = true,
        help_heading = GLOBAL,
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000)
    )]
    timeout_ms: u64,
}

#[derive(clap::Subcommand, Debug)]
enum AdminCommand {
    /// Topics: create, update, delete, list, status (offsets per queue), route (NameServers).
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Consumer groups: list, status (lag per queue, connected clients).
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Consumer offsets: reset a group's offsets on a topic to a time.
    #[command(subcommand)]
    Offset(group::OffsetCommand),
    /// Messages: query by id, key or store time; send one; pull from a queue.
    #[command(subcommand)]
    Message(message::MessageCommand),
    /// Dead letters of a consumer group (`%DLQ%<group>`): list, resend.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The cluster as the NameServers see it.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The target brokers themselves.
    #[command(subcommand)]
    Broker(cluster::BrokerCommand),
}

/// What a command produced: an answer to print (possibly partial) and what went wrong.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Printed on stdout when present.
    pub doc: Option<Doc>,
    /// One stderr line summarizes them; they pick the exit code.
    pub errors: Vec<AdminError>,
    /// How many brokers were asked (for the summary of several errors).
    pub targets: usize,
}

impl Outcome {
    /// A complete answer.
    pub fn done(doc: Doc) -> Self {
        Self {
            doc: Some(doc),
            errors: Vec::new(),
            targets: 1,
        }
    }

    /// An answer (absent when nothing succeeded) and the errors of some of `targets` brokers.
    pub fn partial(doc: Option<Doc>, errors: Vec<AdminError>, targets: usize) -> Self {
        Self {
            doc,
            errors,
            targets,
        }
    }
}

impl From<AdminError> for Outcome {
    fn from(e: AdminError) -> Self {
        Self {
            doc: None,
            errors: vec![e],
            targets: 1,
        }
    }
}

/// Runs one admin command; prints the answer and any error itself.
pub fn run(args: AdminArgs) -> ExitCode {
    let json = args.global.json;
    let outcome = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(dispatch(args)),
        Err(e) => AdminError::failed(format!("cannot start the runtime: {e}")).into(),
    };
    if let Some(doc) = &outcome.doc {
        output::emit(doc, json);
    }
    if let Some(line) = error::summary(&outcome.errors, outcome.targets) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "rocketgate admin: error: {line}");
    }
    ExitCode::from(error::exit_code(&outcome.errors))
}

async fn dispatch(args: AdminArgs) -> Outcome {
    let g = args.global;
    let ctx = target::Ctx {
        brokers: g.brokers,
        nameservers: g.nameservers,
        cluster: g.cluster,
        timeout: Duration::from_millis(g.timeout_ms),
    };
    let result = match args.command {
        AdminCommand::Topic(c) => topic::run(c, &ctx).await,
        AdminCommand::Group(c) => group::run(c, &ctx).await,
        AdminCommand::Offset(c) => group::run_offset(c, &ctx).await,
        AdminCommand::Message(c) => message::run(c, &ctx).await,
        AdminCommand::Dlq(c) => dlq::run(c, &ctx).await,
        AdminCommand::Cluster(c) => cluster::run(c, &ctx).await,
        AdminCommand::Broker(c) => cluster::run_broker(c, &ctx).await,
    };
    result.unwrap_or_else(Outcome::from)
}

/// The outcome of a merged query: `render` turns what the brokers answered into the answer.
pub(crate) fn merged<T>(
    merged: target::Merged<T>,
    targets: usize,
    render: impl FnOnce(Vec<(String, T)>) -> Doc,
) -> Outcome {
    let doc = (!merged.found.is_empty()).then(|| render(merged.found));
    Outcome::partial(doc, merged.errors, targets)
}
