//! A replicated node's life across roles: `rocketgate broker` with replication on runs as the
//! group's master or as a slave (`replication/role.rs` decides which at start), and a
//! switchover changes the role without a restart: the old master stops its gateways, hands
//! over (`replication/switch.rs`) and runs on as a slave; the promoted slave closes its copy and
//! runs on as the master (a new epoch, its gateways, its registration).
//!
//! Owns the role loop ([`run`]), the slave's run ([`serve_slave`]: the follow loop and, on the
//! replication listener, a service refusing peers until it is promoted), the master's
//! replication server with its own stop signal ([`MasterServer`]: it streams to the target
//! after the gateways stopped), and the wait for a stop or a switch request
//! ([`until_stopped_or_switch`]). The replication listener is bound once per process, so its
//! address stays what the peers were told.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rocketgate_core::replication::{ReplicationSource, SwitchRequest, SwitchRequests};
use rocketgate_core::Broker;
use rocketgate_gateway_kit::{shutdown, BoundListener, Endpoint, ShutdownTrigger};
use rocketgate_nameserver as ns;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Mode, Servers, SHUTDOWN_GRACE};
use crate::config::ServerConfig;
use crate::replication::links::Links;
use crate::replication::master::{self, Master, Service, Standby};
use crate::replication::role::{self, Role};
use crate::replication::switch::{self, Plan};

/// The replication listener handed to one role.
pub(super) struct Replicating {
    pub(super) listener: TcpListener,
    pub(super) endpoint: Endpoint,
}

/// What a role's run leads to.
pub(super) enum Next {
    /// The node stops (a signal, or a failure reported separately).
    Stop,
    /// The node runs on in this role (persisted first).
    Become(Role),
}

