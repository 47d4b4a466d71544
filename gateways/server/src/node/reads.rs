//! A slave's read gateways (`replication.slave_reads`): the gRPC and HTTP gateways served on
//! the slave's read-only `Broker` (`Replica::reader`), so clients can read — pull by offset,
//! query, list topics and offsets, commit offsets — from a slave, above all while its master is
//! unreachable. Writes are refused by core (`NotMaster`: gRPC `HA_NOT_AVAILABLE`, REST `503`
//! `not_leader`). MQTT, WebSocket subscriptions and NATS are not served on a slave: each of them
//! writes at connect or subscribe (sessions, pop state).
//!
//! Owns the gateways' life on a slave, driven by the follow loop (`replication/slave.rs`)
//! through [`ReaderEvent`]s: `Open` binds and serves them on a reader; `Close` stops them and
//! drops every handle on the reader (the follow loop then truncates or discards the copy, or is
//! promoted), then answers. A port that cannot be bound is logged and the slave follows on
//! without read gateways. Must not touch the replica itself.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use rocketgate_core::Broker;
use rocketgate_gateway_http::Cluster;
use rocketgate_gateway_kit::{ready, Endpoint};
use tokio::sync::mpsc;

use super::{registration, tls, Bound, Mode, Servers};
use crate::config::ServerConfig;
use crate::replication::slave::ReaderEvent;

/// What the slave writes into its ready file and `listening` lines besides the read gateways.
pub(super) struct SlaveFacts {
    pub(super) id: u64,
    pub(super) replication: Option<Endpoint>,
    pub(super) ready_file: Option<PathBuf>,
}

/// Runs until the follow loop drops its sender: serves the read gateways between an `Open`
/// and the next `Close`.
pub(super) async fn run(
    cfg: ServerConfig,
    facts: SlaveFacts,
    mut events: mpsc::Receiver<ReaderEvent>,
) {
    let mut serving: Option<Servers> = None;
    while let Some(event) = events.recv().await {
        match event {
            ReaderEvent::Open(broker) => {
                if let Some(mut old) = serving.take() {
                    old.drain().await;
                }
                match start(&cfg, &facts, broker).await {
                    Ok(servers) => serving = Some(servers),
                    Err(e) => tracing::warn!(
                        error = %format!("{e:#}"),
                        "this slave serves no reads (its gateways could not start); it follows on"
                    ),
                }
            }
            ReaderEvent::Close(done) => {
                if let Some(mut servers) = serving.take() {
                    servers.drain().await;
                    tracing::info!("slave reads stopped");
                }
                let _ = done.send(());
            }
        }
    }
    if let Some(mut servers) = serving.take() {
        servers.drain().await;
    }
}

/// The configuration of the read gateways: gRPC and HTTP only.
fn read_config(cfg: &ServerConfig, id: u64) -> ServerConfig {
    let mut cfg = cfg.clone();
    cfg.broker.id = id;
    cfg.mqtt.enabled = false;
    cfg.nats.enabled = false;
    cfg
}

async fn start(cfg: &ServerConfig, facts: &SlaveFacts, broker: Broker) -> anyhow::Result<Servers> {
    let cfg = read_config(cfg, facts.id);
    let acceptors = tls::Acceptors::load(&cfg.tls)?;
    let client_tls = tls::nameserver_client(&cfg.tls)?;
    let Bound {
        gateways,
        advertised,
        node_info,
        cluster,
        metrics,
        ..
    } = Bound::bind(Mode::Broker, &cfg, acceptors.as_ref()).await?;
    let node = registration::node_info(
        &cfg.broker,
        &advertised,
        &cfg.broker.namesrv,
        Arc::new(AtomicUsize::new(0)),
        super::now_ms(),
        client_tls,
    )?;
    let _ = cluster.send(Cluster::new(cfg.broker.name.clone(), node.routes.clone()));
    let _ = node_info.send(node);
    let mut servers = Servers::new();
    if let Some(acceptors) = acceptors {
        servers.spawn_tls_reload(acceptors, &cfg);
    }
    if let Some(handle) = metrics {
        servers.spawn_metrics_upkeep(handle);
    }
    let mut waits = Vec::new();
    for (name, gateway) in gateways {
        servers.listening.extend(gateway.endpoints());
        let (accepting, wait) = ready::channel();
        servers.spawn(
            name,
            gateway.serve(broker.clone(), servers.shutdown.clone(), accepting),
        );
        waits.push(wait);
    }
    drop(broker);
    if let Err(e) = servers.accepting(waits).await {
        servers.abort().await;
        return Err(e);
    }
    for endpoint in &servers.listening {
        tracing::info!(endpoint = %endpoint.protocol, address = %endpoint.address, "listening");
    }
    tracing::info!(broker_id = facts.id, "slave reads served");
    if let Some(path) = &facts.ready_file {
        let mut endpoints: serde_json::Map<String, serde_json::Value> = servers
            .listening
            .iter()
            .map(|e| (e.protocol.to_owned(), e.address.to_string().into()))
            .collect();
        if let Some(r) = &facts.replication {
            endpoints.insert("replication".into(), r.address.to_string().into());
        }
        let body = serde_json::json!({
            "pid": std::process::id(),
            "mode": "slave",
            "broker_id": facts.id,
            "data_dir": cfg.store.data_dir,
            "endpoints": endpoints,
        });
        crate::write_json_atomically(path, &body)?;
    }
    Ok(servers)
}
