//! What consumers keep across a restart of the broker (docs/consumption.md, "What survives a
//! restart").
//!
//! Clean restart (`shutdown` + `Broker::open`): committed offsets, groups and subscriptions are
//! exact; acknowledged pops are never delivered again; messages in flight are delivered again
//! at once with the attempt counted on; never-popped ones with attempt 1; handles issued before
//! the restart are refused.
//!
//! `kill -9`: a child process (`rg-consume-child`, SYNC_FLUSH, consumer snapshot every 200 ms)
//! pops and acknowledges, and commits pull offsets, printing every step. The test SIGKILLs it at
//! a random time, copies the killed store, opens the copy in-process and checks:
//! - no message whose ack was printed (`ACKED`) is delivered again (pop until empty);
//! - every message whose ack was never started (`ACKING`) is delivered (lost = 0);
//! - a message popped by the child before the last two snapshot intervals comes back with a
//!   higher attempt;
//! - each restored committed offset is at most the last commit the child started and at least
//!   the last commit it finished two persist intervals before the kill (so the regression is
//!   bounded by the commits of about one interval); the regression is printed.
//!
//! Three rounds run on one store (each child recovers what the previous one left), the copy
//! keeps the verification from consuming the original.
//!
//! Regression tests of former bugs (fixed): acks made before the first persist of the consumer
//! state that knows the (group, topic) survive a crash (the kill test with a 60 s persist
//! interval, and a minimal in-process reproduction); dropping the last `Broker` handle without
//! `shutdown` closes the store at once (`…dropping_the_last_handle_closes_at_once`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rocketgate_core::{
    Error, FilterExpression, FlushMode, Message, QueueSelector, SendRequest, TopicConfig,
};
use rocketgate_tests::consume::{self, Line, POP_GROUP, POP_TOPIC, PULL_GROUP, PULL_TOPIC, QUEUES};

use crate::support::{self, ChildGuard, LineReader};