/// Runs a replicated node: its role from the role file or the configuration, then whatever
/// switchovers make of it, until SIGINT / SIGTERM.
///
/// # Errors
/// The replication listener cannot be bound, the role file is unreadable, or a role fails.
pub(super) async fn run(
    mode: Mode,
    cfg: ServerConfig,
    ready_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let (cluster, group) = (&cfg.broker.cluster, &cfg.broker.name);
    let data_dir = &cfg.store.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut role = role::initial(
        data_dir,
        cluster,
        group,
        cfg.broker.id,
        &cfg.replication.master_addr,
    )?;
    // Bound once, so peers keep the address they were told. A slave that cannot bind it
    // (another node of this host has the port) still follows; it just cannot be promoted by a
    // switchover until it can.
    let mut listener = match BoundListener::bind("replication", cfg.replication.listen).await {
        Ok(bound) => {
            let endpoint = bound.endpoint();
            Some((bound.into_inner().into_std()?, endpoint))
        }
        Err(e) if matches!(role, Role::Slave { .. }) => {
            tracing::warn!(
                error = %e,
                "no replication listener: this slave follows, but a switchover cannot promote \
                 it (give it its own replication.listen / --replication-addr)"
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    loop {
        if listener.is_none() && role == Role::Master {
            let bound = BoundListener::bind("replication", cfg.replication.listen).await?;
            let endpoint = bound.endpoint();
            listener = Some((bound.into_inner().into_std()?, endpoint));
        }
        let repl = match &listener {
            Some((l, endpoint)) => {
                let copy = l.try_clone()?;
                copy.set_nonblocking(true)?;
                Some(Replicating {
                    listener: TcpListener::from_std(copy)?,
                    endpoint: *endpoint,
                })
            }
            None => None,
        };
        let next = match &role {
            Role::Master => {
                let mut cfg = cfg.clone();
                cfg.broker.id = 0;
                super::serve(mode, cfg, ready_file.clone(), repl).await?
            }
            Role::Slave { id, master } => {
                serve_slave(&cfg, *id, master, repl, ready_file.as_deref()).await?
            }
        };
        match next {
            Next::Stop => return Ok(()),
            Next::Become(next) => {
                role::save(data_dir, cluster, group, &next)?;
                tracing::info!(
                    broker_id = next.id(),
                    master = matches!(next, Role::Master),
                    "role changed by a switchover"
                );
                role = next;
            }
        }
    }
}

/// A slave: no `Broker` and no gateway, the follow loop (`replication/slave.rs`) until
/// SIGINT / SIGTERM or a promotion; its store is then closed cleanly.
async fn serve_slave(
    cfg: &ServerConfig,
    id: u64,
    master_addr: &str,
    repl: Option<Replicating>,
    ready_file: Option<&Path>,
) -> anyhow::Result<Next> {
    let acceptors = super::tls::Acceptors::load(&cfg.tls)?;
    let server_tls = acceptors.as_ref().map(|t| {
        Arc::new(rocketgate_gateway_grpc::auth::KitTls(t.grpc.clone()))
            as Arc<dyn ns::listener::ServerTls>
    });
    let slave = crate::replication::slave::SlaveConfig {
        core: cfg.core(),
        master_addr: master_addr.to_owned(),
        cluster: cfg.broker.cluster.clone(),
        name: cfg.broker.name.clone(),
        id,
        key: cfg.replication.key.clone(),
        tls: super::tls::nameserver_client(&cfg.tls)?.filter(|_| cfg.tls.enabled),
        max_frame: cfg.replication.max_frame_bytes,
        auto_resync: cfg.replication.auto_resync,
        replication_address: repl
            .as_ref()
            .map(|r| promotable(cfg, r.endpoint))
            .unwrap_or_default(),
    };
    let endpoint_bound = repl.as_ref().map(|r| r.endpoint);
    let endpoint = endpoint_bound.map(|e| e.address.to_string());
    let (standby_stop, standby_stopped) = shutdown::channel();
    let standby = repl.map(|repl| {
        tokio::spawn(master::serve(
            repl.listener,
            Service::Standby(Standby {
                master: master_addr.to_owned(),
            }),
            limits(cfg),
            server_tls,
            standby_stopped.wait(),
        ))
    });
    // The ready file first: the read gateways rewrite it with their endpoints once they serve.
    write_slave_ready(cfg, id, endpoint.as_deref(), ready_file)?;
    let (reader_tx, reader_rx) = tokio::sync::mpsc::channel(4);
    let readers = cfg.replication.slave_reads.then(|| {
        tokio::spawn(super::reads::run(
            cfg.clone(),
            super::reads::SlaveFacts {
                id,
                replication: endpoint_bound,
                ready_file: ready_file.map(Path::to_path_buf),
            },
            reader_rx,
        ))
    });
    let readers_tx = crate::replication::slave::Readers(readers.as_ref().map(|_| reader_tx));
    let (stop, stopped) = shutdown::channel();
    let mut follow = tokio::spawn(crate::replication::slave::run(slave, stopped, readers_tx));
    // Listed by the NameServers (`admin cluster list`) with its replication endpoint and no
    // topic: clients are never routed to a slave.
    let (unregister, unregistered) = shutdown::channel();
    let registrar = match &endpoint_bound {
        Some(bound) if !cfg.broker.namesrv.is_empty() => {
            let advertised = match super::registration::advertised(&cfg.broker, &[*bound]) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "this slave is not listed by the NameServers");
                    Vec::new()
                }
            };
            let mut section = cfg.broker.clone();
            section.id = id;
            super::registration::start(
                &section,
                cfg.nameserver.config.cluster_secret.clone(),
                super::tls::nameserver_client(&cfg.tls)?,
                cfg.broker.namesrv.clone(),
                advertised,
                None,
                Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                unregistered,
            )
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "this slave is not listed by the NameServers");
                None
            })
        }
        _ => None,
    };
    tracing::info!(
        data_dir = %cfg.store.data_dir.display(),
        master = %master_addr,
        cluster = %cfg.broker.cluster,
        broker = %cfg.broker.name,
        broker_id = id,
        replication = endpoint.as_deref().unwrap_or("-"),
        "rocketgate slave ready"
    );
    let result = tokio::select! {
        r = &mut follow => r?,
        signal = crate::wait_for_shutdown() => {
            signal?;
            tracing::info!("shutting down");
            stop.trigger();
            tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), follow)
                .await
                .context("the slave did not stop in time")??
        }
    };
    if let Some(readers) = readers {
        // The follow loop closed them and dropped its sender: the task ends.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), readers).await;
    }
    unregister.trigger();
    super::registration::finish(registrar, SHUTDOWN_GRACE).await;
    // The standby only refuses: peers retrying on it need not be waited for.
    standby_stop.trigger();
    if let Some(standby) = standby {
        standby.abort();
        let _ = standby.await;
    }
    let next = match result? {
        crate::replication::slave::Exit::Stopped => {
            tracing::info!("stopped");
            Next::Stop
        }
        crate::replication::slave::Exit::Promoted => Next::Become(Role::Master),
    };
    Ok(next)
}

/// The slave's ready file (its replication endpoint; the read gateways add theirs).
fn write_slave_ready(
    cfg: &ServerConfig,
    id: u64,
    endpoint: Option<&str>,
    ready_file: Option<&Path>,
) -> anyhow::Result<()> {
    let Some(path) = ready_file else {
        return Ok(());
    };
    let body = serde_json::json!({
        "pid": std::process::id(),
        "mode": "slave",
        "broker_id": id,
        "data_dir": cfg.store.data_dir,
        "endpoints": match endpoint {
            Some(address) => serde_json::json!({ "replication": address }),
            None => serde_json::json!({}),
        },
    });
    crate::write_json_atomically(path, &body)
}

