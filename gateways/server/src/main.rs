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

/// Logs to stderr, filtered by `flag` (`--log`), else `RUST_LOG`, else `default`.
fn init_tracing(flag: Option<&str>, default: &str) {
    let filter = match flag {
        Some(f) => tracing_subscriber::EnvFilter::new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
    };
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
            init_tracing(args.log.as_deref(), "info");
            node::run(node::Mode::Standalone, &args)
        }
        Command::Broker(args) => {
            init_tracing(args.log.as_deref(), "info");
            node::run(node::Mode::Broker, &args)
        }
        Command::Nameserver(args) => {
            init_tracing(args.log.as_deref(), "info");
            run_nameserver(args)
        }
        Command::Admin(args) => {
            init_tracing(None, "warn");
            return rocketgate_admin::run(args);
        }
        Command::Bench(args) => {
            init_tracing(None, "warn");
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

/// Flags of `rocketgate nameserver`: only those a NameServer uses (no store, gateway or
/// registration flags); the rest of its configuration is the file's `[nameserver]` and `[tls]`.
#[derive(clap::Args, Debug)]
struct NameServerArgs {
    /// Configuration file (TOML). Without one, built-in defaults are used.
    #[arg(long, short = 'c', env = "ROCKETGATE_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Listen address (overrides `nameserver.listen`).
    #[arg(
        long,
        visible_alias = "listen",
        env = "ROCKETGATE_NAMESERVER_ADDR",
        value_name = "ADDR"
    )]
    nameserver_addr: Option<String>,
    /// Serve over TLS with this certificate chain, PEM (overrides `tls.cert` and turns
    /// `tls.enabled` on; needs `--tls-key`).
    #[arg(long, env = "ROCKETGATE_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of `--tls-cert`, PEM (overrides `tls.key`).
    #[arg(long, env = "ROCKETGATE_TLS_KEY", value_name = "PEM")]
    tls_key: Option<std::path::PathBuf>,
    /// Start even if the listener is off loopback without a cluster secret (logged as a
    /// warning; see docs/security.md). The cluster secret comes from
    /// `ROCKETGATE_CLUSTER_SECRET` or `nameserver.cluster_secret`, never a flag.
    #[arg(long, env = "ROCKETGATE_ALLOW_UNAUTHENTICATED_REMOTE",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue)]
    allow_unauthenticated_remote: bool,
    /// Log filter, overriding the `RUST_LOG` environment variable (same syntax, e.g.
    /// `info,rocketgate_nameserver=debug`); default `info`.
    #[arg(long)]
    log: Option<String>,
    /// Write a JSON file with the pid and address once the NameServer is ready.
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
}

impl NameServerArgs {
    /// The shared loader's view of these flags (everything else unset).
    fn run_args(&self) -> config::RunArgs {
        config::RunArgs {
            config: self.config.clone(),
            nameserver_addr: self.nameserver_addr.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            allow_unauthenticated_remote: self.allow_unauthenticated_remote,
            log: self.log.clone(),
            ready_file: self.ready_file.clone(),
            cluster_secret: std::env::var("ROCKETGATE_CLUSTER_SECRET").ok(),
            ..config::RunArgs::default()
        }
    }
}

fn run_nameserver(args: NameServerArgs) -> anyhow::Result<()> {
    let run = args.run_args();
    let cfg = config::load(&run)?;
    let listeners: Vec<_> = std::iter::once(exposure::nameserver_listener(&cfg))
        .chain(exposure::controller_listener(&cfg))
        .collect();
    exposure::check(&listeners, run.allow_unauthenticated_remote)?;
    let addr = cfg.nameserver.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let bound = rocketgate_gateway_kit::BoundListener::bind("nameserver", addr).await?;
        let local = bound.endpoint().address;
        let listener = bound.into_inner();
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
        let controller = match cfg.controller.enabled {
            true => Some(start_controller(&cfg, tls.clone()).await?),
            false => None,
        };
        let controller_addr = controller.as_ref().map(|c| c.local_addr().to_string());
        let (accepting, accepted) = tokio::sync::oneshot::channel::<()>();
        let serve = rocketgate_nameserver::serve_ready(
            listener,
            cfg.nameserver.config.clone(),
            tls,
            async {
                let _ = stop_rx.await;
            },
            move || {
                let _ = accepting.send(());
            },
        );
        tokio::pin!(serve);
        // `listening` and `ready` once the server accepts (its configuration checked).
        tokio::select! {
            r = &mut serve => {
                r?;
                anyhow::bail!("the NameServer stopped before it served");
            }
            Ok(()) = accepted => {}
        }
        tracing::info!(endpoint = %"nameserver", address = %local, "listening");
        tracing::info!("rocketgate nameserver ready");
        if let Some(path) = &run.ready_file {
            let mut body = serde_json::json!({
                "pid": std::process::id(),
                "mode": "nameserver",
                "nameserver": local.to_string(),
                "endpoints": { "nameserver": local.to_string() },
            });
            if let Some(addr) = &controller_addr {
                body["endpoints"]["controller"] = serde_json::json!(addr);
            }
            write_json_atomically(path, &body)?;
        }
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
        if let Some(c) = controller {
            c.stop().await;
        }
        tracing::info!("nameserver stopped");
        Ok(())
    })
}

/// Starts this process's controller member (`[controller]`): its listener on
/// `controller.listen` (or its address in `controller.members`), with the NameServer's TLS and
/// connection limits, signed with the cluster secret.
async fn start_controller(
    cfg: &config::ServerConfig,
    tls: Option<Arc<dyn rocketgate_nameserver::listener::ServerTls>>,
) -> anyhow::Result<rocketgate_nameserver::controller::Controller> {
    let addr = config::controller_listen(&cfg.controller)?;
    let bound = rocketgate_gateway_kit::BoundListener::bind("controller", addr).await?;
    let local = bound.endpoint().address;
    let options = rocketgate_nameserver::controller::ControllerOptions {
        key: cfg.controller_key.clone(),
        server_tls: tls,
        client_tls: node::tls::nameserver_client(&cfg.tls)?,
        connections: cfg.nameserver.config.connections.clone(),
    };
    let controller = rocketgate_nameserver::controller::Controller::start(
        &cfg.controller,
        bound.into_inner(),
        options,
    )
    .await?;
    tracing::info!(endpoint = %"controller", address = %local, "listening");
    Ok(controller)
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
