//! `rocketgate`: the one binary. Parses the command line, loads the configuration, and runs the
//! chosen subcommand: `standalone` (the broker with every enabled gateway in one process),
//! `bench` (measurements), `generate-config` (prints the default configuration).
//!
//! This crate is the only composition root: it opens the core and, as they land, starts the
//! gateways and the NameServer. Errors surface as one clear line and a non-zero exit code.

mod bench;
mod config;

use std::path::PathBuf;
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
        let broker = rocketgate_core::Broker::open(cfg.core.clone()).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the store in {}: {e}",
                cfg.core.store.data_dir.display()
            )
        })?;
        let report = broker.store().recovery_report();
        tracing::info!(
            data_dir = %cfg.core.store.data_dir.display(),
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

fn write_ready_file(path: &PathBuf, cfg: &config::ServerConfig) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "pid": std::process::id(),
        "data_dir": cfg.core.store.data_dir,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
