//! The server's configuration: one TOML file (optional), then `ROCKETGATE_*` environment
//! variables, then command-line flags, in increasing priority.
//!
//! Owns: the file format (`[store]`, `[limits]`, `[consumer]`, `[timer]`, `[transaction]`,
//! `[kv]`, `[auth]` for the core, `[broker]` for the broker's identity and registration, `[tls]`
//! for every listener (`config/tls.rs`), and one section per
//! listener that owns its listen address and on/off switch beside the listener crate's own
//! settings: `[nameserver]` (`listen`), `[grpc]` (`listen`; always on), `[http]` (`enabled`,
//! `listen`), `[mqtt]` (`enabled`, `listen`, `ws_listen`), `[nats]` (`enabled`, `listen`); see
//! `config/section.rs`; documented
//! in `default.toml`), the deprecated `[listen]` / `[gateways]` aliases (`config/legacy.rs`),
//! the layering and the validation. Unknown keys and sections, malformed addresses and invalid
//! values are errors of one line that name the key or flag.
//!
//! Called by `main` and `node` once at start; no state, no I/O besides reading the file and the
//! one deprecation warning.

/// `Deserialize` for a unit enum of the file that takes its names in any ASCII case (and `-`
/// for `_`), as the core's enums do; `Serialize` keeps the canonical spelling given here.
macro_rules! any_case {
    ($t:ident { $($name:literal => $v:ident),+ $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let given = <String as serde::Deserialize>::deserialize(d)?;
                let norm = given.trim().replace('-', "_");
                $(
                    if norm.eq_ignore_ascii_case($name) {
                        return Ok(Self::$v);
                    }
                )+
                Err(serde::de::Error::custom(format!(
                    "unknown value `{}`, expected {} (any case)",
                    given.chars().take(64).collect::<String>(),
                    [$($name),+].join(", ")
                )))
            }
        }
    };
}
use any_case;

