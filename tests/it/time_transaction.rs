//! Transactional messages and check-back (docs/transactions.md, RELIABILITY.md T6a and T6b) on
//! the real store, with check-back times scaled down by configuration (first check 300 ms after
//! the half was stored, then every 300 ms, each answer bounded by 500 ms; see
//! [`rocketgate_tests::time::config`]).
//!
//! - Resolution: a committed transaction is visible exactly once, with the id, keys,
//!   properties and body it was sent with, in the queue its receipt named; a rolled-back one is
//!   never visible; one left unresolved is checked back through the producer group's checker
//!   (no earlier than `check_first_ms` after it was stored), which commits it: visible once.
//!   Halves are never visible before their commit (pulls, pops, `query_by_key` on the topic).
//!   Resolved transactions are never checked back. Replayed resolutions return
//!   `TransactionResolved` with the first outcome, also after a restart, and deliver nothing.
//! - Discard: a checker answering `Unknown` is asked exactly `max_checks` times, about
//!   `check_interval_ms` apart; then the transaction is discarded, listed by
//!   `discarded_transactions`, never visible, and resolved as not committed. A checker that
//!   answers `Unknown` twice and then commits gets its message delivered once.
//! - T6b: a child process (`rg-time-child halves`, SYNC_FLUSH) stores 500 halves and is killed
//!   with SIGKILL; the store is reopened in this process. Nothing is visible before a checker is
//!   registered; then one that commits everything is registered: every half is checked back
//!   exactly once (no re-check of a resolved half, RocketMQ #2117) and delivered exactly once;
//!   every commit replayed twice returns `TransactionResolved` and delivers nothing (#5574), also
//!   after a restart.
//! - Concurrent duplicate commits of one transaction: one succeeds, the other reports
//!   `TransactionResolved`; the message is delivered once.
//! - `kill -9` during commits (SYNC_FLUSH): every message delivered exactly once after the
//!   reopen (the commit in progress is recognised through its stored copy or checked back), no
//!   half whose commit had returned is checked back.
//! - Check-back failures (#9500): a checker that never answers, or that panics, must not stop the
//!   check-backs of other producer groups.
//!
//! Regression tests of former bugs (fixed): a commit racing with an in-progress commit of the
//! same transaction gets `TransactionResolved`, and the message is delivered once
//! (`…concurrent_duplicate_commit…`); check-backs run concurrently, so a hung checker does not
//! stall other groups (`…hung_checker_does_not_stall_other_groups`); a panicking checker does
//! not stop the check-backs (`…panicking_checker_does_not_stop_check_backs`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketgate_core::{Broker, Error, ErrorKind, FlushMode, Message, StoredMessage, TopicConfig};
use rocketgate_core::{CheckFuture, CheckResult, HalfMessage, Resolution, TransactionChecker};
use rocketgate_tests::time::{self, Line, PRODUCER_GROUP, QUEUES, TX_TOPIC};

use crate::support;

/// What a [`Checker`] does when asked.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answer this.
    Answer(CheckResult),
    /// Never answer.
    Hang,
    /// Panic inside the answer.
    Panic,
}

/// How a [`Checker`] decides: from the transaction id and how often it was asked before.
type Decide = dyn Fn(&str, usize) -> Behaviour + Send + Sync;

/// A checker that records every call (transaction id, when, the half as shown) and answers as
/// `decide` says, given the transaction id and how many times it was asked before.
struct Checker {
    calls: Mutex<Vec<(String, i64, HalfMessage)>>,
    decide: Box<Decide>,
}

impl Checker {
    fn new(decide: impl Fn(&str, usize) -> Behaviour + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            decide: Box::new(decide),
        })
    }

    fn always(b: Behaviour) -> Arc<Self> {
        Self::new(move |_, _| b)
    }

    /// Calls per transaction id.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (tx, _, _) in self.calls.lock().unwrap().iter() {
            *out.entry(tx.clone()).or_default() += 1;
        }
        out
    }

    /// When each call for `tx` was made.
    fn times(&self, tx: &str) -> Vec<i64> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, _)| t == tx)
            .map(|(_, at, _)| *at)
            .collect()
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl TransactionChecker for Checker {
    fn check(&self, half: HalfMessage) -> CheckFuture {
        let tx = half.transaction_id.clone();
        let before = {
            let mut calls = self.calls.lock().unwrap();
            let before = calls.iter().filter(|(t, _, _)| *t == tx).count();
            calls.push((tx.clone(), support::now_ms(), half));
            before
        };
        match (self.decide)(&tx, before) {
            Behaviour::Answer(r) => Box::pin(async move { r }),
            Behaviour::Hang => Box::pin(std::future::pending()),
            Behaviour::Panic => Box::pin(async move { panic!("checker of {tx} failed") }),
        }
    }
}

