//! T1a: `kill -9` of a real writer process under SYNC_FLUSH, many times over one store; T1b:
//! the same under ASYNC_FLUSH, where an ack means "in the page cache", which a process kill
//! does not lose either.
//!
//! Each round starts `rg-crash-writer` (four concurrent producers under SYNC, two under ASYNC;
//! one `ACK` line per acknowledged send), lets it write for a random 50–800 ms (SYNC) or
//! 50–300 ms (ASYNC) after it reported `READY`, kills it with SIGKILL and reaps it. Most rounds then open the store in this process and check:
//! - every acknowledged message is present at its acknowledged queue offset and CommitLog
//!   offset, byte-identical, and findable by id (lost acked = 0);
//! - every message in every queue is intact and one this test could have sent: its body matches
//!   the pattern of the seq it carries, no seq appears twice, and no seq outside the ranges of the
//!   rounds run so far (unexpected = 0). A message present but never acknowledged is fine: it was
//!   written but the kill came before its ack was printed;
//! - the recovery report says the previous run crashed, and the restart took at most 5 s.
//!
//! The other rounds leave the crashed store to the next child, which must recover it itself
//! (its `READY` line must say `after_crash=1`; after a verified round, whose store was shut down
//! cleanly, `after_crash=0`) and keep appending on top of the recovered tail. One round in four
//! also starts a writer that is killed 0–40 ms after it was started, wherever it is: opening the
//! store, in the middle of recovery, or already writing. Recovery interrupted by a kill must
//! itself be recoverable.
//!
//! Rollover: segments are 128 KiB and one message in sixteen is 4–16 KiB, so a segment rolls
//! every ~120 messages (a few milliseconds at this rate) and rolling (filler, preallocation,
//! rename, directory fsync) is a sizeable share of the writer's time: over the rounds several
//! kills land while a segment is being closed or the next one created. The test prints, per
//! round, how close the last ack was to a segment boundary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use rocketgate_core::{Broker, FlushMode, StoredMessage};
use rocketgate_tests::crash::{self, Ack, Ready};

use crate::support::{self, ChildGuard};

/// Seqs of round `r` are `(r + 1) * SEQ_STRIDE ..`: rounds never collide, even when a round's
/// unacknowledged messages are in the store.
const SEQ_STRIDE: u64 = 1 << 32;

/// What one run of the child printed.
struct RoundOutput {
    /// `None` if it was killed before it reported `READY`.
    ready: Option<Ready>,
    acks: Vec<Ack>,
    errors: Vec<String>,
}

/// Runs the child once: start it, wait for `READY` (unless `early`), let it write for `window`,
/// SIGKILL, reap, and collect its lines. An `early` run is killed `window` after it was started,
/// wherever it is: opening, recovering or already writing.
fn run_child(
    dir: &Path,
    mode: FlushMode,
    producers: usize,
    first_seq: u64,
    window: Duration,
    early: bool,
) -> RoundOutput {
    let child = Command::new(env!("CARGO_BIN_EXE_rg-crash-writer"))
        .arg(dir)
        .arg(first_seq.to_string())
        .arg(producers.to_string())
        .arg("60")
        .arg(crash::flush_mode_arg(mode))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    if !early {
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no READY line from the writer within 60 s: {e}"));
        lines.push(first);
    }
    std::thread::sleep(window);
    let status = guard.kill();
    assert_eq!(
        status.signal(),
        Some(9),
        "the writer must have died of our SIGKILL, not on its own: {status:?}"
    );
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let mut out = RoundOutput {
        ready: None,
        acks: Vec::new(),
        errors: Vec::new(),
    };
    for line in lines {
        if line.starts_with("ACK ") {
            out.acks.push(line.parse::<Ack>().unwrap());
        } else if line.starts_with("READY ") && out.ready.is_none() {
            out.ready = Some(line.parse().unwrap());
        } else {
            out.errors.push(line);
        }
    }
    if !early {
        assert!(out.ready.is_some(), "no READY line");
    }
    out
}

