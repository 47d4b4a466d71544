//! Running a node: `rocketgate broker` (the store, its gateways and its NameServer registration)
//! and `rocketgate standalone` (the same with an embedded NameServer it also registers with).
//!
//! Owns the start order and the stop order, nothing else:
//! - start: build the enabled gateways from the configuration (`Vec<Box<dyn Gateway>>`: gRPC
//!   always, then HTTP and MQTT when enabled), bind every one of them (a port in use fails
//!   here, before the store opens), open the store, serve each gateway, register with the
//!   NameServers, then log one line per endpoint with the bound address and write the ready
//!   file;
//! - stop (SIGINT / SIGTERM): unregister (clients stop routing here), stop accepting, let calls
//!   in flight finish (bounded), then flush, checkpoint and write the clean marker through
//!   `Broker::shutdown`, all well within 10 s.
//!
//! The embedded NameServer (standalone) is deliberately not a `Gateway`: it serves no `Broker`,
//! its address is not advertised in the routes but registered with, and `rocketgate nameserver`
//! runs it without any broker. It is bound first with the same `BoundListener` (so its errors
//! read like every other endpoint's) and stopped with the same `Shutdown` as the gateways.
//!
//! What a gateway needs from the node is given to its constructor: the gRPC gateway's
//! `NodeInfo` names every bound endpoint, so the node sends it over a oneshot channel once all
//! are bound; the HTTP gateway gets the Prometheus handle ([`metrics`]).
//!
//! Concurrency: one multi-threaded runtime; every gateway, the NameServer and the metrics
//! upkeep run as tasks of one `JoinSet`; the first to stop unexpectedly stops the node.
//!
//! The protocols themselves live in the gateway crates; the registration client in
//! `rocketgate-nameserver`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rocketgate_core::Broker;
use rocketgate_gateway_grpc::{GrpcGateway, NodeInfo};
use rocketgate_gateway_http::HttpGateway;
use rocketgate_gateway_kit::{shutdown, BoundListener, Endpoint, Gateway, Shutdown};
use rocketgate_gateway_mqtt::MqttGateway;
use rocketgate_nameserver as ns;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rg-node")
        .build()?;
    runtime.block_on(serve(mode, cfg, args.ready_file.clone()))
}

/// The enabled gateways, in start order (which is also the order of the `listening` lines).
fn gateways(
    cfg: &ServerConfig,
    node: oneshot::Receiver<NodeInfo>,
    metrics: Option<rocketgate_gateway_http::PrometheusHandle>,
) -> Vec<Box<dyn Gateway>> {
    let mut gateways: Vec<Box<dyn Gateway>> = vec![Box::new(GrpcGateway::new(
        cfg.grpc.listen,
        cfg.grpc.messaging.clone(),
        node,
    ))];
    if cfg.http.enabled {
        gateways.push(Box::new(HttpGateway::new(
            cfg.http.listen,
            cfg.http.config.clone(),
            metrics,
        )));
    }
    if cfg.mqtt.enabled {
        gateways.push(Box::new(MqttGateway::new(
            cfg.mqtt.listen,
            cfg.mqtt.ws_listen,
            cfg.mqtt.config.clone(),
        )));
    }
    gateways
}