mod legacy;
mod replication;
mod section;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use replication::{ReplicationMode, ReplicationSection};
use section::{GrpcKeys, HttpKeys, ListenKeys, MqttKeys, Written};
pub use section::{GrpcSection, HttpSection, MqttSection, NameServerSection, NatsSection};
pub use tls::TlsSection;

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
    /// Flush mode: SYNC or ASYNC, any case (overrides `store.flush_mode`).
    #[arg(long, env = "ROCKETGATE_FLUSH_MODE")]
    pub flush_mode: Option<String>,
    /// Log filter, overriding the `RUST_LOG` environment variable (same syntax, e.g.
    /// `info,rocketgate_gateway_mqtt=debug`); default `info`.
    #[arg(long)]
    pub log: Option<String>,
    /// Write a JSON file with the pid and addresses once the server is ready (for scripts/tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// NameServers to register with, `IP:PORT` separated by `;` or `,` (repeatable; overrides
    /// `broker.namesrv`).
    #[arg(long, env = "ROCKETGATE_NAMESRV", value_name = "ADDRS")]
    pub namesrv: Vec<String>,
    /// gRPC listen address (overrides `grpc.listen`; port 0 picks a free port).
    #[arg(long, env = "ROCKETGATE_GRPC_ADDR", value_name = "ADDR")]
    pub grpc_addr: Option<String>,
    /// HTTP listen address (overrides `http.listen`).
    #[arg(long, env = "ROCKETGATE_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<String>,
    /// Browser origins whose pages may call the REST API (CORS), `scheme://host[:port]`
    /// separated by `,` (overrides `http.cors.allowed_origins`; see docs/http.md).
    #[arg(long, env = "ROCKETGATE_HTTP_CORS_ORIGINS", value_name = "ORIGINS")]
    pub http_cors_origins: Option<String>,
    /// MQTT over TCP listen address (overrides `mqtt.listen`).
    #[arg(long, env = "ROCKETGATE_MQTT_ADDR", value_name = "ADDR")]
    pub mqtt_addr: Option<String>,
    /// MQTT over WebSocket listen address (overrides `mqtt.ws_listen`).
    #[arg(long, env = "ROCKETGATE_MQTT_WS_ADDR", value_name = "ADDR")]
    pub mqtt_ws_addr: Option<String>,
    /// NATS listen address (overrides `nats.listen` and turns the NATS gateway on).
    #[arg(long, env = "ROCKETGATE_NATS_ADDR", value_name = "ADDR")]
    pub nats_addr: Option<String>,
    /// Start even if a listener off loopback does not authenticate its clients (logged as a
    /// warning per listener; see docs/security.md).
    #[arg(long, env = "ROCKETGATE_ALLOW_UNAUTHENTICATED_REMOTE",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue)]
    pub allow_unauthenticated_remote: bool,
    /// Turn authentication on (overrides `auth.enabled`; see docs/security.md).
    /// `ROCKETGATE_AUTH` accepts 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "ROCKETGATE_AUTH", value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue)]
    pub auth: bool,
    /// The bootstrap super user's access key (overrides `auth.bootstrap_access_key`).
    #[arg(long, env = "ROCKETGATE_AUTH_ACCESS_KEY", value_name = "AK")]
    pub auth_access_key: Option<String>,
    /// The bootstrap super user's secret key: from the environment only, never a flag (it would
    /// show in the process list).
    #[arg(skip = std::env::var("ROCKETGATE_AUTH_SECRET_KEY").ok())]
    pub auth_secret_key: Option<String>,
    /// The cluster secret brokers sign their NameServer registrations with and NameServers
    /// require (overrides `nameserver.cluster_secret`): from `ROCKETGATE_CLUSTER_SECRET` only,
    /// never a flag (it would show in the process list).
    #[arg(skip = std::env::var("ROCKETGATE_CLUSTER_SECRET").ok())]
    pub cluster_secret: Option<String>,
    /// The NameServer's listen address (overrides `nameserver.listen`).
    #[arg(
        long,
        visible_alias = "listen",
        env = "ROCKETGATE_NAMESERVER_ADDR",
        value_name = "ADDR"
    )]
    pub nameserver_addr: Option<String>,
    /// Serve every listener over TLS with this certificate chain, PEM (overrides `tls.cert`
    /// and turns `tls.enabled` on; needs `--tls-key`).
    #[arg(long, env = "ROCKETGATE_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert`, PEM (overrides `tls.key`).
    #[arg(long, env = "ROCKETGATE_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// This broker's id in its group: 0 the master, 1 and up a slave (overrides `broker.id`).
    #[arg(long, env = "ROCKETGATE_BROKER_ID", value_name = "ID")]
    pub broker_id: Option<u64>,
    /// Where a master serves its slaves (overrides `replication.listen`, turns replication on).
    #[arg(long, env = "ROCKETGATE_REPLICATION_ADDR", value_name = "ADDR")]
    pub replication_addr: Option<String>,
    /// A slave's master, `host:port` of its replication listener (overrides
    /// `replication.master_addr`, turns replication on).
    #[arg(long, env = "ROCKETGATE_MASTER_ADDR", value_name = "ADDR")]
    pub master_addr: Option<String>,
    /// `async` or `sync` replication, any case (overrides `replication.mode`).
    #[arg(long, env = "ROCKETGATE_REPLICATION_MODE", value_name = "MODE")]
    pub replication_mode: Option<ReplicationMode>,
}

/// The whole configuration, resolved: defaults, file, deprecated aliases, environment, flags.
#[derive(Debug, Clone, Default)]
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
    /// `[kv]`: the KV store of small durable state.
    pub kv: rocketgate_core::KvConfig,
    /// `[auth]`: users, policies and tokens for every endpoint.
    pub auth: rocketgate_core::config::AuthConfig,
    /// `[nameserver]`: where `rocketgate nameserver` (and `standalone`'s) listens, route expiry
    /// and limits.
    pub nameserver: NameServerSection,
    /// `[broker]`: identity and NameServer registration of `broker` and `standalone`.
    pub broker: BrokerSection,
    /// `[grpc]`: the broker's gRPC endpoint (always on) and the RocketMQ 5 protocol (long
    /// polling, request size).
    pub grpc: GrpcSection,
    /// `[http]`: REST and WebSocket (on/off, address, limits, long polls, origins, transaction
    /// callbacks).
    pub http: HttpSection,
    /// `[mqtt]`: the MQTT gateway (on/off, addresses, limits, sessions, authentication, topic
    /// mapping).
    pub mqtt: MqttSection,
    /// `[nats]`: the NATS gateway (on/off, address, limits, topic mapping).
    pub nats: NatsSection,
    /// `[tls]`: TLS on every listener, client certificates, the CA of the node's own calls.
    pub tls: TlsSection,
    /// `[replication]`: master / slave replication (docs/replication.md).
    pub replication: ReplicationSection,
    /// `[controller]`: the failover controller member `rocketgate nameserver` runs
    /// (docs/cluster.md "Controller").
    pub controller: rocketgate_nameserver::controller::ControllerConfig,
    /// The controller's signing key, from the cluster secret (`None` without one).
    pub controller_key: Option<rocketgate_nameserver::controller::Key>,
}

