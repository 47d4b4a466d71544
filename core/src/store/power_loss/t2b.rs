//! T2b of RELIABILITY.md and its neighbour: power cuts during recovery's own writes — the
//! durable cut of a torn tail (zeroing it, deleting the later segments) and the rebuild of a
//! ConsumeQueue that does not match the log.
//!
//! Each test prepares a store that recovery must repair, records that recovery, crashes it
//! before *every* event (the pessimistic and the metadata-only image, then random images), and
//! recovers every image: recovery succeeds, nothing before the damage is lost, nothing after a
//! cut is ever served again — also after a fresh append over the cut and one more power cut
//! (the RocketMQ #10666 class).
//!
//! Owns: its temporary directories; touches nothing else.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::t1c::{config, copy_dir, scratch_dir, seed, CALL_TIMEOUT, QUEUES, SEGMENT};
use super::{CrashPlan, CrashPoint, ImageKind, Recording};
use crate::config::FlushMode;
use crate::store::commit_log::Appended;
use crate::store::record::RecordDraft;
use crate::store::Store;

const TOPIC: &str = "t0";
/// The image kinds each recovery is crashed with (every event, each kind).
const KINDS: [ImageKind; 5] = [
    ImageKind::Pessimistic,
    ImageKind::MetadataOnly,
    ImageKind::Random,
    ImageKind::Random,
    ImageKind::Random,
];

#[derive(Debug)]
struct Rec {
    id: String,
    queue: u32,
    appended: Appended,
}

fn draft<'a>(id: &'a str, body: &'a [u8], props: &'a BTreeMap<String, String>) -> RecordDraft<'a> {
    RecordDraft {
        topic: TOPIC,
        message_id: id,
        tag: "t",
        message_group: "",
        born_host: "",
        keys: &[],
        properties: props,
        body,
        born_timestamp: 1,
        reconsume_times: 0,
        flags: 0,
        prepared_offset: 0,
    }
}

/// A cleanly shut down store at `root` holding `n` records of 600–800 bytes in two queues.
async fn filled(root: &Path, n: usize) -> Vec<Rec> {
    std::fs::create_dir_all(root).unwrap();
    let store = Store::open(config(root, FlushMode::Sync)).unwrap();
    let props = BTreeMap::new();
    let mut recs = Vec::new();
    for i in 0..n {
        let id = format!("r-{i}");
        let body = vec![b'x'; 600 + i % 200];
        let queue = (i % 2) as u32;
        let d = draft(&id, &body, &props);
        let append = store.append(&d, queue);
        let appended = tokio::time::timeout(CALL_TIMEOUT, append)
            .await
            .unwrap()
            .unwrap();
        recs.push(Rec {
            id,
            queue,
            appended,
        });
    }
    store.shutdown().unwrap();
    recs
}

/// Recovers a copy of `prepared` in `work` with a crash image of `kind` before each event;
/// returns the crash points.
fn crash_recovery(prepared: &Path, work: &Path, kind: ImageKind, seed: u64) -> Vec<CrashPoint> {
    let root = work.join("store");
    copy_dir(prepared, &root).unwrap();
    let recording = Recording::start(&root).unwrap();
    recording.plan(CrashPlan {
        rng: StdRng::seed_from_u64(seed),
        probability: 1.0,
        max: 10_000,
        witness: Box::new(|| 0),
        out: work.join("images"),
        kind,
    });
    let store = Store::open(config(&root, FlushMode::Sync)).unwrap();
    let (points, problems) = recording.finish();
    assert!(problems.is_empty(), "{problems:?}");
    drop(store);
    points
}

fn recover(image: &Path) -> Result<Store, String> {
    let opened = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Store::open(config(image, FlushMode::Sync))
    }));
    match opened {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e)) => Err(format!("recovery failed: {e}")),
        Err(_) => Err("recovery panicked".into()),
    }
}

/// Checks that `store` serves exactly `expected` (ids per queue, dense from offset 0).
fn serves_exactly(store: &Store, expected: &[&Rec]) -> Result<(), String> {
    let reads = store.dispatched();
    for queue in 0..QUEUES {
        let want: Vec<&str> = expected
            .iter()
            .filter(|r| r.queue == queue)
            .map(|r| r.id.as_str())
            .collect();
        let msgs = reads
            .read_queue(TOPIC, queue, 0, usize::MAX)
            .map_err(|e| format!("queue {queue}: {e}"))?;
        let got: Vec<(u64, &str)> = msgs
            .iter()
            .map(|m| (m.queue_offset, m.message_id.as_str()))
            .collect();
        let dense = got.iter().enumerate().all(|(i, (o, _))| *o == i as u64);
        let ids: Vec<&str> = got.iter().map(|(_, id)| *id).collect();
        let range = reads.queue_range(TOPIC, queue);
        if !dense || ids != want || range != (0, want.len() as u64) {
            return Err(format!(
                "queue {queue} {range:?} serves {got:?}, expected {} records {want:?}",
                want.len()
            ));
        }
    }
    Ok(())
}

