//! The failover controller (issue 16): a Raft group of 1 or 3 members, embedded in
//! `rocketgate nameserver` processes (`[controller]`), that keeps every broker group's members,
//! in-sync set, master and master epoch, and elects a new master when a master's heartbeats stop.
//! Data never goes through it: brokers replicate among themselves (docs/replication.md); the
//! controller only decides who the master is and at which epoch (docs/cluster.md "Controller").
//!
//! Why here, in the NameServer crate: the controller runs inside NameServer processes, shares
//! their cluster secret, connection limits and TLS listener (`listener`), and like the
//! NameServer must not depend on the core; a crate of its own would have to re-export all of
//! that.
//!
//! # Layout
//!
//! - [`config`]: [`ControllerConfig`] (`[controller]`).
//! - [`state`]: the replicated state ([`state::Groups`]), its commands and the election rule.
//!   Pure.
//! - [`liveness`]: the leader's memory of heartbeats and the elections due. Pure.
//! - `store`: the Raft log in redb (and why redb); `machine`: the state machine and its
//!   snapshots.
//! - `network` / [`service`]: Raft over our own tonic service, and the `Controller` service
//!   brokers and tools call; [`auth`]: the cluster signature on both.
//! - [`client`]: [`ControllerClient`], what brokers and `rocketgate admin cluster status` use.
//!
//! Openraft (0.9, the current stable line) runs the consensus: elections of the controller
//! leader every 400–800 ms without a leader heartbeat (100 ms). The leader runs the election
//! loop ([`Controller`]): every `heartbeat_timeout_ms / 10` it replaces masters silent for
//! longer than `heartbeat_timeout_ms` (`liveness.rs`), through a Raft command, so every member
//! agrees on the new master and epoch. Must not touch the route tables of the NameServer.

pub mod auth;
pub mod client;
pub mod config;
pub mod liveness;
mod machine;
mod network;
pub mod service;
pub mod state;
mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ServerState};
use parking_lot::Mutex;
use rocketgate_proto::cluster::v1 as pb;
use thiserror::Error;
use tokio::task::JoinHandle;
use tonic::transport::Server;

pub use self::auth::Key;
pub use self::client::{ControllerClient, ControllerClientError};
pub use self::config::ControllerConfig;
use self::liveness::Liveness;
use self::service::{ControllerService, RaftService, Shared};
use self::state::{Command, Outcome};
use crate::client::ClientTls;
use crate::config::ConfigError;
use crate::listener::{self, ConnectionLimits, ServerTls};

openraft::declare_raft_types!(
    /// The controller's Raft types: commands and outcomes of [`state`], `u64` member ids,
    /// members reached at a `host:port`.
    pub TypeConfig:
        D = Command,
        R = Outcome,
);

/// The controller's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Why a controller member could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The settings cannot work.
    #[error("invalid controller config `{}`: {}", .0.key, .0.reason)]
    Config(#[from] ConfigError),
    /// The data directory cannot be used.
    #[error("controller data dir {path}: {reason}")]
    Storage {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Raft did not start.
    #[error("controller Raft: {0}")]
    Raft(String),
}

/// What a member needs besides [`ControllerConfig`].
#[derive(Debug, Clone, Default)]
pub struct ControllerOptions {
    /// The cluster secret's controller key; `None`: calls are not authenticated.
    pub key: Option<Key>,
    /// TLS of the listener.
    pub server_tls: Option<Arc<dyn ServerTls>>,
    /// TLS of the calls to the other members.
    pub client_tls: Option<ClientTls>,
    /// Connection limits of the listener.
    pub connections: ConnectionLimits,
}

/// A running controller member: its Raft, its listener and (while leader) its election loop.
pub struct Controller {
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    elections: JoinHandle<()>,
    local_addr: std::net::SocketAddr,
    db: Arc<redb::Database>,
}

impl Controller {
    /// Starts the member `config.id` serving on `listener`: opens (or creates) its Raft log in
    /// `config.data_dir`, serves Raft and the `Controller` service, initializes the group with
    /// `config.members` if this member has never been initialized (every member may do it:
    /// the first log entry is the same everywhere), and runs the election loop.
    ///
    /// # Errors
    /// [`ControllerError`] when the settings do not validate, the data directory cannot be
    /// opened or Raft does not start.
    pub async fn start(
        config: &ControllerConfig,
        listener: tokio::net::TcpListener,
        options: ControllerOptions,
    ) -> Result<Self, ControllerError> {
        config.validate()?;
        let members = config.member_ids()?;
        let storage = |e: &dyn std::fmt::Display| ControllerError::Storage {
            path: config.data_dir.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| storage(&e))?;
        let db = store::open(&config.data_dir).map_err(|e| storage(&e))?;
        let machine = machine::StateMachine::open(Arc::clone(&db)).map_err(|e| storage(&e))?;
        let state = machine.shared();
        let raft_config = openraft::Config {
            cluster_name: "rocketgate-controller".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let factory = network::Factory {
            key: options.key.clone(),
            tls: options.client_tls.clone(),
        };
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            factory,
            store::LogStore::new(Arc::clone(&db)),
            machine,
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

        let timeout = Duration::from_millis(config.heartbeat_timeout_ms);
        let shared = Arc::new(Shared {
            id: config.id,
            raft: raft.clone(),
            state,
            members: members.clone(),
            key: options.key,
            replay: Mutex::new(service::replay_guard()),
            liveness: Mutex::new(Liveness::new(timeout, tokio::time::Instant::now())),
            unclean: config.unclean_election,
        });
        let local_addr = listener.local_addr().map_err(|e| storage(&e))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = serve(
            &shared,
            listener,
            &options.connections,
            options.server_tls,
            {
                let mut stopped = stopped.clone();
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }
            },
        );
        let server = tokio::spawn(server);

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        if !initialized {
            let nodes: BTreeMap<u64, BasicNode> = members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            if let Err(e) = raft.initialize(nodes).await {
                // Another member initialized first and already replicated to us: fine.
                tracing::debug!(error = %e, "controller already initialized");
            }
        }
        let tick = (timeout / 10).max(Duration::from_millis(20));
        let elections = tokio::spawn(run_elections(Arc::clone(&shared), tick, stopped));
        tracing::info!(id = config.id, %local_addr, members = members.len(), "controller started");
        Ok(Self {
            shared,
            stop,
            server,
            elections,
            local_addr,
            db,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// This member's Raft (metrics, tests).
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// The controller as this member sees it.
    pub fn status(&self) -> pb::ControllerStatus {
        status(&self.shared)
    }

    /// Stops the election loop, Raft and the listener, and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.shared.raft.shutdown().await {
            tracing::warn!(error = %e, "controller Raft did not stop cleanly");
        }
        let _ = self.elections.await;
        match self.server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "controller listener failed"),
            Err(e) => tracing::warn!(error = %e, "controller listener task failed"),
            Ok(Ok(())) => {}
        }
        // Raft's storage tasks end shortly after its core: wait (bounded) until the database
        // is ours alone, so the same data dir can be opened again at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&self.db) > 1 {
            tracing::warn!(
                id = self.shared.id,
                "controller storage still in use after stop"
            );
        }
        tracing::info!(id = self.shared.id, "controller stopped");
    }
}

