//! The failover controller with real members: each one a `Controller` serving its gRPC
//! listener on 127.0.0.1:0 (in-process), brokers simulated by `ControllerClient` heartbeats.
//! Leader elections, a master's failover within the heartbeat timeout, the loss of the
//! controller leader, the loss of a quorum and a member restarted from its data dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_nameserver::controller::{
    Controller, ControllerClient, ControllerClientError, ControllerConfig, ControllerOptions, Key,
};
use rocketgate_proto::cluster::v1 as pb;
use support::eventually;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const SECRET: &str = "a-controller-test-cluster-secret";
const TIMEOUT_MS: u64 = 1_000;

fn key() -> Option<Key> {
    Some(Key::derive(SECRET).unwrap())
}

fn config(id: u64, members: &BTreeMap<u64, String>, dir: &Path) -> ControllerConfig {
    ControllerConfig {
        enabled: true,
        id,
        members: members
            .iter()
            .map(|(id, a)| (id.to_string(), a.clone()))
            .collect(),
        data_dir: dir.join(format!("controller-{id}")),
        listen: None,
        heartbeat_timeout_ms: TIMEOUT_MS,
        unclean_election: false,
    }
}

/// `n` members on fresh ports; returns them (by id) and their addresses.
async fn start(n: u64, dir: &Path) -> (BTreeMap<u64, Controller>, BTreeMap<u64, String>) {
    let mut listeners = BTreeMap::new();
    for id in 1..=n {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let members: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    let mut running = BTreeMap::new();
    for (id, listener) in listeners {
        let options = ControllerOptions {
            key: key(),
            ..Default::default()
        };
        let c = Controller::start(&config(id, &members, dir), listener, options)
            .await
            .unwrap();
        running.insert(id, c);
    }
    (running, members)
}

/// Restarts member `id` on its old address and data dir.
async fn restart(id: u64, members: &BTreeMap<u64, String>, dir: &Path) -> Controller {
    let listener = TcpListener::bind(&members[&id]).await.unwrap();
    let options = ControllerOptions {
        key: key(),
        ..Default::default()
    };
    Controller::start(&config(id, members, dir), listener, options)
        .await
        .unwrap()
}

/// The leader every running member agrees on.
async fn leader(running: &BTreeMap<u64, Controller>) -> u64 {
    eventually("a controller leader all members agree on", || async {
        let leaders: Vec<_> = running
            .values()
            .map(|c| c.status())
            .map(|s| s.has_leader.then_some(s.leader_id))
            .collect();
        let first = leaders.first().copied().flatten()?;
        (running.contains_key(&first) && leaders.iter().all(|l| *l == Some(first))).then_some(first)
    })
    .await
    .unwrap()
}

fn client(members: &BTreeMap<u64, String>) -> ControllerClient {
    let addresses: Vec<String> = members.values().cloned().collect();
    ControllerClient::new(&addresses, key(), None, Duration::from_secs(2)).unwrap()
}

fn broker(id: u64) -> pb::ControllerBroker {
    pb::ControllerBroker {
        cluster: "DefaultCluster".into(),
        group: "broker-a".into(),
        broker_id: id,
        replication_address: format!("127.0.0.1:{}", 19_000 + id),
    }
}

/// A broker heartbeating every 100 ms until paused or dropped.
struct Beater {
    paused: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Beater {
    fn start(client: ControllerClient, id: u64, epoch: u64, is_master: bool) -> Self {
        let paused = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&paused);
        let task = tokio::spawn(async move {
            loop {
                if !flag.load(Ordering::Relaxed) {
                    let _ = client
                        .heartbeat(pb::BrokerHeartbeatRequest {
                            broker: Some(broker(id)),
                            epoch,
                            is_master,
                        })
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { paused, task }
    }

    fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }
}

impl Drop for Beater {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn group(status: &pb::ControllerStatus) -> Option<pb::GroupAssignment> {
    status
        .groups
        .iter()
        .find(|g| g.group == "broker-a")
        .cloned()
}

/// Bootstraps `broker-a` with master 0 at epoch 5 and slaves 1, 2, reports {0, 2} in sync.
async fn bootstrap(client: &ControllerClient) -> Vec<Beater> {
    let beaters = vec![
        Beater::start(client.clone(), 0, 5, true),
        Beater::start(client.clone(), 1, 4, false),
        Beater::start(client.clone(), 2, 5, false),
    ];
    eventually("the group bootstrapped with its three members", || async {
        let a = client.status().await.ok().and_then(|s| group(&s))?;
        (a.has_master && a.members.len() == 3).then_some(())
    })
    .await
    .unwrap();
    let a = client
        .report_in_sync(pb::ReportInSyncRequest {
            broker: Some(broker(0)),
            epoch: 5,
            in_sync: vec![0, 2],
        })
        .await
        .unwrap();
    assert_eq!(
        (a.master_id, a.epoch, a.in_sync.clone()),
        (0, 5, vec![0, 2])
    );
    assert_eq!(a.master_address, "127.0.0.1:19000");
    beaters
}

/// Waits until every running member applied [`bootstrap`]'s in-sync report.
async fn every_member_applied(running: &BTreeMap<u64, Controller>) {
    eventually("every member applied the in-sync report", || async {
        running
            .values()
            .all(|c| group(&c.status()).is_some_and(|g| g.in_sync == vec![0, 2]))
            .then_some(())
    })
    .await
    .unwrap();
}

async fn stop_all(running: BTreeMap<u64, Controller>) {
    for c in running.into_values() {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_leads_bootstraps_a_group_and_refuses_bad_calls() {
    let dir = tempfile::tempdir().unwrap();
    let (running, members) = start(1, dir.path()).await;
    assert_eq!(leader(&running).await, 1);
    let client = client(&members);
    let a = client
        .heartbeat(pb::BrokerHeartbeatRequest {
            broker: Some(broker(0)),
            epoch: 0,
            is_master: true,
        })
        .await
        .unwrap();
    assert!(a.has_master);
    assert_eq!((a.master_id, a.epoch, a.alive.clone()), (0, 0, vec![0]));

    // Not the master, or not its epoch: refused (the caller must fence itself).
    let err = client
        .report_in_sync(pb::ReportInSyncRequest {
            broker: Some(broker(1)),
            epoch: 0,
            in_sync: vec![0, 1],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ControllerClientError::Refused { status, .. }
            if status.code() == tonic::Code::FailedPrecondition),
        "{err}"
    );
    // Bad input.
    let mut bad = broker(0);
    bad.cluster.clear();
    let err = client
        .heartbeat(pb::BrokerHeartbeatRequest {
            broker: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cluster must be"), "{err}");
    let err = client
        .heartbeat(pb::BrokerHeartbeatRequest::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("broker is required"), "{err}");
    // Nobody in sync but the master: an operator's election has nothing to elect.
    let err = client
        .elect_master("DefaultCluster", "broker-a")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing to elect"), "{err}");
    let err = client
        .elect_master("DefaultCluster", "nope")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown group"), "{err}");

    // A group holds at most 64 brokers.
    for id in 1..64 {
        client
            .heartbeat(pb::BrokerHeartbeatRequest {
                broker: Some(broker(id)),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let err = client
        .heartbeat(pb::BrokerHeartbeatRequest {
            broker: Some(broker(64)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already has 64 brokers"), "{err}");

    // Unsigned, or signed with another secret: UNAUTHENTICATED.
    let addresses: Vec<String> = members.values().cloned().collect();
    let unsigned = ControllerClient::new(&addresses, None, None, Duration::from_secs(2)).unwrap();
    let err = unsigned.status().await.unwrap_err();
    assert!(err.to_string().contains("must be signed"), "{err}");
    let other = Key::derive("another-cluster-s-secret").unwrap();
    let forged =
        ControllerClient::new(&addresses, Some(other), None, Duration::from_secs(2)).unwrap();
    let err = forged
        .heartbeat(pb::BrokerHeartbeatRequest {
            broker: Some(broker(0)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid controller signature"),
        "{err}"
    );
    // Garbage on the Raft service: a clear error, the member keeps running.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", members[&1]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raft = pb::controller_raft_client::ControllerRaftClient::new(channel);
    let body = prost::Message::encode_to_vec(&pb::RaftPayload {
        json: b"{]".to_vec(),
    });
    let mut request = tonic::Request::new(pb::RaftPayload {
        json: b"{]".to_vec(),
    });
    key().unwrap().sign(
        request.metadata_mut(),
        "Vote",
        rocketgate_nameserver::controller::auth::now_ms(),
        &body,
    );
    let err = raft.vote(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(client.status().await.unwrap().has_leader);
    stop_all(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replace_a_silent_master_from_the_in_sync_set_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (running, members) = start(3, dir.path()).await;
    let first = leader(&running).await;
    let client = client(&members);
    let beaters = bootstrap(&client).await;
    // Every member has the same state.
    every_member_applied(&running).await;

    // The master stops heartbeating: broker 2 (in sync) takes over at epoch 6, not 1.
    beaters[0].pause();
    let stopped = tokio::time::Instant::now();
    let a = eventually("a new master", || async {
        let a = client.status().await.ok().and_then(|s| group(&s))?;
        (a.master_id != 0).then_some(a)
    })
    .await
    .unwrap();
    let took = stopped.elapsed();
    assert_eq!((a.master_id, a.epoch, a.in_sync.clone()), (2, 6, vec![2]));
    assert_eq!(a.master_address, "127.0.0.1:19002");
    // The leader's status shows who is alive; a follower's shows nobody (not its memory).
    let on_leader = group(&running[&first].status()).unwrap();
    assert_eq!(on_leader.alive, vec![1, 2]);
    let follower = running.keys().find(|id| **id != first).unwrap();
    assert!(group(&running[follower].status()).unwrap().alive.is_empty());
    // The timeout, one heartbeat period and one election tick, with slack for a busy machine.
    assert!(
        took <= Duration::from_millis(TIMEOUT_MS + 1_500),
        "failover took {took:?}"
    );
    eprintln!("master failover after the last heartbeat: {took:?} (timeout {TIMEOUT_MS} ms)");
    // The old master's heartbeat reply names the new master and epoch: it must fence itself.
    let reply = client
        .heartbeat(pb::BrokerHeartbeatRequest {
            broker: Some(broker(0)),
            epoch: 5,
            is_master: true,
        })
        .await
        .unwrap();
    assert_eq!((reply.master_id, reply.epoch), (2, 6));
    // Its in-sync report at the old epoch is refused.
    assert!(client
        .report_in_sync(pb::ReportInSyncRequest {
            broker: Some(broker(0)),
            epoch: 5,
            in_sync: vec![0],
        })
        .await
        .is_err());
    assert_eq!(leader(&running).await, first);
    drop(beaters);
    stop_all(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_leader_keeps_the_state_and_still_fails_masters_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, members) = start(3, dir.path()).await;
    let first = leader(&running).await;
    let client = client(&members);
    let beaters = bootstrap(&client).await;
    every_member_applied(&running).await;

    // Kill the leader: another takes over with the same groups; brokers keep heartbeating
    // through the client, so no master is replaced.
    running.remove(&first).unwrap().stop().await;
    let second = leader(&running).await;
    assert_ne!(second, first);
    let status = client.status().await.unwrap();
    let a = group(&status).unwrap();
    assert_eq!(
        (a.master_id, a.epoch, a.in_sync.clone()),
        (0, 5, vec![0, 2])
    );
    let reply = eventually("a heartbeat answered by the new leader", || async {
        client
            .heartbeat(pb::BrokerHeartbeatRequest {
                broker: Some(broker(0)),
                epoch: 5,
                is_master: true,
            })
            .await
            .ok()
    })
    .await
    .unwrap();
    assert_eq!((reply.master_id, reply.epoch), (0, 5));

    // The master dies under the new leader: broker 2 is elected.
    beaters[0].pause();
    let a = eventually("a new master under the new leader", || async {
        let a = client.status().await.ok().and_then(|s| group(&s))?;
        (a.master_id != 0).then_some(a)
    })
    .await
    .unwrap();
    assert_eq!((a.master_id, a.epoch), (2, 6));
    drop(beaters);
    stop_all(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_status_stays_readable_and_nothing_is_elected() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, members) = start(3, dir.path()).await;
    let first = leader(&running).await;
    let client = client(&members);
    let beaters = bootstrap(&client).await;
    every_member_applied(&running).await;

    // Keep the leader, stop the two others: it cannot confirm its leadership any more.
    let others: Vec<u64> = running.keys().copied().filter(|id| *id != first).collect();
    for id in others {
        running.remove(&id).unwrap().stop().await;
    }
    beaters[0].pause();
    // Twice the heartbeat timeout: no election can commit, the master stays.
    let until = tokio::time::Instant::now() + Duration::from_millis(2 * TIMEOUT_MS + 500);
    while tokio::time::Instant::now() < until {
        let a = group(&client.status().await.unwrap()).unwrap();
        assert_eq!((a.master_id, a.epoch), (0, 5), "elected without a quorum");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Heartbeats fail (no leader with a quorum): brokers keep their roles.
    let err = client
        .heartbeat(pb::BrokerHeartbeatRequest {
            broker: Some(broker(1)),
            epoch: 4,
            is_master: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ControllerClientError::Unavailable(_)),
        "{err}"
    );
    drop(beaters);
    stop_all(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_from_its_data_dir_rejoins_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, members) = start(3, dir.path()).await;
    let first = leader(&running).await;
    let client = client(&members);
    let beaters = bootstrap(&client).await;
    every_member_applied(&running).await;

    // Stop a follower; fail the master over while it is away.
    let follower = *running.keys().find(|id| **id != first).unwrap();
    running.remove(&follower).unwrap().stop().await;
    beaters[0].pause();
    eventually("a new master while a member is away", || async {
        let a = client.status().await.ok().and_then(|s| group(&s))?;
        (a.epoch == 6).then_some(())
    })
    .await
    .unwrap();

    // Restarted, it has what it had from its own log at once, then catches up.
    let back = restart(follower, &members, dir.path()).await;
    eventually("the group from the member's own log", || async {
        group(&back.status())
            .is_some_and(|g| g.members.len() == 3)
            .then_some(())
    })
    .await
    .unwrap();
    running.insert(follower, back);
    eventually("the restarted member caught up", || async {
        group(&running[&follower].status())
            .is_some_and(|g| g.master_id == 2 && g.epoch == 6)
            .then_some(())
    })
    .await
    .unwrap();

    // Restart every member at once: the group comes back from disk alone.
    let ids: Vec<u64> = running.keys().copied().collect();
    for id in &ids {
        running.remove(id).unwrap().stop().await;
    }
    for id in ids {
        running.insert(id, restart(id, &members, dir.path()).await);
    }
    leader(&running).await;
    let a = group(&client.status().await.unwrap()).unwrap();
    assert_eq!((a.master_id, a.epoch, a.in_sync), (2, 6, vec![2]));
    drop(beaters);
    stop_all(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_data_dir_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, members) = start(3, dir.path()).await;
    let first = leader(&running).await;
    let client = client(&members);
    let beaters = bootstrap(&client).await;
    every_member_applied(&running).await;

    // A follower goes away; the master fails over; the leader snapshots and purges its log.
    let follower = *running.keys().find(|id| **id != first).unwrap();
    running.remove(&follower).unwrap().stop().await;
    beaters[0].pause();
    eventually("a new master while a member is away", || async {
        let a = client.status().await.ok().and_then(|s| group(&s))?;
        (a.epoch == 6).then_some(())
    })
    .await
    .unwrap();
    let raft = running[&first].raft().clone();
    let applied = running[&first].status().last_applied;
    raft.trigger().snapshot().await.unwrap();
    eventually("a snapshot on the leader", || async {
        let m = raft.metrics().borrow().clone();
        m.snapshot.is_some_and(|s| s.index >= applied).then_some(())
    })
    .await
    .unwrap();
    raft.trigger().purge_log(applied).await.unwrap();
    eventually("the leader's log purged", || async {
        let m = raft.metrics().borrow().clone();
        m.purged.is_some_and(|p| p.index >= applied).then_some(())
    })
    .await
    .unwrap();

    // Its data dir is gone: it starts empty and gets the snapshot.
    std::fs::remove_dir_all(dir.path().join(format!("controller-{follower}"))).unwrap();
    running.insert(follower, restart(follower, &members, dir.path()).await);
    eventually("the empty member installed the snapshot", || async {
        group(&running[&follower].status())
            .is_some_and(|g| g.master_id == 2 && g.epoch == 6 && g.members.len() == 3)
            .then_some(())
    })
    .await
    .unwrap();
    leader(&running).await;
    drop(beaters);
    stop_all(running).await;
}