/// Recovers `image` of a crash during the cut at `cut`, appends over the cut, cuts the power
/// again and recovers that.
async fn check_cut(image: &Path, kept: &[&Rec], stale: &[&Rec], cut: u64) -> Result<(), String> {
    let recording = Recording::start(image).map_err(|e| e.to_string())?;
    let store = recover(image)?;
    let end = store.recovery_report().log_end;
    if end != cut {
        return Err(format!("recovered end {end}, expected the cut at {cut}"));
    }
    serves_exactly(&store, kept)?;
    for r in stale {
        if let Ok(Some(m)) = store.dispatched().find_by_id(&r.id) {
            return Err(format!("{} past the cut is served: {m:?}", r.id));
        }
    }
    // A shorter record over the cut, acknowledged (SYNC), then one more power cut.
    recording.plan(CrashPlan {
        rng: StdRng::seed_from_u64(cut),
        probability: 0.0,
        max: 1,
        witness: Box::new(|| 0),
        out: image.with_extension("again"),
        kind: ImageKind::MetadataOnly,
    });
    let props = BTreeMap::new();
    let d = draft("fresh", b"short", &props);
    let append = store.append(&d, 0);
    let fresh = tokio::time::timeout(CALL_TIMEOUT, append)
        .await
        .map_err(|_| "append over the cut: no answer in time".to_owned())?
        .map_err(|e| format!("append over the cut: {e}"))?;
    recording.crash_now("after an append over the cut");
    let (points, problems) = recording.finish();
    drop(store);
    drop(recording);
    if !problems.is_empty() {
        return Err(format!("recorder: {problems:?}"));
    }
    let again = points.first().ok_or("no crash image after the append")?;
    let store = recover(&again.image)?;
    let end = store.recovery_report().log_end;
    if end != fresh.end {
        return Err(format!(
            "after the append and a power cut: end {end}, expected {}",
            fresh.end
        ));
    }
    let fresh_rec = Rec {
        id: "fresh".into(),
        queue: 0,
        appended: fresh,
    };
    let mut expected = kept.to_vec();
    expected.push(&fresh_rec);
    serves_exactly(&store, &expected).map_err(|e| format!("after the append: {e}"))
}

/// A record torn in the second segment of a store without a checkpoint: recovery scans every
/// segment, zeroes the rest of that segment and deletes the later ones. A power cut at any step
/// of that must leave a store that recovers to the same cut and never serves what was after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t2b_power_cuts_during_the_cut_of_a_torn_tail_resurrect_nothing() {
    let tmp = scratch_dir();
    let prepared = tmp.path().join("prepared");
    let recs = filled(&prepared, 90).await;
    let torn = recs
        .iter()
        .find(|r| r.appended.physical_offset > SEGMENT + SEGMENT / 2)
        .unwrap();
    let cut = torn.appended.physical_offset;
    let base = cut - cut % SEGMENT;
    assert!(
        recs.last().unwrap().appended.end > base + 2 * SEGMENT,
        "segments to delete"
    );
    let path = prepared.join("commitlog").join(format!("{base:020}"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(cut - base) as usize + 40] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    std::fs::remove_file(prepared.join("checkpoint")).unwrap();
    std::fs::write(prepared.join("abort"), b"").unwrap();
    let (kept, stale): (Vec<&Rec>, Vec<&Rec>) = recs.iter().partition(|r| r.appended.end <= cut);

    let mut rng = StdRng::seed_from_u64(seed("t2b_cut"));
    let (mut images, mut failures) = (0, Vec::new());
    for (i, kind) in KINDS.into_iter().enumerate() {
        let work = tmp.path().join(format!("run{i}"));
        for p in crash_recovery(&prepared, &work, kind, rng.gen()) {
            images += 1;
            if let Err(e) = check_cut(&p.image, &kept, &stale, cut).await {
                failures.push(format!("{kind:?} image, crash before {}: {e}", p.before));
            }
        }
    }
    println!(
        "t2b_cut: {images} crash images of a recovery cutting at {cut}, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(images >= 5 * 10, "{images} images");
}

/// A queue whose last entry points at another queue's record: recovery throws the queue away
/// and rebuilds it from the log. A power cut at any step of that must lose no entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t2b_power_cuts_while_recovery_rebuilds_a_queue_lose_no_entry() {
    let tmp = scratch_dir();
    let prepared = tmp.path().join("prepared");
    let recs = filled(&prepared, 40).await;
    let last = recs.iter().rev().find(|r| r.queue == 1).unwrap();
    let offset = last.appended.queue_offset;
    let per_file = config(&prepared, FlushMode::Sync).consume_queue_entries_per_file;
    let file = prepared
        .join("consumequeue")
        .join(TOPIC)
        .join("1")
        .join(format!("{:020}", offset - offset % per_file));
    let mut bytes = std::fs::read(&file).unwrap();
    let at = (offset % per_file) as usize * 20;
    bytes[at..at + 8].copy_from_slice(&recs[0].appended.physical_offset.to_le_bytes());
    std::fs::write(&file, bytes).unwrap();
    let all: Vec<&Rec> = recs.iter().collect();

    let mut rng = StdRng::seed_from_u64(seed("t2b_rebuild"));
    let (mut images, mut failures) = (0, Vec::new());
    for (i, kind) in KINDS.into_iter().enumerate() {
        let work = tmp.path().join(format!("run{i}"));
        for p in crash_recovery(&prepared, &work, kind, rng.gen()) {
            images += 1;
            let checked = recover(&p.image).and_then(|store| serves_exactly(&store, &all));
            if let Err(e) = checked {
                failures.push(format!("{kind:?} image, crash before {}: {e}", p.before));
            }
        }
    }
    println!(
        "t2b_rebuild: {images} crash images of a queue rebuild, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(images >= 5 * 10, "{images} images");
}