#[tokio::test]
async fn consume_restart_clean_keeps_offsets_acks_and_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::consume_config(dir.path());
    let long = Duration::from_secs(60);
    let (acked, inflight, fresh, handle_before);
    {
        let broker = support::open(&config);
        broker
            .topics()
            .create(TopicConfig::new("rs-pull", 2))
            .unwrap();
        broker
            .topics()
            .create(TopicConfig::new("rs-pop", 2))
            .unwrap();
        for i in 0..20 {
            support::send_ok(&broker, Message::new("rs-pull", format!("{i}"))).await;
            support::send_ok(&broker, Message::new("rs-pop", format!("{i}"))).await;
        }
        broker
            .groups()
            .subscribe("rs-pull-group", "rs-pull", FilterExpression::tag("*"))
            .unwrap();
        let r = support::pull_group(
            &broker,
            support::pull_req("rs-pull-group", "rs-pull", 0, 0, 7, Duration::ZERO),
        )
        .await;
        broker
            .consumer()
            .commit_offset("rs-pull-group", "rs-pull", 0, r.next_offset)
            .unwrap();
        broker
            .consumer()
            .commit_offset("rs-pull-group", "rs-pull", 1, 3)
            .unwrap();

        let popped = support::pop(
            &broker,
            support::pop_req("rs-pop-group", "rs-pop", 12, long, Duration::ZERO),
        )
        .await;
        assert_eq!(popped.len(), 12);
        let ids = |s: &[rocketgate_core::PoppedMessage]| -> BTreeSet<String> {
            s.iter().map(|p| p.message.message_id.clone()).collect()
        };
        for p in &popped[..8] {
            support::ack(&broker, "rs-pop-group", &p.receipt_handle).await;
        }
        acked = ids(&popped[..8]);
        inflight = ids(&popped[8..]);
        handle_before = popped[8].receipt_handle.clone();
        let mut all = BTreeSet::new();
        for q in 0..2 {
            all.extend(
                support::drain(&broker, "rs-pop", q)
                    .await
                    .into_iter()
                    .map(|m| m.message_id),
            );
        }
        fresh = &(&all - &acked) - &inflight;
        assert_eq!(fresh.len(), 8);
        broker.shutdown().unwrap();
    }

    let broker = support::open(&config);
    assert_eq!(
        broker
            .consumer()
            .committed_offset("rs-pull-group", "rs-pull", 0)
            .unwrap(),
        Some(7)
    );
    assert_eq!(
        broker
            .consumer()
            .committed_offset("rs-pull-group", "rs-pull", 1)
            .unwrap(),
        Some(3)
    );
    let lag = broker.consumer().lag("rs-pull-group", "rs-pull").unwrap();
    assert_eq!((lag[0].pull_lag, lag[1].pull_lag), (3, 7), "{lag:?}");
    assert_eq!(
        broker.groups().get("rs-pull-group").unwrap().subscriptions["rs-pull"],
        FilterExpression::tag("*")
    );
    let lag = broker.consumer().lag("rs-pop-group", "rs-pop").unwrap();
    let unacked: u64 = lag.iter().map(|l| l.pop_unacked).sum();
    assert_eq!(unacked, 12, "{lag:?}");
    // A handle from before the restart is no longer current.
    match broker.consumer().ack("rs-pop-group", &handle_before).await {
        Err(Error::InvalidReceiptHandle(_)) => {}
        other => panic!("ack with a handle from before the restart: {other:?}"),
    }

    // In flight before: at once, attempt 2. Never popped: attempt 1. Acknowledged: never.
    let t = Instant::now();
    let back = support::pop(
        &broker,
        support::pop_req("rs-pop-group", "rs-pop", 32, long, Duration::from_secs(5)),
    )
    .await;
    // At once (the wait is 5 s): generous bound, see support::PROMPTLY.
    assert!(t.elapsed() < support::PROMPTLY, "{:?}", t.elapsed());
    let mut seen = BTreeSet::new();
    for p in &back {
        let id = &p.message.message_id;
        assert!(
            !acked.contains(id),
            "acknowledged {id} delivered after the restart"
        );
        let want = if inflight.contains(id) { 2 } else { 1 };
        assert_eq!(
            p.attempt,
            want,
            "{id}: in flight before: {}",
            inflight.contains(id)
        );
        assert!(seen.insert(id.clone()));
    }
    assert_eq!(seen, &inflight | &fresh);
    // Acknowledge half of them and restart again: still exact.
    let (now_acked, left): (Vec<_>, Vec<_>) =
        back.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, p) in &now_acked {
        support::ack(&broker, "rs-pop-group", &p.receipt_handle).await;
    }
    broker.shutdown().unwrap();
    drop(broker); // the directory lock goes with the last handle
    let broker = support::open(&config);
    let again = support::pop(
        &broker,
        support::pop_req(
            "rs-pop-group",
            "rs-pop",
            32,
            long,
            Duration::from_millis(300),
        ),
    )
    .await;
    let again_ids: BTreeSet<&str> = again
        .iter()
        .map(|p| p.message.message_id.as_str())
        .collect();
    let left_ids: BTreeSet<&str> = left
        .iter()
        .map(|(_, p)| p.message.message_id.as_str())
        .collect();
    assert_eq!(again_ids, left_ids);
    for p in &again {
        let before = left
            .iter()
            .find(|(_, l)| l.message.message_id == p.message.message_id)
            .unwrap();
        assert_eq!(p.attempt, before.1.attempt + 1);
    }
    broker.shutdown().unwrap();
}

/// Messages of each topic the child consumes.
const POP_MESSAGES: u64 = 2000;
const PULL_PER_QUEUE: u64 = 600;

/// Fills a fresh store for the child: [`POP_MESSAGES`] on the pop topic, [`PULL_PER_QUEUE`] on
/// every queue of the pull topic, then shuts it down cleanly.
async fn prepare(dir: &Path, persist_ms: u64) {
    let mut config = consume::config(dir, persist_ms);
    config.store.flush_mode = FlushMode::Async; // the clean shutdown flushes
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new(POP_TOPIC, QUEUES))
        .unwrap();
    broker
        .topics()
        .create(TopicConfig::new(PULL_TOPIC, QUEUES))
        .unwrap();
    for seq in 0..POP_MESSAGES {
        support::send_ok(&broker, consume::message(POP_TOPIC, seq)).await;
    }
    for q in 0..QUEUES {
        for i in 0..PULL_PER_QUEUE {
            let req = SendRequest::new(
                consume::message(PULL_TOPIC, u64::from(q) * PULL_PER_QUEUE + i),
                QueueSelector::Queue(q),
            );
            support::send_ok(&broker, req).await;
        }
    }
    broker.shutdown().unwrap();
}

