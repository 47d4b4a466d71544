//! Who a broker instance is ([`NodeInfo`], given by the server) and the `GetBrokerInfo`
//! answer built from it and the store's state.
//!
//! Pure encoding; reads the broker's store offsets and counters, holds no lock.

use std::fmt;
use std::sync::Arc;

use rocketgate_core::{Broker, FlushMode};
use rocketgate_proto::cluster::v1 as pb;

/// Who this broker instance is and where it listens: what `GetBrokerInfo` reports besides the
/// store's state. Built by the server.
#[derive(Clone)]
pub struct NodeInfo {
    /// Cluster name.
    pub cluster: String,
    /// Broker group name.
    pub broker_name: String,
    /// 0 for the master, anything else for a slave.
    pub broker_id: u64,
    /// Advertised endpoints as `(protocol, "host:port")`.
    pub endpoints: Vec<(String, String)>,
    /// NameServer addresses the broker registers with.
    pub nameservers: Vec<String>,
    /// How many NameServers hold the broker's latest registration (asked at each call).
    pub registered_nameservers: Arc<dyn Fn() -> usize + Send + Sync>,
    /// When the broker started (ms since the Unix epoch).
    pub started_at_ms: i64,
    /// Where QueryRoute finds the other broker groups of a topic (the NameServers' routes,
    /// cached); `None` answers with this broker's queues only.
    pub routes: Option<rocketgate_nameserver::RouteCache>,
}

impl fmt::Debug for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeInfo")
            .field("cluster", &self.cluster)
            .field("broker_name", &self.broker_name)
            .field("broker_id", &self.broker_id)
            .field("endpoints", &self.endpoints)
            .field("nameservers", &self.nameservers)
            .field("registered_nameservers", &format_args!("<fn>"))
            .field("started_at_ms", &self.started_at_ms)
            .field("routes", &self.routes.as_ref().map(|_| "<route cache>"))
            .finish()
    }
}

/// The `GetBrokerInfo` answer: `node`, with role from its broker id, and the store's state now.
pub(super) fn broker_info(broker: &Broker, node: &NodeInfo) -> pb::GetBrokerInfoResponse {
    let health = broker.storage().health();
    let (min, durable, end) = (health.log.min, health.log.durable, health.log.end);
    let role = if node.broker_id == 0 {
        pb::BrokerRole::Master
    } else {
        pb::BrokerRole::Slave
    };
    let flush_mode = match broker.config().store.flush_mode {
        FlushMode::Sync => "SYNC",
        FlushMode::Async => "ASYNC",
    };
    pb::GetBrokerInfoResponse {
        broker: Some(pb::BrokerIdentity {
            cluster: node.cluster.clone(),
            broker_name: node.broker_name.clone(),
            broker_id: node.broker_id,
        }),
        role: role as i32,
        endpoints: node
            .endpoints
            .iter()
            .map(|(protocol, address)| pb::Endpoint {
                protocol: protocol.clone(),
                address: address.clone(),
            })
            .collect(),
        nameservers: node.nameservers.clone(),
        registered_nameservers: u32::try_from((node.registered_nameservers)()).unwrap_or(u32::MAX),
        flush_mode: flush_mode.into(),
        log_min_offset: min,
        log_end_offset: end,
        log_durable_offset: durable,
        write_refusal: health.write_refusal.unwrap_or_default(),
        recovered_after_crash: health.recovery.after_crash,
        topic_count: broker.topics().list_user().len() as u64,
        group_count: broker.groups().list().len() as u64,
        started_at_ms: node.started_at_ms,
        version: env!("CARGO_PKG_VERSION").into(),
        replication: replication_status(broker),
    }
}

/// The replication master's view of its group, or `None` without replication.
fn replication_status(broker: &Broker) -> Option<pb::ReplicationStatus> {
    use rocketgate_core::replication::ReplicationMode;
    let source = broker.replication_source();
    if !source.is_enabled() {
        return None;
    }
    let policy = source.policy();
    let in_sync = source.refresh();
    Some(pb::ReplicationStatus {
        mode: match policy.mode {
            ReplicationMode::Sync => "SYNC",
            _ => "ASYNC",
        }
        .into(),
        min_in_sync_replicas: u32::try_from(policy.min_in_sync_replicas).unwrap_or(u32::MAX),
        in_sync_replicas: u32::try_from(in_sync).unwrap_or(u32::MAX),
        slaves: source
            .slaves()
            .into_iter()
            .map(|s| pb::ReplicaStatus {
                broker_id: s.id,
                connected: s.connected,
                in_sync: s.in_sync,
                written: s.written,
                flushed: s.flushed,
                lag_bytes: s.lag_bytes,
                lag_ms: s
                    .lag_ms
                    .map_or(-1, |ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            })
            .collect(),
    })
}

/// Longest catch-up a `SwitchMaster` may ask for.
const MAX_SWITCH_TIMEOUT_MS: u64 = 600_000;
/// The catch-up time when the request names none.
const DEFAULT_SWITCH_TIMEOUT_MS: u64 = 10_000;

/// `SwitchMaster`: asks the node (through core's handover queue) to promote slave `to`.
pub(super) async fn switch_master(
    broker: &Broker,
    req: pb::SwitchMasterRequest,
) -> Result<pb::SwitchMasterResponse, crate::status::RequestError> {
    use crate::status::RequestError;
    if req.to == 0 {
        return Err(RequestError::InvalidField {
            field: "to",
            reason: "the target is a slave's broker id (1 or more)".into(),
        });
    }
    if req.timeout_ms > MAX_SWITCH_TIMEOUT_MS {
        return Err(RequestError::InvalidField {
            field: "timeout_ms",
            reason: format!("at most {MAX_SWITCH_TIMEOUT_MS} ms"),
        });
    }
    let timeout_ms = match req.timeout_ms {
        0 => DEFAULT_SWITCH_TIMEOUT_MS,
        ms => ms,
    };
    let report = broker
        .replication_source()
        .request_switch(req.to, std::time::Duration::from_millis(timeout_ms))
        .await?;
    Ok(pb::SwitchMasterResponse {
        target: report.target,
        old_master_id: report.old_master_id,
        target_address: report.target_address,
        log_end: report.log_end,
        fenced_ms: report.fenced_ms,
    })
}
