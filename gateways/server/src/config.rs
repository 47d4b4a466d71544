//! The server's configuration: one TOML file (optional), then `ROCKETGATE_*` environment
//! variables, then command-line flags, in increasing priority.
//!
//! Owns: the file format (`[store]`, `[limits]`, `[consumer]`, `[timer]`, `[transaction]` for
//! the core, `[nameserver]` for the NameServer, `[broker]` for the broker's identity and
//! registration, `[listen]` for every listen address, `[gateways]` for which gateways run,
//! `[grpc]` for the RocketMQ 5 gRPC protocol, `[http]` for REST and WebSocket, `[mqtt]` for
//! the MQTT gateway;
//! documented in `default.toml`), the layering and the validation. Unknown keys and sections,
//! malformed addresses and invalid values are errors of one line that name the key or flag.

use std::net::SocketAddr;
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
    /// NameServers to register with, `IP:PORT` separated by `;` or `,` (repeatable; overrides
    /// `broker.namesrv`).
    #[arg(long, env = "ROCKETGATE_NAMESRV", value_name = "ADDRS")]
    pub namesrv: Vec<String>,
    /// gRPC listen address (overrides `listen.grpc`; port 0 picks a free port).
    #[arg(long, env = "ROCKETGATE_GRPC_ADDR", value_name = "ADDR")]
    pub grpc_addr: Option<String>,
    /// HTTP listen address (overrides `listen.http`).
    #[arg(long, env = "ROCKETGATE_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// MQTT over TCP listen address (overrides `listen.mqtt`).
    #[arg(long, env = "ROCKETGATE_MQTT_ADDR", value_name = "ADDR")]
    pub mqtt_addr: Option<String>,
    /// MQTT over WebSocket listen address (overrides `listen.mqtt_ws`).
    #[arg(long, env = "ROCKETGATE_MQTT_WS_ADDR", value_name = "ADDR")]
    pub mqtt_ws_addr: Option<String>,
    /// The NameServer's listen address (overrides `listen.nameserver`).
    #[arg(
        long,
        visible_alias = "listen",
        env = "ROCKETGATE_NAMESERVER_ADDR",
        value_name = "ADDR"
    )]
    pub nameserver_addr: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// `[broker]`: identity and NameServer registration of `broker` and `standalone`.
    pub broker: BrokerSection,
    /// `[listen]`: where each server listens.
    pub listen: Listen,
    /// `[gateways]`: which gateways run.
    pub gateways: Gateways,
    /// `[grpc]`: the RocketMQ 5 gRPC protocol (long polling, request size).
    pub grpc: rocketgate_gateway_grpc::MessagingConfig,
    /// `[http]`: REST and WebSocket (limits, long polls, origins, transaction callbacks).
    pub http: rocketgate_gateway_http::HttpConfig,
    /// `[mqtt]`: the MQTT gateway (limits, sessions, authentication, topic mapping).
    pub mqtt: rocketgate_gateway_mqtt::MqttConfig,
}

/// The broker's identity and registration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// Cluster name (RocketMQ `brokerClusterName`).
    pub cluster: String,
    /// Broker group name (RocketMQ `brokerName`).
    pub name: String,
    /// 0 for the master, anything else for a slave.
    pub id: u64,
    /// NameServers to register with (`IP:PORT` or `host:port`). `standalone` registers with its
    /// own NameServer as well.
    pub namesrv: Vec<String>,
    /// Host (name or IP) put in the routes for every endpoint. Empty: the listen IP, which must
    /// then not be a wildcard.
    pub advertised_host: String,
    /// How often the broker heartbeats each NameServer (ms).
    pub heartbeat_interval_ms: u64,
    /// Bound on each NameServer call, connection included (ms).
    pub rpc_timeout_ms: u64,
    /// How often the routes the gRPC gateway answers QueryRoute with are refreshed from the
    /// NameServers (ms).
    pub route_refresh_ms: u64,
}

impl Default for BrokerSection {
    fn default() -> Self {
        let client = rocketgate_nameserver::ClientConfig::default();
        Self {
            cluster: "DefaultCluster".into(),
            name: "broker-a".into(),
            id: 0,
            namesrv: Vec::new(),
            advertised_host: String::new(),
            heartbeat_interval_ms: client.heartbeat_interval_ms,
            rpc_timeout_ms: client.rpc_timeout_ms,
            route_refresh_ms: rocketgate_nameserver::RouteCacheConfig::default()
                .refresh_interval_ms,
        }
    }
}

/// Listen addresses. Port 0 picks a free port; the bound address is logged and written to the
/// ready file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// The NameServer's gRPC address (`nameserver`, `standalone`).
    pub nameserver: SocketAddr,
    /// The broker's gRPC address: `BrokerAdmin` (and the RocketMQ 5 protocol).
    pub grpc: SocketAddr,
    /// The HTTP gateway.
    pub http: SocketAddr,
    /// MQTT over TCP.
    pub mqtt: SocketAddr,
    /// MQTT over WebSocket.
    pub mqtt_ws: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            nameserver: local(9876),
            grpc: local(8081),
            http: local(8080),
            mqtt: local(1883),
            mqtt_ws: local(8083),
        }
    }
}

/// Which gateways a broker runs (the gRPC endpoint always runs: it carries `BrokerAdmin`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Gateways {
    /// The HTTP gateway on `listen.http`.
    pub http: bool,
    /// MQTT on `listen.mqtt` and `listen.mqtt_ws`.
    pub mqtt: bool,
}

