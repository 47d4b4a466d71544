//! The in-sync set and the SYNC gate on an injected clock and tokio's paused time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;

const LAG: Duration = Duration::from_secs(3);

fn gate(mode: ReplicationMode, min: usize) -> (Arc<InSync>, ManualClock) {
    let clock = ManualClock::new(1_000_000);
    let g = InSync::new(Arc::new(clock.clone()));
    g.set_policy(SyncPolicy {
        mode,
        min_in_sync_replicas: min,
        max_lag_bytes: 1000,
        max_lag: LAG,
        flushed: false,
    });
    (Arc::new(g), clock)
}

/// A send waiting until the log up to 600 is replicated (the master's end is 600).
fn wait_for_600(g: &Arc<InSync>) -> tokio::task::JoinHandle<Result<()>> {
    let g = g.clone();
    tokio::spawn(async move { g.replicated(600, || 600).await })
}

/// Moves the injected clock and tokio's paused time together.
async fn advance(clock: &ManualClock, by: Duration) {
    clock.advance(by);
    tokio::time::advance(by).await;
}

#[tokio::test(start_paused = true)]
async fn async_mode_never_waits_nor_refuses() {
    let (g, _) = gate(ReplicationMode::Async, 3);
    g.check_writable(|| 100).unwrap();
    g.replicated(100, || 100).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slave_joins_when_caught_up_and_leaves_when_disconnected() {
    let (g, _) = gate(ReplicationMode::Sync, 2);
    assert!(matches!(
        g.check_writable(|| 500),
        Err(Error::NotEnoughReplicas {
            in_sync: 1,
            required: 2
        })
    ));
    g.attach(1).unwrap();
    // Connected but behind, never caught up: not in sync.
    g.report(1, 100, 100, 500).unwrap();
    assert_eq!(g.refresh(500), 0);
    // Caught up: joins.
    g.report(1, 500, 500, 500).unwrap();
    assert_eq!(g.refresh(500), 1);
    g.check_writable(|| 500).unwrap();
    let s = &g.slaves(600)[0];
    assert_eq!(
        (s.id, s.connected, s.in_sync, s.lag_bytes, s.lag_ms),
        (1, true, true, 100, Some(0))
    );
    // The stream closes: out at once.
    g.detach(1, 500);
    assert_eq!(g.refresh(500), 0);
    assert!(g.check_writable(|| 500).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_send_waits_for_every_in_sync_slave() {
    let (g, _) = gate(ReplicationMode::Sync, 1);
    for id in [1, 2] {
        g.attach(id).unwrap();
        g.report(id, 500, 500, 500).unwrap();
    }
    let waiter = wait_for_600(&g);
    tokio::task::yield_now().await;
    g.report(1, 600, 600, 600).unwrap();
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "slave 2 does not have it yet");
    g.report(2, 600, 600, 600).unwrap();
    tokio::time::timeout(Duration::from_millis(1), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_flushed_offset_counts_when_the_policy_says_so() {
    let (g, _) = gate(ReplicationMode::Sync, 2);
    let mut p = g.policy();
    p.flushed = true;
    g.set_policy(p);
    g.attach(1).unwrap();
    g.report(1, 500, 500, 500).unwrap();
    let waiter = wait_for_600(&g);
    tokio::task::yield_now().await;
    g.report(1, 600, 500, 600).unwrap();
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "written but not flushed");
    g.report(1, 600, 600, 600).unwrap();
    tokio::time::timeout(Duration::from_millis(1), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_slave_leaves_after_max_lag_and_the_send_is_acked_or_refused() {
    // min 1: the silent slave is dropped from the set and the send is acknowledged.
    let (g, clock) = gate(ReplicationMode::Sync, 1);
    g.attach(1).unwrap();
    g.report(1, 500, 500, 500).unwrap();
    let waiter = wait_for_600(&g);
    advance(&clock, LAG - Duration::from_millis(10)).await;
    assert!(!waiter.is_finished(), "still within max_lag");
    advance(&clock, Duration::from_millis(20)).await;
    tokio::time::timeout(Duration::from_millis(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!g.slaves(600)[0].in_sync);

    // min 2: the same silence refuses the write instead of acknowledging it.
    let (g, clock) = gate(ReplicationMode::Sync, 2);
    g.attach(1).unwrap();
    g.report(1, 500, 500, 500).unwrap();
    let waiter = wait_for_600(&g);
    advance(&clock, LAG + Duration::from_millis(10)).await;
    let r = tokio::time::timeout(Duration::from_millis(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            r,
            Err(Error::NotEnoughReplicas {
                in_sync: 1,
                required: 2
            })
        ),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slave_behind_under_load_stays_in_sync_while_it_keeps_up() {
    // The master's end moves on with every report; the slave always has what the master had
    // at its previous report, so it stays in sync though it is never at the very end.
    let (g, clock) = gate(ReplicationMode::Sync, 2);
    g.attach(1).unwrap();
    g.report(1, 100, 100, 100).unwrap();
    let end = AtomicU64::new(100);
    for _ in 0..20 {
        let had = end.load(Ordering::Relaxed);
        end.fetch_add(50, Ordering::Relaxed);
        advance(&clock, Duration::from_secs(1)).await;
        g.report(1, had, had, end.load(Ordering::Relaxed)).unwrap();
        assert_eq!(g.refresh(end.load(Ordering::Relaxed)), 1);
    }
    // It stops keeping up (reports, but no progress): out after max_lag.
    let stuck = end.load(Ordering::Relaxed);
    for _ in 0..5 {
        end.fetch_add(50, Ordering::Relaxed);
        advance(&clock, Duration::from_secs(1)).await;
        g.report(1, stuck, stuck, end.load(Ordering::Relaxed))
            .unwrap();
    }
    assert_eq!(g.refresh(end.load(Ordering::Relaxed)), 0);
    let s = &g.slaves(end.load(Ordering::Relaxed))[0];
    assert!(s.lag_ms.unwrap() > LAG.as_millis() as u64, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn too_far_behind_in_bytes_is_out_of_sync() {
    let (g, _) = gate(ReplicationMode::Sync, 1);
    g.attach(1).unwrap();
    g.report(1, 500, 500, 500).unwrap();
    assert_eq!(g.refresh(500), 1);
    assert_eq!(g.refresh(500 + 1001), 0, "max_lag_bytes is 1000");
}

#[tokio::test(start_paused = true)]
async fn at_most_max_slaves_are_tracked() {
    let (g, _) = gate(ReplicationMode::Async, 1);
    for id in 1..=MAX_SLAVES as u64 {
        g.attach(id).unwrap();
    }
    assert!(matches!(g.attach(99), Err(Error::LimitReached { .. })));
    assert!(g.report(99, 0, 0, 0).is_err());
    g.report(1, 0, 0, 0).unwrap();
}
