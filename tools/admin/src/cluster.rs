//! `admin cluster list` (the NameServers' view: every live broker by cluster, with endpoints,
//! last heartbeat and topic count) and `admin broker info` (each target broker's own
//! `GetBrokerInfo`: identity, endpoints, NameServer registration, store offsets).
//!
//! Invariants: heartbeat ages are computed against one reading of the local clock (the
//! NameServer stamps heartbeats with its own clock, so skew shows up in the age); `broker info`
//! goes to every target and shows one column per broker.
//!
//! Owns these two commands only. Read-only: it must not change a broker's or a NameServer's
//! state; calls go through `target.rs` and rendering through `output.rs`.

use std::collections::BTreeMap;

use rocketgate_nameserver::ClusterInfo;
use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::{AdminError, Op};
use super::output::{self, endpoints, endpoints_cell, table, text_cell, time_cell, Doc};
use super::spec::role_name;
use super::target::{self, Ctx};
use super::topic::domain_role;
use super::when::{format_ms, now_ms};
use super::{merged, Outcome};

/// Cluster commands.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every live broker known to the NameServers, by cluster: name, id, role, endpoints, last
    /// heartbeat, topic count.
    List,
    /// The failover controller: its members and leader, and each broker group's master, epoch
    /// and in-sync set (docs/cluster.md "Controller").
    Status(super::controller::StatusArgs),
}

/// Broker commands.
#[derive(clap::Subcommand, Debug)]
pub enum BrokerCommand {
    /// Identity, endpoints, NameServer registration and store state of each target broker.
    Info,
    /// Switchover: the group's master hands its role to one of its slaves (docs/replication.md).
    Switch(super::switch::SwitchArgs),
}

#[derive(Debug, Serialize)]
struct ClusterBroker {
    broker_name: String,
    broker_id: u64,
    role: String,
    endpoints: BTreeMap<String, String>,
    last_heartbeat_ms: u64,
    last_heartbeat: Option<String>,
    /// Whole seconds between the last heartbeat and now (negative if the NameServer's clock is
    /// ahead).
    seconds_ago: i64,
    topic_count: u32,
}

#[derive(Debug, Serialize)]
struct ClusterView {
    name: String,
    brokers: Vec<ClusterBroker>,
}

#[derive(Debug, Serialize)]
struct ClusterList {
    clusters: Vec<ClusterView>,
}

