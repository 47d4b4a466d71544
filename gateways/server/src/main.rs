//! `rocketgate`: the one binary. Parses the command line, loads the configuration, and runs the
//! chosen subcommand: `standalone` (the broker with every enabled gateway in one process),
//! `bench` (measurements), `generate-config` (prints the default configuration).
//!
//! This crate is the only composition root: it opens the core and, as they land, starts the
//! gateways and the NameServer. Errors surface as one clear line and a non-zero exit code.

mod bench;
mod config;

use std::process::ExitCode;

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
    /// Run a standalone broker (store and every enabled gateway) with data under ./data.
    Standalone(config::RunArgs),
    /// Run a NameServer (broker registry and topic routes) on `listen.nameserver`.
    Nameserver(NameServerArgs),
    /// Measure throughput and latency.
    Bench(bench::BenchArgs),
    /// Print the default configuration file.
    GenerateConfig,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => {
            init_tracing(args.log.as_deref().unwrap_or("info"));
            run_standalone(args)
        }
        Command::Nameserver(args) => {
            init_tracing(args.run.log.as_deref().unwrap_or("info"));
            run_nameserver(args)
        }
        Command::Bench(args) => {
            init_tracing("warn");
            bench::run(args)
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

fn run_standalone(args: config::RunArgs) -> anyhow::Result<()> {
    let cfg = config::load(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let broker = rocketgate_core::Broker::open(cfg.core()).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the store in {}: {e}",
                cfg.store.data_dir.display()
            )
        })?;
        let report = broker.store().recovery_report();
        tracing::info!(
            data_dir = %cfg.store.data_dir.display(),
            after_crash = report.after_crash,
            log_end = report.log_end,
            "rocketgate standalone ready"
        );
        if let Some(path) = &args.ready_file {
            write_ready_file(path, &cfg)?;
        }
        wait_for_shutdown().await?;
        tracing::info!("shutting down");
        broker.shutdown()?;
        Ok(())
    })
}

/// How long a server waits for in-flight calls after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Flags of `rocketgate nameserver`.
#[derive(clap::Args, Debug)]
struct NameServerArgs {
    #[command(flatten)]
    run: config::RunArgs,
    /// Listen address (overrides `listen.nameserver`; port 0 picks a free port).
    #[arg(long, env = "ROCKETGATE_NAMESERVER_LISTEN")]
    listen: Option<std::net::SocketAddr>,
}

fn run_nameserver(args: NameServerArgs) -> anyhow::Result<()> {
    let cfg = config::load(&args.run)?;
    let addr = args.listen.unwrap_or(cfg.listen.nameserver);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr()?;
        tracing::info!(listening = %local, "rocketgate nameserver ready");
        if let Some(path) = &args.run.ready_file {
            let body = serde_json::json!({
                "pid": std::process::id(),
                "nameserver": local.to_string(),
            });
            write_json_atomically(path, &body)?;
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = rocketgate_nameserver::serve(listener, cfg.nameserver.clone(), async {
            let _ = stop_rx.await;
        });
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => r?,
            signal = wait_for_shutdown() => {
                if let Err(e) = signal {
                    tracing::error!(error = %e, "signal handling failed; shutting down");
                }
                let _ = stop_tx.send(());
                // Clients keep HTTP/2 connections open: give in-flight calls a moment, then go.
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                    Ok(r) => r?,
                    Err(_) => tracing::warn!("connections still open after the shutdown grace; exiting"),
                }
            }
        }
        tracing::info!("nameserver stopped");
        Ok(())
    })
}

fn write_json_atomically(path: &std::path::Path, body: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn write_ready_file(path: &std::path::Path, cfg: &config::ServerConfig) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "pid": std::process::id(),
        "data_dir": cfg.store.data_dir,
    });
    write_json_atomically(path, &body)
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
