//! T1c of RELIABILITY.md: simulated power loss of a writer, checked by recovering every crash
//! image.
//!
//! A *round* opens a recorded store (16 KiB segments, 8-entry ConsumeQueue files, 48-entry index
//! files, so everything rolls), runs 1–3 concurrent producers over two topics of two queues,
//! sometimes restarts the store cleanly half-way and sometimes shuts it down cleanly at the end.
//! The recorder takes crash images at random events (and one after the last acknowledgement).
//! Each image is recovered by a fresh [`Store`] and checked:
//!
//! - recovery neither panics nor fails;
//! - `SYNC_FLUSH`: every append acknowledged before the crash is read back, with its id, body
//!   and queue offset, through its queue and through the index, and its bytes were durable at
//!   the crash (acknowledged only after a sync covered it);
//! - `ASYNC_FLUSH`: every acknowledged record whose bytes were durable at the crash (an msync
//!   covered it) is read back; the lost ones are the log's tail, acknowledged less than
//!   `flush_interval_ms` + 1 s (a generous allowance for scheduling, clearly marked so) before
//!   the crash: docs/storage.md's bound of one flush interval;
//! - every queue is dense and serves only records some producer wrote, byte for byte (no
//!   corrupt or foreign record is ever served); the CommitLog holds exactly as many records as
//!   the queues (each indexed once); a new append after recovery is read back.
//!
//! One image in four is also crashed *during its recovery* (nested recording): those images
//! must satisfy the same checks.
//!
//! Runs: `RG_T1C_CRASHES` writer crashes per flush mode (default 200 — about 1 s in a debug
//! build — or 24 where there is no `/dev/shm` and every fsync of the store goes to a disk; the
//! full T1c is 1,000, 5–7 s each in a debug build). The seed is printed and `RG_TEST_SEED` replays the random
//! choices; thread timing still varies, so the image of a failing crash is kept (at most three
//! per run) in the temporary directory, its path printed, and `t1c_inspect_a_kept_image`
//! shows what recovery makes of it.
//!
//! Owns: its temporary directories (a store, its crash images); touches nothing else.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{CrashPlan, CrashPoint, ImageKind, Recording};
use crate::config::{FlushMode, StoreConfig};
use crate::store::commit_log::Appended;
use crate::store::record::{RecordDraft, RecordView};
use crate::store::Store;

pub(super) const TOPICS: [&str; 2] = ["t0", "t1"];
pub(super) const QUEUES: u32 = 2;
pub(super) const SEGMENT: u64 = 16 * 1024;
const FLUSH_INTERVAL_MS: u64 = 20;
/// The generous part of the ASYNC time bound (scheduling on a loaded 2-core machine).
const ASYNC_SLACK: Duration = Duration::from_secs(1);
/// Bound on one producer's appends or one store call in these tests (a dead store thread would
/// otherwise make them wait forever).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Crash points per writer round (one of them after the last acknowledgement).
const CRASHES_PER_ROUND: usize = 8;

pub(super) fn config(dir: &Path, mode: FlushMode) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        segment_size: SEGMENT,
        flush_mode: mode,
        flush_interval_ms: FLUSH_INTERVAL_MS,
        checkpoint_interval_ms: 15,
        index_slots_per_file: 17,
        index_entries_per_file: 48,
        consume_queue_entries_per_file: 8,
        ..StoreConfig::default()
    }
}