async fn serve(
    mode: Mode,
    cfg: ServerConfig,
    ready_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let started_at_ms = now_ms();
    // Bind first: a port in use is reported before anything is opened.
    let nameserver = match mode {
        Mode::Standalone => Some(BoundListener::bind("nameserver", cfg.nameserver.listen).await?),
        Mode::Broker => None,
    };
    // The recorder `/metrics` renders exists only with the HTTP gateway.
    let metrics = match cfg.http.enabled {
        true => metrics::install(),
        false => None,
    };
    let (node_tx, node_rx) = oneshot::channel();
    let mut bound = Vec::new();
    for gateway in gateways(&cfg, node_rx, metrics.clone()) {
        let name = gateway.name();
        bound.push((name, gateway.bind().await?));
    }
    let gateway_endpoints: Vec<Endpoint> = bound.iter().flat_map(|(_, g)| g.endpoints()).collect();
    let endpoints = advertised(&cfg.broker, &gateway_endpoints)?;

    let data_dir = cfg.store.data_dir.clone();
    let broker = tokio::task::spawn_blocking({
        let core = cfg.core();
        move || Broker::open(core)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let report = broker.store().recovery_report();

    let (stop, shutdown) = shutdown::channel();
    let mut servers: JoinSet<anyhow::Result<&'static str>> = JoinSet::new();
    let mut listening: Vec<Endpoint> = Vec::new();

    let mut namesrv = cfg.broker.namesrv.clone();
    if let Some(listener) = nameserver {
        let endpoint = listener.endpoint();
        listening.push(endpoint);
        namesrv.push(endpoint.address.to_string());
        let stopped = shutdown.clone().wait();
        let config = cfg.nameserver.config.clone();
        servers.spawn(async move {
            ns::serve(listener.into_inner(), config, stopped).await?;
            Ok("nameserver")
        });
    }

    // QueryRoute answers with every broker group of a topic, from the NameServers' routes.
    let routes = match namesrv.is_empty() {
        true => None,
        false => {
            let client = ns::NameServerClient::new(&ns::ClientConfig {
                addresses: namesrv.clone(),
                heartbeat_interval_ms: cfg.broker.heartbeat_interval_ms,
                rpc_timeout_ms: cfg.broker.rpc_timeout_ms,
            })
            .map_err(|e| anyhow::anyhow!("invalid NameServer client configuration: {e}"))?;
            let config = ns::RouteCacheConfig {
                refresh_interval_ms: cfg.broker.route_refresh_ms,
                ..ns::RouteCacheConfig::default()
            };
            Some(
                ns::RouteCache::start(client, &config)
                    .map_err(|e| anyhow::anyhow!("cannot start the route cache: {e}"))?,
            )
        }
    };
    let registered = Arc::new(AtomicUsize::new(0));
    // The gRPC gateway waits for this before it serves; it names every bound endpoint.
    let _ = node_tx.send(NodeInfo {
        cluster: cfg.broker.cluster.clone(),
        broker_name: cfg.broker.name.clone(),
        broker_id: cfg.broker.id,
        endpoints: endpoints
            .iter()
            .map(|e| (e.protocol().as_str().to_owned(), e.address().to_owned()))
            .collect(),
        nameservers: namesrv.clone(),
        registered_nameservers: {
            let registered = registered.clone();
            Arc::new(move || registered.load(Ordering::Acquire))
        },
        started_at_ms,
        routes,
    });
    if let Some(handle) = metrics {
        let stopped = shutdown.clone();
        servers.spawn(async move {
            metrics::upkeep(handle, stopped).await;
            Ok("metrics")
        });
    }
    for (name, gateway) in bound {
        listening.extend(gateway.endpoints());
        let serving = gateway.serve(broker.clone(), shutdown.clone());
        servers.spawn(async move {
            serving.await?;
            Ok(name)
        });
    }

    let (unregister, unregistered) = shutdown::channel();
    let registrar = match namesrv.is_empty() {
        true => {
            tracing::warn!(
                "no NameServer configured (broker.namesrv / --namesrv): this broker is in no route"
            );
            None
        }
        false => {
            let started = start_registrar(
                &cfg,
                namesrv,
                endpoints,
                broker.clone(),
                registered,
                unregistered,
            )
            .await;
            match started {
                Ok(task) => Some(task),
                Err(e) => {
                    // Refused (a configuration error): close what was opened, cleanly.
                    stop.trigger();
                    servers.abort_all();
                    while servers.join_next().await.is_some() {}
                    let closing = broker.clone();
                    tokio::task::spawn_blocking(move || closing.shutdown()).await??;
                    return Err(e);
                }
            }
        }
    };

    for endpoint in &listening {
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
    if let Some(path) = &ready_file {
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

    // Run until a signal or until a server fails.
    let failure = tokio::select! {
        signal = crate::wait_for_shutdown() => {
            signal.err()
        }
        Some(joined) = servers.join_next() => Some(match joined {
            Ok(Ok(name)) => anyhow::anyhow!("the {name} server stopped unexpectedly"),
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("a server task failed: {e}"),
        }),
    };
    tracing::info!("shutting down");
    // Leave the routes first, so clients stop sending here, then stop accepting.
    unregister.trigger();
    if let Some(registrar) = registrar {
        match tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), registrar).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "registration task failed"),
            Err(_) => tracing::warn!(
                "unregistering took too long; the NameServers will expire this broker"
            ),
        }
    }
    stop.trigger();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = servers.join_next().await {
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
        servers.abort_all();
    }
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.shutdown())
        .await?
        .context("the final flush failed")?;
    tracing::info!("stopped cleanly");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The endpoints to put in the routes: the bound port on `advertised_host`, or on the bound IP
