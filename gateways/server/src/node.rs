//! Running a node: `rocketgate broker` (the store, its gateways and its NameServer registration)
//! and `rocketgate standalone` (the same with an embedded NameServer it also registers with).
//!
//! Owns the start order and the stop order, nothing else:
//! - start ([`serve`]): build the enabled gateways from the configuration
//!   (`Vec<Box<dyn Gateway>>`: gRPC always, then HTTP and MQTT when enabled) and bind every one
//!   of them ([`Bound::bind`]: a port in use fails here, before the store opens), open the
//!   store, serve each gateway and wait until every one accepts connections (its `Ready`: the
//!   MQTT gateway loads its retained messages and sessions first), register with the
//!   NameServers (`node/registration.rs`), then log one `listening` line per endpoint with the
//!   bound address, the `ready` line, and write the ready file ([`announce`]);
//! - stop (SIGINT / SIGTERM): unregister (clients stop routing here), stop accepting, let calls
//!   in flight finish (bounded by [`SHUTDOWN_GRACE`]), then flush, checkpoint and write the
//!   clean marker through `Broker::shutdown`, all well within 10 s.
//!
//! The embedded NameServer (standalone) is deliberately not a `Gateway`: it serves no `Broker`,
//! its address is registered with but not advertised in the routes, and `rocketgate nameserver`
//! runs it without any broker. It is bound first with the same `BoundListener` (so its errors
//! read like every other endpoint's) and stopped by the same `Shutdown` as the gateways.
//!
//! What a gateway needs from the node goes to its constructor: the gRPC gateway's `NodeInfo`
//! names every bound endpoint, so the node sends it over a oneshot channel once all are bound;
//! the HTTP gateway gets the Prometheus handle (`metrics.rs`) and, over another oneshot, its
//! `Cluster` (group name and the route cache of `NodeInfo`, for its topic route).
//!
//! [`serve`] is one straight sequence of these steps (about 100 lines), kept in one function so
//! that it reads as the start and stop order; each step is a function or a [`Servers`] method.
//!
//! Concurrency: one multi-threaded runtime; every gateway, the NameServer and the metrics
//! upkeep run as tasks of one `JoinSet` ([`Servers`]) stopped by one `Shutdown`; the first to
//! stop unexpectedly stops the node. The registrar is a separate task with its own signal, so
//! that unregistering comes before the gateways stop. The protocols live in the gateway crates;
//! the registration client in `rocketgate-nameserver`.

mod reads;
mod registration;
mod roles;
pub(crate) mod tls;

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rocketgate_core::Broker;
use rocketgate_gateway_grpc::{GrpcGateway, NodeInfo};
use rocketgate_gateway_http::{Cluster, HttpGateway, PrometheusHandle};
use rocketgate_gateway_kit::{
    ready, shutdown, BoundGateway, BoundListener, Endpoint, Gateway, ReadyWait, Shutdown,
    ShutdownTrigger,
};
use rocketgate_gateway_mqtt::MqttGateway;
use rocketgate_nameserver as ns;
use rocketgate_nats::NatsGateway;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::config::{self, ServerConfig};
use crate::metrics;

/// How long a node waits for in-flight calls after SIGTERM before it stops serving anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Which node to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Broker and gateways only.
    Broker,
    /// Broker, gateways and an embedded NameServer.
    Standalone,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Standalone => "standalone",
        }
    }
}