/// A temporary directory on tmpfs where there is one: the durability is simulated, so the real
/// filesystem's fsyncs are only time spent (a few ms each on a disk).
pub(super) fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// Writer crashes per flush mode (see the module doc).
fn crash_count() -> usize {
    let default = if tempfile::tempdir_in("/dev/shm").is_ok() {
        200
    } else {
        24
    };
    std::env::var("RG_T1C_CRASHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub(super) fn seed(name: &str) -> u64 {
    let seed = std::env::var("RG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("{name}: seed {seed} (replay with RG_TEST_SEED={seed})");
    seed
}

#[derive(Debug, Clone)]
struct Acked {
    id: String,
    topic: &'static str,
    queue: u32,
    body: Vec<u8>,
    at: Instant,
    appended: Appended,
}

/// Where a record went and what it held: (topic, queue, body).
type Written = (&'static str, u32, Vec<u8>);

#[derive(Default)]
struct Journal {
    /// Every record a producer tried to append: id -> (topic, queue, body).
    written: Mutex<HashMap<String, Written>>,
    /// Acknowledged appends, in the order the acknowledgements returned.
    acked: Mutex<Vec<Acked>>,
}

/// What the checks of a run found.
#[derive(Debug, Default)]
struct Summary {
    /// Writer crash images checked.
    crashes: usize,
    /// Images of a crash during the recovery of a writer crash image.
    nested: usize,
    /// Acknowledged records that had to be checked, summed over the images.
    acked: usize,
    /// Acknowledged records not read back.
    lost: usize,
    /// Acknowledged records not read back although their bytes were durable at the crash.
    lost_durable: usize,
    /// `SYNC_FLUSH`: records acknowledged although their bytes were not durable at the crash.
    acked_not_durable: usize,
    /// Images whose recovery cut a torn tail.
    cut_tails: usize,
    /// Pages in doubt / torn or cut, directory operations in doubt / dropped, over all images.
    doubtful_pages: u64,
    torn_pages: u64,
    doubtful_entries: u64,
    dropped_entries: u64,
    /// `ASYNC_FLUSH`: the oldest lost acknowledgement, measured at its crash.
    max_lost_age: Duration,
    failures: Vec<String>,
    /// Images of failing crashes kept for inspection (at most 3 per run).
    kept_images: usize,
}

fn open(root: &Path, mode: FlushMode, sabotage: bool) -> Store {
    let store = Store::open(config(root, mode)).unwrap();
    if sabotage {
        store.inner.log.skip_msync_for_test();
    }
    store
}

async fn run(name: &str, mode: FlushMode, crashes: usize, sabotage: bool) -> Summary {
    let mut rng = StdRng::seed_from_u64(seed(name));
    let mut summary = Summary {
        // A sabotaged run fails on purpose: keep no images of it.
        kept_images: if sabotage { usize::MAX } else { 0 },
        ..Summary::default()
    };
    let mut expected_events = 300;
    let started = Instant::now();
    while summary.crashes < crashes {
        let want = (crashes - summary.crashes).min(CRASHES_PER_ROUND);
        // Spread the crash points over the round (one is kept for its end).
        let probability = ((want - 1) as f64 / expected_events as f64).min(1.0);
        let work = Workload::random(mode, sabotage, &mut rng);
        let events = writer_round(
            work,
            rng.gen(),
            want,
            probability,
            ImageKind::Random,
            &mut summary,
        );
        expected_events = events.await.max(20);
    }
    report(name, &summary, started);
    summary
}

fn report(name: &str, summary: &Summary, started: Instant) {
    let s = &summary;
    println!(
        "{name}: {} writer crashes + {} during recovery in {:.1} s: {} acknowledged records \
         checked, {} lost ({} of them durable), {} acknowledged before durable, {} cut tails, \
         {} pages in doubt ({} torn), {} directory operations in doubt ({} dropped), oldest \
         lost acknowledgement {:?}, {} failures",
        s.crashes,
        s.nested,
        started.elapsed().as_secs_f64(),
        s.acked,
        s.lost,
        s.lost_durable,
        s.acked_not_durable,
        s.cut_tails,
        s.doubtful_pages,
        s.torn_pages,
        s.doubtful_entries,
        s.dropped_entries,
        s.max_lost_age,
        s.failures.len()
    );
}

/// What a writer round does.
#[derive(Debug, Clone, Copy)]
struct Workload {
    mode: FlushMode,
    producers: usize,
    /// Appends per producer in each of the two phases.
    per_phase: usize,
    /// A clean restart between the phases.
    restart: bool,
    /// A clean shutdown after the last acknowledgement.
    clean_end: bool,
    /// The flusher skips its msync (see `CommitLog::skip_msync_for_test`).
    sabotage: bool,
}

impl Workload {
    fn random(mode: FlushMode, sabotage: bool, rng: &mut StdRng) -> Self {
        Self {
            mode,
            producers: rng.gen_range(1..=3),
            per_phase: rng.gen_range(4..=24),
            restart: rng.gen_bool(0.3),
            clean_end: rng.gen_bool(0.3),
            sabotage,
        }
    }
}

/// One writer run with up to `want` crash points, each event a crash point with probability
/// `probability`; returns the number of recorded events.
async fn writer_round(
    work: Workload,
    seed: u64,
    want: usize,
    probability: f64,
    kind: ImageKind,
    summary: &mut Summary,
) -> u64 {
    let tmp = scratch_dir();
    let root = tmp.path().join("store");
    std::fs::create_dir(&root).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let journal = Arc::new(Journal::default());
    let recording = Recording::start(&root).unwrap();
    let witness = journal.clone();
    recording.plan(CrashPlan {
        rng: StdRng::seed_from_u64(rng.gen()),
        probability,
        max: want,
        witness: Box::new(move || witness.acked.lock().len()),
        out: tmp.path().join("images"),
        kind,
    });
    let (mode, sabotage, n) = (work.mode, work.sabotage, work.per_phase);
    let mut store = Arc::new(open(&root, mode, sabotage));
    produce(&store, &journal, work.producers, n, rng.gen(), "a").await;
    if work.restart {
        store.shutdown().unwrap();
        drop(store);
        store = Arc::new(open(&root, mode, sabotage));
    }
    produce(&store, &journal, work.producers, n, rng.gen(), "b").await;
    recording.crash_now("after the last acknowledgement");
    if work.clean_end {
        store.shutdown().unwrap();
    }
    let (points, problems) = recording.finish();
    let events = recording.events();
    drop(store);
    drop(recording);
    for p in problems {
        summary
            .failures
            .push(format!("round {seed}: recorder: {p}"));
    }
    for point in &points {
        let label = format!(
            "round {seed}, crash {} before event {} ({})",
            point.image.display(),
            point.event,
            point.before
        );
        let nest = (kind == ImageKind::Random && rng.gen_bool(0.25)).then(|| rng.gen());
        summary.crashes += 1;
        check_image(mode, &journal, point, &point.image, nest, summary, &label).await;
    }
    events
}

async fn produce(
    store: &Arc<Store>,
    journal: &Arc<Journal>,
    producers: usize,
    n: usize,
    seed: u64,
    phase: &str,
) {
    let mut tasks = Vec::new();
    for p in 0..producers {
        let (store, journal) = (store.clone(), journal.clone());
        let name = format!("{phase}{p}");
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(p as u64));
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let id = format!("{name}-{i}");
                let topic = TOPICS[rng.gen_range(0..TOPICS.len())];
                let queue = rng.gen_range(0..QUEUES);
                let body: Vec<u8> = id.bytes().cycle().take(rng.gen_range(1..=900)).collect();
                journal
                    .written
                    .lock()
                    .insert(id.clone(), (topic, queue, body.clone()));
                let props = BTreeMap::new();
                let keys = [format!("key-{id}")];
                let draft = RecordDraft {
                    topic,
                    message_id: &id,
                    tag: "t",
                    message_group: "",
                    born_host: "",
                    keys: &keys,
                    properties: &props,
                    body: &body,
                    born_timestamp: 1,
                    reconsume_times: 0,
                    flags: 0,
                    prepared_offset: 0,
                };
                let appended = store.append(&draft, queue).await.unwrap();
                journal.acked.lock().push(Acked {
                    id,
                    topic,
                    queue,
                    body,
                    at: Instant::now(),
                    appended,
                });
            }
        }));
    }
    for t in tasks {
        let done = tokio::time::timeout(CALL_TIMEOUT, t).await;
        done.expect("a producer finished in time").unwrap();
    }
}