fn cluster_list(info: &ClusterInfo, now: i64) -> ClusterList {
    ClusterList {
        clusters: info
            .clusters
            .iter()
            .map(|c| ClusterView {
                name: c.name.to_string(),
                brokers: c
                    .brokers
                    .iter()
                    .map(|b| {
                        let at = i64::try_from(b.last_heartbeat_ms).unwrap_or(i64::MAX);
                        ClusterBroker {
                            broker_name: b.broker_name.to_string(),
                            broker_id: b.broker_id.0,
                            role: domain_role(b.role).into(),
                            endpoints: b
                                .endpoints
                                .iter()
                                .map(|e| (e.protocol().to_string(), e.address().to_owned()))
                                .collect(),
                            last_heartbeat_ms: b.last_heartbeat_ms,
                            last_heartbeat: format_ms(at),
                            seconds_ago: now.saturating_sub(at) / 1000,
                            topic_count: b.topic_count,
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn cluster_human(list: &ClusterList) -> String {
    let mut t = table(
        &[
            "cluster",
            "broker",
            "id",
            "role",
            "endpoints",
            "last_heartbeat",
            "ago",
            "topics",
        ],
        &["id", "ago", "topics"],
    );
    for c in &list.clusters {
        for b in &c.brokers {
            t.add_row(vec![
                text_cell(&c.name),
                text_cell(&b.broker_name),
                b.broker_id.to_string(),
                b.role.clone(),
                endpoints_cell(&b.endpoints),
                b.last_heartbeat.clone().unwrap_or_else(|| "-".into()),
                format!("{} s ago", b.seconds_ago),
                b.topic_count.to_string(),
            ]);
        }
    }
    output::render(&t, "no live brokers")
}

/// Runs a cluster command.
pub async fn run(cmd: ClusterCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    if let ClusterCommand::Status(args) = cmd {
        return super::controller::status(args, ctx).await;
    }
    let client = ctx.nameserver_client()?;
    let info = client
        .cluster_info()
        .await
        .map_err(|e| ctx.nameserver_error(e))?;
    let list = cluster_list(&info, now_ms());
    let human = cluster_human(&list);
    Ok(Outcome::done(Doc::new(&list, human)))
}

#[derive(Debug, Serialize)]
struct BrokerView {
    /// The address asked.
    broker: String,
    cluster: String,
    broker_name: String,
    broker_id: u64,
    role: String,
    endpoints: BTreeMap<String, String>,
    nameservers: Vec<String>,
    registered_nameservers: u32,
    flush_mode: String,
    log_min_offset: u64,
    log_end_offset: u64,
    log_durable_offset: u64,
    /// Why the store refuses writes; `null` while it accepts them.
    write_refusal: Option<String>,
    recovered_after_crash: bool,
    topic_count: u64,
    group_count: u64,
    started_at_ms: i64,
    started_at: Option<String>,
    version: String,
    /// A replication master's mode and in-sync set; `null` without replication.
    replication: Option<ReplicationView>,
}

#[derive(Debug, Serialize)]
struct ReplicationView {
    mode: String,
    min_in_sync_replicas: u32,
    in_sync_replicas: u32,
    slaves: Vec<SlaveView>,
}

#[derive(Debug, Serialize)]
struct SlaveView {
    broker_id: u64,
    connected: bool,
    in_sync: bool,
    written: u64,
    flushed: u64,
    lag_bytes: u64,
    /// `null` before it first caught up.
    lag_ms: Option<u64>,
}

impl ReplicationView {
    fn new(r: pb::ReplicationStatus) -> Self {
        Self {
            mode: r.mode,
            min_in_sync_replicas: r.min_in_sync_replicas,
            in_sync_replicas: r.in_sync_replicas,
            slaves: r
                .slaves
                .into_iter()
                .map(|s| SlaveView {
                    broker_id: s.broker_id,
                    connected: s.connected,
                    in_sync: s.in_sync,
                    written: s.written,
                    flushed: s.flushed,
                    lag_bytes: s.lag_bytes,
                    lag_ms: u64::try_from(s.lag_ms).ok(),
                })
                .collect(),
        }
    }

    /// One line: mode, the set's size against the minimum, and each slave.
    fn cell(&self) -> String {
        let slaves: Vec<String> = self
            .slaves
            .iter()
            .map(|s| {
                let state = match (s.connected, s.in_sync) {
                    (_, true) => "in sync",
                    (true, false) => "lagging",
                    (false, false) => "disconnected",
                };
                let lag = s
                    .lag_ms
                    .map_or_else(|| "never caught up".to_owned(), |ms| format!("{ms} ms"));
                format!(
                    "slave {} {state}, lag {} B / {lag}",
                    s.broker_id, s.lag_bytes
                )
            })
            .collect();
        format!(
            "{} · {} in sync (min {}){}{}",
            self.mode,
            self.in_sync_replicas,
            self.min_in_sync_replicas,
            if slaves.is_empty() { "" } else { " · " },
            slaves.join("; ")
        )
    }
}

impl BrokerView {
    fn new(broker: String, r: pb::GetBrokerInfoResponse) -> Self {
        let id = r.broker.unwrap_or_default();
        Self {
            broker,
            cluster: id.cluster,
            broker_name: id.broker_name,
            broker_id: id.broker_id,
            role: role_name(r.role),
            endpoints: endpoints(&r.endpoints),
            nameservers: r.nameservers,
            registered_nameservers: r.registered_nameservers,
            flush_mode: r.flush_mode,
            log_min_offset: r.log_min_offset,
            log_end_offset: r.log_end_offset,
            log_durable_offset: r.log_durable_offset,
            write_refusal: (!r.write_refusal.is_empty()).then_some(r.write_refusal),
            recovered_after_crash: r.recovered_after_crash,
            topic_count: r.topic_count,
            group_count: r.group_count,
            started_at: format_ms(r.started_at_ms),
            started_at_ms: r.started_at_ms,
            version: r.version,
            replication: r.replication.map(ReplicationView::new),
        }
    }

    /// (field, value) pairs for the table.
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cluster", text_cell(&self.cluster)),
            ("broker_name", text_cell(&self.broker_name)),
            ("broker_id", self.broker_id.to_string()),
            ("role", self.role.clone()),
            ("endpoints", endpoints_cell(&self.endpoints)),
            (
                "nameservers",
                format!(
                    "{} ({} registered)",
                    output::or_dash(&self.nameservers.join(",")),
                    self.registered_nameservers
                ),
            ),
            ("flush_mode", output::or_dash(&self.flush_mode)),
            (
                "commit_log",
                format!(
                    "min {} end {} durable {}",
                    self.log_min_offset, self.log_end_offset, self.log_durable_offset
                ),
            ),
            (
                "writes",
                match &self.write_refusal {
                    None => "accepted".to_owned(),
                    Some(why) => format!("refused: {}", text_cell(why)),
                },
            ),
            (
                "recovered_after_crash",
                self.recovered_after_crash.to_string(),
            ),
            ("topics", self.topic_count.to_string()),
            ("groups", self.group_count.to_string()),
            ("started_at", time_cell(self.started_at_ms)),
            ("version", output::or_dash(&self.version)),
            (
                "replication",
                self.replication
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), ReplicationView::cell),
            ),
        ]
    }
}

#[derive(Debug, Serialize)]
struct BrokerInfoReport {
    brokers: Vec<BrokerView>,
}

fn broker_human(r: &BrokerInfoReport) -> String {
    let mut headers = vec!["field"];
    headers.extend(r.brokers.iter().map(|b| b.broker.as_str()));
    let mut t = table(&headers, &[]);
    let columns: Vec<Vec<(&str, String)>> = r.brokers.iter().map(BrokerView::fields).collect();
    if let Some(first) = columns.first() {
        for (row, (name, _)) in first.iter().enumerate() {
            let mut cells = vec![(*name).to_owned()];
            cells.extend(columns.iter().map(|c| c[row].1.clone()));
            t.add_row(cells);
        }
    }
    output::render(&t, "no brokers")
}

/// Runs a broker command.
pub async fn run_broker(cmd: BrokerCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    if let BrokerCommand::Switch(args) = cmd {
        return super::switch::run(args, ctx).await;
    }
    let targets = ctx.targets().await?;
    let answers = targets
        .each(&Op::new("broker info"), |mut c| async move {
            Ok(c.get_broker_info(pb::GetBrokerInfoRequest {})
                .await?
                .into_inner())
        })
        .await;
    let n = answers.len();
    Ok(merged(target::merge(answers, None), n, |found| {
        let report = BrokerInfoReport {
            brokers: found
                .into_iter()
                .map(|(b, r)| BrokerView::new(b, r))
                .collect(),
        };
        let human = broker_human(&report);
        Doc::new(&report, human)
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rocketgate_nameserver::{BrokerId, BrokerInfo, ClusterEntry, Endpoint, Role};

    #[test]
    fn cluster_list_shows_heartbeat_time_and_age() {
        let info = ClusterInfo {
            clusters: vec![ClusterEntry {
                name: "DefaultCluster".parse().unwrap(),
                brokers: vec![BrokerInfo {
                    broker_name: "broker-a".parse().unwrap(),
                    broker_id: BrokerId(0),
                    role: Role::Master,
                    endpoints: vec![Endpoint::new("grpc", "127.0.0.1:8081").unwrap()],
                    last_heartbeat_ms: 1_796_292_000_000,
                    topic_count: 3,
                }],
            }],
        };
        let list = cluster_list(&info, 1_796_292_012_500);
        let v = serde_json::to_value(&list).unwrap();
        let b = &v["clusters"][0]["brokers"][0];
        assert_eq!(b["broker_name"], "broker-a");
        assert_eq!(b["role"], "master");
        assert_eq!(b["seconds_ago"], 12);
        assert_eq!(b["last_heartbeat"], "2026-12-03T10:00:00.000Z");
        assert_eq!(b["endpoints"]["grpc"], "127.0.0.1:8081");
        let human = cluster_human(&list);
        assert!(human.contains("12 s ago"), "{human}");
        assert!(human.contains("last_heartbeat"), "{human}");
    }

    #[test]
    fn broker_info_has_a_column_per_broker() {
        let r = |name: &str| pb::GetBrokerInfoResponse {
            broker: Some(pb::BrokerIdentity {
                cluster: "DefaultCluster".into(),
                broker_name: name.into(),
                broker_id: 0,
            }),
            role: 1,
            flush_mode: "SYNC".into(),
            ..Default::default()
        };
        let report = BrokerInfoReport {
            brokers: vec![
                BrokerView::new("a:1".into(), r("broker-a")),
                BrokerView::new("b:1".into(), r("broker-b")),
            ],
        };
        let human = broker_human(&report);
        let header = human.lines().next().unwrap();
        assert!(header.contains("a:1") && header.contains("b:1"), "{human}");
        assert!(human.contains("broker-b"), "{human}");
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["brokers"][0]["write_refusal"], serde_json::Value::Null);
        assert_eq!(v["brokers"][1]["role"], "master");
    }
}
