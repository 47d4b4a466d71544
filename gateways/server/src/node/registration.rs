//! The node's place in the cluster: the endpoints it advertises, the `NodeInfo` the gRPC
//! gateway answers with (with the cached routes of QueryRoute), and the registration with the
//! NameServers that keeps this broker's topics in their routes until it unregisters.
//!
//! Invariants: an advertised endpoint is never a wildcard address (a route to 0.0.0.0 would send
//! clients to themselves); with a cluster secret (`nameserver.cluster_secret`,
//! `ROCKETGATE_CLUSTER_SECRET`) every registration, heartbeat and unregistration is signed; the registration's topic list follows every topic change; on stop
//! the broker unregisters before the gateways stop accepting (`node.rs` orders that).
//!
//! Called by `node.rs` only; talks to the NameServers through `rocketgate-nameserver`'s client.
//! Concurrency: one registrar task per node, owning the registration; it publishes how many
//! NameServers hold the registration through an atomic the gRPC gateway reads per call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::Broker;
use rocketgate_gateway_grpc::NodeInfo;
use rocketgate_gateway_kit::{Endpoint, Shutdown};
use rocketgate_nameserver as ns;
use tokio::task::JoinHandle;

use crate::config::BrokerSection;

/// The endpoints to put in the routes: the bound port on `advertised_host`, or on the bound IP
/// (never a wildcard: a route to 0.0.0.0 would send clients to themselves).
pub(super) fn advertised(
    broker: &BrokerSection,
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

/// What the gRPC gateway answers about this node: identity, advertised endpoints, NameServers
/// (`registered` counts those holding the registration) and, with NameServers, a route cache
/// for QueryRoute.
///
/// # Errors
/// An invalid NameServer client configuration, or a route cache that cannot start.
pub(super) fn node_info(
    cfg: &BrokerSection,
    advertised: &[ns::Endpoint],
    namesrv: &[String],
    registered: Arc<AtomicUsize>,
    started_at_ms: i64,
    tls: Option<ns::ClientTls>,
) -> anyhow::Result<NodeInfo> {
    // QueryRoute answers with every broker group of a topic, from the NameServers' routes.
    let routes = match namesrv.is_empty() {
        true => None,
        false => {
            let client = ns::NameServerClient::new(&ns::ClientConfig {
                addresses: namesrv.to_vec(),
                heartbeat_interval_ms: cfg.heartbeat_interval_ms,
                rpc_timeout_ms: cfg.rpc_timeout_ms,
                tls,
            })
            .map_err(|e| anyhow::anyhow!("invalid NameServer client configuration: {e}"))?;
            let config = ns::RouteCacheConfig {
                refresh_interval_ms: cfg.route_refresh_ms,
                ..ns::RouteCacheConfig::default()
            };
            Some(
                ns::RouteCache::start(client, &config)
                    .map_err(|e| anyhow::anyhow!("cannot start the route cache: {e}"))?,
            )
        }
    };
    Ok(NodeInfo {
        cluster: cfg.cluster.clone(),
        broker_name: cfg.name.clone(),
        broker_id: cfg.id,
        endpoints: advertised
            .iter()
            .map(|e| (e.protocol().as_str().to_owned(), e.address().to_owned()))
            .collect(),
        nameservers: namesrv.to_vec(),
        registered_nameservers: Arc::new(move || registered.load(Ordering::Acquire)),
        started_at_ms,
        routes,
    })
}

/// Registers with the NameServers `namesrv` (none: a warning, and no registration), signed with
/// `secret` when there is one, and keeps the registration until `stop`.
///
/// # Errors
/// A NameServer refusing the registration (invalid, or not signed with its cluster secret), or
/// an invalid identity.
#[allow(clippy::too_many_arguments)] // the node's one call names each part
pub(super) async fn start(
    cfg: &BrokerSection,
    secret: Option<ns::ClusterSecret>,
    tls: Option<ns::ClientTls>,
    namesrv: Vec<String>,
    advertised: Vec<ns::Endpoint>,
    broker: Option<Broker>,
    registered: Arc<AtomicUsize>,
    stop: Shutdown,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if namesrv.is_empty() {
        tracing::warn!(
            "no NameServer configured (broker.namesrv / --namesrv): this broker is in no route"
        );
        return Ok(None);
    }
    registrar(
        cfg, secret, tls, namesrv, advertised, broker, registered, stop,
    )
    .await
    .map(Some)
}

/// Waits (bounded) for the registrar to unregister, once its `stop` fired.
pub(super) async fn finish(registrar: Option<JoinHandle<()>>, grace: Duration) {
    let Some(registrar) = registrar else {
        return;
    };
    match tokio::time::timeout(grace, registrar).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "registration task failed"),
        Err(_) => {
            tracing::warn!("unregistering took too long; the NameServers will expire this broker")
        }
    }
}

/// The broker's user topics as the NameServers see them.
fn topic_list(broker: &Broker) -> Vec<ns::TopicConfig> {
    broker
        .topics()
        .list_user()
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
#[allow(clippy::too_many_arguments)]
async fn registrar(
    cfg: &BrokerSection,
    secret: Option<ns::ClusterSecret>,
    tls: Option<ns::ClientTls>,
    namesrv: Vec<String>,
    endpoints: Vec<ns::Endpoint>,
    broker: Option<Broker>,
    registered: Arc<AtomicUsize>,
    stop: Shutdown,
) -> anyhow::Result<JoinHandle<()>> {
    let config = ns::ClientConfig {
        addresses: namesrv,
        heartbeat_interval_ms: cfg.heartbeat_interval_ms,
        rpc_timeout_ms: cfg.rpc_timeout_ms,
        tls,
    };
    let client = ns::NameServerClient::with_secret(&config, secret)
        .map_err(|e| anyhow::anyhow!("invalid NameServer client configuration: {e}"))?;
    let identity = ns::BrokerIdentity {
        cluster: ns::ClusterName::new(cfg.cluster.clone())
            .map_err(|e| anyhow::anyhow!("`broker.cluster`: {}", e.reason))?,
        broker_name: ns::BrokerName::new(cfg.name.clone())
            .map_err(|e| anyhow::anyhow!("`broker.name`: {}", e.reason))?,
        broker_id: ns::BrokerId(cfg.id),
    };
    // A slave (no `Broker`) registers without topics: it is listed, not routed to.
    let mut changes = broker.as_ref().map(|b| b.topics().changed());
    let registration = client
        .register(ns::BrokerRegistration {
            identity,
            endpoints,
            topics: broker.as_ref().map(topic_list).unwrap_or_default(),
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
                changed = async {
                    match changes.as_mut() {
                        Some(c) => c.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let (Ok(()), Some(broker)) = (changed, broker.as_ref()) else {
                        break;
                    };
                    let topics = topic_list(broker);
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