/// Whether the bytes of `a` were durable at the crash.
fn durable_at_crash(a: &Acked, point: &CrashPoint) -> bool {
    let phy = a.appended.physical_offset;
    let base = phy - phy % SEGMENT;
    let at = (phy - base) as usize;
    point
        .durable_segments
        .get(&format!("{base:020}"))
        .and_then(|d| d.get(at..at + a.appended.size as usize))
        .and_then(|buf| RecordView::parse(buf, SEGMENT as usize, Some(phy)).ok())
        .is_some_and(|v| v.message_id == a.id)
}

pub(in crate::store) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Recovers `image` (of the crash `point`) and checks it; with `nest`, also crashes that
/// recovery (seeded by `nest`) and checks those images.
#[allow(clippy::too_many_arguments)]
fn check_image<'a>(
    mode: FlushMode,
    journal: &'a Journal,
    point: &'a CrashPoint,
    image: &'a Path,
    nest: Option<u64>,
    summary: &'a mut Summary,
    label: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
    Box::pin(async move {
        let kept = image.with_extension("orig");
        copy_dir(image, &kept).unwrap();
        let failures_before = summary.failures.len();
        let nested_recording = nest.map(|seed| {
            let recording = Recording::start(image).unwrap();
            let n = point.witness;
            recording.plan(CrashPlan {
                rng: StdRng::seed_from_u64(seed),
                probability: 0.1,
                max: 3,
                witness: Box::new(move || n),
                out: image.with_extension("nested"),
                kind: ImageKind::Random,
            });
            recording
        });
        let opened =
            std::panic::catch_unwind(AssertUnwindSafe(|| Store::open(config(image, mode))));
        let nested_points = nested_recording.as_ref().map(|r| r.finish());
        let fail = |summary: &mut Summary, what: String| {
            summary.failures.push(format!("{label}: {what}"));
        };
        match opened {
            Err(_) => fail(summary, "recovery panicked".into()),
            Ok(Err(e)) => fail(summary, format!("recovery failed: {e}")),
            Ok(Ok(store)) => verify(mode, journal, point, &store, summary, label).await,
        }
        drop(nested_recording);
        if let Some((points, problems)) = nested_points {
            for p in problems {
                fail(summary, format!("recorder (recovery): {p}"));
            }
            for p in &points {
                summary.nested += 1;
                let label = format!("{label}, then during recovery before {}", p.before);
                check_image(mode, journal, point, &p.image, None, summary, &label).await;
            }
        }
        if summary.failures.len() > failures_before && summary.kept_images < 3 {
            summary.kept_images += 1;
            let keep = std::env::temp_dir().join(format!(
                "rg-t1c-failed-{}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            if copy_dir(&kept, &keep).is_ok() {
                summary
                    .failures
                    .push(format!("{label}: image kept in {}", keep.display()));
            }
        }
    })
}