const COMMIT: Behaviour = Behaviour::Answer(CheckResult::Resolve(Resolution::Commit));

fn message(name: &str) -> Message {
    Message::new(TX_TOPIC, format!("tx-{name}"))
        .with_key(format!("key-{name}"))
        .with_tag("tx")
        .with_property("name", name)
}

/// A stored half: its receipt's ids and queue, and the message as sent.
#[derive(Debug, Clone)]
struct Half {
    transaction_id: String,
    message_id: String,
    queue_id: u32,
    stored_ms: i64,
    message: Message,
}

async fn send_half(broker: &Broker, m: Message, group: &str) -> Half {
    let r = support::within(
        support::CALL_TIMEOUT,
        "send_half",
        broker.transactions().send_half(m.clone().into(), group),
    )
    .await
    .unwrap();
    assert_eq!(r.deliver_at_ms, None);
    Half {
        transaction_id: r.transaction_id.expect("a half has a transaction id"),
        message_id: r.message_id,
        queue_id: r.queue_id,
        stored_ms: r.store_timestamp_ms,
        message: m,
    }
}

async fn end(broker: &Broker, tx: &str, r: Resolution) -> rocketgate_core::Result<()> {
    support::within(
        support::CALL_TIMEOUT,
        "end_transaction",
        broker.transactions().end(tx, r),
    )
    .await
}

