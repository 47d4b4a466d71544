//! A replicated node's role: master (broker id 0) or a slave (its id ≥ 1 and its master's
//! replication address), decided at start from the data directory's role file when there is
//! one, else from the configuration (`broker.id`, `replication.master_addr`).
//!
//! A switchover changes roles at run time (the promoted slave takes id 0, the old master the
//! promoted slave's id, the other slaves a new master address) and writes them to the role file
//! (`<data_dir>/replication-role.json`, written atomically before the node acts on it), so a
//! restart keeps the roles the cluster agreed on instead of the configured ones: two nodes
//! never both start as the master of one group because of an old configuration. Deleting the
//! file returns a node to its configured role.
//!
//! Owns the file and the choice; must not touch the store.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The role file's name in the data directory.
pub(crate) const FILE: &str = "replication-role.json";

/// What a replicated node runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The group's master: broker id 0, takes writes, serves its slaves.
    Master,
    /// A slave: its broker id (≥ 1) and its master's replication address.
    Slave { id: u64, master: String },
}

impl Role {
    /// The broker id this role registers and replicates under.
    pub(crate) fn id(&self) -> u64 {
        match self {
            Self::Master => 0,
            Self::Slave { id, .. } => *id,
        }
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The role to start with: the role file's (for this cluster and group) or the configured one.
///
/// # Errors
/// An unreadable role file, or one of another cluster or group.
pub(crate) fn initial(
    data_dir: &Path,
    cluster: &str,
    group: &str,
    configured_id: u64,
    configured_master: &str,
) -> anyhow::Result<Role> {
    let file = path(data_dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(match configured_id {
                0 => Role::Master,
                id => Role::Slave {
                    id,
                    master: configured_master.to_owned(),
                },
            })
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", file.display()))?;
    let field = |name: &str| v.get(name).cloned().unwrap_or(serde_json::Value::Null);
    if field("cluster").as_str() != Some(cluster) || field("group").as_str() != Some(group) {
        anyhow::bail!(
            "{} was written for another cluster or group ({} / {}), not {cluster} / {group}: \
             remove it to use the configured role",
            file.display(),
            field("cluster"),
            field("group")
        );
    }
    let role = match (field("broker_id").as_u64(), field("master").as_str()) {
        (Some(0), _) => Role::Master,
        (Some(id), Some(master)) if !master.is_empty() => Role::Slave {
            id,
            master: master.to_owned(),
        },
        _ => anyhow::bail!(
            "{} must name a broker_id and, for a slave, its master",
            file.display()
        ),
    };
    tracing::info!(
        file = %file.display(),
        broker_id = role.id(),
        configured_broker_id = configured_id,
        "role from the role file (a switchover changed it; remove the file to use the configured role)"
    );
    Ok(role)
}

/// Persists `role` before the node acts on it.
///
/// # Errors
/// The file cannot be written.
pub(crate) fn save(data_dir: &Path, cluster: &str, group: &str, role: &Role) -> anyhow::Result<()> {
    let master = match role {
        Role::Master => String::new(),
        Role::Slave { master, .. } => master.clone(),
    };
    let body = serde_json::json!({
        "cluster": cluster,
        "group": group,
        "broker_id": role.id(),
        "master": master,
    });
    let file = path(data_dir);
    crate::write_json_atomically(&file, &body)
        .with_context(|| format!("cannot write {}", file.display()))?;
    // The rename is durable only once the directory is synced.
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_role_until_a_file_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(initial(d, "c", "g", 0, "").unwrap(), Role::Master);
        let slave = Role::Slave {
            id: 2,
            master: "127.0.0.1:1".into(),
        };
        assert_eq!(initial(d, "c", "g", 2, "127.0.0.1:1").unwrap(), slave);
        // A switchover made the configured master a slave and slave 2 the master.
        let demoted = Role::Slave {
            id: 2,
            master: "127.0.0.1:9".into(),
        };
        save(d, "c", "g", &demoted).unwrap();
        assert_eq!(initial(d, "c", "g", 0, "").unwrap(), demoted);
        save(d, "c", "g", &Role::Master).unwrap();
        assert_eq!(
            initial(d, "c", "g", 2, "127.0.0.1:1").unwrap(),
            Role::Master
        );
        // Another group's file is refused, not silently used or ignored.
        let err = initial(d, "c", "other", 0, "").unwrap_err().to_string();
        assert!(err.contains("another cluster or group"), "{err}");
        std::fs::write(d.join(FILE), "{").unwrap();
        assert!(initial(d, "c", "g", 0, "").is_err());
    }
}
