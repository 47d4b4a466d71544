//! Refused writes: the disk limit (T7) and a failed flush (T1d).
//!
//! - T7: with `disk_limit_bytes` at four 64 KiB segments (plus one for what the limit also
//!   counts: the ConsumeQueues, the index and the KV store, less than a segment here), sends
//!   succeed until the CommitLog is full, then every send of the same size is refused with `DiskFull` (`Unavailable`), nothing
//!   panics, nothing already acknowledged is lost or unreadable, and reads keep working. After a
//!   restart with a larger limit every ack is readable and writes work again.
//! - T7 on a real full filesystem: an 8 MiB tmpfs, where creating the next segment (or growing
//!   a ConsumeQueue or the index) fails with `ENOSPC` from `fallocate`: the send gets `DiskFull`
//!   at once, nothing crashes (no SIGBUS: the segments are preallocated), reads work, and once
//!   the filesystem is grown every ack is readable and writes resume, without a restart.
//!   Skipped, with a note, where mounting a tmpfs is not permitted.
//! - The disk-use watermark on a real filesystem: with `disk_max_used_ratio` 0.5 on an 8 MiB
//!   tmpfs, writes are refused (`DiskFull`, `Unavailable`) once a new segment is needed above the
//!   watermark, and resume without a restart once the filesystem has room again and the cleaner
//!   has looked.
//! - T1d: under SYNC_FLUSH, the k-th flush fails (injected, k random in 1..=20, 24 runs) while
//!   four producers send concurrently. No send started after the first failure was reported
//!   succeeds, every success lies below the durable offset, the store reports itself read-only
//!   and refuses later sends with `Unavailable`, the durable offset never advances again (no
//!   retried flush is taken as success), and after a restart every acknowledged message is
//!   readable and writes work again. Under ASYNC_FLUSH, a failed background flush likewise makes
//!   the store refuse every later write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rocketgate_core::{
    Broker, Error, ErrorKind, FlushMode, Message, SendReceipt, StoreError, TopicConfig,
};

use crate::support::{self, Sent};

const SEGMENT: u64 = 64 * 1024;

fn assert_disk_full(e: &Error) {
    assert!(
        matches!(e, Error::Store(StoreError::DiskFull(_))),
        "expected DiskFull, got {e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable);
}

async fn check_readable(broker: &Broker, topic: &str, queues: u32, sent: &[Sent]) {
    for q in 0..queues {
        let got = support::drain(broker, topic, q).await;
        let want: Vec<&Sent> = sent.iter().filter(|s| s.receipt.queue_id == q).collect();
        assert_eq!(got.len(), want.len(), "{topic}/{q}");
        for (m, s) in got.iter().zip(want) {
            support::assert_same(m, s);
        }
    }
    for s in sent {
        let m = broker.queries().by_id(&s.receipt.message_id).await.unwrap();
        support::assert_same(&m, s);
    }
}

#[tokio::test]
async fn t7_disk_limit_refuses_writes_and_keeps_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path(), SEGMENT, FlushMode::Async);
    // Four segments and one segment's worth for what the limit also counts (the queues,
    // index and KV files: more than nothing, less than a segment here), so never a fifth
    // segment.
    config.store.disk_limit_bytes = Some(5 * SEGMENT);
    let broker = support::open(&config);
    broker.topics().create(TopicConfig::new("full", 2)).unwrap();

    let mut sent = Vec::new();
    let refusal = loop {
        let m =
            Message::new("full", vec![sent.len() as u8; 1000]).with_key(format!("k{}", sent.len()));
        match support::send(&broker, m.clone()).await {
            Ok(receipt) => sent.push(Sent {
                message: m,
                receipt,
            }),
            Err(e) => break e,
        }
        assert!(sent.len() < 10_000, "the disk limit never refused a write");
    };
    assert_disk_full(&refusal);
    println!("refused after {} messages: {refusal}", sent.len());
    assert!(
        sent.len() > 3 * SEGMENT as usize / 1200,
        "refused too early"
    );
    assert_eq!(support::segments(dir.path()).len(), 4);

    // Refused means refused: no later send of the same size succeeds, and none writes anything.
    let offsets = broker.storage().log_offsets();
    for i in 0..20 {
        let m = Message::new("full", vec![0xAB; 1000]).with_key(format!("late{i}"));
        let e = support::send(&broker, m).await.unwrap_err();
        assert_disk_full(&e);
    }
    assert_eq!(
        (
            broker.storage().log_offsets().durable,
            broker.storage().log_offsets().end
        ),
        (offsets.durable, offsets.end)
    );

    // Reads keep working.
    check_readable(&broker, "full", 2, &sent).await;
    broker.shutdown().unwrap();
    drop(broker);

    // Room again: everything acknowledged is there and writes resume.
    config.store.disk_limit_bytes = Some(64 * SEGMENT);
    let broker = support::open(&config);
    assert!(broker.storage().write_refusal().is_none());
    check_readable(&broker, "full", 2, &sent).await;
    for i in 0..100 {
        let m = Message::new("full", vec![7u8; 1000]).with_key(format!("again{i}"));
        let receipt = support::send_ok(&broker, m.clone()).await;
        sent.push(Sent {
            message: m,
            receipt,
        });
    }
    check_readable(&broker, "full", 2, &sent).await;
}