/// Asserts that resolving `tx` again (either way) changes nothing and reports `committed`.
async fn assert_resolved(broker: &Broker, tx: &str, committed: bool) {
    for r in [Resolution::Commit, Resolution::Rollback] {
        match end(broker, tx, r).await {
            Err(e @ Error::TransactionResolved { .. }) => {
                assert_eq!(e.kind(), ErrorKind::Conflict);
                let Error::TransactionResolved {
                    transaction_id,
                    committed: c,
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(transaction_id, tx);
                assert_eq!(c, committed, "{tx}: resolved as committed = {c}");
            }
            other => panic!("{tx}: {r:?} after the resolution: {other:?}"),
        }
    }
}

/// Every message of the transaction topic, by message id (failing on a duplicate id).
async fn visible(broker: &Broker) -> BTreeMap<String, StoredMessage> {
    let mut out = BTreeMap::new();
    for m in support::drain_topic(broker, TX_TOPIC, QUEUES).await {
        let id = m.message_id.clone();
        if let Some(first) = out.insert(id.clone(), m) {
            panic!(
                "{id} delivered twice (first at {}/{})",
                first.queue_id, first.queue_offset
            );
        }
    }
    out
}

/// A committed message is the message that was sent, in the queue of its receipt.
fn check_committed(m: &StoredMessage, h: &Half) {
    assert_eq!(m.message_id, h.message_id);
    assert_eq!(m.topic, TX_TOPIC);
    assert_eq!(m.queue_id, h.queue_id, "{}: queue", h.message_id);
    assert_eq!(m.body, h.message.body);
    assert_eq!(m.keys, h.message.keys);
    assert_eq!(m.tag, h.message.tag);
    assert_eq!(
        m.properties, h.message.properties,
        "{}: no internal properties",
        h.message_id
    );
    assert_eq!(m.reconsume_times, 0);
}

/// Nothing of `half` is visible to consumers: not in the topic, not found by key in it, not
/// popped, and a lookup by id does not present it as a message of the topic.
async fn assert_invisible(broker: &Broker, halves: &[&Half]) {
    let v = visible(broker).await;
    for h in halves {
        assert!(
            !v.contains_key(&h.message_id),
            "half {} visible",
            h.message_id
        );
        let key = &h.message.keys[0];
        let by_key = broker
            .queries()
            .by_key(TX_TOPIC, key, 0, i64::MAX, 10)
            .await
            .unwrap();
        assert!(by_key.is_empty(), "half found by key: {by_key:?}");
        if let Ok(m) = broker.queries().by_id(&h.message_id).await {
            assert_ne!(
                m.topic, TX_TOPIC,
                "half presented as a message of its topic"
            );
        }
    }
    let popped = support::pop(
        broker,
        support::pop_req(
            "tx-peeker",
            TX_TOPIC,
            32,
            Duration::from_secs(30),
            Duration::ZERO,
        ),
    )
    .await;
    let ids: BTreeSet<&str> = halves.iter().map(|h| h.message_id.as_str()).collect();
    for p in &popped {
        assert!(!ids.contains(p.message.message_id.as_str()), "half popped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_transaction_commit_rollback_and_check_back_each_visible_once_or_never() {
    let dir = tempfile::tempdir().unwrap();
    let config = time::config(dir.path(), FlushMode::Async);
    let broker = support::open(&config);
    broker
        .topics()
        .create(
            TopicConfig::new(TX_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Transaction),
        )
        .unwrap();
    let checker = Checker::always(COMMIT);
    broker
        .transactions()
        .register_checker("tx-pg", checker.clone());
    let a = send_half(&broker, message("commit"), "tx-pg").await;
    let b = send_half(&broker, message("rollback"), "tx-pg").await;
    let c = send_half(&broker, message("check-back"), "tx-pg").await;
    assert_eq!(broker.transactions().pending(), 3);
    assert_invisible(&broker, &[&a, &b, &c]).await;

    end(&broker, &a.transaction_id, Resolution::Commit)
        .await
        .unwrap();
    end(&broker, &b.transaction_id, Resolution::Rollback)
        .await
        .unwrap();
    assert!(
        support::now_ms() < c.stored_ms + 300,
        "too slow to resolve before the first check-back; the checks below would not hold"
    );
    assert_resolved(&broker, &a.transaction_id, true).await;
    assert_resolved(&broker, &b.transaction_id, false).await;
    let v = visible(&broker).await;
    assert_eq!(v.keys().collect::<Vec<_>>(), vec![&a.message_id]);
    check_committed(&v[&a.message_id], &a);
    assert_invisible(&broker, &[&b, &c]).await;

    // C: checked back, committed by the checker.
    support::eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        "the unresolved half is committed by its check-back",
        || broker.transactions().pending() == 0,
    )
    .await;
    let first_check = checker.times(&c.transaction_id)[0];
    println!(
        "transactions: first check-back {} ms after the half was stored (check_first_ms 300)",
        first_check - c.stored_ms
    );
    assert!(first_check - c.stored_ms >= 300, "checked back too early");
    assert!(
        first_check - c.stored_ms <= 300 + 2 * 300 + 500,
        "checked back too late"
    );
    let shown = checker.calls.lock().unwrap()[0].2.clone();
    assert_eq!(shown.producer_group, "tx-pg");
    assert_eq!(shown.message.message_id, c.message_id);
    assert_eq!(shown.message.topic, TX_TOPIC);
    assert_eq!(shown.message.properties, c.message.properties);
    // Three more check intervals: nobody is asked again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        checker.counts(),
        BTreeMap::from([(c.transaction_id.clone(), 1)]),
        "only the unresolved half is checked back, once"
    );
    assert_resolved(&broker, &c.transaction_id, true).await;
    let v = visible(&broker).await;
    assert_eq!(
        v.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([a.message_id.clone(), c.message_id.clone()])
    );
    check_committed(&v[&c.message_id], &c);
    // A consumer gets each committed message once.
    let mut popped = Vec::new();
    loop {
        let got = support::pop(
            &broker,
            support::pop_req(
                "tx-consumer",
                TX_TOPIC,
                32,
                Duration::from_secs(30),
                Duration::from_millis(300),
            ),
        )
        .await;
        if got.is_empty() {
            break;
        }
        for p in got {
            support::ack(&broker, "tx-consumer", &p.receipt_handle).await;
            popped.push(p.message.message_id);
        }
    }
    popped.sort();
    let mut want = vec![a.message_id.clone(), c.message_id.clone()];
    want.sort();
    assert_eq!(popped, want);
    assert!(broker.transactions().discarded().is_empty());
    broker.shutdown().unwrap();
    drop(broker);

    // After a restart: nothing pending, nothing checked back, resolutions unchanged.
    let broker = support::open(&config);
    let checker = Checker::always(COMMIT);
    broker
        .transactions()
        .register_checker("tx-pg", checker.clone());
    assert_eq!(broker.transactions().pending(), 0);
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        checker.total(),
        0,
        "resolved transactions checked back after a restart"
    );
    assert_resolved(&broker, &a.transaction_id, true).await;
    assert_resolved(&broker, &b.transaction_id, false).await;
    assert_resolved(&broker, &c.transaction_id, true).await;
    assert_eq!(visible(&broker).await.len(), 2);
    broker.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_transaction_unknown_until_max_checks_is_discarded_never_visible() {
    let dir = support::memory_tempdir();
    let mut config = time::config(dir.path(), FlushMode::Async);
    config.transaction.check_first_ms = 200;
    config.transaction.check_interval_ms = 200;
    config.transaction.max_checks = 3;
    let broker = support::open(&config);
    broker
        .topics()
        .create(
            TopicConfig::new(TX_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Transaction),
        )
        .unwrap();
    let unknown = Checker::always(Behaviour::Answer(CheckResult::Unknown));
    broker
        .transactions()
        .register_checker("tx-unknown", unknown.clone());
    // Unknown twice, then commit on the third (last) check.
    let late = Checker::new(|_, before| {
        if before < 2 {
            Behaviour::Answer(CheckResult::Unknown)
        } else {
            COMMIT
        }
    });
    broker
        .transactions()
        .register_checker("tx-late", late.clone());
    let u = send_half(&broker, message("unknown"), "tx-unknown").await;
    let l = send_half(&broker, message("late"), "tx-late").await;

    support::eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        "the always-unknown transaction is discarded",
        || !broker.transactions().discarded().is_empty(),
    )
    .await;
    let discarded = broker.transactions().discarded();
    assert_eq!(discarded.len(), 1, "{discarded:?}");
    let d = &discarded[0];
    assert_eq!(
        (
            &d.transaction_id,
            &d.message_id,
            d.producer_group.as_str(),
            d.topic.as_str()
        ),
        (&u.transaction_id, &u.message_id, "tx-unknown", TX_TOPIC)
    );
    let times = unknown.times(&u.transaction_id);
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "transactions: unknown answered {} times, first {} ms after the half was stored, then \
         after {gaps:?} ms (check_first_ms 200, check_interval_ms 200)",
        times.len(),
        times[0] - u.stored_ms
    );
    assert_eq!(times.len(), 3, "checked exactly max_checks times");
    assert!(gaps.iter().all(|g| *g >= 190), "{gaps:?}");
    assert_eq!(late.times(&l.transaction_id).len(), 3);
    assert_eq!(broker.transactions().pending(), 0);

    // Never visible; resolved as not committed; not checked again.
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(unknown.total(), 3);
    assert_eq!(late.total(), 3);
    let v = visible(&broker).await;
    assert_eq!(v.keys().collect::<Vec<_>>(), vec![&l.message_id], "{v:?}");
    check_committed(&v[&l.message_id], &l);
    assert_resolved(&broker, &u.transaction_id, false).await;
    assert_resolved(&broker, &l.transaction_id, true).await;
    broker.shutdown().unwrap();
    drop(broker);

    let broker = support::open(&config);
    let unknown = Checker::always(Behaviour::Answer(CheckResult::Unknown));
    broker
        .transactions()
        .register_checker("tx-unknown", unknown.clone());
    assert_eq!(broker.transactions().pending(), 0);
    assert_resolved(&broker, &u.transaction_id, false).await;
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unknown.total(), 0);
    assert_eq!(visible(&broker).await.len(), 1);
    broker.shutdown().unwrap();
}