/// Where this node serves replication once promoted, as its master should call it: the
/// advertised host when set; an unspecified IP is replaced by the master with the one it sees.
fn promotable(cfg: &ServerConfig, endpoint: Endpoint) -> String {
    let host = &cfg.broker.advertised_host;
    let port = endpoint.address.port();
    match host.is_empty() {
        true => endpoint.address.to_string(),
        false if host.contains(':') => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

fn limits(cfg: &ServerConfig) -> ns::listener::ConnectionLimits {
    ns::listener::ConnectionLimits {
        max_connections: cfg.replication.max_connections,
        ..Default::default()
    }
}

/// A master's replication server, stopped on its own signal.
pub(super) struct MasterServer {
    source: ReplicationSource,
    links: Links,
    requests: Option<SwitchRequests>,
    stop: ShutdownTrigger,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl MasterServer {
    pub(super) fn start(
        service: Master,
        listener: TcpListener,
        cfg: &ServerConfig,
        tls: Option<Arc<dyn ns::listener::ServerTls>>,
    ) -> Self {
        let source = service.source().clone();
        let links = service.links().clone();
        let requests = source.take_switch_requests();
        let (stop, stopped) = shutdown::channel();
        let task = tokio::spawn(master::serve(
            listener,
            Service::Master(service),
            limits(cfg),
            tls,
            stopped.wait(),
        ));
        Self {
            source,
            links,
            requests,
            stop,
            task: Some(task),
        }
    }

    /// Stops serving the slaves (their streams end; they reconnect to whoever serves next).
    pub(super) async fn stop(mut self) {
        self.stop.trigger();
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the replication server failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the replication server task failed"),
                _ => {}
            }
        }
    }

    /// The next switch request, or the server's failure.
    async fn event(&mut self) -> Event {
        let requests = self.requests.as_mut();
        let task = self.task.as_mut();
        tokio::select! {
            Some(request) = async { match requests { Some(r) => r.next().await, None => None } } => {
                Event::Request(request)
            }
            Some(joined) = async { match task { Some(t) => Some(t.await), None => None } } => {
                self.task = None;
                Event::Failed(match joined {
                    Ok(Ok(())) => anyhow::anyhow!("the replication server stopped unexpectedly"),
                    Ok(Err(e)) => e,
                    Err(e) => anyhow::anyhow!("the replication server task failed: {e}"),
                })
            }
        }
    }
}

enum Event {
    Request(SwitchRequest),
    Failed(anyhow::Error),
}

/// Waits for SIGINT / SIGTERM, a server stopping first (its error), or a switch request that
/// passes its first phase (the returned plan: the caller stops the gateways and hands over).
/// A refused switch request is answered and the wait goes on.
pub(super) async fn until_stopped_or_switch(
    servers: &mut Servers,
    mode: Mode,
    mut master: Option<&mut MasterServer>,
) -> (Option<anyhow::Error>, Option<Plan>) {
    loop {
        let event = tokio::select! {
            signal = crate::wait_for_shutdown() => return (signal.err(), None),
            Some(joined) = servers.tasks.join_next() => return (Some(super::stopped(joined)), None),
            Some(event) = async {
                match master.as_deref_mut() {
                    Some(m) => Some(m.event().await),
                    None => None,
                }
            } => event,
        };
        let request = match event {
            Event::Failed(e) => return (Some(e), None),
            Event::Request(request) => request,
        };
        let Some(m) = master.as_deref() else {
            request.answer(Err("this broker serves no replication".into()));
            continue;
        };
        if mode == Mode::Standalone {
            request.answer(Err(
                "a standalone node embeds the NameServer: a switchover needs `rocketgate broker` \
                 nodes"
                    .into(),
            ));
            continue;
        }
        tracing::info!(target_slave = request.target, "switchover requested");
        let prepared = tokio::select! {
            p = switch::prepare(&m.source, &m.links, &request) => p,
            signal = crate::wait_for_shutdown() => {
                m.source.unfence();
                request.answer(Err("the broker is shutting down".into()));
                return (signal.err(), None);
            }
        };
        match prepared {
            Ok((plan, report)) => {
                request.answer(Ok(report));
                return (None, Some(plan));
            }
            Err(why) => {
                tracing::warn!(reason = %why, "switchover refused; this broker stays the master");
                request.answer(Err(why));
            }
        }
    }
}

/// The second phase, once the gateways have stopped: quiesce the broker's own writers, let
/// the target get everything, promote it and follow it. Anything failing before the
/// promotion order leaves this node the master (its gateways start again).
pub(super) async fn hand_over(broker: &Broker, master: MasterServer, plan: &Plan) -> Next {
    let source = broker.replication_source();
    let quiesced = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || source.quiesce()).await
    };
    tracing::debug!("switchover: the broker's own writers stopped");
    let outcome = match quiesced {
        Ok(Ok(())) => switch::promote(&source, &master.links, plan).await,
        Ok(Err(e)) => Err(format!("cannot quiesce the broker: {e}")),
        Err(e) => Err(format!("cannot quiesce the broker: {e}")),
    };
    master.stop().await;
    match outcome {
        Ok(()) => Next::Become(Role::Slave {
            id: plan.target,
            master: plan.address.clone(),
        }),
        Err(why) => {
            tracing::error!(
                reason = %why,
                "switchover abandoned after the gateways stopped: this broker stays the master \
                 and serves again"
            );
            source.unfence();
            Next::Become(Role::Master)
        }
    }
}