async fn verify(
    mode: FlushMode,
    journal: &Journal,
    point: &CrashPoint,
    store: &Store,
    summary: &mut Summary,
    label: &str,
) {
    let mut fail = |what: String| summary.failures.push(format!("{label}: {what}"));
    let report = store.recovery_report();
    let acked: Vec<Acked> = journal.acked.lock()[..point.witness].to_vec();
    let written = journal.written.lock().clone();
    let reads = store.dispatched();
    let (mut lost, mut lost_durable, mut not_durable) = (0, 0, 0);
    let mut max_lost_age = Duration::ZERO;
    for a in &acked {
        let durable = durable_at_crash(a, point);
        if mode == FlushMode::Sync && !durable {
            not_durable += 1;
        }
        let offset = a.appended.queue_offset;
        match reads.read_queue(a.topic, a.queue, offset, 1) {
            Ok(m) if m.is_empty() => {
                lost += 1;
                lost_durable += usize::from(durable);
                max_lost_age = max_lost_age.max(point.at.saturating_duration_since(a.at));
                if a.appended.end <= report.log_end {
                    fail(format!("{} missing below the recovered end", a.id));
                }
            }
            Ok(m) if m[0].queue_offset != offset => {
                lost += 1;
                lost_durable += usize::from(durable);
                fail(format!(
                    "{} at {offset}: a hole, the queue serves {}",
                    a.id, m[0].queue_offset
                ));
            }
            Ok(m) if m[0].message_id == a.id && m[0].body[..] == a.body[..] => {
                match reads.find_by_id(&a.id) {
                    Ok(Some(m)) if m.queue_offset == offset => {}
                    other => fail(format!("{}: the index finds {other:?}", a.id)),
                }
            }
            Ok(m) => fail(format!("{} at {offset}: read {}", a.id, m[0].message_id)),
            Err(e) => fail(format!("{} at {offset}: {e}", a.id)),
        }
    }
    if mode == FlushMode::Sync && lost > 0 {
        fail(format!("{lost} acknowledged records lost under SYNC_FLUSH"));
    }
    if lost_durable > 0 {
        fail(format!(
            "{lost_durable} acknowledged records lost although durable"
        ));
    }
    if not_durable > 0 {
        fail(format!(
            "{not_durable} records acknowledged before they were durable"
        ));
    }
    if mode == FlushMode::Async
        && max_lost_age > Duration::from_millis(FLUSH_INTERVAL_MS) + ASYNC_SLACK
    {
        fail(format!("lost an acknowledgement {max_lost_age:?} old"));
    }
    // Every queue dense, serving only what was written; the log holds exactly those records.
    let mut in_queues = 0u64;
    for topic in TOPICS {
        for queue in 0..QUEUES {
            let (min, max) = reads.queue_range(topic, queue);
            match reads.read_queue(topic, queue, min, usize::MAX) {
                Ok(msgs) => {
                    if msgs.len() as u64 != max - min || min != 0 {
                        fail(format!(
                            "{topic}/{queue}: {} records in [{min}, {max})",
                            msgs.len()
                        ));
                    }
                    for (i, m) in msgs.iter().enumerate() {
                        let expected = written.get(&m.message_id);
                        if m.queue_offset != min + i as u64
                            || expected != Some(&(topic, queue, m.body.to_vec()))
                        {
                            fail(format!(
                                "{topic}/{queue}: unexpected {} at {}",
                                m.message_id, m.queue_offset
                            ));
                        }
                    }
                    in_queues += msgs.len() as u64;
                }
                Err(e) => fail(format!("{topic}/{queue}: {e}")),
            }
        }
    }
    let mut in_log = 0u64;
    if let Err(e) = store
        .inner
        .log
        .walk(0, report.log_end, usize::MAX, |_| in_log += 1)
    {
        fail(format!("walking the recovered log: {e}"));
    }
    if in_log != in_queues {
        fail(format!(
            "{in_log} records in the log, {in_queues} in the queues"
        ));
    }
    // The recovered store takes writes.
    let props = BTreeMap::new();
    let draft = RecordDraft {
        topic: TOPICS[0],
        message_id: "after-recovery",
        tag: "t",
        message_group: "",
        born_host: "",
        keys: &[],
        properties: &props,
        body: b"after",
        born_timestamp: 1,
        reconsume_times: 0,
        flags: 0,
        prepared_offset: 0,
    };
    // Bounded: a dispatcher or flusher that died would otherwise leave this waiting forever.
    let append_and_read = async {
        let a = store.append(&draft, 0).await?;
        let reads = store.visible().await?;
        reads.read_queue(TOPICS[0], 0, a.queue_offset, 1)
    };
    match tokio::time::timeout(CALL_TIMEOUT, append_and_read).await {
        Ok(Ok(m)) if m.len() == 1 && m[0].message_id == "after-recovery" => {}
        other => fail(format!("append after recovery reads back {other:?}")),
    }
    if let Err(e) = store.shutdown() {
        fail(format!("shutdown after recovery: {e}"));
    }
    summary.acked += acked.len();
    summary.lost += lost;
    summary.lost_durable += lost_durable;
    summary.acked_not_durable += not_durable;
    summary.cut_tails += usize::from(report.cut_tail);
    summary.doubtful_pages += point.stats.doubtful_pages;
    summary.torn_pages += point.stats.torn_pages;
    summary.doubtful_entries += point.stats.doubtful_entries;
    summary.dropped_entries += point.stats.dropped_entries;
    summary.max_lost_age = summary.max_lost_age.max(max_lost_age);
}