/// Halves the T6b child stores before it is killed.
const T6B_HALVES: u64 = 500;

/// Runs `rg-time-child halves` on `dir`: it stores `n` halves; with `commit_for` it then commits
/// them one by one for that long. Then it is killed with SIGKILL. Returns the halves (transaction
/// id → (n, message id)) and the `n` of each half whose commit returned before the kill.
fn run_halves_child(
    dir: &std::path::Path,
    n: u64,
    commit_for: Option<Duration>,
) -> (BTreeMap<String, (u64, String)>, BTreeSet<u64>) {
    let mut args = vec!["halves".into(), dir.display().to_string(), n.to_string()];
    if commit_for.is_some() {
        args.push("commit".into());
    }
    let (guard, reader) = support::spawn_child(env!("CARGO_BIN_EXE_rg-time-child"), &args);
    let mut halves: BTreeMap<String, (u64, String)> = BTreeMap::new();
    loop {
        let (_, line) = reader
            .next_within(Duration::from_secs(60))
            .expect("the halves child ended without READY");
        match line.parse::<Line>() {
            Ok(Line::Ready) => break,
            Ok(Line::Half {
                n,
                transaction_id,
                message_id,
            }) => {
                assert!(halves.insert(transaction_id, (n, message_id)).is_none());
            }
            _ => panic!("the halves child printed {line:?}"),
        }
    }
    assert_eq!(halves.len() as u64, n);
    if let Some(d) = commit_for {
        std::thread::sleep(d);
    }
    let status = guard.kill();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let mut committed = BTreeSet::new();
    for (_, line) in reader.finish() {
        match line.parse::<Line>() {
            Ok(Line::Committed { n }) => {
                committed.insert(n);
            }
            _ => panic!("the halves child printed {line:?}"),
        }
    }
    (halves, committed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_transaction_t6b_kill9_with_500_pending_halves_all_checked_back_once() {
    let dir = support::memory_tempdir();
    let (halves, committed) = run_halves_child(dir.path(), T6B_HALVES, None);
    assert!(committed.is_empty());

    let config = time::config(dir.path(), FlushMode::Sync);
    let opened = Instant::now();
    let broker = support::open(&config);
    assert!(broker.storage().recovery_report().after_crash);
    assert_eq!(broker.transactions().pending(), T6B_HALVES as usize);
    // No checker yet: nothing can be committed, nothing is visible.
    assert!(
        visible(&broker).await.is_empty(),
        "halves visible before commit"
    );
    let checker = Checker::always(COMMIT);
    broker
        .transactions()
        .register_checker(PRODUCER_GROUP, checker.clone());
    support::eventually(
        Duration::from_secs(30),
        Duration::from_millis(20),
        "every pending half checked back and committed",
        || broker.transactions().pending() == 0,
    )
    .await;
    println!(
        "T6b: {T6B_HALVES} halves pending after kill -9: all checked back and committed {:?} \
         after the reopen",
        opened.elapsed()
    );
    let v = visible(&broker).await;
    assert_eq!(v.len() as u64, T6B_HALVES, "delivered exactly once each");
    let ids: BTreeSet<&String> = halves.values().map(|(_, id)| id).collect();
    assert_eq!(v.keys().collect::<BTreeSet<_>>(), ids);
    for (n, id) in halves.values() {
        let m = &v[id];
        let want = time::half_message(*n);
        assert_eq!(
            (&m.body, &m.keys, &m.properties),
            (&want.body, &want.keys, &want.properties),
            "half {n}"
        );
    }
    let counts = checker.counts();
    assert_eq!(
        counts.keys().collect::<BTreeSet<_>>(),
        halves.keys().collect::<BTreeSet<_>>(),
        "every pending half checked back"
    );
    let rechecked: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        rechecked.is_empty(),
        "checked back more than once: {rechecked:?}"
    );

    // Every commit replayed twice: refused, no duplicates.
    for tx in halves.keys() {
        for _ in 0..2 {
            match end(&broker, tx, Resolution::Commit).await {
                Err(Error::TransactionResolved {
                    committed: true, ..
                }) => {}
                other => panic!("replayed commit of {tx}: {other:?}"),
            }
        }
    }
    assert_eq!(visible(&broker).await.len() as u64, T6B_HALVES);
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        checker.total() as u64,
        T6B_HALVES,
        "resolved halves checked again"
    );
    broker.shutdown().unwrap();
    drop(broker);

    let broker = support::open(&config);
    let checker = Checker::always(COMMIT);
    broker
        .transactions()
        .register_checker(PRODUCER_GROUP, checker.clone());
    assert_eq!(broker.transactions().pending(), 0);
    for tx in halves.keys().take(50) {
        assert_resolved(&broker, tx, true).await;
    }
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(checker.total(), 0);
    assert_eq!(visible(&broker).await.len() as u64, T6B_HALVES);
    broker.shutdown().unwrap();
}

