//! The `admin` command line: the flags every command takes ([`AdminArgs`]), the command tree,
//! the dispatch to one module per command group, and [`run`], which prints a command's
//! [`Outcome`] and picks the exit code.
//!
//! Owns the clap definitions and the exit code rules (see the crate doc); must not print
//! anything itself besides the answer and the one error line, and must not reach a server
//! except through the command modules.
//!
//! Concurrency: one current-thread tokio runtime per command, built in [`run`].

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::{self, AdminError};
use crate::output::{self, Doc};
use crate::{access, cluster, dlq, group, message, target, topic};

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
    /// Access key of a user allowed to administer the brokers (when they run with
    /// authentication on).
    #[arg(long = "ak", value_name = "AK", global = true, help_heading = GLOBAL,
        env = "ROCKETGATE_ACCESS_KEY")]
    as_access_key: Option<String>,
    /// Its secret key; prefer the environment variable (a flag shows in the process list).
    #[arg(long = "sk", value_name = "SK", global = true, help_heading = GLOBAL,
        env = "ROCKETGATE_SECRET_KEY", hide_env_values = true)]
    as_secret_key: Option<String>,
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
    /// Users, their policies (docs/security.md); super users only when auth is on.
    #[command(subcommand)]
    User(access::UserCommand),
    /// Bearer tokens of users (REST, WebSocket, MQTT); super users only when auth is on.
    #[command(subcommand)]
    Token(access::TokenCommand),
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
    // (Field names differ from the `access_key` of user commands: global args share one id
    // space with every subcommand's.)
    match (g.as_access_key, g.as_secret_key) {
        (Some(ak), Some(sk)) => target::set_credentials(Some((ak, sk))),
        (None, None) => target::set_credentials(None),
        _ => {
            return AdminError::failed(
                "give both --ak and --sk (or ROCKETGATE_ACCESS_KEY and ROCKETGATE_SECRET_KEY)",
            )
            .into()
        }
    }
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
        AdminCommand::User(c) => access::run_user(c, &ctx).await,
        AdminCommand::Token(c) => access::run_token(c, &ctx).await,
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