fn assert_clean(summary: &Summary) {
    assert!(
        summary.failures.is_empty(),
        "{} failures, first ones:\n{}",
        summary.failures.len(),
        summary
            .failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1c_sync_flush_loses_no_acknowledged_message_in_a_power_cut() {
    let crashes = crash_count();
    let s = run("t1c_sync", FlushMode::Sync, crashes, false).await;
    assert_clean(&s);
    assert_eq!(s.lost, 0);
    assert!(
        s.acked > 0 && s.doubtful_pages > 0,
        "the crashes tested something: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1c_async_flush_loses_at_most_the_unflushed_tail() {
    let crashes = crash_count();
    let s = run("t1c_async", FlushMode::Async, crashes, false).await;
    assert_clean(&s);
    assert_eq!(s.lost_durable, 0);
}

/// Every event of a small run that rolls segments, ConsumeQueue and index files is a crash
/// point, once with the pessimistic image (nothing unsynced survives) and once with the
/// metadata-only one (every name and size as now, no unsynced byte): deterministic coverage of
/// every step, such as the window between a segment roll and the segment's first msync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1c_a_crash_before_any_event_of_a_small_run_keeps_every_acknowledgement() {
    let mut summary = Summary::default();
    let started = Instant::now();
    let work = Workload {
        mode: FlushMode::Sync,
        producers: 1,
        per_phase: 25,
        restart: true,
        clean_end: true,
        sabotage: false,
    };
    let seed = seed("t1c_every_event");
    for kind in [ImageKind::Pessimistic, ImageKind::MetadataOnly] {
        writer_round(work, seed, 10_000, 1.0, kind, &mut summary).await;
    }
    report("t1c_every_event", &summary, started);
    assert_clean(&summary);
    assert!(summary.crashes > 200, "{summary:?}");
}

/// The machinery can fail: a store whose flusher skips its msync (yet acknowledges) is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1c_catches_a_store_that_acknowledges_without_syncing() {
    let s = run("t1c_sabotaged", FlushMode::Sync, 24, true).await;
    assert!(
        s.acked_not_durable > 0,
        "acks before durability not seen: {s:?}"
    );
    assert!(
        s.lost > 0,
        "no acknowledged record lost without msync: {s:?}"
    );
    assert!(
        s.failures
            .iter()
            .any(|f| f.contains("lost under SYNC_FLUSH")),
        "{:?}",
        s.failures
    );
}

/// Prints what a kept image of a failing crash holds and what recovery makes of it:
/// `RG_T1C_IMAGE=<dir> cargo test -p rocketgate-core --lib t1c_inspect -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a debugging aid for a kept image (RG_T1C_IMAGE=<dir>)"]
async fn t1c_inspect_a_kept_image() {
    let Ok(src) = std::env::var("RG_T1C_IMAGE") else {
        panic!("set RG_T1C_IMAGE to the directory of a kept image");
    };
    let tmp = scratch_dir();
    let dir = tmp.path().join("store");
    copy_dir(Path::new(&src), &dir).unwrap();
    println!(
        "checkpoint {:?}",
        super::super::checkpoint::Checkpoint::load(&dir)
    );
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    for path in segments {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let base: u64 = name.parse().unwrap_or(0);
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let phy = base + at as u64;
            match RecordView::parse(&bytes[at..], SEGMENT as usize, Some(phy)) {
                Ok(v) => {
                    let f = &v.fields;
                    println!(
                        "log {phy}: {} {}/{} @{}",
                        v.message_id, v.topic, f.queue_id, f.queue_offset
                    );
                    at += v.total_len;
                }
                Err(e) => {
                    println!("log {phy}: ends ({e:?})");
                    break;
                }
            }
        }
    }
    let store = Store::open(config(&dir, FlushMode::Sync)).unwrap();
    println!("{:?}", store.recovery_report());
    for topic in TOPICS {
        for queue in 0..QUEUES {
            let reads = store.dispatched();
            println!("{topic}/{queue}: {:?}", reads.queue_range(topic, queue));
            for m in reads.read_queue(topic, queue, 0, usize::MAX).unwrap() {
                println!(
                    "  @{} {} phy {}",
                    m.queue_offset, m.message_id, m.physical_offset
                );
            }
        }
    }
}
