//! The server's configuration: one TOML file (optional), then `ROCKETGATE_*` environment
//! variables, then command-line flags, in increasing priority.
//!
//! Owns: the file format (`[store]`, `[limits]`, `[consumer]`, `[timer]`, `[transaction]` for
//! the core, `[nameserver]` for the NameServer, `[listen]` for every listen address; documented
//! in `default.toml`), the layering and the validation; unknown keys and sections are errors
//! that name the key.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The default configuration, printed by `rocketgate generate-config`.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Flags shared by the commands that run a broker.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Configuration file (TOML). Without one, built-in defaults are used.
    #[arg(long, short = 'c', env = "ROCKETGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `store.data_dir`).
    #[arg(long, env = "ROCKETGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Flush mode: SYNC or ASYNC (overrides `store.flush_mode`).
    #[arg(long, env = "ROCKETGATE_FLUSH_MODE")]
    pub flush_mode: Option<String>,
    /// Log filter (`RUST_LOG` syntax), default `info`.
    #[arg(long)]
    pub log: Option<String>,
    /// Write a JSON file with the pid and addresses once the server is ready (for scripts/tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `[store]`.
    pub store: rocketgate_core::StoreConfig,
    /// `[limits]`.
    pub limits: rocketgate_core::LimitsConfig,
    /// `[consumer]`.
    pub consumer: rocketgate_core::ConsumerConfig,
    /// `[timer]`.
    pub timer: rocketgate_core::config::TimerConfig,
    /// `[transaction]`.
    pub transaction: rocketgate_core::config::TransactionConfig,
    /// `[nameserver]`: route expiry and limits of `rocketgate nameserver`.
    pub nameserver: rocketgate_nameserver::Config,
    /// `[listen]`: where each server listens.
    pub listen: Listen,
}

/// Listen addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// The NameServer's gRPC address (`rocketgate nameserver`).
    pub nameserver: std::net::SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            nameserver: std::net::SocketAddr::from(([127, 0, 0, 1], 9876)),
        }
    }
}

impl ServerConfig {
    /// The core's part.
    pub fn core(&self) -> rocketgate_core::Config {
        rocketgate_core::Config {
            store: self.store.clone(),
            limits: self.limits.clone(),
            consumer: self.consumer.clone(),
            timer: self.timer.clone(),
            transaction: self.transaction.clone(),
        }
    }
}

/// Loads the configuration for `args`.
///
/// # Errors
/// An unreadable or invalid file, an unknown key, or an invalid value.
pub fn load(args: &RunArgs) -> anyhow::Result<ServerConfig> {
    let mut cfg: ServerConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text).map_err(|e| {
                anyhow::anyhow!("invalid config file {}: {}", path.display(), e.message())
            })?
        }
        None => ServerConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        cfg.store.data_dir = dir.clone();
    }
    if let Some(mode) = &args.flush_mode {
        cfg.store.flush_mode = match mode.to_ascii_uppercase().as_str() {
            "SYNC" | "SYNC_FLUSH" => rocketgate_core::FlushMode::Sync,
            "ASYNC" | "ASYNC_FLUSH" => rocketgate_core::FlushMode::Async,
            other => anyhow::bail!("invalid flush mode `{other}` (expected SYNC or ASYNC)"),
        };
    }
    cfg.core().validate()?;
    cfg.nameserver.validate().map_err(|e| {
        anyhow::anyhow!("invalid configuration `nameserver.{}`: {}", e.key, e.reason)
    })?;
    Ok(cfg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_defaults() {
        let cfg: ServerConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(cfg.core(), rocketgate_core::Config::default());
        assert_eq!(cfg.nameserver, rocketgate_nameserver::Config::default());
        assert_eq!(cfg.listen, Listen::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<ServerConfig>("[store]\nbogus = 1\n").unwrap_err();
        assert!(err.message().contains("bogus"), "{}", err.message());
        let err = toml::from_str::<ServerConfig>("[bogus]\nx = 1\n").unwrap_err();
        assert!(err.message().contains("bogus"), "{}", err.message());
    }
}