/// Opens the crashed store in this process and checks it against every ack so far.
fn verify(
    dir: &Path,
    mode: FlushMode,
    acked: &BTreeMap<u64, Ack>,
    rounds_run: u64,
    rng: &mut impl Rng,
) {
    let t0 = Instant::now();
    let broker = support::open(&crash::config(dir, mode));
    let open_time = t0.elapsed();
    let report = broker.storage().recovery_report();
    assert!(
        report.after_crash,
        "a killed store must recover as crashed: {report:?}"
    );
    assert!(
        open_time <= Duration::from_secs(5),
        "restart-to-serving took {open_time:?}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(check_contents(&broker, acked, rounds_run, rng));
    println!(
        "  verified {} acks, restart took {open_time:?}, report {report:?}",
        acked.len()
    );
    broker.shutdown().unwrap();
}

async fn check_contents(
    broker: &Broker,
    acked: &BTreeMap<u64, Ack>,
    rounds_run: u64,
    rng: &mut impl Rng,
) {
    let mut at: HashMap<(u32, u64), StoredMessage> = HashMap::new();
    let mut seqs = HashSet::new();
    for q in 0..crash::QUEUES {
        for m in support::drain(broker, crash::TOPIC, q).await {
            let seq = crash::check(&m).unwrap_or_else(|e| {
                panic!("queue {q} offset {}: damaged message: {e}", m.queue_offset)
            });
            let round = seq / SEQ_STRIDE;
            assert!(
                (1..=rounds_run).contains(&round),
                "queue {q} offset {}: seq {seq} was never sent",
                m.queue_offset
            );
            assert!(seqs.insert(seq), "seq {seq} stored twice");
            at.insert((q, m.queue_offset), m);
        }
    }
    for ack in acked.values() {
        let m = at
            .get(&(ack.queue_id, ack.queue_offset))
            .unwrap_or_else(|| {
                panic!(
                    "LOST: acked seq {} at queue {} offset {} is missing",
                    ack.seq, ack.queue_id, ack.queue_offset
                )
            });
        assert_eq!(
            crash::check(m),
            Ok(ack.seq),
            "acked position holds another message"
        );
        assert_eq!(m.message_id, ack.message_id);
        assert_eq!(m.physical_offset, ack.physical_offset);
    }
    // By id: every ack of the last round, and a random sample of 1000 older ones (all of them,
    // every round, would dominate the test's time).
    let (mut ids, mut older): (Vec<&Ack>, Vec<&Ack>) = acked
        .values()
        .partition(|a| a.seq / SEQ_STRIDE == rounds_run);
    older.shuffle(rng);
    ids.extend(older.into_iter().take(1000));
    for ack in ids {
        let m = support::within(
            support::CALL_TIMEOUT,
            "message_by_id",
            broker.queries().by_id(&ack.message_id),
        )
        .await
        .unwrap_or_else(|e| panic!("acked seq {} not found by id: {e}", ack.seq));
        assert_eq!(crash::check(&m), Ok(ack.seq));
        assert_eq!(
            (m.queue_id, m.queue_offset),
            (ack.queue_id, ack.queue_offset)
        );
    }
    println!(
        "  {} messages stored ({} not acked: written but killed before the ack)",
        seqs.len(),
        seqs.len() - acked.len()
    );
}

/// Adds the acks of a run of `round` to `acked`.
fn record(acked: &mut BTreeMap<u64, Ack>, acks: Vec<Ack>, round: u64) {
    for a in acks {
        assert!(a.seq / SEQ_STRIDE == round, "ack of a foreign seq: {a}");
        let seq = a.seq;
        assert!(acked.insert(seq, a).is_none(), "seq {seq} acked twice");
    }
}

/// Runs `rounds` kill rounds in one store directory under `mode`, each killing `producers`
/// producers after 50 ms to `max_window_ms`.
fn kill_rounds(name: &str, mode: FlushMode, rounds: u64, producers: usize, max_window_ms: u64) {
    let mut rng = support::seeded_rng(name);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, Ack> = BTreeMap::new();
    // Whether the next open must report a crash: known after a kill of a writer that had
    // opened the store (true) or after a clean shutdown (false); unknown after a kill that may
    // have come before the store was opened.
    let mut expect_crash = Some(false);
    let mut near_roll = 0;
    let mut early_kills = 0;
    for round in 1..=rounds {
        // Now and then, also a kill 0–40 ms after the start: while the writer opens and
        // recovers the store, or just after. Its seqs are in the upper half of the round's range.
        if rng.gen_ratio(1, 4) {
            let window = Duration::from_millis(rng.gen_range(0..=40));
            let first = round * SEQ_STRIDE + SEQ_STRIDE / 2;
            let out = run_child(dir.path(), mode, producers, first, window, true);
            assert!(
                out.errors.is_empty(),
                "round {round} early: {:?}",
                out.errors
            );
            if let (Some(ready), Some(expected)) = (out.ready, expect_crash) {
                assert_eq!(
                    ready.after_crash, expected,
                    "round {round} early: {ready:?}"
                );
            }
            println!(
                "round {round}: early kill after {window:?}: {} acks, {:?}",
                out.acks.len(),
                out.ready
            );
            expect_crash = if out.ready.is_some() {
                Some(true)
            } else {
                None
            };
            early_kills += 1;
            record(&mut acked, out.acks, round);
        }
        let window = Duration::from_millis(rng.gen_range(50..=max_window_ms));
        let out = run_child(
            dir.path(),
            mode,
            producers,
            round * SEQ_STRIDE,
            window,
            false,
        );
        let ready = out.ready.unwrap();
        if let Some(expected) = expect_crash {
            assert_eq!(
                ready.after_crash, expected,
                "round {round}: the writer's recovery report does not match how the last run ended: {ready:?}"
            );
        }
        expect_crash = Some(true);
        assert!(out.errors.is_empty(), "round {round}: {:?}", out.errors);
        let last_end = out
            .acks
            .iter()
            .map(|a| a.physical_offset)
            .max()
            .unwrap_or(ready.log_end);
        let to_boundary = crash::SEGMENT_SIZE - last_end % crash::SEGMENT_SIZE;
        if to_boundary < 16 * 1024 || last_end % crash::SEGMENT_SIZE < 16 * 1024 {
            near_roll += 1;
        }
        println!(
            "round {round}: {} acks in {window:?}; last acked record at {last_end}, {to_boundary} bytes before a segment boundary; {ready:?}",
            out.acks.len(),
        );
        record(&mut acked, out.acks, round);
        if round == rounds || rng.gen_bool(0.7) {
            verify(dir.path(), mode, &acked, round, &mut rng);
            expect_crash = Some(false);
        }
    }
    let segments = support::segments(dir.path()).len();
    println!(
        "{} acks over {rounds} kills (+{early_kills} early ones); {segments} segments; {near_roll} kills within 16 KiB of a segment boundary",
        acked.len()
    );
    assert!(
        acked.len() >= 200,
        "too little was written to mean anything"
    );
    assert!(
        segments as u64 > rounds,
        "segments must roll during the rounds"
    );
}

#[test]
fn t1a_kill9_during_sync_produce_loses_no_ack() {
    let rounds = support::count_from_env("RG_T1A_ROUNDS", 12);
    kill_rounds("t1a", FlushMode::Sync, rounds, 4, 800);
}

/// ASYNC acks come several times faster than SYNC ones: fewer producers and shorter windows
/// keep the amount of data (and the suite's time) in check.
#[test]
fn t1b_kill9_during_async_produce_loses_no_ack() {
    let rounds = support::count_from_env("RG_T1B_ROUNDS", 6);
    kill_rounds("t1b", FlushMode::Async, rounds, 2, 300);
}
