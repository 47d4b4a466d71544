//! `[replication]`: whether this broker takes part in replication (a master serves the
//! `Replication` service on `listen`; a slave, `broker.id` ≥ 1, follows `master_addr`), the
//! mode and the largest frame. The signing key is derived from the cluster secret at load.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Replication's mode.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// A write is acknowledged once the master has it; slaves follow as fast as they can.
    #[default]
    Async,
}

super::any_case!(ReplicationMode { "async" => Async });

/// `[replication]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSection {
    /// On: a master (`broker.id` = 0) serves its slaves on `listen` and opens a new epoch at
    /// every start; a slave follows `master_addr`.
    pub enabled: bool,
    /// `async` (phase 2a; `sync` comes with phase 2b).
    pub mode: ReplicationMode,
    /// Where a master serves `Replication`.
    pub listen: SocketAddr,
    /// The master's replication address (`host:port`), for a slave.
    pub master_addr: String,
    /// Largest frame of the stream, in bytes (at least `limits.max_body_bytes` + 64 KiB, since
    /// a CommitLog record is never split).
    pub max_frame_bytes: usize,
    /// Most connections at once on `listen`.
    pub max_connections: usize,
    /// The key calls are signed with (from the cluster secret); never written.
    #[serde(skip)]
    pub(crate) key: Option<crate::replication::auth::Key>,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: ReplicationMode::Async,
            listen: SocketAddr::from(([127, 0, 0, 1], 10912)),
            master_addr: String::new(),
            max_frame_bytes: 8 << 20,
            max_connections: 64,
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
        Ok(())
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