/// Commits each of 40 halves twice at the same time (SYNC_FLUSH, so that a commit waits for
/// its flush and the duplicates really overlap). Returns how many messages are visible, how many
/// halves there were, and the outcomes per transaction id other than one `Ok` plus one
/// `TransactionResolved { committed: true }`.
async fn concurrent_duplicate_commits() -> (usize, usize, Vec<(String, Vec<String>)>) {
    let dir = support::memory_tempdir();
    let mut config = time::config(dir.path(), FlushMode::Sync);
    config.transaction.check_first_ms = 60_000;
    let broker = support::open(&config);
    broker
        .topics()
        .create(
            TopicConfig::new(TX_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Transaction),
        )
        .unwrap();
    let mut halves = Vec::new();
    for i in 0..40 {
        halves.push(send_half(&broker, message(&format!("dup-{i}")), "tx-dup").await);
    }
    let mut tasks = Vec::new();
    for h in &halves {
        for _ in 0..2 {
            let broker = broker.clone();
            let tx = h.transaction_id.clone();
            tasks.push(tokio::spawn(async move {
                let r = broker.transactions().end(&tx, Resolution::Commit).await;
                (tx, r)
            }));
        }
    }
    let mut outcomes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tasks {
        let (tx, r) = support::within(support::CALL_TIMEOUT, "commit", t)
            .await
            .unwrap();
        let o = match r {
            Ok(()) => "ok".to_owned(),
            Err(Error::TransactionResolved {
                committed: true, ..
            }) => "resolved".to_owned(),
            Err(e) => format!("{e:?}"),
        };
        outcomes.entry(tx).or_default().push(o);
    }
    let visible = visible(&broker).await.len();
    broker.shutdown().unwrap();
    let bad = outcomes
        .into_iter()
        .filter(|(_, o)| {
            let mut o = o.clone();
            o.sort();
            o != ["ok", "resolved"]
        })
        .collect();
    (visible, halves.len(), bad)
}