#[tokio::test]
async fn t7_real_enospc_on_a_small_tmpfs() {
    let dir = tempfile::tempdir().unwrap();
    let fs = match support::Tmpfs::mount(dir.path(), "8m") {
        Ok(fs) => fs,
        Err(e) => {
            // Returns only under the documented opt-out; otherwise the test fails here.
            support::skip_missing(
                &format!("cannot mount a tmpfs: {e}"),
                "run the tests as root",
            );
            return;
        }
    };
    let mut config = support::config(dir.path(), 1 << 20, FlushMode::Async);
    // Only a real ENOSPC refuses here, not the watermark.
    config.store.disk_max_used_ratio = 1.0;
    // Derived files big enough to be created once, with the first message, before the disk
    // fills (so the test is about the CommitLog).
    config.store.consume_queue_entries_per_file = 20_000;
    config.store.index_entries_per_file = 64 * 1024;
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new("tmpfs", 1))
        .unwrap();

    let mut sent = Vec::new();
    let refusal = loop {
        let m = Message::new("tmpfs", vec![sent.len() as u8; 4000])
            .with_key(format!("k{}", sent.len()));
        match support::send(&broker, m.clone()).await {
            Ok(receipt) => sent.push(Sent {
                message: m,
                receipt,
            }),
            Err(e) => break e,
        }
        if sent.len() == 1 {
            // Let the dispatcher create the ConsumeQueue and index files.
            support::drain(&broker, "tmpfs", 0).await;
        }
        assert!(sent.len() < 10_000, "an 8 MiB filesystem never filled up");
    };
    println!("refused after {} messages: {refusal}", sent.len());
    assert_disk_full(&refusal);
    assert!(sent.len() > 500, "refused too early");
    let offsets = broker.storage().log_offsets();
    for _ in 0..5 {
        let e = support::send(&broker, Message::new("tmpfs", vec![1u8; 4000]))
            .await
            .unwrap_err();
        assert_disk_full(&e);
    }
    assert_eq!(
        (
            broker.storage().log_offsets().durable,
            broker.storage().log_offsets().end
        ),
        (offsets.durable, offsets.end)
    );
    // Reads keep working: what is readable is every ack in order, up to the last one or up to
    // where the dispatcher stopped (a ConsumeQueue or index page it could not reserve; writes
    // were refused from then on, readiness says why).
    let readable = support::drain(&broker, "tmpfs", 0).await;
    assert!(!readable.is_empty());
    for (m, s) in readable.iter().zip(&sent) {
        support::assert_same(m, s);
    }
    if readable.len() < sent.len() {
        let why = broker.storage().not_ready().unwrap_or_default();
        println!(
            "{} of {} acks readable while the disk is full: {why}",
            readable.len(),
            sent.len()
        );
        assert!(why.contains("dispatch stalled"), "{why}");
    }

    // More room: every ack becomes readable and writes resume, without a restart (the
    // dispatcher retries with a backoff of at most 5 s), and everything survives one.
    fs.resize("32m");
    support::eventually(
        Duration::from_secs(30),
        Duration::from_millis(20),
        "the store to take writes again",
        || broker.storage().not_ready().is_none(),
    )
    .await;
    check_readable(&broker, "tmpfs", 1, &sent).await;
    for i in 0..300 {
        let m = Message::new("tmpfs", vec![9u8; 4000]).with_key(format!("more{i}"));
        let receipt = support::send_ok(&broker, m.clone()).await;
        sent.push(Sent {
            message: m,
            receipt,
        });
    }
    check_readable(&broker, "tmpfs", 1, &sent).await;
    broker.shutdown().unwrap();
    drop(broker);
    let broker = support::open(&config);
    assert!(!broker.storage().recovery_report().after_crash);
    check_readable(&broker, "tmpfs", 1, &sent).await;
    drop(broker);
    drop(fs);
}