fn serve(
    shared: &Arc<Shared>,
    listener: tokio::net::TcpListener,
    limits: &ConnectionLimits,
    tls: Option<Arc<dyn ServerTls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static {
    let incoming = listener::Incoming::new(listener, "controller", limits.clone()).with_tls(tls);
    Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval()))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout()))
        .layer(listener::TrackCallsLayer)
        .add_service(
            pb::controller_raft_server::ControllerRaftServer::new(RaftService(Arc::clone(shared)))
                .max_decoding_message_size(network::MAX_RAFT_BYTES)
                .max_encoding_message_size(network::MAX_RAFT_BYTES),
        )
        .add_service(pb::controller_server::ControllerServer::new(
            ControllerService(Arc::clone(shared)),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
}

/// The status as `shared` sees it.
fn status(shared: &Shared) -> pb::ControllerStatus {
    let metrics = shared.raft.metrics().borrow().clone();
    let state = shared.state.read();
    pb::ControllerStatus {
        node_id: shared.id,
        has_leader: metrics.current_leader.is_some(),
        leader_id: metrics.current_leader.unwrap_or(0),
        term: metrics.current_term,
        last_applied: state.last_applied.map_or(0, |l| l.index),
        members: shared
            .members
            .iter()
            .map(|(id, address)| pb::ControllerMember {
                id: *id,
                address: address.clone(),
            })
            .collect(),
        groups: state
            .groups
            .iter()
            .map(|(c, g, group)| {
                // Liveness is the leader's memory: other members show none.
                let alive = match metrics.current_leader == Some(shared.id) {
                    true => shared
                        .liveness
                        .lock()
                        .alive(c, g, tokio::time::Instant::now())
                        .into_iter()
                        .collect(),
                    false => Vec::new(),
                };
                service::assignment(c, g, group, alive)
            })
            .collect(),
    }
}

/// The election loop: while this member leads, every `tick` it proposes the elections
/// [`Liveness::due`] decides.
async fn run_elections(
    shared: Arc<Shared>,
    tick: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut leading_term = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let (leader, term) = {
            let m = shared.raft.metrics().borrow().clone();
            (
                m.state == ServerState::Leader && m.current_leader == Some(shared.id),
                m.current_term,
            )
        };
        if !leader {
            leading_term = None;
            continue;
        }
        let now = tokio::time::Instant::now();
        if leading_term != Some(term) {
            shared.liveness.lock().reset(now);
            leading_term = Some(term);
            tracing::info!(id = shared.id, term, "controller leader: watching masters");
            continue;
        }
        let groups = shared.state.read().groups.clone();
        let due = shared.liveness.lock().due(&groups, now, shared.unclean);
        for d in due {
            tracing::warn!(
                cluster = %d.cluster,
                group = %d.group,
                epoch = d.expected_epoch,
                new_master = d.master,
                "the master stopped heartbeating: electing a new one"
            );
            let command = Command::Elect {
                cluster: d.cluster.clone(),
                group: d.group.clone(),
                expected_epoch: d.expected_epoch,
                master: d.master,
            };
            // Bounded: without a quorum the write cannot commit; the loop tries again later
            // (a proposal that commits after all makes the retry's epoch check refuse it).
            let write = tokio::time::timeout(tick * 10, shared.raft.client_write(command));
            let Ok(written) = write.await else {
                tracing::warn!(
                    cluster = %d.cluster,
                    group = %d.group,
                    "election not committed in time (no quorum?); retried"
                );
                continue;
            };
            match written {
                Ok(r) => match r.data.refused {
                    None => tracing::warn!(
                        cluster = %d.cluster,
                        group = %d.group,
                        new_master = d.master,
                        "new master elected"
                    ),
                    Some(reason) => tracing::info!(%reason, "election not applied"),
                },
                Err(e) => tracing::warn!(error = %e, "election not committed; retried"),
            }
        }
    }
}