/// The child commits its halves one by one (SYNC_FLUSH: the message, then the resolution, each
/// waiting for its fsync) and is killed in the middle. After the reopen a checker that commits
/// everything is registered: every message is delivered exactly once, and no half whose commit
/// had returned is checked back. The half whose commit was in progress may have its message
/// stored without its resolution: it is recognised (not delivered twice) or checked back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_transaction_kill9_during_commits_delivers_each_message_once() {
    use rand::Rng;
    let mut rng = support::seeded_rng("tx-kill-commits");
    let dir = support::memory_tempdir();
    let n = 1000;
    let window = Duration::from_millis(rng.gen_range(5..60));
    let (halves, committed) = run_halves_child(dir.path(), n, Some(window));
    println!(
        "transactions: killed {window:?} into the commits, {} of {n} commits had returned",
        committed.len()
    );
    let config = time::config(dir.path(), FlushMode::Sync);
    let broker = support::open(&config);
    let pending = broker.transactions().pending() as u64;
    let uncommitted = n - committed.len() as u64;
    assert!(
        pending == uncommitted || pending + 1 == uncommitted,
        "{pending} pending after the reopen, {uncommitted} commits had not returned"
    );
    let checker = Checker::always(COMMIT);
    broker
        .transactions()
        .register_checker(PRODUCER_GROUP, checker.clone());
    support::eventually(
        Duration::from_secs(30),
        Duration::from_millis(20),
        "every pending half checked back and committed",
        || broker.transactions().pending() == 0,
    )
    .await;
    let v = visible(&broker).await;
    assert_eq!(v.len() as u64, n, "each message delivered exactly once");
    let by_tx: BTreeMap<&String, u64> = halves.iter().map(|(tx, (n, _))| (tx, *n)).collect();
    let counts = checker.counts();
    let rechecked: Vec<u64> = counts
        .keys()
        .map(|tx| by_tx[tx])
        .filter(|n| committed.contains(n))
        .collect();
    assert!(
        rechecked.is_empty(),
        "committed halves checked back: {rechecked:?}"
    );
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    println!(
        "transactions: after the kill: {pending} pending, {} checked back, {} recognised as \
         already committed",
        counts.len(),
        pending - counts.len() as u64
    );
    for tx in halves.keys() {
        assert_resolved(&broker, tx, true).await;
    }
    assert_eq!(visible(&broker).await.len() as u64, n);
    broker.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn time_transaction_concurrent_duplicate_commits_deliver_once() {
    let (visible, halves, bad) = concurrent_duplicate_commits().await;
    assert_eq!(visible, halves, "each committed message exactly once");
    let no_ok: Vec<_> = bad
        .iter()
        .filter(|(_, o)| o.iter().filter(|o| *o == "ok").count() != 1)
        .collect();
    assert!(
        no_ok.is_empty(),
        "not exactly one successful commit: {no_ok:?}"
    );
    println!(
        "transactions: concurrent duplicate commits: {} of {halves} duplicates answered other \
         than TransactionResolved, e.g. {:?}",
        bad.len(),
        bad.first()
    );
}

