//! The controller's gRPC services on its listener: `ControllerRaft` (Raft between members:
//! [`RaftService`]) and `Controller` (brokers' heartbeats and in-sync reports, operator
//! elections, status: [`ControllerService`]).
//!
//! Invariants: every call is checked against the cluster secret when there is one; broker
//! writes (heartbeat, in-sync report, election) pass a replay guard; a heartbeat or report is
//! answered only by a leader that still has a quorum (`ensure_linearizable`), so a deposed
//! leader never tells a master it is still the master; the Raft log is written only when a
//! heartbeat changes the state. Inputs are bounded (names, addresses, sets). Must not decide
//! elections on its own (`liveness.rs` and the election loop in `mod.rs` do).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::sync::Arc;

use openraft::error::{ForwardToLeader, RaftError};
use openraft::{BasicNode, TryAsRef};
use parking_lot::Mutex;
use prost::Message;
use rocketgate_proto::cluster::v1 as pb;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::auth::{now_ms, Key, MAX_SKEW_MS};
use super::liveness::Liveness;
use super::machine::SharedState;
use super::state::{choose_master, Command, Group};
use super::Raft;
use crate::replay::ReplayGuard;

/// Longest cluster, group name or address accepted.
const MAX_NAME: usize = 255;
/// Largest in-sync set accepted, and most brokers in one group.
const MAX_IN_SYNC: usize = 64;
/// Most broker groups the controller keeps.
const MAX_GROUPS: usize = 4096;
/// The metadata key naming the leader's address in a refusal from a non-leader.
pub const LEADER_KEY: &str = "x-rg-controller-leader";

/// What both services share: this member and its Raft.
pub(super) struct Shared {
    pub(super) id: u64,
    pub(super) raft: Raft,
    pub(super) state: SharedState,
    pub(super) members: std::collections::BTreeMap<u64, String>,
    pub(super) key: Option<Key>,
    pub(super) replay: Mutex<ReplayGuard>,
    pub(super) liveness: Mutex<Liveness>,
    pub(super) unclean: bool,
}

impl Shared {
    fn check<M: Message>(&self, request: &Request<M>, method: &str) -> Result<(), Status> {
        if let Some(key) = &self.key {
            key.verify(
                request.metadata(),
                method,
                now_ms(),
                &request.get_ref().encode_to_vec(),
            )?;
        }
        Ok(())
    }

    fn check_once<M: Message>(&self, request: &Request<M>, method: &str) -> Result<(), Status> {
        if let Some(key) = &self.key {
            let now = now_ms();
            let (ts, mac) = key.verify(
                request.metadata(),
                method,
                now,
                &request.get_ref().encode_to_vec(),
            )?;
            self.replay.lock().admit(ts, mac, now).map_err(|_| {
                Status::unauthenticated(
                    "replayed controller call: this signed request was already accepted",
                )
            })?;
        }
        Ok(())
    }

    fn refusal<E>(&self, e: &RaftError<u64, E>) -> Status
    where
        E: TryAsRef<ForwardToLeader<u64, BasicNode>> + Display + std::error::Error,
    {
        if let Some(forward) = e.forward_to_leader::<BasicNode>() {
            let leader = forward
                .leader_node
                .as_ref()
                .map(|n| n.addr.clone())
                .or_else(|| {
                    forward
                        .leader_id
                        .and_then(|id| self.members.get(&id).cloned())
                });
            let mut status = Status::failed_precondition(format!(
                "controller {} is not the leader (leader: {})",
                self.id,
                leader.as_deref().unwrap_or("unknown")
            ));
            if let Some(Ok(value)) = leader.map(|l| l.parse()) {
                status.metadata_mut().insert(LEADER_KEY, value);
            }
            return status;
        }
        Status::unavailable(format!("controller {}: {e}", self.id))
    }