/// The file as written: every section, the listeners' own keys still unresolved, and the
/// deprecated sections.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    store: rocketgate_core::StoreConfig,
    limits: rocketgate_core::LimitsConfig,
    consumer: rocketgate_core::ConsumerConfig,
    timer: rocketgate_core::config::TimerConfig,
    transaction: rocketgate_core::config::TransactionConfig,
    kv: rocketgate_core::KvConfig,
    auth: rocketgate_core::config::AuthConfig,
    nameserver: Written<ListenKeys, rocketgate_nameserver::Config>,
    broker: BrokerSection,
    grpc: Written<GrpcKeys, rocketgate_gateway_grpc::MessagingConfig>,
    http: Written<HttpKeys, rocketgate_gateway_http::HttpConfig>,
    mqtt: Written<MqttKeys, rocketgate_gateway_mqtt::MqttConfig>,
    nats: Written<HttpKeys, rocketgate_nats::NatsConfig>,
    tls: TlsSection,
    replication: ReplicationSection,
    controller: rocketgate_nameserver::controller::ControllerConfig,
    /// Deprecated: `listen.grpc` is `grpc.listen`, and so on (`legacy.rs`).
    listen: Option<legacy::Listen>,
    /// Deprecated: `gateways.http` is `http.enabled`, `gateways.mqtt` is `mqtt.enabled`.
    gateways: Option<legacy::Gateways>,
}