/// What one child printed, with when each line was read, and when it was killed.
struct Run {
    lines: Vec<(Instant, Line)>,
    killed_at: Instant,
}

/// Starts the child, waits for `READY`, lets it consume for `window`, SIGKILLs and reaps it.
fn run_child(dir: &Path, persist_ms: u64, snapshot_first: bool, window: Duration) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_rg-consume-child"))
        .arg(dir)
        .arg(persist_ms.to_string())
        .arg(if snapshot_first { "1" } else { "0" })
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new(child);
    let reader = LineReader::new(guard.child().stdout.take().unwrap());
    let (_, ready) = reader
        .next_within(Duration::from_secs(60))
        .expect("no READY line from the consume child within 60 s");
    assert_eq!(ready, "READY");
    std::thread::sleep(window);
    let killed_at = Instant::now();
    let status = guard.kill();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child must have died of our SIGKILL: {status:?}"
    );
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (at, line) in reader.finish() {
        match line.parse::<Line>() {
            Ok(l) => lines.push((at, l)),
            Err(_) => errors.push(line),
        }
    }
    assert!(errors.is_empty(), "the child reported: {errors:?}");
    Run { lines, killed_at }
}

/// What the test knows from every child so far.
#[derive(Default)]
struct Knowledge {
    /// Seqs whose ack was started / finished.
    acking: BTreeSet<u64>,
    acked: BTreeSet<u64>,
    /// Per seq, the highest attempt popped two persist intervals before a kill.
    attempt_persisted: HashMap<u64, u32>,
    /// Per queue, the highest commit ever started, and the lower bound of the restored offset.
    committing: BTreeMap<u32, u64>,
    floor: BTreeMap<u32, u64>,
}

