//! The controller's settings (`[controller]`, docs/cluster.md): whether it runs, this member's
//! id, every member's address, the data directory of its Raft log, the heartbeat timeout after
//! which a master is replaced, and whether an election may pick a broker outside the in-sync
//! set. Validation only; the binary fills the listen address and secret from flags and env.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[controller]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// Run a controller member in this `rocketgate nameserver` process.
    pub enabled: bool,
    /// This member's id (a key of `members`).
    pub id: u64,
    /// Every member: id → the address other members and brokers reach its controller
    /// listener at (`host:port`). 1 or 3 members.
    pub members: BTreeMap<String, String>,
    /// Where the Raft log and snapshots live (`raft.redb`).
    pub data_dir: PathBuf,
    /// The controller listener (`IP:PORT`); default this member's address in `members`.
    pub listen: Option<String>,
    /// A master silent for this long (ms) is replaced.
    pub heartbeat_timeout_ms: u64,
    /// Elect a broker outside the in-sync set when no in-sync one is alive (may lose
    /// acknowledged messages).
    pub unclean_election: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            id: 1,
            members: BTreeMap::new(),
            data_dir: PathBuf::from("data/controller"),
            listen: None,
            heartbeat_timeout_ms: 3_000,
            unclean_election: false,
        }
    }
}

impl ControllerConfig {
    /// The members by numeric id.
    ///
    /// # Errors
    /// A [`ConfigError`] when an id is not a number or an address is empty.
    pub fn member_ids(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        self.members
            .iter()
            .map(|(id, address)| {
                let parsed = id.parse::<u64>().map_err(|_| ConfigError {
                    key: "controller.members",
                    reason: format!("member id `{id}` is not a number"),
                })?;
                if address.trim().is_empty() {
                    return Err(ConfigError {
                        key: "controller.members",
                        reason: format!("member {id} has no address"),
                    });
                }
                Ok((parsed, address.clone()))
            })
            .collect()
    }

    /// The address to listen on.
    ///
    /// # Errors
    /// As [`Self::validate`].
    pub fn listen_address(&self) -> Result<String, ConfigError> {
        if let Some(listen) = &self.listen {
            return Ok(listen.clone());
        }
        self.member_ids()?
            .remove(&self.id)
            .ok_or_else(|| self.not_a_member())
    }

    fn not_a_member(&self) -> ConfigError {
        ConfigError {
            key: "controller.id",
            reason: format!("{} is not a key of controller.members", self.id),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key: not 1 or 3 members, `id` not among them, a timeout
    /// below 100 ms or above 10 min.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let members = self.member_ids()?;
        if members.len() != 1 && members.len() != 3 {
            return Err(ConfigError {
                key: "controller.members",
                reason: format!(
                    "a controller has 1 or 3 members (got {}): 3 survive the loss of one",
                    members.len()
                ),
            });
        }
        if !members.contains_key(&self.id) {
            return Err(self.not_a_member());
        }
        if !(100..=600_000).contains(&self.heartbeat_timeout_ms) {
            return Err(ConfigError {
                key: "controller.heartbeat_timeout_ms",
                reason: format!(
                    "must be 100..=600000 ms (got {})",
                    self.heartbeat_timeout_ms
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn members_are_one_or_three_and_include_this_id() {
        let mut c: ControllerConfig = toml::from_str(
            r#"
            enabled = true
            id = 2
            members = { 1 = "127.0.0.1:9001", 2 = "127.0.0.1:9002", 3 = "127.0.0.1:9003" }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.heartbeat_timeout_ms, 3000);
        assert!(!c.unclean_election);
        assert_eq!(c.listen_address().unwrap(), "127.0.0.1:9002");
        c.id = 4;
        assert_eq!(c.validate().unwrap_err().key, "controller.id");
        c.id = 1;
        c.members.remove("3");
        assert_eq!(c.validate().unwrap_err().key, "controller.members");
        c.members.insert("x".into(), "a:1".into());
        assert!(c.validate().unwrap_err().reason.contains("not a number"));
        let bad: Result<ControllerConfig, _> = toml::from_str("enabeld = true");
        assert!(bad.is_err());
        let mut one = ControllerConfig::default();
        one.members.insert("1".into(), "127.0.0.1:1".into());
        one.validate().unwrap();
        one.heartbeat_timeout_ms = 10;
        assert_eq!(
            one.validate().unwrap_err().key,
            "controller.heartbeat_timeout_ms"
        );
    }
}