    /// Refuses a broker that would make its group or the controller too large.
    fn admit_member(&self, cluster: &str, group: &str, broker_id: u64) -> Result<(), Status> {
        let state = self.state.read();
        match state.groups.group(cluster, group) {
            Some(g) if !g.members.contains_key(&broker_id) && g.members.len() >= MAX_IN_SYNC => {
                Err(Status::resource_exhausted(format!(
                    "{cluster}/{group} already has {MAX_IN_SYNC} brokers"
                )))
            }
            None if state.groups.iter().count() >= MAX_GROUPS => Err(Status::resource_exhausted(
                format!("the controller already keeps {MAX_GROUPS} broker groups"),
            )),
            _ => Ok(()),
        }
    }

    /// Fails unless this member is the leader with a quorum now.
    async fn lead(&self) -> Result<(), Status> {
        self.raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|e| self.refusal(&e))
    }

    async fn write(&self, command: Command) -> Result<(), Status> {
        let reply = self
            .raft
            .client_write(command)
            .await
            .map_err(|e| self.refusal(&e))?;
        match reply.data.refused {
            None => Ok(()),
            Some(reason) => Err(Status::failed_precondition(reason)),
        }
    }

    fn assignment(&self, cluster: &str, group: &str, alive: bool) -> Option<pb::GroupAssignment> {
        let state = self.state.read();
        let g = state.groups.group(cluster, group)?;
        let alive = if alive {
            self.liveness
                .lock()
                .alive(cluster, group, Instant::now())
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        Some(assignment(cluster, group, g, alive))
    }
}

/// A group on the wire.
pub(super) fn assignment(
    cluster: &str,
    group: &str,
    g: &Group,
    alive: Vec<u64>,
) -> pb::GroupAssignment {
    pb::GroupAssignment {
        cluster: cluster.to_owned(),
        group: group.to_owned(),
        has_master: g.master.is_some(),
        master_id: g.master.unwrap_or(0),
        epoch: g.epoch,
        master_address: g.master_address().unwrap_or_default().to_owned(),
        in_sync: g.in_sync.iter().copied().collect(),
        members: g
            .members
            .iter()
            .map(|(id, m)| pb::ControllerBroker {
                cluster: cluster.to_owned(),
                group: group.to_owned(),
                broker_id: *id,
                replication_address: m.address.clone(),
            })
            .collect(),
        alive,
    }
}

fn name(value: &str, what: &str) -> Result<(), Status> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(Status::invalid_argument(format!(
            "{what} must be 1..={MAX_NAME} bytes (got {})",
            value.len()
        )));
    }
    Ok(())
}

fn broker(b: Option<&pb::ControllerBroker>) -> Result<&pb::ControllerBroker, Status> {
    let b = b.ok_or_else(|| Status::invalid_argument("broker is required"))?;
    name(&b.cluster, "cluster")?;
    name(&b.group, "group")?;
    name(&b.replication_address, "replication_address")?;
    Ok(b)
}

/// `Controller`.
#[derive(Clone)]
pub struct ControllerService(pub(super) Arc<Shared>);

#[tonic::async_trait]
impl pb::controller_server::Controller for ControllerService {
    async fn broker_heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::GroupAssignment>, Status> {
        let s = &self.0;
        s.check_once(&request, "BrokerHeartbeat")?;
        let r = request.into_inner();
        let b = broker(r.broker.as_ref())?;
        s.lead().await?;
        s.liveness
            .lock()
            .beat(&b.cluster, &b.group, b.broker_id, Instant::now());
        let changes = s.state.read().groups.register_changes(
            &b.cluster,
            &b.group,
            b.broker_id,
            &b.replication_address,
            r.epoch,
            r.is_master,
        );
        if changes {
            s.admit_member(&b.cluster, &b.group, b.broker_id)?;
            s.write(Command::Register {
                cluster: b.cluster.clone(),
                group: b.group.clone(),
                broker_id: b.broker_id,
                address: b.replication_address.clone(),
                epoch: r.epoch,
                is_master: r.is_master,
            })
            .await?;
        }
        s.assignment(&b.cluster, &b.group, true)
            .map(Response::new)
            .ok_or_else(|| Status::internal("the group vanished after its registration"))
    }