#[tokio::test]
async fn t7_disk_watermark_on_a_small_tmpfs() {
    let dir = tempfile::tempdir().unwrap();
    let fs = match support::Tmpfs::mount(dir.path(), "8m") {
        Ok(fs) => fs,
        Err(e) => {
            // Returns only under the documented opt-out; otherwise the test fails here.
            support::skip_missing(
                &format!("cannot mount a tmpfs: {e}"),
                "run the tests as root",
            );
            return;
        }
    };
    let mut config = support::config(dir.path(), 512 << 10, FlushMode::Async);
    config.store.disk_max_used_ratio = 0.5;
    let broker = support::open(&config);
    broker.topics().create(TopicConfig::new("mark", 2)).unwrap();
    let mut sent = Vec::new();
    let refusal = loop {
        let m = Message::new("mark", vec![3u8; 3000]).with_key(format!("k{}", sent.len()));
        match support::send(&broker, m.clone()).await {
            Ok(receipt) => sent.push(Sent {
                message: m,
                receipt,
            }),
            Err(e) => break e,
        }
        assert!(sent.len() < 10_000, "the watermark never refused a write");
    };
    println!("refused after {} messages: {refusal}", sent.len());
    assert_disk_full(&refusal);
    assert!(broker.storage().write_refusal().is_some());
    // Refused while above the watermark, whatever the size.
    let offsets = broker.storage().log_offsets();
    let e = support::send(&broker, Message::new("mark", "tiny"))
        .await
        .unwrap_err();
    assert_disk_full(&e);
    assert_eq!(
        (
            broker.storage().log_offsets().durable,
            broker.storage().log_offsets().end
        ),
        (offsets.durable, offsets.end)
    );
    check_readable(&broker, "mark", 2, &sent).await;

    fs.resize("64m");
    broker.storage().run_retention_now();
    assert_eq!(broker.storage().write_refusal(), None);
    for i in 0..200 {
        let m = Message::new("mark", vec![4u8; 3000]).with_key(format!("again{i}"));
        let receipt = support::send_ok(&broker, m.clone()).await;
        sent.push(Sent {
            message: m,
            receipt,
        });
    }
    check_readable(&broker, "mark", 2, &sent).await;
    drop(broker);
    drop(fs);
}

/// What one send did, with its place in the global order of send starts and completions.
struct Outcome {
    started: u64,
    finished: u64,
    result: Result<SendReceipt, Error>,
    message: Message,
}

