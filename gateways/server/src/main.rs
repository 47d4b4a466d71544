//! `rocketgate`: the one binary. Parses the command line, loads the configuration, and runs the
//! chosen subcommand: `standalone` (NameServer, broker and every enabled gateway in one
//! process), `broker`, `nameserver`, `admin` (the operator's client), `bench` (measurements),
//! `generate-config` (prints the default configuration).
//!
//! This crate is the only composition root: it opens the core, starts the gateways and the
//! NameServer, and registers the broker (see `node`). It keeps composition only (`config`,
//! `node`, `metrics`, this file): `admin` and `bench` are the `rocketgate-admin` and
//! `rocketgate-bench` crates, dispatched to as they are. Errors surface as one clear line and a
//! non-zero exit code.

mod config;
mod exposure;
mod metrics;
mod node;
mod replication;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rocketgate",
    version,
    about = "A RocketMQ-compatible broker speaking gRPC, REST, WebSocket and MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything in one process: a NameServer, the broker and every enabled gateway, with
    /// data under ./data.
    Standalone(config::RunArgs),
    /// Run a broker: the store and its enabled gateways, registered with the NameServers given
    /// by `--namesrv` / `broker.namesrv`.
    Broker(config::RunArgs),
    /// Run a NameServer (broker registry and topic routes) on `nameserver.listen`.
    Nameserver(NameServerArgs),
    /// Administer brokers and NameServers: topics, groups, offsets, messages, dead letters.
    Admin(rocketgate_admin::AdminArgs),
    /// Measure throughput and latency.
    Bench(rocketgate_bench::BenchArgs),
    /// Print the default configuration file.
    GenerateConfig,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => {
            init_tracing(args.log.as_deref().unwrap_or("info"));
            node::run(node::Mode::Standalone, &args)
        }
        Command::Broker(args) => {
            init_tracing(args.log.as_deref().unwrap_or("info"));
            node::run(node::Mode::Broker, &args)
        }
        Command::Nameserver(args) => {
            init_tracing(args.run.log.as_deref().unwrap_or("info"));
            run_nameserver(args)
        }
        Command::Admin(args) => {
            init_tracing("warn");
            return rocketgate_admin::run(args);
        }
        Command::Bench(args) => {
            init_tracing("warn");
            rocketgate_bench::run(args).map_err(anyhow::Error::from)
        }
        Command::GenerateConfig => {
            print!("{}", config::DEFAULT_CONFIG);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocketgate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Flags of `rocketgate nameserver`.
#[derive(clap::Args, Debug)]
struct NameServerArgs {
    #[command(flatten)]
    run: config::RunArgs,
}

fn run_nameserver(args: NameServerArgs) -> anyhow::Result<()> {
    let cfg = config::load(&args.run)?;
    exposure::check(
        &[exposure::nameserver_listener(&cfg)],
        args.run.allow_unauthenticated_remote,
    )?;
    let addr = cfg.nameserver.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let bound = rocketgate_gateway_kit::BoundListener::bind("nameserver", addr).await?;
        let local = bound.endpoint().address;
        let listener = bound.into_inner();
        tracing::info!(endpoint = "nameserver", address = %local, "listening");
        tracing::info!("rocketgate nameserver ready");
        if let Some(path) = &args.run.ready_file {
            let body = serde_json::json!({
                "pid": std::process::id(),
                "mode": "nameserver",
                "nameserver": local.to_string(),
                "endpoints": { "nameserver": local.to_string() },
            });
            write_json_atomically(path, &body)?;
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (tls, _reloads) = match node::tls::Acceptors::load(&cfg.tls)? {
            None => (None, None),
            Some(a) => {
                let (trigger, stopped) = rocketgate_gateway_kit::shutdown::channel();
                let nameserver = a.nameserver.clone();
                tokio::spawn(a.watch(cfg.tls.reload_interval(), stopped));
                let tls = Arc::new(rocketgate_gateway_grpc::auth::KitTls(nameserver))
                    as Arc<dyn rocketgate_nameserver::listener::ServerTls>;
                (Some(tls), Some(trigger))
            }
        };
        let serve = rocketgate_nameserver::serve_tls(
            listener,
            cfg.nameserver.config.clone(),
            tls,
            async {
                let _ = stop_rx.await;
            },
        );
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => r?,
            signal = wait_for_shutdown() => {
                if let Err(e) = signal {
                    tracing::error!(error = %e, "signal handling failed; shutting down");
                }
                let _ = stop_tx.send(());
                // Clients keep HTTP/2 connections open: give in-flight calls a moment, then go.
                match tokio::time::timeout(node::SHUTDOWN_GRACE, &mut serve).await {
                    Ok(r) => r?,
                    Err(_) => tracing::warn!("connections still open after the shutdown grace; exiting"),
                }
            }
        }
        tracing::info!("nameserver stopped");
        Ok(())
    })
}

pub(crate) fn write_json_atomically(
    path: &std::path::Path,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub(crate) async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
