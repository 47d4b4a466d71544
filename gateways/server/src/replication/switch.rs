//! The master's side of a switchover (`admin broker switch`), in two phases around the node
//! stopping its gateways (`node.rs` runs them in this order):
//!
//! 1. [`prepare`] (gateways still serving): the target must be a connected slave that named a
//!    replication address; client writes are fenced (refused with "handing over", HA
//!    unavailable); the target must catch up to the log end within the request's timeout, or
//!    the fence is lifted and this broker stays the master. The admin call is answered here.
//! 2. [`promote`] (gateways stopped, the broker's own writers quiesced, so the log and the KV
//!    store no longer move): the target must have everything, written and fsynced, with the
//!    same KV sequence; then it is told to take over (`Promote`, its stream's last frame) and
//!    the other slaves to follow it (`Redirect`). After `Promote` is sent this node always
//!    becomes a slave of the target: it never goes back to taking writes on its own.
//!
//! Waits poll the slaves' reports every [`POLL`] within the request's timeout.

use std::time::{Duration, Instant};

use rocketgate_core::replication::{ReplicationSource, SwitchReport, SwitchRequest};

use super::links::{Control, Links};

const POLL: Duration = Duration::from_millis(10);
/// How long the old master waits for the promoted slave to close its stream.
const CONFIRM: Duration = Duration::from_secs(5);

/// A switchover past its first phase.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) target: u64,
    pub(crate) address: String,
    pub(crate) timeout: Duration,
    fenced_at: Instant,
}

/// Phase 1: checks the target, fences client writes and waits until the target has caught up
/// with the log end. On `Err` the fence is lifted.
pub(crate) async fn prepare(
    source: &ReplicationSource,
    links: &Links,
    request: &SwitchRequest,
) -> Result<(Plan, SwitchReport), String> {
    let target = request.target;
    let address = match links.connected_address(target) {
        None => {
            return Err(format!(
                "broker {target} is not a slave following this master now"
            ))
        }
        Some(None) => {
            return Err(format!(
                "broker {target} named no replication address it would serve on once \
                 promoted (set its replication.listen)"
            ))
        }
        Some(Some(a)) => a,
    };
    source.fence(target);
    links.wake_all();
    let fenced_at = Instant::now();
    let deadline = fenced_at + request.timeout;
    loop {
        let end = source.log_end();
        let status = source.slaves().into_iter().find(|s| s.id == target);
        match status {
            Some(s) if s.connected && s.written >= end => break,
            Some(s) if s.connected => {}
            _ => {
                source.unfence();
                return Err(format!(
                    "broker {target} disconnected during the switchover"
                ));
            }
        }
        if Instant::now() >= deadline {
            source.unfence();
            return Err(format!(
                "broker {target} did not catch up within {} ms; this broker stays the master",
                request.timeout.as_millis()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let report = SwitchReport {
        target,
        old_master_id: target,
        target_address: address.clone(),
        log_end: source.log_end(),
        fenced_ms: fenced_at.elapsed().as_millis() as u64,
    };
    tracing::info!(
        target_slave = target,
        target_address = %address,
        log_end = report.log_end,
        "switchover: the target caught up; stopping the gateways"
    );
    let plan = Plan {
        target,
        address,
        timeout: request.timeout,
        fenced_at,
    };
    Ok((plan, report))
}

/// Phase 2 (nothing writes any more): waits until the target has the whole log, fsynced, and
/// the KV store's last change, then promotes it and redirects every other slave. `Err` (the
/// target did not get there in time, or went away) means nothing was sent: this node may stay
/// the master.
pub(crate) async fn promote(
    source: &ReplicationSource,
    links: &Links,
    plan: &Plan,
) -> Result<(), String> {
    let end = source.log_end();
    let kv = source.kv_sequence();
    links.wake_all();
    let deadline = Instant::now() + plan.timeout;
    loop {
        let caught_up = source
            .slaves()
            .into_iter()
            .find(|s| s.id == plan.target)
            .is_some_and(|s| s.written >= end && s.flushed >= end)
            && links.kv_sequence(plan.target) >= kv;
        if caught_up {
            break;
        }
        tracing::debug!(
            target_slave = plan.target,
            end,
            kv,
            status = ?source.slaves().into_iter().find(|s| s.id == plan.target),
            target_kv = links.kv_sequence(plan.target),
            "switchover: waiting for the target"
        );
        if !links.is_open(plan.target) {
            return Err(format!("broker {} went away", plan.target));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "broker {} did not reach log end {end} and KV sequence {kv} within {} ms",
                plan.target,
                plan.timeout.as_millis()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let order = Control::Promote {
        log_end: end,
        kv_sequence: kv,
        old_master_id: plan.target,
    };
    if !links.send(plan.target, order) {
        return Err(format!("broker {}'s stream closed", plan.target));
    }
    for other in links.open_ids(plan.target) {
        let redirect = Control::Redirect {
            master_address: plan.address.clone(),
        };
        if !links.send(other, redirect) {
            tracing::warn!(
                slave = other,
                "switchover: could not redirect this slave; it follows the new master once \
                 told by its role file or configuration"
            );
        }
    }
    tracing::debug!(target_slave = plan.target, "switchover: promotion sent");
    let confirm = Instant::now() + CONFIRM;
    while links.is_open(plan.target) && Instant::now() < confirm {
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(
        target_slave = plan.target,
        log_end = end,
        kv_sequence = kv,
        writes_refused_ms = plan.fenced_at.elapsed().as_millis() as u64,
        confirmed = !links.is_open(plan.target),
        "switchover: the target was told to take over; following it"
    );
    Ok(())
}
