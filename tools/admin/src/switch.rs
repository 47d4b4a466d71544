//! `admin broker switch` (a switchover): asks a group's master to hand its role to one of its
//! slaves (`BrokerAdmin.SwitchMaster`), then, when NameServers are known, waits until the
//! promoted broker is registered as the group's master (broker id 0) and reports how long that
//! took.
//!
//! The master is `--broker` (one), or the group's master found through the NameServers with
//! `--group`. Owns this command only; calls go through `target.rs`, rendering through
//! `output.rs`.

use std::time::{Duration, Instant};

use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::{AdminError, Op};
use super::output::{table, Doc};
use super::target::{self, Ctx};
use super::Outcome;

/// How often the NameServers are asked whether the new master registered.
const POLL: Duration = Duration::from_millis(100);
/// How long the new master may take to register.
const REGISTER_WAIT: Duration = Duration::from_secs(30);

/// `admin broker switch` arguments.
#[derive(clap::Args, Debug)]
pub struct SwitchArgs {
    /// The slave's broker id to promote (1 or more).
    #[arg(long)]
    pub to: u64,
    /// The broker group (broker name) whose master hands over, found through --namesrv;
    /// without it the one --broker is the master.
    #[arg(long)]
    pub group: Option<String>,
    /// How long the target may take to catch up before the switch is abandoned (ms; at most
    /// 600000).
    #[arg(long, default_value_t = 10_000)]
    pub catch_up_ms: u64,
}

#[derive(Debug, Serialize)]
struct SwitchReport {
    old_master: String,
    promoted: u64,
    old_master_follows_as: u64,
    new_master_replication: String,
    log_end: u64,
    writes_refused_before_promotion_ms: u64,
    /// The new master's gRPC endpoint in the routes, when NameServers were asked.
    new_master_grpc: Option<String>,
    /// From the call to the new master's registration (ms), when NameServers were asked.
    registered_after_ms: Option<u64>,
}

fn human(r: &SwitchReport) -> String {
    let mut t = table(&["field", "value"], &[]);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    t.add_row(vec!["old master".into(), r.old_master.clone()]);
    t.add_row(vec!["promoted broker".into(), r.promoted.to_string()]);
    t.add_row(vec![
        "old master follows as".into(),
        r.old_master_follows_as.to_string(),
    ]);
    t.add_row(vec![
        "new master (replication)".into(),
        r.new_master_replication.clone(),
    ]);
    t.add_row(vec!["new master (grpc)".into(), opt(&r.new_master_grpc)]);
    t.add_row(vec!["log end".into(), r.log_end.to_string()]);
    t.add_row(vec![
        "writes refused before promotion".into(),
        format!("{} ms", r.writes_refused_before_promotion_ms),
    ]);
    t.add_row(vec![
        "new master registered after".into(),
        r.registered_after_ms
            .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
    ]);
    super::output::render(&t, "")
}

/// The group's master (broker id 0) gRPC endpoint in the NameServers' view.
async fn group_master(ctx: &Ctx, group: &str) -> Result<Option<String>, AdminError> {
    let client = ctx.nameserver_client()?;
    let info = client
        .cluster_info()
        .await
        .map_err(|e| ctx.nameserver_error(e))?;
    Ok(info
        .clusters
        .iter()
        .flat_map(|c| c.brokers.iter())
        .filter(|b| b.broker_name.as_str() == group && b.broker_id.is_master())
        .find_map(|b| {
            b.endpoints
                .iter()
                .find(|e| e.protocol().as_str() == "grpc")
                .map(|e| e.address().to_owned())
        }))
}

/// Runs `admin broker switch`.
///
/// # Errors
/// No master to ask, the master refusing the switch, or the NameServers unreachable.
pub async fn run(args: SwitchArgs, ctx: &Ctx) -> Result<Outcome, AdminError> {
    if args.to == 0 {
        return Err(AdminError::Usage(
            "--to is a slave's broker id (1 or more)".into(),
        ));
    }
    let master = match &args.group {
        Some(group) => group_master(ctx, group)
            .await?
            .ok_or_else(|| AdminError::Failed {
                message: format!("the NameServers know no master of group `{group}`"),
                server: None,
                not_found: true,
            })?,
        None => ctx.targets().await?.single("broker switch")?.to_owned(),
    };
    let op = Op::about(
        format!("broker switch to broker {}", args.to),
        format!("broker {}", args.to),
    );
    let request = pb::SwitchMasterRequest {
        to: args.to,
        timeout_ms: args.catch_up_ms,
    };
    let timeout = ctx.timeout + Duration::from_millis(args.catch_up_ms);
    let started = Instant::now();
    let reply = target::call(&master, timeout, &op, |mut c| async move {
        Ok(c.switch_master(request).await?.into_inner())
    })
    .await?;
    let mut report = SwitchReport {
        old_master: master.clone(),
        promoted: reply.target,
        old_master_follows_as: reply.old_master_id,
        new_master_replication: reply.target_address,
        log_end: reply.log_end,
        writes_refused_before_promotion_ms: reply.fenced_ms,
        new_master_grpc: None,
        registered_after_ms: None,
    };
    if let (Some(group), false) = (&args.group, ctx.nameservers.is_empty()) {
        let deadline = Instant::now() + REGISTER_WAIT;
        loop {
            // The old master unregistered when it stopped its gateways; the next id 0 is
            // the promoted broker.
            if let Ok(Some(grpc)) = group_master(ctx, group).await {
                if grpc != master {
                    report.new_master_grpc = Some(grpc);
                    report.registered_after_ms = Some(started.elapsed().as_millis() as u64);
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(AdminError::failed(format!(
                    "broker {} was promoted, but no new master of group `{group}` registered \
                     with the NameServers within {} s: check its log",
                    args.to,
                    REGISTER_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let text = human(&report);
    Ok(Outcome::done(Doc::new(&report, text)))
}
