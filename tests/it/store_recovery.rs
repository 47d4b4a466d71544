//! T2a: recovery from a torn or corrupt CommitLog tail.
//!
//! Generated torn or corrupt tails of the CommitLog (truncation at a random byte of one of
//! the last six records, which may reach back into the previous segment; flipped bits in the last
//! record; a zeroed last page; garbage after the last record; a partial copy of a record header
//! after the last record), under a crash recovery (abort marker, missing checkpoint, or a stale
//! checkpoint from before the damage) or, for damage after the last record, also after a clean
//! shutdown. Each case copies one of five template stores, whose logs end in different shapes
//! (one record in the last segment; the previous segment exactly full or with 1–8 spare bytes;
//! wherever random messages stop). The recovered log must be exactly the prefix of intact
//! records, nothing after it may be visible (by queue or by id), a second (crash) recovery must
//! change no byte, and the first append after recovery must read back.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rocketgate_core::{
    Broker, Config, Error, FlushMode, Message, QueueSelector, SendRequest, TopicConfig,
};
use tempfile::TempDir;

use crate::support;

const SEGMENT: u64 = 64 * 1024;
const TAIL_TOPIC: &str = "tail";
const TAIL_QUEUES: u32 = 3;

/// One record of a template store.
#[derive(Debug, Clone)]
struct Rec {
    phy: u64,
    size: u32,
    queue_id: u32,
    queue_offset: u64,
    id: String,
    body: Bytes,
}

impl Rec {
    fn end(&self) -> u64 {
        self.phy + u64::from(self.size)
    }
}

/// A cleanly shut down store to copy for each case, and its records in CommitLog order.
struct Template {
    dir: TempDir,
    recs: Vec<Rec>,
}

fn tail_config(dir: &Path) -> Config {
    support::config(dir, SEGMENT, FlushMode::Async)
}

/// How a template's log ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TailShape {
    /// Wherever the random messages stop.
    Plain,
    /// The last segment holds exactly one record.
    SingleRecord,
    /// The previous segment ends 0–8 bytes after its last record (exactly full, too little
    /// room for a filler, or an exact filler), and the last segment holds 1–4 records.
    TightSegmentEnd,
}

/// Builds a template of 150–400 messages (one in twelve 4–20 KiB, so several segments), whose
/// end has the given shape.
async fn build_template(rng: &mut StdRng, shape: TailShape) -> Template {
    let dir = support::memory_tempdir();
    let broker = support::open(&tail_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new(TAIL_TOPIC, TAIL_QUEUES))
        .unwrap();
    // Messages with a fixed-length id and nothing optional: record size = body + overhead.
    let fixed = |i: usize, len: usize| {
        let mut m = Message::new(TAIL_TOPIC, vec![(i % 251) as u8; len]);
        m.message_id = Some(format!("fixed-{i:08}"));
        m
    };
    support::send_ok(&broker, fixed(0, 1)).await;
    let overhead = support::drain(&broker, TAIL_TOPIC, 0).await[0].size as usize - 1;
    let target = rng.gen_range(150..=400);
    for i in 1.. {
        let len = if rng.gen_ratio(1, 12) {
            rng.gen_range(4096..=20_000)
        } else {
            rng.gen_range(1..=1500)
        };
        let mut body = vec![0u8; len];
        rng.fill(&mut body[..]);
        let mut m = Message::new(TAIL_TOPIC, body).with_key(format!("k-{i}"));
        if i % 3 == 0 {
            m = m.with_tag("t").with_property("n", i.to_string());
        }
        let r = support::send_ok(&broker, m).await;
        let done = match shape {
            TailShape::Plain | TailShape::TightSegmentEnd => i >= target,
            TailShape::SingleRecord => i >= target && r.physical_offset % SEGMENT == 0,
        };
        if done {
            break;
        }
        assert!(i < 20_000, "template never ended");
    }
    if shape == TailShape::TightSegmentEnd {
        let mut i = 1_000_000;
        while SEGMENT - broker.storage().log_offsets().end % SEGMENT < overhead as u64 + 20 {
            support::send_ok(&broker, fixed(i, 10)).await;
            i += 1;
        }
        let pos = broker.storage().log_offsets().end;
        let gap = rng.gen_range(0..=8);
        let len = (SEGMENT - pos % SEGMENT) as usize - gap - overhead;
        let r = support::send_ok(&broker, fixed(i, len)).await;
        assert_eq!(r.physical_offset, pos, "the tight record fits");
        for j in 0..rng.gen_range(1..=4) {
            let r = support::send_ok(&broker, fixed(i + 1 + j, rng.gen_range(1..=3000))).await;
            assert!(
                r.physical_offset >= pos + len as u64,
                "after the tight record"
            );
        }
    }
    let mut recs = Vec::new();
    for q in 0..TAIL_QUEUES {
        for m in support::drain(&broker, TAIL_TOPIC, q).await {
            recs.push(Rec {
                phy: m.physical_offset,
                size: m.size,
                queue_id: m.queue_id,
                queue_offset: m.queue_offset,
                id: m.message_id,
                body: m.body,
            });
        }
    }
    recs.sort_by_key(|r| r.phy);
    assert_eq!(
        broker.storage().log_offsets().end,
        recs.last().unwrap().end()
    );
    broker.shutdown().unwrap();
    drop(broker);
    Template { dir, recs }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Zero from a random byte inside one of the last records to the end of the written area.
    Truncate,
    /// Flip 1–8 distinct bits of the last record.
    FlipBits,
    /// Zero the last 4 KiB page holding written data.
    ZeroLastPage,
    /// 0–4 KiB of random bytes right after the last record.
    Garbage,
    /// The first 1–200 bytes of the last record copied right after it (a torn append).
    PartialHeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// Checkpoint present, no abort marker: recovery trusts what is before the checkpoint.
    Clean,
    /// The abort marker of a crashed run.
    AbortMarker,
    /// The checkpoint deleted.
    NoCheckpoint,
    /// Both.
    Both,
    /// The abort marker, and a checkpoint from earlier: its CommitLog and dispatch offsets at a
    /// random record boundary at or before the damage (possibly in an earlier segment), as a
    /// crash between two checkpoints leaves it.
    StaleCheckpoint,
}