    async fn report_in_sync(
        &self,
        request: Request<pb::ReportInSyncRequest>,
    ) -> Result<Response<pb::GroupAssignment>, Status> {
        let s = &self.0;
        s.check_once(&request, "ReportInSync")?;
        let r = request.into_inner();
        let b = broker(r.broker.as_ref())?;
        if r.in_sync.len() > MAX_IN_SYNC {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_IN_SYNC} brokers in an in-sync set"
            )));
        }
        s.lead().await?;
        let in_sync: BTreeSet<u64> = r.in_sync.iter().copied().collect();
        let unchanged = s
            .state
            .read()
            .groups
            .group(&b.cluster, &b.group)
            .is_some_and(|g| {
                g.master == Some(b.broker_id) && g.epoch == r.epoch && g.in_sync == in_sync
            });
        if !unchanged {
            s.write(Command::ReportInSync {
                cluster: b.cluster.clone(),
                group: b.group.clone(),
                broker_id: b.broker_id,
                epoch: r.epoch,
                in_sync,
            })
            .await?;
        }
        s.assignment(&b.cluster, &b.group, true)
            .map(Response::new)
            .ok_or_else(|| Status::not_found("unknown group"))
    }

    async fn elect_master(
        &self,
        request: Request<pb::ElectMasterRequest>,
    ) -> Result<Response<pb::GroupAssignment>, Status> {
        let s = &self.0;
        s.check_once(&request, "ElectMaster")?;
        let r = request.into_inner();
        name(&r.cluster, "cluster")?;
        name(&r.group, "group")?;
        s.lead().await?;
        let decision = {
            let state = s.state.read();
            let g = state.groups.group(&r.cluster, &r.group).ok_or_else(|| {
                Status::not_found(format!("unknown group {}/{}", r.cluster, r.group))
            })?;
            let alive = s
                .liveness
                .lock()
                .alive(&r.cluster, &r.group, Instant::now());
            choose_master(g, &alive, s.unclean).map(|m| (g.epoch, m))
        };
        let Some((expected_epoch, master)) = decision else {
            return Err(Status::failed_precondition(
                "no live broker of the in-sync set other than the master: nothing to elect",
            ));
        };
        s.write(Command::Elect {
            cluster: r.cluster.clone(),
            group: r.group.clone(),
            expected_epoch,
            master,
        })
        .await?;
        s.assignment(&r.cluster, &r.group, true)
            .map(Response::new)
            .ok_or_else(|| Status::not_found("unknown group"))
    }

    async fn status(
        &self,
        request: Request<pb::ControllerStatusRequest>,
    ) -> Result<Response<pb::ControllerStatus>, Status> {
        self.0.check(&request, "Status")?;
        Ok(Response::new(super::status(&self.0)))
    }
}

/// `ControllerRaft`.
#[derive(Clone)]
pub struct RaftService(pub(super) Arc<Shared>);

fn decode<T: DeserializeOwned>(payload: &pb::RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&payload.json)
        .map_err(|e| Status::invalid_argument(format!("invalid Raft payload: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<pb::RaftPayload>, Status> {
    serde_json::to_vec(value)
        .map(|json| Response::new(pb::RaftPayload { json }))
        .map_err(|e| Status::internal(format!("cannot encode a Raft reply: {e}")))
}

#[tonic::async_trait]
impl pb::controller_raft_server::ControllerRaft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.0.check(&request, "AppendEntries")?;
        let rpc = decode(request.get_ref())?;
        encode(&self.0.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.0.check(&request, "Vote")?;
        let rpc = decode(request.get_ref())?;
        encode(&self.0.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.0.check(&request, "InstallSnapshot")?;
        let rpc = decode(request.get_ref())?;
        encode(&self.0.raft.install_snapshot(rpc).await)
    }
}

/// The skew window of the replay guard.
pub(super) fn replay_guard() -> ReplayGuard {
    ReplayGuard::new(MAX_SKEW_MS, 100_000)
}