/// (never a wildcard: a route to 0.0.0.0 would send clients to themselves).
fn advertised(
    broker: &config::BrokerSection,
    bound: &[Endpoint],
) -> anyhow::Result<Vec<ns::Endpoint>> {
    let mut out = Vec::new();
    for b in bound {
        let address = if broker.advertised_host.is_empty() {
            if b.address.ip().is_unspecified() {
                anyhow::bail!(
                    "{} listens on the wildcard address {}: set `broker.advertised_host` to the host clients should use",
                    b.protocol,
                    b.address
                );
            }
            b.address.to_string()
        } else if broker.advertised_host.contains(':') {
            format!("[{}]:{}", broker.advertised_host, b.address.port())
        } else {
            format!("{}:{}", broker.advertised_host, b.address.port())
        };
        let endpoint = ns::Endpoint::new(b.protocol, address).map_err(|e| {
            anyhow::anyhow!(
                "invalid advertised {} endpoint: {}: {}",
                b.protocol,
                e.field,
                e.reason
            )
        })?;
        out.push(endpoint);
    }
    Ok(out)
}

/// The broker's user topics as the NameServers see them.
fn topic_list(broker: &Broker) -> Vec<ns::TopicConfig> {
    broker
        .list_user_topics()
        .into_iter()
        .filter_map(|t| {
            let name = ns::TopicName::new(t.name.clone()).ok()?;
            let permission = match (t.permission.read, t.permission.write) {
                (true, true) => ns::Permission::ReadWrite,
                (true, false) => ns::Permission::Read,
                (false, true) => ns::Permission::Write,
                (false, false) => ns::Permission::None,
            };
            let message_type = match t.message_type {
                rocketgate_core::MessageType::Normal => ns::MessageType::Normal,
                rocketgate_core::MessageType::Fifo => ns::MessageType::Fifo,
                rocketgate_core::MessageType::Delay => ns::MessageType::Delay,
                rocketgate_core::MessageType::Transaction => ns::MessageType::Transaction,
                rocketgate_core::MessageType::Mixed => ns::MessageType::Mixed,
            };
            Some(ns::TopicConfig {
                name,
                read_queues: t.queue_count,
                write_queues: t.queue_count,
                permission,
                message_type,
            })
        })
        .collect()
}

/// Registers with every NameServer, then keeps the registration's topic list in step with the
/// broker's topics until the node stops, when it unregisters. Publishes how many NameServers
/// hold the latest registration into `registered`.
async fn start_registrar(
    cfg: &ServerConfig,
    namesrv: Vec<String>,
    endpoints: Vec<ns::Endpoint>,
    broker: Broker,
    registered: Arc<AtomicUsize>,
    stop: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client = ns::NameServerClient::new(&ns::ClientConfig {
        addresses: namesrv,
        heartbeat_interval_ms: cfg.broker.heartbeat_interval_ms,
        rpc_timeout_ms: cfg.broker.rpc_timeout_ms,
    })
    .map_err(|e| anyhow::anyhow!("invalid NameServer client configuration: {e}"))?;
    let identity = ns::BrokerIdentity {
        cluster: ns::ClusterName::new(cfg.broker.cluster.clone())
            .map_err(|e| anyhow::anyhow!("`broker.cluster`: {}", e.reason))?,
        broker_name: ns::BrokerName::new(cfg.broker.name.clone())
            .map_err(|e| anyhow::anyhow!("`broker.name`: {}", e.reason))?,
        broker_id: ns::BrokerId(cfg.broker.id),
    };
    let mut changes = broker.topics_changed();
    let registration = client
        .register(ns::BrokerRegistration {
            identity,
            endpoints,
            topics: topic_list(&broker),
        })
        .await
        .map_err(|e| anyhow::anyhow!("a NameServer refused this broker's registration: {e}"))?;
    registered.store(registration.registered_count(), Ordering::Release);
    let stopped = stop.wait();
    Ok(tokio::spawn(async move {
        tokio::pin!(stopped);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = &mut stopped => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let topics = topic_list(&broker);
                    if let Err(e) = registration.update_topics(topics).await {
                        tracing::error!(error = %e, "the NameServers refused the new topic list");
                    }
                }
                _ = tick.tick() => {}
            }
            registered.store(registration.registered_count(), Ordering::Release);
        }
        let removed = registration.unregister().await;
        registered.store(0, Ordering::Release);
        tracing::info!(removed, "unregistered from the NameServers");
    }))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