/// Writes a checkpoint saying that the CommitLog, ConsumeQueues and index are durable up to
/// `offset`, in the 48-byte layout documented in `core/src/store/checkpoint.rs`.
fn write_checkpoint(dir: &Path, offset: u64) {
    let mut b = Vec::with_capacity(48);
    b.extend_from_slice(&0x5247_4350u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for v in [offset, offset, offset] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    std::fs::write(dir.join("checkpoint"), b).unwrap();
}

/// Applies `damage` to `log` (every segment file, concatenated: byte `i` is CommitLog offset
/// `i`); `recs` are all records, in order. Returns a description.
fn apply(damage: Damage, log: &mut [u8], recs: &[Rec], rng: &mut StdRng) -> String {
    let last = &recs[recs.len() - 1];
    let (a, w) = (last.phy as usize, last.end() as usize);
    let seg_end = (w - 1) / SEGMENT as usize * SEGMENT as usize + SEGMENT as usize;
    match damage {
        Damage::Truncate => {
            // From inside one of the last six records, which may be in the previous segment:
            // then its tail (filler included) and the whole last segment are zeroed too.
            let k = rng.gen_range(1..=recs.len().min(6));
            let from = recs[recs.len() - k].phy as usize;
            let p = rng.gen_range(from..w);
            log[p..w].fill(0);
            format!("zeroed [{p}, {w})")
        }
        Damage::FlipBits => {
            let n = rng.gen_range(1..=8);
            let bits = rand::seq::index::sample(rng, (w - a) * 8, n).into_vec();
            for b in &bits {
                log[a + b / 8] ^= 1 << (b % 8);
            }
            format!("flipped bits {bits:?} of the last record at {a}")
        }
        Damage::ZeroLastPage => {
            let page = (w - 1) / 4096 * 4096;
            log[page..w].fill(0);
            format!("zeroed the last page [{page}, {w})")
        }
        Damage::Garbage => {
            let n = rng.gen_range(0..=4096).min(seg_end - w);
            rng.fill(&mut log[w..w + n]);
            format!("{n} garbage bytes at {w}")
        }
        Damage::PartialHeader => {
            let k = rng
                .gen_range(1..=(last.size as usize - 1).min(200))
                .min(seg_end - w);
            log.copy_within(a..a + k, w);
            format!("first {k} bytes of the last record copied to {w}")
        }
    }
}

/// Where recovery must end the log when `recs[cut]` is the first damaged record: right after the
/// last intact record, or at the start of the next segment when that record was the last of its
/// segment and the segment's tail (filler or spare bytes) is intact.
fn recovered_end(recs: &[Rec], cut: usize, log: &[u8], orig: &[u8]) -> u64 {
    let Some(prev) = cut.checked_sub(1).map(|i| &recs[i]) else {
        return 0;
    };
    let Some(next) = recs.get(cut) else {
        return prev.end();
    };
    let seg_end = (prev.phy / SEGMENT + 1) * SEGMENT;
    if next.phy < seg_end {
        return next.phy;
    }
    let tail = prev.end() as usize..seg_end as usize;
    if log[tail.clone()] == orig[tail] {
        next.phy
    } else {
        prev.end()
    }
}

/// Whether two log ends are the same: equal, or one is a segment's end and the other lies in the
/// fewer than 8 spare bytes before it (too few for a filler: no record can start there). Which of
/// the two recovery reports depends on whether a later segment existed when it scanned.
fn same_end(a: u64, b: u64) -> bool {
    let (lo, hi) = (a.min(b), a.max(b));
    lo == hi || (hi % SEGMENT == 0 && hi - lo < 8)
}

/// Checks that the queues hold exactly `expected` (in CommitLog order).
async fn check_queues(broker: &Broker, expected: &[Rec], ctx: &str) {
    for q in 0..TAIL_QUEUES {
        let want: Vec<&Rec> = expected.iter().filter(|r| r.queue_id == q).collect();
        let got = support::drain(broker, TAIL_TOPIC, q).await;
        assert_eq!(got.len(), want.len(), "{ctx}: queue {q} length");
        for (m, r) in got.iter().zip(want) {
            assert_eq!(
                (
                    m.physical_offset,
                    m.size,
                    m.queue_offset,
                    m.message_id.as_str()
                ),
                (r.phy, r.size, r.queue_offset, r.id.as_str()),
                "{ctx}: queue {q}"
            );
            assert!(m.body == r.body, "{ctx}: body at {}", r.phy);
        }
    }
}

async fn t2a_case(t: &Template, case: usize, rng: &mut StdRng) {
    let dir = support::memory_tempdir();
    support::copy_dir(t.dir.path(), dir.path());
    let config = tail_config(dir.path());
    let last = t.recs.last().unwrap();
    let last_base = last.phy - last.phy % SEGMENT;
    let files = support::segments(dir.path());
    let mut orig = Vec::new();
    for (base, path) in &files {
        assert_eq!(*base, orig.len() as u64, "segments are contiguous from 0");
        orig.extend(std::fs::read(path).unwrap());
    }

    let damage = *[
        Damage::Truncate,
        Damage::FlipBits,
        Damage::ZeroLastPage,
        Damage::Garbage,
        Damage::PartialHeader,
    ]
    .choose(rng)
    .unwrap();
    let mut log = orig.clone();
    let what = apply(damage, &mut log, &t.recs, rng);
    for (base, path) in &files {
        let r = *base as usize..(*base + SEGMENT) as usize;
        if log[r.clone()] != orig[r.clone()] {
            std::fs::write(path, &log[r]).unwrap();
        }
    }

    // The intact prefix: every record before the first one with a changed byte.
    let cut = t
        .recs
        .iter()
        .position(|r| {
            let range = r.phy as usize..r.end() as usize;
            log[range.clone()] != orig[range]
        })
        .unwrap_or(t.recs.len());
    let expected = &t.recs[..cut];
    let expected_end = recovered_end(&t.recs, cut, &log, &orig);
    let first_change = log.iter().zip(&orig).position(|(x, y)| x != y);
    let changed = first_change.is_some();

    // A torn write is only possible past the checkpointed durable offset. So: damage past the
    // last record must be caught even after a clean shutdown; damage inside the last segment
    // needs a crash recovery (abort marker), which verifies the segment holding the checkpoint;
    // damage in an earlier segment needs a checkpoint from before it, or none.
    let first_change = first_change.map_or(u64::MAX, |i| i as u64);
    let restarts: &[Restart] = if first_change >= last.end() {
        &[
            Restart::Clean,
            Restart::AbortMarker,
            Restart::NoCheckpoint,
            Restart::Both,
            Restart::StaleCheckpoint,
        ]
    } else if first_change >= last_base {
        &[
            Restart::AbortMarker,
            Restart::NoCheckpoint,
            Restart::Both,
            Restart::StaleCheckpoint,
        ]
    } else {
        &[
            Restart::NoCheckpoint,
            Restart::Both,
            Restart::StaleCheckpoint,
        ]
    };
    let restart = *restarts.choose(rng).unwrap();
    if matches!(
        restart,
        Restart::AbortMarker | Restart::Both | Restart::StaleCheckpoint
    ) {
        support::leave_abort_marker(dir.path());
    }
    if matches!(restart, Restart::NoCheckpoint | Restart::Both) {
        std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    }
    let mut stale = String::new();
    if restart == Restart::StaleCheckpoint {
        let at = t
            .recs
            .get(rng.gen_range(0..=cut))
            .map_or(expected_end, |r| r.phy);
        write_checkpoint(dir.path(), at);
        stale = format!(" at {at}");
    }
    let ctx = format!(
        "case {case}: {damage:?} ({what}), {restart:?}{stale}; {cut} of {} records intact, end {expected_end}",
        t.recs.len()
    );
    println!("{ctx}");

    // First recovery: exactly the intact prefix.
    let broker = support::open(&config);
    let report = broker.storage().recovery_report();
    assert_eq!(
        report.after_crash,
        restart != Restart::Clean,
        "{ctx}: {report:?}"
    );
    assert_eq!(report.cut_tail, changed, "{ctx}: {report:?}");
    assert!(same_end(report.log_end, expected_end), "{ctx}: {report:?}");
    let rocketgate_core::LogOffsets {
        durable: flushed,
        end: wrote,
        ..
    } = broker.storage().log_offsets();
    assert_eq!(flushed, wrote, "{ctx}");
    assert!(same_end(wrote, expected_end), "{ctx}: log end {wrote}");
    check_queues(&broker, expected, &ctx).await;
    for r in &t.recs[cut..] {
        match broker.queries().by_id(&r.id).await {
            Err(Error::MessageNotFound(_)) => {}
            other => panic!("{ctx}: cut record {} still visible by id: {other:?}", r.phy),
        }
    }
    broker.shutdown().unwrap();
    drop(broker);

    // The cut is durable: nothing after the end, in its segment or beyond.
    let snap = support::commitlog_bytes(dir.path());
    for (b, data) in &snap {
        let from = expected_end.saturating_sub(*b).min(data.len() as u64) as usize;
        assert!(
            data[from..].iter().all(|x| *x == 0),
            "{ctx}: bytes left after the recovered end in segment {b}"
        );
    }
    assert!(
        snap.keys().all(|b| *b < expected_end || *b == 0),
        "{ctx}: a segment beyond the end survived: {:?}",
        snap.keys().collect::<Vec<_>>()
    );

    // Second recovery, forced to be a full crash recovery: a no-op, byte for byte.
    support::leave_abort_marker(dir.path());
    let broker = support::open(&config);
    let report = broker.storage().recovery_report();
    assert!(
        report.after_crash && !report.cut_tail,
        "{ctx}: second {report:?}"
    );
    assert!(
        same_end(report.log_end, expected_end),
        "{ctx}: second {report:?}"
    );
    assert_eq!(
        support::commitlog_bytes(dir.path()),
        snap,
        "{ctx}: second recovery changed the log"
    );
    check_queues(&broker, expected, &ctx).await;

    // The first append after recovery reads back.
    let q = rng.gen_range(0..TAIL_QUEUES);
    let next = expected.iter().filter(|r| r.queue_id == q).count() as u64;
    let body = format!("after case {case}");
    let r = support::send_ok(
        &broker,
        SendRequest::new(
            Message::new(TAIL_TOPIC, body.clone()),
            QueueSelector::Queue(q),
        ),
    )
    .await;
    assert_eq!(
        r.queue_offset,
        Some(next),
        "{ctx}: queue offset of the first append"
    );
    assert!(r.physical_offset >= expected_end, "{ctx}");
    let pulled = broker
        .consumer()
        .pull(TAIL_TOPIC, q, next, 8)
        .await
        .unwrap();
    assert_eq!(pulled.messages.len(), 1, "{ctx}: {pulled:?}");
    assert_eq!(&pulled.messages[0].body[..], body.as_bytes(), "{ctx}");
    let by_id = broker.queries().by_id(&r.message_id).await.unwrap();
    assert_eq!(by_id.physical_offset, r.physical_offset, "{ctx}");
    broker.shutdown().unwrap();
}

#[tokio::test]
async fn t2a_damaged_tail_recovers_to_the_intact_prefix() {
    let mut rng = support::seeded_rng("t2a");
    let mut templates = Vec::new();
    for shape in [
        TailShape::SingleRecord,
        TailShape::TightSegmentEnd,
        TailShape::Plain,
        TailShape::TightSegmentEnd,
        TailShape::Plain,
    ] {
        templates.push(build_template(&mut rng, shape).await);
    }
    for (i, t) in templates.iter().enumerate() {
        let last = t.recs.last().unwrap();
        let in_last = t
            .recs
            .iter()
            .filter(|r| r.phy / SEGMENT == last.phy / SEGMENT);
        let base = last.phy / SEGMENT * SEGMENT;
        let spare = t
            .recs
            .iter()
            .rev()
            .find(|r| r.phy < base)
            .map_or(0, |r| base - r.end());
        println!(
            "template {i}: {} records, {} segments, {} in the last, {spare} spare bytes at the end of the previous one",
            t.recs.len(),
            last.phy / SEGMENT + 1,
            in_last.count()
        );
    }
    let cases = support::count_from_env("RG_T2A_CASES", 400) as usize;
    let started = Instant::now();
    for case in 0..cases {
        let t = &templates[case % templates.len()];
        t2a_case(t, case, &mut rng).await;
    }
    println!("{cases} cases in {:?}", started.elapsed());
}