impl FileConfig {
    /// Applies the deprecated aliases, then the defaults of absent keys; returns the
    /// deprecated keys used.
    fn resolve(mut self) -> anyhow::Result<(ServerConfig, Vec<legacy::Renamed>)> {
        let renamed = legacy::apply(
            self.listen.take(),
            self.gateways.take(),
            legacy::Targets {
                nameserver: &mut self.nameserver.keys,
                grpc: &mut self.grpc.keys,
                http: &mut self.http.keys,
                mqtt: &mut self.mqtt.keys,
            },
        )?;
        let cfg = ServerConfig {
            store: self.store,
            limits: self.limits,
            consumer: self.consumer,
            timer: self.timer,
            transaction: self.transaction,
            kv: self.kv,
            auth: self.auth,
            nameserver: self.nameserver.into(),
            broker: self.broker,
            grpc: self.grpc.into(),
            http: self.http.into(),
            mqtt: self.mqtt.into(),
            nats: self.nats.into(),
            tls: self.tls,
            replication: self.replication,
            controller: self.controller,
            controller_key: None,
        };
        Ok((cfg, renamed))
    }
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

impl ServerConfig {
    /// The core's part.
    pub fn core(&self) -> rocketgate_core::Config {
        rocketgate_core::Config {
            store: self.store.clone(),
            limits: self.limits.clone(),
            consumer: self.consumer.clone(),
            timer: self.timer.clone(),
            transaction: self.transaction.clone(),
            kv: self.kv.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// Loads the configuration for `args`.
///
/// # Errors
/// An unreadable or invalid file, an unknown key, or an invalid value.
pub fn load(args: &RunArgs) -> anyhow::Result<ServerConfig> {
    let mut raw_secret = None;
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            raw_secret = replication::file_secret(&text);
            toml::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "invalid config file {}: {}{}",
                    path.display(),
                    where_in(&text, &e),
                    e.message()
                )
            })?
        }
        None => FileConfig::default(),
    };
    let (mut cfg, renamed) = file.resolve()?;
    legacy::warn(&renamed);
    if let Some(dir) = &args.data_dir {
        cfg.store.data_dir = dir.clone();
    }
    if args.auth {
        cfg.auth.enabled = true;
    }
    if let Some(ak) = &args.auth_access_key {
        cfg.auth.bootstrap_access_key = Some(ak.clone());
    }
    if let Some(sk) = &args.auth_secret_key {
        cfg.auth.bootstrap_secret_key = Some(sk.clone());
    }
    if let Some(secret_text) = &args.cluster_secret {
        let secret = rocketgate_nameserver::ClusterSecret::new(secret_text)
            .map_err(|e| anyhow::anyhow!("invalid ROCKETGATE_CLUSTER_SECRET: {}", e.reason))?;
        cfg.nameserver.config.cluster_secret = Some(secret);
        raw_secret = Some(secret_text.clone());
    }
    cfg.replication.key = raw_secret
        .as_ref()
        .filter(|_| cfg.nameserver.config.cluster_secret.is_some())
        .map(|s| crate::replication::auth::Key::derive(s));
    cfg.controller_key = raw_secret
        .filter(|_| cfg.nameserver.config.cluster_secret.is_some())
        .map(|s| rocketgate_nameserver::controller::Key::derive(&s))
        .transpose()
        .map_err(|e| anyhow::anyhow!("invalid cluster secret: {}", e.reason))?;
    if let Some(id) = args.broker_id {
        cfg.broker.id = id;
    }
    if let Some(addr) = &args.replication_addr {
        cfg.replication.enabled = true;
        cfg.replication.listen =
            parse_listen("--replication-addr / ROCKETGATE_REPLICATION_ADDR", addr)?;
    }
    if let Some(addr) = &args.master_addr {
        cfg.replication.enabled = true;
        cfg.replication.master_addr = addr.trim().to_owned();
    }
    if let Some(mode) = args.replication_mode {
        cfg.replication.mode = mode;
    }
    if let Some(mode) = &args.flush_mode {
        cfg.store.flush_mode = mode
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid --flush-mode / ROCKETGATE_FLUSH_MODE: {e}"))?;
    }
    let flags = [
        (
            "--grpc-addr / ROCKETGATE_GRPC_ADDR",
            &args.grpc_addr,
            &mut cfg.grpc.listen,
        ),
        (
            "--http-addr / ROCKETGATE_HTTP_ADDR",
            &args.http_addr,
            &mut cfg.http.listen,
        ),
        (
            "--mqtt-addr / ROCKETGATE_MQTT_ADDR",
            &args.mqtt_addr,
            &mut cfg.mqtt.listen,
        ),
        (
            "--mqtt-ws-addr / ROCKETGATE_MQTT_WS_ADDR",
            &args.mqtt_ws_addr,
            &mut cfg.mqtt.ws_listen,
        ),
        (
            "--nameserver-addr / ROCKETGATE_NAMESERVER_ADDR",
            &args.nameserver_addr,
            &mut cfg.nameserver.listen,
        ),
    ];
    for (flag, value, slot) in flags {
        if let Some(value) = value {
            *slot = parse_listen(flag, value)?;
        }
    }
    if let Some(addr) = &args.nats_addr {
        cfg.nats.enabled = true;
        cfg.nats.listen = parse_listen("--nats-addr / ROCKETGATE_NATS_ADDR", addr)?;
    }
    if !args.namesrv.is_empty() {
        cfg.broker.namesrv = split_addresses(&args.namesrv);
    }
    if let Some(origins) = &args.http_cors_origins {
        cfg.http.config.cors.allowed_origins = origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(cert) = &args.tls_cert {
        cfg.tls.enabled = true;
        cfg.tls.cert = cert.clone();
    }
    if let Some(key) = &args.tls_key {
        cfg.tls.key = key.clone();
    }
    cfg.tls.validate()?;
    cfg.core().validate()?;
    cfg.nameserver.config.validate().map_err(|e| {
        anyhow::anyhow!("invalid configuration `nameserver.{}`: {}", e.key, e.reason)
    })?;
    validate_broker(&cfg.broker)?;
    if cfg.controller.enabled {
        controller_listen(&cfg.controller)?;
    }
    cfg.replication
        .validate(cfg.broker.id, cfg.limits.max_body_bytes)?;
    cfg.grpc
        .messaging
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration `grpc.{}`: {}", e.field, e.reason))?;
    cfg.grpc
        .connections
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration `grpc.{}`: {}", e.key, e.reason))?;
    cfg.http
        .config
        .validate()
        .and_then(|()| cfg.http.config.validate_with_auth(cfg.auth.enabled))
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if cfg.mqtt.enabled {
        cfg.mqtt
            .config
            .check(cfg.auth.enabled)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    }
    cfg.nats
        .config
        .check()
        .map_err(|e| anyhow::anyhow!("invalid configuration `{e}`"))?;
    Ok(cfg)
}

/// The controller's listen address (`controller.listen`, else this member's address in
/// `controller.members`), once the section validates.
///
/// # Errors
/// An invalid `[controller]`, or a listen address that is not `IP:PORT`.
pub fn controller_listen(
    c: &rocketgate_nameserver::controller::ControllerConfig,
) -> anyhow::Result<std::net::SocketAddr> {
    let invalid = |e: rocketgate_nameserver::ConfigError| {
        anyhow::anyhow!("invalid configuration `{}`: {}", e.key, e.reason)
    };
    c.validate().map_err(invalid)?;
    let listen = c.listen_address().map_err(invalid)?;
    listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid configuration `controller.listen`: `{listen}` is not IP:PORT (set \
             controller.listen when this member's address in controller.members is a host name)"
        )
    })
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
