//! Running a node: `rocketgate broker` (the store, its gateways and its NameServer registration)
//! and `rocketgate standalone` (the same with an embedded NameServer it also registers with).
//!
//! Owns the start order and the stop order, nothing else:
//! - start: bind every enabled endpoint (a port in use fails here, before the store opens), open
//!   the store, serve the gateways, register with the NameServers, then log one line per
//!   endpoint with the bound address and write the ready file;
//! - stop (SIGINT / SIGTERM): unregister (clients stop routing here), stop accepting, let calls
//!   in flight finish (bounded), then flush, checkpoint and write the clean marker through
//!   `Broker::shutdown`, all well within 10 s.
//!
//! The protocols themselves live in the gateway crates; the registration client in
//! `rocketgate-nameserver`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rocketgate_core::Broker;
use rocketgate_nameserver as ns;
use tokio::net::TcpListener;
use tokio::sync::watch;
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

/// One bound endpoint: its protocol name and listener.
struct Bound {
    protocol: &'static str,
    listener: TcpListener,
    local: SocketAddr,
}

async fn bind(protocol: &'static str, addr: SocketAddr) -> anyhow::Result<Bound> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {protocol}: {e}"))?;
    let local = listener.local_addr()?;
    Ok(Bound {
        protocol,
        listener,
        local,
    })
}

/// A stop signal shared by every server of the node.
#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
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

async fn serve(
    mode: Mode,
    cfg: ServerConfig,
    ready_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let started_at_ms = now_ms();
    // Bind first: a port in use is reported before anything is opened.
    let nameserver = match mode {
        Mode::Standalone => Some(bind("nameserver", cfg.listen.nameserver).await?),
        Mode::Broker => None,
    };
    let grpc = bind("grpc", cfg.listen.grpc).await?;
    let http = match cfg.gateways.http {
        true => Some(bind("http", cfg.listen.http).await?),
        false => None,
    };
    let (mqtt, mqtt_ws) = match cfg.gateways.mqtt {
        true => (
            Some(bind("mqtt", cfg.listen.mqtt).await?),
            Some(bind("mqtt_ws", cfg.listen.mqtt_ws).await?),
        ),
        false => (None, None),
    };
    let endpoints = advertised(
        &cfg.broker,
        [Some(&grpc), http.as_ref(), mqtt.as_ref(), mqtt_ws.as_ref()],
    )?;

    let data_dir = cfg.store.data_dir.clone();
    let broker = tokio::task::spawn_blocking({
        let core = cfg.core();
        move || Broker::open(core)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let report = broker.store().recovery_report();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop(stop_rx);
    let mut servers: JoinSet<anyhow::Result<&'static str>> = JoinSet::new();
    let mut bound: Vec<(&'static str, SocketAddr)> = Vec::new();

    let mut namesrv = cfg.broker.namesrv.clone();
    if let Some(b) = nameserver {
        bound.push((b.protocol, b.local));
        namesrv.push(b.local.to_string());
        let shutdown = stop.wait();
        let config = cfg.nameserver.clone();
        servers.spawn(async move {
            ns::serve(b.listener, config, shutdown).await?;
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
    let node = rocketgate_gateway_grpc::admin::NodeInfo {
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
    };
    bound.push((grpc.protocol, grpc.local));
    {
        let broker = broker.clone();
        let shutdown = stop.wait();
        let messaging = cfg.grpc.clone();
        servers.spawn(async move {
            rocketgate_gateway_grpc::serve_with(grpc.listener, broker, node, messaging, shutdown)
                .await?;
            Ok("grpc")
        });
    }
    if let Some(h) = http {
        bound.push((h.protocol, h.local));
        let broker = broker.clone();
        let shutdown = stop.wait();
        let config = cfg.http.clone();
        let metrics = metrics::prometheus(&mut servers, stop.wait());
        servers.spawn(async move {
            rocketgate_gateway_http::serve_with(h.listener, broker, config, metrics, shutdown)
                .await?;
            Ok("http")
        });
    }

    if mqtt.is_some() || mqtt_ws.is_some() {
        let mut listener = |b: Option<Bound>| {
            b.map(|b| {
                bound.push((b.protocol, b.local));
                b.listener
            })
        };
        let (tcp, ws) = (listener(mqtt), listener(mqtt_ws));
        let broker = broker.clone();
        let shutdown = stop.wait();
        let config = cfg.mqtt.clone();
        servers.spawn(async move {
            rocketgate_gateway_mqtt::serve(tcp, ws, broker, config, shutdown).await?;
            Ok("mqtt")
        });
    }

    let (unregister_tx, unregister_rx) = watch::channel(false);
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
                Stop(unregister_rx),
            )
            .await;
            match started {
                Ok(task) => Some(task),
                Err(e) => {
                    // Refused (a configuration error): close what was opened, cleanly.
                    let _ = stop_tx.send(true);
                    servers.abort_all();
                    while servers.join_next().await.is_some() {}
                    let closing = broker.clone();
                    tokio::task::spawn_blocking(move || closing.shutdown()).await??;
                    return Err(e);
                }
            }
        }
    };

    for (protocol, address) in &bound {
        tracing::info!(endpoint = %protocol, %address, "listening");
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
        let endpoints: serde_json::Map<String, serde_json::Value> = bound
            .iter()
            .map(|(p, a)| ((*p).to_owned(), a.to_string().into()))
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
    let _ = unregister_tx.send(true);
    if let Some(registrar) = registrar {
        match tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), registrar).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "registration task failed"),
            Err(_) => tracing::warn!(
                "unregistering took too long; the NameServers will expire this broker"
            ),
        }
    }
    let _ = stop_tx.send(true);
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
fn advertised<'a>(
    broker: &config::BrokerSection,
    bound: impl IntoIterator<Item = Option<&'a Bound>>,
) -> anyhow::Result<Vec<ns::Endpoint>> {
    let mut out = Vec::new();
    for b in bound.into_iter().flatten() {
        let address = if broker.advertised_host.is_empty() {
            if b.local.ip().is_unspecified() {
                anyhow::bail!(
                    "{} listens on the wildcard address {}: set `broker.advertised_host` to the host clients should use",
                    b.protocol,
                    b.local
                );
            }
            b.local.to_string()
        } else if broker.advertised_host.contains(':') {
            format!("[{}]:{}", broker.advertised_host, b.local.port())
        } else {
            format!("{}:{}", broker.advertised_host, b.local.port())
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
    stop: Stop,
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
