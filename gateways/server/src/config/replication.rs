//! `[replication]`: whether this broker takes part in replication (a master serves the
//! `Replication` service on `listen`; a slave, `broker.id` ≥ 1, follows `master_addr`), the
//! mode (ASYNC or SYNC), the in-sync set's rules and the largest frame. The signing key is derived from the cluster secret at load.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Replication's mode.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// A write is acknowledged once the master has it; slaves follow as fast as they can.
    #[default]
    Async,
    /// A write is acknowledged once the master and every in-sync slave have it (and have
    /// fsynced it under `store.flush_mode = "SYNC"`); RocketMQ's `SYNC_MASTER`.
    Sync,
}

impl std::str::FromStr for ReplicationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "async" | "async_master" => Ok(Self::Async),
            "sync" | "sync_master" => Ok(Self::Sync),
            other => Err(format!(
                "`{other}` is not a replication mode (async or sync)"
            )),
        }
    }
}

super::any_case!(ReplicationMode {
    "async" => Async,
    "async_master" => Async,
    "sync" => Sync,
    "sync_master" => Sync,
});

/// `[replication]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSection {
    /// On: a master (`broker.id` = 0) serves its slaves on `listen` and opens a new epoch at
    /// every start; a slave follows `master_addr`.
    pub enabled: bool,
    /// `async` or `sync` (a master's; see [`ReplicationMode`]).
    pub mode: ReplicationMode,
    /// Replicas (the master included) that must be in sync for a `sync` master to take a
    /// write; fewer refuses writes. 1: the master alone suffices.
    pub min_in_sync_replicas: usize,
    /// A slave further behind the master's end than this many bytes leaves the in-sync set.
    pub in_sync_max_lag_bytes: u64,
    /// A slave that has not caught up to what the master had this long ago (ms) leaves the
    /// in-sync set; a `sync` send waits at most about this long for a slave that went silent.
    pub in_sync_max_lag_ms: u64,
    /// Where a master serves `Replication`.
    pub listen: SocketAddr,
    /// The master's replication address (`host:port`), for a slave.
    pub master_addr: String,
    /// Largest frame of the stream, in bytes (at least `limits.max_body_bytes` + 64 KiB, since
    /// a CommitLog record is never split).
    pub max_frame_bytes: usize,
    /// Most connections at once on `listen`.
    pub max_connections: usize,
    /// A slave whose master's retention deleted what it needs next discards its copy and
    /// starts over from the master's oldest segment (off: it logs why and keeps retrying).
    pub auto_resync: bool,
    /// A slave serves reads on its gRPC and HTTP gateways (pull by offset, queries, topics,
    /// committed offsets; writes refused) while it follows.
    pub slave_reads: bool,
    /// The key calls are signed with (from the cluster secret); never written.
    #[serde(skip)]
    pub(crate) key: Option<crate::replication::auth::Key>,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: ReplicationMode::Async,
            min_in_sync_replicas: 1,
            in_sync_max_lag_bytes: 256 << 20,
            in_sync_max_lag_ms: 3000,
            listen: SocketAddr::from(([127, 0, 0, 1], 10912)),
            master_addr: String::new(),
            max_frame_bytes: 8 << 20,
            max_connections: 64,
            auto_resync: true,
            slave_reads: true,
            key: None,
        }
    }
}

impl ReplicationSection {
    /// Checks the values against the broker's id and body limit.
    ///
    /// # Errors
    /// A slave without a master address, a frame smaller than a record may be.
    pub fn validate(&self, broker_id: u64, max_body: usize) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if broker_id >= 1 && self.master_addr.trim().is_empty() {
            anyhow::bail!(
                "invalid configuration `replication.master_addr`: a slave (broker.id >= 1) \
                 needs its master's replication address (--master-addr / \
                 ROCKETGATE_MASTER_ADDR)"
            );
        }
        let least = max_body.saturating_add(64 << 10);
        if self.max_frame_bytes < least {
            anyhow::bail!(
                "invalid configuration `replication.max_frame_bytes`: must be at least \
                 limits.max_body_bytes + 64 KiB ({least}), a record is never split"
            );
        }
        if self.max_connections == 0 {
            anyhow::bail!("invalid configuration `replication.max_connections`: must be > 0");
        }
        let most = rocketgate_core::replication::MAX_SLAVES + 1;
        if self.min_in_sync_replicas == 0 || self.min_in_sync_replicas > most {
            anyhow::bail!(
                "invalid configuration `replication.min_in_sync_replicas`: must be between 1 \
                 (the master alone) and {most} (the master and {} slaves)",
                most - 1
            );
        }
        if self.in_sync_max_lag_ms == 0 || self.in_sync_max_lag_bytes == 0 {
            anyhow::bail!(
                "invalid configuration `replication.in_sync_max_lag_ms` / \
                 `in_sync_max_lag_bytes`: must be > 0"
            );
        }
        Ok(())
    }

    /// The core policy of a master with these settings under `flush_mode`.
    pub fn policy(
        &self,
        flush_mode: rocketgate_core::FlushMode,
    ) -> rocketgate_core::replication::SyncPolicy {
        use rocketgate_core::replication::{ReplicationMode as Mode, SyncPolicy};
        SyncPolicy {
            mode: match self.mode {
                ReplicationMode::Async => Mode::Async,
                ReplicationMode::Sync => Mode::Sync,
            },
            min_in_sync_replicas: self.min_in_sync_replicas,
            max_lag_bytes: self.in_sync_max_lag_bytes,
            max_lag: std::time::Duration::from_millis(self.in_sync_max_lag_ms),
            flushed: flush_mode == rocketgate_core::FlushMode::Sync,
        }
    }
}

/// The raw `nameserver.cluster_secret` of a config file, if any (the NameServer's type keeps
/// only its own derived key).
pub(crate) fn file_secret(text: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(text).ok()?;
    value
        .get("nameserver")?
        .get("cluster_secret")?
        .as_str()
        .map(str::to_owned)
}