async fn t1d_run(run: usize, k: u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config(dir.path(), SEGMENT, FlushMode::Sync);
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new("fsync", 4))
        .unwrap();
    broker.storage().inject_flush_failure(k);

    let clock = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for producer in 0..4u64 {
        let broker = broker.clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut errors = 0;
            // Until the failure, then three more sends that must all fail.
            for i in 0..5000u64 {
                // Up to ~14 KiB, so that one flush often spans a segment boundary.
                let body = format!("run {run} producer {producer} message {i}")
                    .repeat(1 + (i * 37 + producer * 11) as usize % 400);
                let message = Message::new("fsync", body).with_key(format!("p{producer}-{i}"));
                let started = clock.fetch_add(1, Ordering::SeqCst);
                let result = support::send(&broker, message.clone()).await;
                let finished = clock.fetch_add(1, Ordering::SeqCst);
                errors += usize::from(result.is_err());
                out.push(Outcome {
                    started,
                    finished,
                    result,
                    message,
                });
                if errors > 3 {
                    break;
                }
            }
            out
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(
            support::within(Duration::from_secs(60), "t1d producers", t)
                .await
                .unwrap(),
        );
    }

    let flushed = broker.storage().log_offsets().durable;
    let first_err = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.finished)
        .min()
        .unwrap_or_else(|| panic!("run {run} (k={k}): the injected flush failure never surfaced"));
    let mut acked = Vec::new();
    for o in outcomes {
        match o.result {
            Ok(receipt) => {
                assert!(
                    o.started < first_err,
                    "run {run} (k={k}): a send started after a failure was reported succeeded"
                );
                assert!(
                    receipt.physical_offset < flushed,
                    "run {run} (k={k}): acked at {} above the durable offset {flushed}",
                    receipt.physical_offset
                );
                acked.push(Sent {
                    message: o.message,
                    receipt,
                });
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::Store(StoreError::Poisoned(_))),
                    "run {run} (k={k}): {e:?}"
                );
                assert_eq!(e.kind(), ErrorKind::Unavailable);
            }
        }
    }
    assert!(broker.storage().write_refusal().is_some());
    let e = support::send(&broker, Message::new("fsync", "late"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    // No later flush is ever reported as success.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(broker.storage().log_offsets().durable, flushed);
    // Reads keep working.
    check_readable_subset(&broker, &acked).await;
    // The final flush at shutdown fails too: the store stays marked as crashed.
    assert!(broker.shutdown().is_err());
    drop(broker);

    let broker = support::open(&config);
    assert!(broker.storage().recovery_report().after_crash);
    check_readable_subset(&broker, &acked).await;
    let r = support::send_ok(&broker, Message::new("fsync", "after restart")).await;
    let m = broker.queries().by_id(&r.message_id).await.unwrap();
    assert_eq!(&m.body[..], b"after restart");
    println!(
        "run {run}: k={k}, {} acked before the failure, durable offset {flushed}",
        acked.len()
    );
}

/// Every acked message is at its queue offset and findable by id (unacked ones may be present
/// too: they were written, their flush failed).
async fn check_readable_subset(broker: &Broker, acked: &[Sent]) {
    let mut queues = Vec::new();
    for q in 0..4 {
        queues.push(support::drain(broker, "fsync", q).await);
    }
    for s in acked {
        let q = &queues[s.receipt.queue_id as usize];
        let m = q
            .get(s.receipt.queue_offset.unwrap() as usize)
            .unwrap_or_else(|| panic!("acked message {} lost", s.receipt.message_id));
        support::assert_same(m, s);
        let m = broker.queries().by_id(&s.receipt.message_id).await.unwrap();
        support::assert_same(&m, s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1d_failed_flush_makes_the_store_read_only() {
    let mut rng = support::seeded_rng("t1d");
    for run in 0..support::count_from_env("RG_T1D_RUNS", 24) as usize {
        let k = rng.gen_range(1..=20);
        t1d_run(run, k).await;
    }
}

#[tokio::test]
async fn t1d_failed_async_flush_refuses_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path(), SEGMENT, FlushMode::Async);
    config.store.flush_interval_ms = 10;
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new("async", 2))
        .unwrap();
    broker.storage().inject_flush_failure(2);
    let mut acked = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let err = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the injected flush failure never surfaced"
        );
        let m = Message::new("async", vec![5u8; 500]).with_key(format!("k{}", acked.len()));
        match support::send(&broker, m.clone()).await {
            Ok(receipt) => acked.push(Sent {
                message: m,
                receipt,
            }),
            Err(e) => break e,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(
        matches!(err, Error::Store(StoreError::Poisoned(_))),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(broker.storage().write_refusal().is_some());
    for _ in 0..5 {
        let e = support::send(&broker, Message::new("async", "late"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    }
    // Acknowledged ASYNC writes are in the page cache: a restart (recovery) finds them all.
    assert!(broker.shutdown().is_err());
    drop(broker);
    let broker = support::open(&config);
    assert!(broker.storage().recovery_report().after_crash);
    check_readable(&broker, "async", 2, &acked).await;
    support::send_ok(&broker, Message::new("async", "after restart")).await;
    println!("{} acked before the failed flush", acked.len());
}

/// Retention through a `Broker` (its timer and dispatcher running): with `retention_hours = 0`
/// every sealed segment the dispatcher has passed is deleted at the next round, and what
/// remains is still readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_deletes_expired_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path(), 512 << 10, FlushMode::Async);
    config.store.retention_hours = 0;
    let broker = support::open(&config);
    broker.topics().create(TopicConfig::new("old", 1)).unwrap();
    for i in 0..600 {
        let m = Message::new("old", vec![5u8; 3000]).with_key(format!("k{i}"));
        support::send_ok(&broker, m).await;
    }
    let before = broker.storage().log_offsets();
    assert!(before.end > 3 * (512 << 10), "{before:?}");
    support::eventually(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        "retention to delete the sealed segments",
        || {
            broker.storage().run_retention_now();
            broker.storage().log_offsets().min > 0
        },
    )
    .await;
    let last = Message::new("old", "after");
    support::send_ok(&broker, last).await;
}