/// Opens a copy of the killed store in this process and checks it against what the children
/// printed. Returns the restored committed offsets.
async fn verify(dir: &Path, persist_ms: u64, k: &Knowledge, round: usize) -> BTreeMap<u32, u64> {
    let copy = support::memory_tempdir();
    support::copy_dir(dir, copy.path());
    let broker = support::open(&consume::config(copy.path(), persist_ms));
    assert!(broker.storage().recovery_report().after_crash);

    let mut delivered: BTreeMap<u64, u32> = BTreeMap::new();
    loop {
        let got = support::pop(
            &broker,
            support::pop_req(
                POP_GROUP,
                POP_TOPIC,
                256,
                Duration::from_secs(60),
                Duration::from_millis(300),
            ),
        )
        .await;
        if got.is_empty() {
            break;
        }
        for p in got {
            let seq = consume::check(&p.message).unwrap();
            assert!(seq < POP_MESSAGES);
            assert!(
                delivered.insert(seq, p.attempt).is_none(),
                "round {round}: seq {seq} delivered twice by one pass"
            );
        }
    }
    let redelivered_acked: Vec<u64> = delivered
        .keys()
        .filter(|s| k.acked.contains(s))
        .copied()
        .collect();
    let lost: Vec<u64> = (0..POP_MESSAGES)
        .filter(|s| !k.acking.contains(s) && !delivered.contains_key(s))
        .collect();
    let uncertain = k.acking.difference(&k.acked).count();
    println!(
        "round {round}: after the kill: {} delivered, {} acknowledged before ({uncertain} acks \
         in progress at the kill), redelivered acked: {:?}, lost: {:?}",
        delivered.len(),
        k.acked.len(),
        &redelivered_acked[..redelivered_acked.len().min(20)],
        &lost[..lost.len().min(20)]
    );
    assert!(
        redelivered_acked.is_empty(),
        "round {round}: {} messages whose ack had returned were delivered again, e.g. {:?}",
        redelivered_acked.len(),
        &redelivered_acked[..redelivered_acked.len().min(20)]
    );
    assert!(
        lost.is_empty(),
        "round {round}: LOST: {} never-acknowledged messages not delivered, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let mut low_attempts = Vec::new();
    let mut attempt_checks = 0;
    for (seq, attempt) in &delivered {
        if let Some(a) = k.attempt_persisted.get(seq) {
            attempt_checks += 1;
            if attempt <= a {
                low_attempts.push((*seq, *a, *attempt));
            }
        }
    }
    println!(
        "round {round}: {attempt_checks} messages in flight since before the last two \
         snapshots came back with a higher attempt"
    );
    assert!(
        low_attempts.is_empty(),
        "round {round}: attempts not counted on (seq, popped with, now): {low_attempts:?}"
    );

    let mut restored = BTreeMap::new();
    for q in 0..QUEUES {
        let r = broker
            .consumer()
            .committed_offset(PULL_GROUP, PULL_TOPIC, q)
            .unwrap()
            .unwrap_or(0);
        let ceiling = k.committing.get(&q).copied().unwrap_or(0);
        let floor = k.floor.get(&q).copied().unwrap_or(0);
        println!(
            "round {round}: queue {q}: restored committed offset {r}, highest commit started \
             {ceiling} (regression {}), floor {floor}",
            ceiling.saturating_sub(r)
        );
        assert!(
            r <= ceiling,
            "round {round}: queue {q}: restored offset {r} is past the last commit {ceiling}"
        );
        assert!(
            r >= floor,
            "round {round}: queue {q}: restored offset {r} regressed below {floor}, committed \
             more than two persist intervals ({persist_ms} ms each) before the kill"
        );
        restored.insert(q, r);
    }
    broker.shutdown().unwrap();
    restored
}

/// Runs `rounds` kill rounds of the consume child on one store.
async fn kill_rounds(name: &str, persist_ms: u64, snapshot_first: bool, rounds: usize) {
    let mut rng = support::seeded_rng(name);
    // On a memory filesystem the snapshot's fsyncs cost nothing, so the offset bound measures
    // the broker, not how busy the disk is; a kill -9 leaves the page cache either way.
    let dir = support::memory_tempdir();
    prepare(dir.path(), persist_ms).await;
    let mut k = Knowledge::default();
    let interval = Duration::from_millis(persist_ms);
    for round in 1..=rounds {
        let window = Duration::from_millis(rng.gen_range(500..=1200));
        let run = run_child(dir.path(), persist_ms, snapshot_first, window);
        let early = run.killed_at.checked_sub(interval * 2);
        let is_early = |at: Instant| early.is_some_and(|e| at <= e);
        let (mut pops, mut acks, mut commits) = (0, 0, 0);
        let mut last_commit: BTreeMap<u32, (Instant, u64)> = BTreeMap::new();
        let mut round_commits: BTreeMap<u32, u64> = BTreeMap::new();
        for (at, line) in &run.lines {
            match *line {
                Line::Ready => {}
                Line::Popped(seq, attempt) => {
                    pops += 1;
                    if is_early(*at) {
                        let a = k.attempt_persisted.entry(seq).or_default();
                        *a = (*a).max(attempt);
                    }
                }
                Line::Acking(seq) => {
                    k.acking.insert(seq);
                }
                Line::Acked(seq) => {
                    acks += 1;
                    assert!(k.acking.contains(&seq));
                    k.acked.insert(seq);
                }
                Line::Committing(q, o) => {
                    // Within a run commits only grow (a new run restarts from the restored
                    // offset, which may be lower than the last run's last commit).
                    let c = round_commits.entry(q).or_default();
                    assert!(o >= *c, "queue {q}: commit {o} after {c}");
                    *c = o;
                    let c = k.committing.entry(q).or_default();
                    *c = (*c).max(o);
                }
                Line::Committed(q, o) => {
                    commits += 1;
                    last_commit.insert(q, (*at, o));
                    if is_early(*at) {
                        let f = k.floor.entry(q).or_default();
                        *f = (*f).max(o);
                    }
                }
            }
        }
        let recent: Vec<String> = last_commit
            .iter()
            .map(|(q, (at, o))| {
                format!(
                    "q{q}={o} {:?} before the kill",
                    run.killed_at.saturating_duration_since(*at)
                )
            })
            .collect();
        println!(
            "round {round}: killed after {window:?}: {pops} pops, {acks} acks, {commits} \
             commits; last commits: {recent:?}"
        );
        assert!(
            acks > 0 && commits > 0,
            "the child did too little to matter"
        );
        let restored = verify(dir.path(), persist_ms, &k, round).await;
        // The next child starts from what was restored; never below.
        for (q, r) in restored {
            let f = k.floor.entry(q).or_default();
            *f = (*f).max(r);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_restart_kill9_keeps_acks_and_bounds_offset_regression() {
    kill_rounds("consume-kill9", 200, true, 3).await;
}

/// The same with the kill before the first consumer snapshot (persist interval 60 s): acks
/// are journaled in the CommitLog, so they must survive without any snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_restart_kill9_before_the_first_snapshot_keeps_acks() {
    kill_rounds("consume-kill9-no-snapshot", 60_000, false, 1).await;
}

/// The smallest reproduction of the case above, in-process: a copy of the data directory of a
/// running broker is what a `kill -9` leaves behind. A group pops and acknowledges three
/// messages under SYNC_FLUSH before the first consumer snapshot; the copy is opened.
#[tokio::test]
async fn consume_restart_acks_before_the_first_snapshot_survive_a_crash_minimal() {
    let dir = support::memory_tempdir();
    let crashed = support::memory_tempdir();
    let mut config = support::consume_config(dir.path());
    config.store.flush_mode = FlushMode::Sync;
    config.consumer.offset_persist_interval_ms = 60_000;
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new("early", 1))
        .unwrap();
    for i in 0..3 {
        support::send_ok(&broker, Message::new("early", format!("{i}"))).await;
    }
    let long = Duration::from_secs(60);
    let got = support::pop(
        &broker,
        support::pop_req("early-group", "early", 3, long, Duration::ZERO),
    )
    .await;
    assert_eq!(got.len(), 3);
    for p in &got {
        support::ack(&broker, "early-group", &p.receipt_handle).await;
    }
    support::copy_dir(dir.path(), crashed.path());
    broker.shutdown().unwrap();
    drop(broker);

    let mut config = config.clone();
    config.store.data_dir = crashed.path().to_path_buf();
    let broker = support::open(&config);
    let again = support::pop(
        &broker,
        support::pop_req("early-group", "early", 3, long, Duration::from_millis(300)),
    )
    .await;
    let bodies: Vec<String> = again
        .iter()
        .map(|p| String::from_utf8_lossy(&p.message.body).into_owned())
        .collect();
    assert!(
        again.is_empty(),
        "acknowledged (journaled, SYNC_FLUSH) messages delivered again after the crash: {bodies:?}"
    );
    broker.shutdown().unwrap();
}

/// Dropping the last handle closes the broker ("also done when the last handle drops"): the
/// consumer state is persisted and the directory is free to be opened again right away.
#[tokio::test]
async fn consume_restart_dropping_the_last_handle_closes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::consume_config(dir.path()); // snapshot interval: the default 5 s
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new("dropped", 1))
        .unwrap();
    broker
        .consumer()
        .commit_offset("dropper", "dropped", 0, 0)
        .unwrap();
    // Let the snapshot thread start its wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(broker);
    let t = Instant::now();
    let reopened = rocketgate_core::Broker::open(config.clone());
    let took = t.elapsed();
    println!("reopen right after dropping the last handle: {took:?}");
    let broker = match reopened {
        Ok(b) => b,
        Err(e) => panic!("reopen right after dropping the last handle failed after {took:?}: {e}"),
    };
    assert_eq!(
        broker
            .consumer()
            .committed_offset("dropper", "dropped", 0)
            .unwrap(),
        Some(0)
    );
    broker.shutdown().unwrap();
}