/// The duplicate of a commit that is still being appended is answered `InvalidTransactionId`
/// (the id is neither pending nor resolved during the append), not `TransactionResolved`, so a
/// gateway that answers OK to a repeated identical resolution reports an error instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn time_transaction_concurrent_duplicate_commit_reports_transaction_resolved() {
    let (visible, halves, bad) = concurrent_duplicate_commits().await;
    assert_eq!(visible, halves);
    assert!(
        bad.is_empty(),
        "two concurrent commits of one transaction must give one Ok and one \
         TransactionResolved: {} of {halves} did not, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
}

/// Sends a half of `bad_group` (whose checker misbehaves), waits until that checker was asked,
/// then sends a half of a well-behaved group: it must be committed by its check-back within
/// `check_first + check_timeout + 2 × interval` (+ 500 ms slack) of being stored.
async fn good_group_progresses_despite(bad: Behaviour, bad_halves: usize) {
    let dir = support::memory_tempdir();
    let config = time::config(dir.path(), FlushMode::Async);
    let broker = support::open(&config);
    broker
        .topics()
        .create(
            TopicConfig::new(TX_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Transaction),
        )
        .unwrap();
    let bad_checker = Checker::always(bad);
    broker
        .transactions()
        .register_checker("tx-bad", bad_checker.clone());
    let good_checker = Checker::always(COMMIT);
    broker
        .transactions()
        .register_checker("tx-good", good_checker.clone());
    for i in 0..bad_halves {
        send_half(&broker, message(&format!("bad-{i}")), "tx-bad").await;
    }
    support::eventually(
        Duration::from_secs(5),
        Duration::from_millis(5),
        "the misbehaving checker is asked",
        || bad_checker.total() > 0,
    )
    .await;
    let good = send_half(&broker, message("good"), "tx-good").await;
    let c = &config.transaction;
    let bound = (c.check_first_ms + c.check_timeout_ms + 2 * c.check_interval_ms + 500) as i64;
    // Wait well past the bound, to report when it really happened.
    let deadline = good.stored_ms + bound + 8000;
    while good_checker.total() == 0 && support::now_ms() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let checked = good_checker.times(&good.transaction_id).first().copied();
    println!(
        "transactions: with a misbehaving checker ({bad:?}) in another group, the good half was \
         checked back {:?} ms after it was stored (bound {bound} ms)",
        checked.map(|t| t - good.stored_ms)
    );
    let checked = checked.expect("the good half was never checked back");
    assert!(checked - good.stored_ms <= bound, "checked back too late");
    support::eventually(
        Duration::from_secs(2),
        Duration::from_millis(10),
        "the good half committed",
        || broker.transactions().pending() == bad_halves,
    )
    .await;
    let v = visible(&broker).await;
    assert_eq!(v.keys().collect::<Vec<_>>(), vec![&good.message_id]);
    broker.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_transaction_hung_checker_does_not_stall_other_groups() {
    good_group_progresses_despite(Behaviour::Hang, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_transaction_panicking_checker_does_not_stop_check_backs() {
    good_group_progresses_despite(Behaviour::Panic, 1).await;
}
