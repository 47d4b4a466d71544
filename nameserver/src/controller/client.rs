//! [`ControllerClient`]: what brokers and tools call the controller with. It knows every
//! member's address, signs each call with the cluster secret when it has one, and sends writes
//! (heartbeats, in-sync reports, elections) to the leader: first the one that answered last,
//! then the one a refusal names, then every member in turn. [`ControllerClient::status`] asks
//! each member until one answers (without a quorum, a survivor's possibly stale view).
//!
//! Must not keep any controller state of its own beyond the last leader seen.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rocketgate_proto::cluster::v1 as pb;
use thiserror::Error;
use tonic::transport::Channel;

use super::auth::{now_ms, Key};
use super::service::LEADER_KEY;
use crate::client::ClientTls;
use crate::config::ConfigError;

type Rpc = pb::controller_client::ControllerClient<Channel>;

/// Largest reply accepted (a status of many groups).
const MAX_REPLY_BYTES: usize = 16 << 20;

/// Why a controller call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControllerClientError {
    /// The client's settings cannot work.
    #[error("controller client: {}: {}", .0.key, .0.reason)]
    Config(#[from] ConfigError),
    /// A member refused the call for a reason other than not leading (bad input, stale epoch,
    /// authentication).
    #[error("controller {address} refused: {}", status.message())]
    Refused {
        /// The member.
        address: String,
        /// Its answer.
        status: tonic::Status,
    },
    /// No member answered (or none leads with a quorum): the last failure of each.
    #[error("no controller member could answer: {0}")]
    Unavailable(String),
}

/// A client of every controller member.
#[derive(Clone)]
pub struct ControllerClient {
    members: Arc<Vec<(String, Rpc)>>,
    leader: Arc<AtomicUsize>,
    key: Option<Key>,
}

impl std::fmt::Debug for ControllerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerClient")
            .field(
                "members",
                &self.members.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ControllerClient {
    /// A client of the members at `addresses`, each call bounded by `timeout`.
    ///
    /// # Errors
    /// [`ControllerClientError::Config`] when no address is given or one is invalid.
    pub fn new(
        addresses: &[String],
        key: Option<Key>,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> Result<Self, ControllerClientError> {
        if addresses.is_empty() {
            return Err(ConfigError {
                key: "controller.members",
                reason: "no controller address".into(),
            }
            .into());
        }
        let members = addresses
            .iter()
            .map(|a| {
                let rpc = Rpc::new(crate::client::channel(a, timeout, tls)?)
                    .max_decoding_message_size(MAX_REPLY_BYTES);
                Ok((a.clone(), rpc))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Self {
            members: Arc::new(members),
            leader: Arc::new(AtomicUsize::new(0)),
            key,
        })
    }

    fn request<M: Message>(&self, method: &str, message: M) -> tonic::Request<M> {
        let body = message.encode_to_vec();
        let mut request = tonic::Request::new(message);
        if let Some(key) = &self.key {
            key.sign(request.metadata_mut(), method, now_ms(), &body);
        }
        request
    }

    /// Sends a write to the leader (see the module doc).
    async fn to_leader<M, R, F, Fut>(
        &self,
        method: &'static str,
        message: M,
        call: F,
    ) -> Result<R, ControllerClientError>
    where
        M: Message + Clone,
        F: Fn(Rpc, tonic::Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let n = self.members.len();
        let first = self.leader.load(Ordering::Relaxed) % n;
        let mut order: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
        let mut failures = Vec::new();
        let mut i = 0;
        while let Some(&index) = order.get(i) {
            i += 1;
            let Some((address, rpc)) = self.members.get(index) else {
                continue;
            };
            match call(rpc.clone(), self.request(method, message.clone())).await {
                Ok(reply) => {
                    self.leader.store(index, Ordering::Relaxed);
                    return Ok(reply.into_inner());
                }
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    let hint = status
                        .metadata()
                        .get(LEADER_KEY)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|a| self.members.iter().position(|(m, _)| m == a));
                    match hint {
                        // Ask the named leader next (once).
                        Some(h) if h != index && !order[..i].contains(&h) => {
                            order.retain(|&o| o != h);
                            order.insert(i, h);
                            failures.push(format!("{address}: not the leader"));
                        }
                        _ if status.message().contains("is not the leader") => {
                            failures.push(format!("{address}: {}", status.message()));
                        }
                        _ => {
                            return Err(ControllerClientError::Refused {
                                address: address.clone(),
                                status,
                            })
                        }
                    }
                }
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::Unauthenticated
                            | tonic::Code::NotFound
                            | tonic::Code::ResourceExhausted
                    ) =>
                {
                    return Err(ControllerClientError::Refused {
                        address: address.clone(),
                        status,
                    })
                }
                Err(status) => failures.push(format!("{address}: {}", status.message())),
            }
        }
        Err(ControllerClientError::Unavailable(failures.join("; ")))
    }

    /// A broker's heartbeat; the reply is its group's assignment.
    ///
    /// # Errors
    /// [`ControllerClientError`]: refused, or no leader reachable.
    pub async fn heartbeat(
        &self,
        request: pb::BrokerHeartbeatRequest,
    ) -> Result<pb::GroupAssignment, ControllerClientError> {
        self.to_leader("BrokerHeartbeat", request, |mut rpc, r| async move {
            rpc.broker_heartbeat(r).await
        })
        .await
    }

    /// The master's in-sync set.
    ///
    /// # Errors
    /// As [`Self::heartbeat`]; `Refused` (FAILED_PRECONDITION) when the caller is not the
    /// current master at the current epoch.
    pub async fn report_in_sync(
        &self,
        request: pb::ReportInSyncRequest,
    ) -> Result<pb::GroupAssignment, ControllerClientError> {
        self.to_leader("ReportInSync", request, |mut rpc, r| async move {
            rpc.report_in_sync(r).await
        })
        .await
    }

    /// Elect a new master of a group now.
    ///
    /// # Errors
    /// As [`Self::heartbeat`]; `Refused` when no candidate is alive or the group is unknown.
    pub async fn elect_master(
        &self,
        cluster: &str,
        group: &str,
    ) -> Result<pb::GroupAssignment, ControllerClientError> {
        let request = pb::ElectMasterRequest {
            cluster: cluster.to_owned(),
            group: group.to_owned(),
        };
        self.to_leader("ElectMaster", request, |mut rpc, r| async move {
            rpc.elect_master(r).await
        })
        .await
    }

    /// The status from the first member that answers (the last leader first).
    ///
    /// # Errors
    /// [`ControllerClientError::Unavailable`] when no member answers;
    /// `Refused` on authentication.
    pub async fn status(&self) -> Result<pb::ControllerStatus, ControllerClientError> {
        let n = self.members.len();
        let first = self.leader.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in 0..n {
            let Some((address, rpc)) = self.members.get((first + i) % n) else {
                continue;
            };
            let request = self.request("Status", pb::ControllerStatusRequest {});
            match rpc.clone().status(request).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    return Err(ControllerClientError::Refused {
                        address: address.clone(),
                        status,
                    })
                }
                Err(status) => failures.push(format!("{address}: {}", status.message())),
            }
        }
        Err(ControllerClientError::Unavailable(failures.join("; ")))
    }
}