/// Runs a node until SIGINT / SIGTERM.
///
/// # Errors
/// Invalid configuration, a port in use, a store that cannot be opened, a NameServer refusing
/// the registration, or a server failing.
pub fn run(mode: Mode, args: &config::RunArgs) -> anyhow::Result<()> {
    let cfg = config::load(args)?;
    crate::exposure::check(
        &crate::exposure::node_listeners(&cfg, matches!(mode, Mode::Standalone)),
        args.allow_unauthenticated_remote,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-node")
        .build()?;
    if cfg.replication.enabled {
        return runtime.block_on(roles::run(mode, cfg, args.ready_file.clone()));
    }
    runtime
        .block_on(serve(mode, cfg, args.ready_file.clone(), None))
        .map(|_| ())
}

/// The enabled gateways, in start order (which is also the order of the `listening` lines).
fn gateways(
    cfg: &ServerConfig,
    node: oneshot::Receiver<NodeInfo>,
    cluster: oneshot::Receiver<Cluster>,
    metrics: Option<PrometheusHandle>,
    tls: Option<&tls::Acceptors>,
) -> Vec<Box<dyn Gateway>> {
    let grpc = GrpcGateway::new(cfg.grpc.listen, cfg.grpc.messaging.clone(), node)
        .with_connection_limits(cfg.grpc.connections.clone())
        .with_tls(tls.map(|t| t.grpc.clone()));
    let mut gateways: Vec<Box<dyn Gateway>> = vec![Box::new(grpc)];
    if cfg.http.enabled {
        let http = HttpGateway::new(cfg.http.listen, cfg.http.config.clone(), metrics)
            .with_tls(tls.map(|t| t.http.clone()))
            .with_cluster(cluster);
        gateways.push(Box::new(http));
    }
    if cfg.mqtt.enabled {
        let mqtt = MqttGateway::new(cfg.mqtt.listen, cfg.mqtt.ws_listen, cfg.mqtt.config.clone())
            .with_tls(tls.map(|t| t.mqtt.clone()), tls.map(|t| t.mqtt_ws.clone()));
        gateways.push(Box::new(mqtt));
    }
    if cfg.nats.enabled {
        let nats = NatsGateway::new(cfg.nats.listen, cfg.nats.config.clone())
            .with_tls(tls.map(|t| t.nats.clone()));
        gateways.push(Box::new(nats));
    }
    gateways
}

/// Everything a node binds before it opens the store.
struct Bound {
    /// The embedded NameServer's listener (standalone).
    nameserver: Option<BoundListener>,
    /// Every gateway, named, in start order.
    gateways: Vec<(&'static str, Box<dyn BoundGateway>)>,
    /// The gateways' endpoints as the routes advertise them.
    advertised: Vec<ns::Endpoint>,
    /// Hands the gRPC gateway its `NodeInfo`.
    node_info: oneshot::Sender<NodeInfo>,
    /// Hands the HTTP gateway the node's group and NameServers (its topic route).
    cluster: oneshot::Sender<Cluster>,
    /// The recorder `/metrics` renders (with the HTTP gateway only).
    metrics: Option<PrometheusHandle>,
}

impl Bound {
    /// Binds the NameServer (standalone) and every enabled gateway, in that order, and checks
    /// that their endpoints can be advertised.
    async fn bind(
        mode: Mode,
        cfg: &ServerConfig,
        tls: Option<&tls::Acceptors>,
    ) -> anyhow::Result<Self> {
        let nameserver = match mode {
            Mode::Standalone => {
                Some(BoundListener::bind("nameserver", cfg.nameserver.listen).await?)
            }
            Mode::Broker => None,
        };
        let metrics = match cfg.http.enabled {
            true => metrics::install(),
            false => None,
        };
        let (node_info, node) = oneshot::channel();
        let (cluster, cluster_rx) = oneshot::channel();
        let mut gateways = Vec::new();
        for gateway in self::gateways(cfg, node, cluster_rx, metrics.clone(), tls) {
            let name = gateway.name();
            gateways.push((name, gateway.bind().await?));
        }
        let endpoints: Vec<Endpoint> = gateways.iter().flat_map(|(_, g)| g.endpoints()).collect();
        let advertised = registration::advertised(&cfg.broker, &endpoints)?;
        Ok(Self {
            nameserver,
            gateways,
            advertised,
            node_info,
            cluster,
            metrics,
        })
    }
}

/// The node's serving tasks (NameServer, gateways, metrics upkeep), their one stop signal, and
/// the endpoints they listen on, in `listening`-line order.
struct Servers {
    tasks: JoinSet<anyhow::Result<&'static str>>,
    stop: ShutdownTrigger,
    shutdown: Shutdown,
    listening: Vec<Endpoint>,
}

impl Servers {
    fn new() -> Self {
        let (stop, shutdown) = shutdown::channel();
        Self {
            tasks: JoinSet::new(),
            stop,
            shutdown,
            listening: Vec::new(),
        }
    }

    /// Runs `task` as the server `name` until the stop signal.
    fn spawn<E>(
        &mut self,
        name: &'static str,
        task: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) where
        anyhow::Error: From<E>,
    {
        self.tasks.spawn(async move {
            task.await?;
            Ok(name)
        });
    }

    /// Reloads the TLS material every `tls.reload_interval` until the stop signal.
    fn spawn_tls_reload(&mut self, acceptors: tls::Acceptors, cfg: &ServerConfig) {
        let stopped = self.shutdown.clone();
        let every = cfg.tls.reload_interval();
        self.spawn("tls", async move {
            acceptors.watch(every, stopped).await;
            anyhow::Ok(())
        });
    }

    /// Runs the Prometheus recorder's upkeep until the stop signal.
    fn spawn_metrics_upkeep(&mut self, handle: PrometheusHandle) {
        let stopped = self.shutdown.clone();
        self.spawn("metrics", async move {
            metrics::upkeep(handle, stopped).await;
            anyhow::Ok(())
        });
    }

    /// Waits until every gateway of `waits` accepts connections; the error of a server that
    /// stopped first (a gateway that could not load its state, say).
    async fn accepting(&mut self, waits: Vec<ReadyWait>) -> anyhow::Result<()> {
        for wait in waits {
            let accepting = tokio::select! {
                accepting = wait.wait() => accepting,
                Some(joined) = self.tasks.join_next() => return Err(stopped(joined)),
            };
            if !accepting {
                // Its `Ready` was dropped: it stopped, and its task says why.
                return Err(match self.tasks.join_next().await {
                    Some(joined) => stopped(joined),
                    None => anyhow::anyhow!("a server stopped before it accepted connections"),
                });
            }
        }
        Ok(())
    }

    /// Stops every server at once, without waiting for calls in flight.
    async fn abort(&mut self) {
        self.stop.trigger();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops accepting and lets calls in flight finish, for at most [`SHUTDOWN_GRACE`].
    async fn drain(&mut self) {
        self.stop.trigger();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(joined) = self.tasks.join_next().await {
                match joined {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "server stopped with an error"),
                    Err(e) => tracing::warn!(error = %e, "server task failed"),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still open after the shutdown grace; closing them");
            self.tasks.abort_all();
        }
    }
}

/// Why a server task ended before the node stopped it.
fn stopped(joined: Result<anyhow::Result<&'static str>, tokio::task::JoinError>) -> anyhow::Error {
    match joined {
        Ok(Ok(name)) => anyhow::anyhow!("the {name} server stopped unexpectedly"),
        Ok(Err(e)) => e,
        Err(e) => anyhow::anyhow!("a server task failed: {e}"),
    }
}

async fn serve(
    mode: Mode,
    cfg: ServerConfig,
    ready_file: Option<std::path::PathBuf>,
    replication: Option<roles::Replicating>,
) -> anyhow::Result<roles::Next> {
    let started_at_ms = now_ms();
    // TLS material first: a bad file is reported before anything is bound.
    if cfg.tls.enabled && cfg.tls.ca.as_os_str().is_empty() {
        anyhow::bail!(
            "invalid configuration `tls.ca`: with TLS on, the broker calls its NameServers over \
             TLS and must know their CA (usually the CA of tls.cert)"
        );
    }
    let acceptors = tls::Acceptors::load(&cfg.tls)?;
    let client_tls = tls::nameserver_client(&cfg.tls)?;
    // Bind first: a port in use is reported before anything is opened.
    let Bound {
        nameserver,
        gateways,
        advertised,
        node_info,
        cluster,
        metrics,
    } = Bound::bind(mode, &cfg, acceptors.as_ref()).await?;

    let (broker, recovered) = open(&cfg).await?;
    if let Some(listener) = &replication {
        let epoch = broker
            .replication_source()
            .begin_term()
            .map_err(|e| anyhow::anyhow!("cannot open a new master term: {e}"))?;
        let policy = cfg.replication.policy(cfg.store.flush_mode);
        tracing::info!(
            epoch,
            address = %listener.endpoint.address,
            mode = ?policy.mode,
            min_in_sync_replicas = policy.min_in_sync_replicas,
            "replication master term"
        );
        // Before any gateway serves: no write is acknowledged under another policy.
        broker.replication_source().set_policy(policy);
    }
    // The replication listener serves the gRPC gateway's certificate.
    let replication_tls = acceptors.as_ref().map(|t| {
        Arc::new(rocketgate_gateway_grpc::auth::KitTls(t.grpc.clone()))
            as Arc<dyn ns::listener::ServerTls>
    });

    let mut servers = Servers::new();
    let mut namesrv = cfg.broker.namesrv.clone();
    if let Some(listener) = nameserver {
        let endpoint = listener.endpoint();
        servers.listening.push(endpoint);
        namesrv.push(endpoint.address.to_string());
        let stopped = servers.shutdown.clone().wait();
        let config = cfg.nameserver.config.clone();
        let tls = acceptors.as_ref().map(|t| {
            Arc::new(rocketgate_gateway_grpc::auth::KitTls(t.nameserver.clone()))
                as Arc<dyn ns::listener::ServerTls>
        });
        servers.spawn(
            "nameserver",
            ns::serve_tls(listener.into_inner(), config, tls, stopped),
        );
    }
    if let Some(acceptors) = acceptors {
        servers.spawn_tls_reload(acceptors, &cfg);
    }
    // The replication server stops on its own signal: a switchover keeps it streaming to the
    // target after the gateways have stopped.
    let mut master = None;
    if let Some(listener) = replication {
        servers.listening.push(listener.endpoint);
        let service = crate::replication::master::Master::new(
            broker.replication_source(),
            cfg.broker.cluster.clone(),
            cfg.broker.name.clone(),
            cfg.replication.key.clone(),
            cfg.replication.max_frame_bytes,
        );
        master = Some(roles::MasterServer::start(
            service,
            listener.listener,
            &cfg,
            replication_tls.clone(),
        ));
    }
    let registered = Arc::new(AtomicUsize::new(0));
    let node = registration::node_info(
        &cfg.broker,
        &advertised,
        &namesrv,
        registered.clone(),
        started_at_ms,
        client_tls.clone(),
    )?;
    // The gRPC and HTTP gateways wait for these before they serve.
    let _ = cluster.send(Cluster::new(cfg.broker.name.clone(), node.routes.clone()));
    let _ = node_info.send(node);
    if let Some(handle) = metrics {
        servers.spawn_metrics_upkeep(handle);
    }
    let mut waits = Vec::new();
    for (name, gateway) in gateways {
        servers.listening.extend(gateway.endpoints());
        let (accepting, wait) = ready::channel();
        let serving = gateway.serve(broker.clone(), servers.shutdown.clone(), accepting);
        servers.spawn(name, serving);
        waits.push(wait);
    }
    // Registered, `ready` and the ready file only once every endpoint accepts connections.
    if let Err(e) = servers.accepting(waits).await {
        servers.abort().await;
        if let Some(m) = master {
            m.stop().await;
        }
        close(&broker).await?;
        return Err(e);
    }

    let (unregister, unregistered) = shutdown::channel();
    let started = registration::start(
        &cfg.broker,
        cfg.nameserver.config.cluster_secret.clone(),
        client_tls,
        namesrv,
        advertised,
        Some(broker.clone()),
        registered,
        unregistered,
    )
    .await;
    let registrar = match started {
        Ok(registrar) => registrar,
        Err(e) => {
            // Refused (a configuration error): close what was opened, cleanly.
            servers.abort().await;
            if let Some(m) = master {
                m.stop().await;
            }
            close(&broker).await?;
            return Err(e);
        }
    };

    announce(
        mode,
        &cfg,
        &servers.listening,
        recovered,
        ready_file.as_deref(),
    )?;
    let (failure, switch) =
        roles::until_stopped_or_switch(&mut servers, mode, master.as_mut()).await;
    tracing::info!("shutting down");
    // Leave the routes first, so clients stop sending here, then stop accepting.
    unregister.trigger();
    registration::finish(registrar, SHUTDOWN_GRACE + Duration::from_secs(1)).await;
    servers.drain().await;
    tracing::debug!("gateways stopped");
    let next = match (switch, master) {
        (Some(plan), Some(master)) => roles::hand_over(&broker, master, &plan).await,
        (_, Some(master)) => {
            master.stop().await;
            roles::Next::Stop
        }
        (_, None) => roles::Next::Stop,
    };
    close(&broker).await.context("the final flush failed")?;
    tracing::info!("stopped cleanly");
    match failure {
        Some(e) => Err(e),
        None => Ok(next),
    }
}

/// Opens the store (blocking work, off the runtime's workers) and reads what recovery did.
async fn open(cfg: &ServerConfig) -> anyhow::Result<(Broker, Recovered)> {
    let data_dir = cfg.store.data_dir.clone();
    let broker = tokio::task::spawn_blocking({
        let core = cfg.core();
        move || Broker::open(core)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let report = broker.storage().recovery_report();
    let recovered = Recovered {
        after_crash: report.after_crash,
        log_end: report.log_end,
    };
    Ok((broker, recovered))
}

/// Closes the store: flush, checkpoint, clean marker (`Broker::shutdown`).
async fn close(broker: &Broker) -> anyhow::Result<()> {
    broker.close().await?;
    Ok(())
}

/// What the store's recovery reported at open, for the `ready` line and the ready file.
#[derive(Debug, Clone, Copy)]
struct Recovered {
    after_crash: bool,
    log_end: u64,
}

/// Logs one `listening` line per endpoint and the `ready` line, then writes the ready file.
fn announce(
    mode: Mode,
    cfg: &ServerConfig,
    listening: &[Endpoint],
    report: Recovered,
    ready_file: Option<&Path>,
) -> anyhow::Result<()> {
    for endpoint in listening {
        tracing::info!(endpoint = %endpoint.protocol, address = %endpoint.address, "listening");
    }
    tracing::info!(
        data_dir = %cfg.store.data_dir.display(),
        after_crash = report.after_crash,
        log_end = report.log_end,
        cluster = %cfg.broker.cluster,
        broker = %cfg.broker.name,
        broker_id = cfg.broker.id,
        "rocketgate {} ready",
        mode.name()
    );
    if let Some(path) = ready_file {
        let endpoints: serde_json::Map<String, serde_json::Value> = listening
            .iter()
            .map(|e| (e.protocol.to_owned(), e.address.to_string().into()))
            .collect();
        let body = serde_json::json!({
            "pid": std::process::id(),
            "mode": mode.name(),
            "data_dir": cfg.store.data_dir,
            "endpoints": endpoints,
            "recovered_after_crash": report.after_crash,
        });
        crate::write_json_atomically(path, &body)?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