impl Default for Gateways {
    fn default() -> Self {
        Self {
            http: true,
            mqtt: true,
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
                anyhow::anyhow!(
                    "invalid config file {}: {}{}",
                    path.display(),
                    where_in(&text, &e),
                    e.message()
                )
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
    let flags = [
        (
            "--grpc-addr / ROCKETGATE_GRPC_ADDR",
            &args.grpc_addr,
            &mut cfg.listen.grpc,
        ),
        (
            "--http-addr / ROCKETGATE_HTTP_ADDR",
            &args.http_addr,
            &mut cfg.listen.http,
        ),
        (
            "--mqtt-addr / ROCKETGATE_MQTT_ADDR",
            &args.mqtt_addr,
            &mut cfg.listen.mqtt,
        ),
        (
            "--mqtt-ws-addr / ROCKETGATE_MQTT_WS_ADDR",
            &args.mqtt_ws_addr,
            &mut cfg.listen.mqtt_ws,
        ),
        (
            "--nameserver-addr / ROCKETGATE_NAMESERVER_ADDR",
            &args.nameserver_addr,
            &mut cfg.listen.nameserver,
        ),
    ];
    for (flag, value, slot) in flags {
        if let Some(value) = value {
            *slot = parse_listen(flag, value)?;
        }
    }
    if !args.namesrv.is_empty() {
        cfg.broker.namesrv = split_addresses(&args.namesrv);
    }
    cfg.core().validate()?;
    cfg.nameserver.validate().map_err(|e| {
        anyhow::anyhow!("invalid configuration `nameserver.{}`: {}", e.key, e.reason)
    })?;
    validate_broker(&cfg.broker)?;
    cfg.grpc
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration `grpc.{}`: {}", e.field, e.reason))?;
    cfg.http
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok(cfg)
}

/// `line N (`text`): ` for a TOML error with a position, so the message names the key.
fn where_in(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return String::new();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    if line.is_empty() {
        format!("line {line_no}: ")
    } else {
        format!("line {line_no} (`{line}`): ")
    }
}

/// Parses a listen address given by `flag`, with a one-line error naming the flag.
fn parse_listen(flag: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid address `{value}` for {flag}: expected IP:PORT, e.g. 127.0.0.1:8081"
        )
    })
}

/// `a;b,c` and repeated flags → `[a, b, c]`.
fn split_addresses(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split([';', ',']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn validate_broker(b: &BrokerSection) -> anyhow::Result<()> {
    use rocketgate_nameserver::{BrokerName, ClusterName};
    ClusterName::new(b.cluster.clone())
        .map_err(|e| anyhow::anyhow!("invalid configuration `broker.cluster`: {}", e.reason))?;
    BrokerName::new(b.name.clone())
        .map_err(|e| anyhow::anyhow!("invalid configuration `broker.name`: {}", e.reason))?;
    for (key, value) in [
        ("heartbeat_interval_ms", b.heartbeat_interval_ms),
        ("rpc_timeout_ms", b.rpc_timeout_ms),
        ("route_refresh_ms", b.route_refresh_ms),
    ] {
        if value == 0 {
            anyhow::bail!("invalid configuration `broker.{key}`: must be greater than 0");
        }
    }
    for address in &b.namesrv {
        let ok = address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok || address.contains(char::is_whitespace) {
            anyhow::bail!(
                "invalid NameServer address `{address}` in `broker.namesrv` / --namesrv / ROCKETGATE_NAMESRV: expected host:port"
            );
        }
    }
    let host = &b.advertised_host;
    if host.len() > 200 || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        anyhow::bail!(
            "invalid configuration `broker.advertised_host`: `{host}` is not a host name or IP"
        );
    }
    Ok(())
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
        assert_eq!(cfg.broker, BrokerSection::default());
        assert_eq!(cfg.gateways, Gateways::default());
        assert_eq!(
            cfg.grpc,
            rocketgate_gateway_grpc::MessagingConfig::default()
        );
        assert!(cfg.mqtt == rocketgate_gateway_mqtt::MqttConfig::default());
        assert_eq!(cfg.http, rocketgate_gateway_http::HttpConfig::default());
    }

    #[test]
    fn flags_override_listen_addresses_and_nameservers() {
        let args = RunArgs {
            grpc_addr: Some("127.0.0.1:0".into()),
            nameserver_addr: Some("0.0.0.0:19876".into()),
            namesrv: vec!["10.0.0.1:9876;10.0.0.2:9876".into(), "ns3:9876".into()],
            ..RunArgs::default()
        };
        let cfg = load(&args).unwrap();
        assert_eq!(cfg.listen.grpc.port(), 0);
        assert_eq!(cfg.listen.nameserver.port(), 19876);
        assert_eq!(
            cfg.broker.namesrv,
            ["10.0.0.1:9876", "10.0.0.2:9876", "ns3:9876"]
        );
    }

    #[test]
    fn malformed_addresses_name_the_flag_or_key() {
        let args = RunArgs {
            http_addr: Some("localhost".into()),
            ..RunArgs::default()
        };
        let err = load(&args).unwrap_err().to_string();
        assert!(
            err.contains("--http-addr") && err.contains("localhost"),
            "{err}"
        );
        let args = RunArgs {
            namesrv: vec!["nohost".into()],
            ..RunArgs::default()
        };
        let err = load(&args).unwrap_err().to_string();
        assert!(err.contains("nohost"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[listen]\ngrpc = \"1.2.3.4\"\n").unwrap();
        let args = RunArgs {
            config: Some(file),
            ..RunArgs::default()
        };
        let err = load(&args).unwrap_err().to_string();
        assert!(err.contains("grpc = \"1.2.3.4\""), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<ServerConfig>("[store]\nbogus = 1\n").unwrap_err();
        assert!(err.message().contains("bogus"), "{}", err.message());
        let err = toml::from_str::<ServerConfig>("[bogus]\nx = 1\n").unwrap_err();
        assert!(err.message().contains("bogus"), "{}", err.message());
    }
}
