//! `admin cluster status`: the failover controller's view (docs/cluster.md "Controller"): its
//! members and leader, and for each broker group the master, epoch, in-sync set and members.
//! Asks the controller members given with `--controller` (the last leader first, then each in
//! turn); without a quorum a survivor still answers with what it last applied (possibly stale,
//! shown as "no leader"). Calls are signed with `ROCKETGATE_CLUSTER_SECRET` when set.
//!
//! Read-only: it must not change the controller's state.

use rocketgate_nameserver::controller::{ControllerClient, ControllerClientError, Key};
use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::AdminError;
use super::output::{self, table, text_cell, Doc};
use super::target::Ctx;
use super::Outcome;

/// `admin cluster status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Controller members, `host:port` (repeatable or separated by `,`).
    #[arg(
        long = "controller",
        env = "ROCKETGATE_CONTROLLER",
        value_delimiter = ',',
        required = true
    )]
    pub controllers: Vec<String>,
}

#[derive(Debug, Serialize)]
struct MemberView {
    id: u64,
    address: String,
    leader: bool,
}

#[derive(Debug, Serialize)]
struct GroupView {
    cluster: String,
    group: String,
    /// `null` before a master bootstrapped the group.
    master_id: Option<u64>,
    master_address: String,
    epoch: u64,
    in_sync: Vec<u64>,
    members: Vec<(u64, String)>,
    /// Brokers the leader heard from within the heartbeat timeout (empty when a follower
    /// answered).
    alive: Vec<u64>,
}

#[derive(Debug, Serialize)]
struct StatusView {
    /// The member that answered.
    answered_by: u64,
    /// `null` while the answering member knows no leader (no quorum: stale view).
    leader_id: Option<u64>,
    term: u64,
    last_applied: u64,
    members: Vec<MemberView>,
    groups: Vec<GroupView>,
}

fn view(s: &pb::ControllerStatus) -> StatusView {
    let leader_id = s.has_leader.then_some(s.leader_id);
    StatusView {
        answered_by: s.node_id,
        leader_id,
        term: s.term,
        last_applied: s.last_applied,
        members: s
            .members
            .iter()
            .map(|m| MemberView {
                id: m.id,
                address: m.address.clone(),
                leader: leader_id == Some(m.id),
            })
            .collect(),
        groups: s
            .groups
            .iter()
            .map(|g| GroupView {
                cluster: g.cluster.clone(),
                group: g.group.clone(),
                master_id: g.has_master.then_some(g.master_id),
                master_address: g.master_address.clone(),
                epoch: g.epoch,
                in_sync: g.in_sync.clone(),
                members: g
                    .members
                    .iter()
                    .map(|m| (m.broker_id, m.replication_address.clone()))
                    .collect(),
                alive: g.alive.clone(),
            })
            .collect(),
    }
}

fn ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn human(v: &StatusView) -> String {
    let mut members = table(&["controller", "address", "role"], &["controller"]);
    for m in &v.members {
        let role = match (m.leader, v.leader_id) {
            (true, _) => "leader",
            (false, Some(_)) => "follower",
            (false, None) => "no leader",
        };
        members.add_row(vec![m.id.to_string(), text_cell(&m.address), role.into()]);
    }
    let mut groups = table(
        &[
            "cluster",
            "group",
            "master",
            "master_address",
            "epoch",
            "in_sync",
            "members",
        ],
        &["master", "epoch"],
    );
    for g in &v.groups {
        groups.add_row(vec![
            text_cell(&g.cluster),
            text_cell(&g.group),
            g.master_id.map_or_else(|| "-".into(), |m| m.to_string()),
            text_cell(&g.master_address),
            g.epoch.to_string(),
            ids(&g.in_sync),
            ids(&g.members.iter().map(|(id, _)| *id).collect::<Vec<_>>()),
            ids(&g.alive),
        ]);
    }
    let note = match v.leader_id {
        Some(l) => format!("leader: controller {l}, term {}", v.term),
        None => format!(
            "no leader known to controller {} (no quorum?): its last applied state, possibly \
             stale",
            v.answered_by
        ),
    };
    format!(
        "{}\n{note}\n\n{}",
        output::render(&members, "no controller members"),
        output::render(&groups, "no broker groups")
    )
}

/// Runs `cluster status`.
pub async fn status(args: StatusArgs, ctx: &Ctx) -> Result<Outcome, AdminError> {
    let controllers: Vec<String> = args
        .controllers
        .iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    let key = match std::env::var("ROCKETGATE_CLUSTER_SECRET") {
        Ok(secret) if !secret.is_empty() => Some(Key::derive(&secret).map_err(|e| {
            AdminError::Usage(format!("invalid ROCKETGATE_CLUSTER_SECRET: {}", e.reason))
        })?),
        _ => None,
    };
    let client = ControllerClient::new(&controllers, key, None, ctx.timeout)
        .map_err(|e| AdminError::Usage(e.to_string()))?;
    let status = client.status().await.map_err(|e| match e {
        ControllerClientError::Unavailable(why) => AdminError::Unreachable {
            message: format!(
                "cannot reach the controller ({}): {why}",
                controllers.join(",")
            ),
        },
        other => AdminError::failed(other.to_string()),
    })?;
    let v = view(&status);
    let text = human(&v);
    Ok(Outcome::done(Doc::new(&v, text)))
}
