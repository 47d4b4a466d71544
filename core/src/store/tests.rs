use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use std::time::Duration;

fn config(dir: &Path, mode: FlushMode) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        segment_size: 64 * 1024,
        flush_mode: mode,
        flush_interval_ms: 20,
        checkpoint_interval_ms: 50,
        index_slots_per_file: 101,
        index_entries_per_file: 1000,
        consume_queue_entries_per_file: 100,
        ..StoreConfig::default()
    }
}

fn draft<'a>(
    topic: &'a str,
    id: &'a str,
    body: &'a [u8],
    props: &'a BTreeMap<String, String>,
) -> RecordDraft<'a> {
    RecordDraft {
        topic,
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

async fn fill(store: &Store, n: usize, body_len: usize) -> Vec<Appended> {
    let props = BTreeMap::new();
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("id-{i}");
        let body = vec![i as u8; body_len];
        out.push(
            store
                .append(&draft("topic", &id, &body, &props), (i % 2) as u32)
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test]
async fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
        assert!(
            !store.recovery_report().after_crash,
            "a fresh store is not recovering"
        );
        let acks = fill(&store, 300, 500).await;
        // Rolled over several 64 KiB segments.
        assert!(acks.last().unwrap().physical_offset > 2 * 64 * 1024);
        store.visible().await.unwrap();
        assert_eq!(store.dispatched().queue_range("topic", 0), (0, 150));
        let msgs = store.dispatched().read_queue("topic", 1, 10, 5).unwrap();
        assert_eq!(msgs.len(), 5);
        assert_eq!(msgs[0].queue_offset, 10);
        assert_eq!(msgs[0].message_id, "id-21");
        assert_eq!(&msgs[0].body[..], &[21u8; 500][..]);
        assert_eq!(
            store
                .dispatched()
                .find_by_id("id-299")
                .unwrap()
                .unwrap()
                .queue_offset,
            149
        );
        store.shutdown().unwrap();
    }
    let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
    let r = store.recovery_report();
    assert!(!r.after_crash);
    assert_eq!(r.replayed_records, 0);
    assert_eq!(store.dispatched().queue_range("topic", 1), (0, 150));
    let props = BTreeMap::new();
    let a = store
        .append(&draft("topic", "next", b"x", &props), 1)
        .await
        .unwrap();
    assert_eq!(
        a.queue_offset, 150,
        "queue offsets continue after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_acks_only_durable_records_and_groups_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(config(dir.path(), FlushMode::Sync)).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let props = BTreeMap::new();
            for i in 0..20 {
                let id = format!("{t}-{i}");
                let a = store
                    .append(&draft("topic", &id, b"payload", &props), 0)
                    .await
                    .unwrap();
                assert!(store.log_offsets().1 >= a.end, "acked before durable");
            }
        }));
    }
    for t in tasks {
        // The producers finish within 60 s (the outer unwrap is the timeout).
        tokio::time::timeout(std::time::Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
    store.visible().await.unwrap();
    assert_eq!(store.dispatched().queue_range("topic", 0), (0, 320));
    // Group commit: 16 producers waiting at once share flushes (one msync per append would be
    // 320; with 16 in flight it is typically a few dozen).
    let rounds = store.flush_rounds();
    println!("320 SYNC appends from 16 producers took {rounds} flushes");
    assert!(
        rounds > 0 && rounds < 320,
        "no group commit: {rounds} flushes"
    );
    // Consumers never see past the flushed offset.
    assert!(store.dispatched_offset() <= store.log_offsets().1);
}

#[tokio::test]
async fn failed_flush_poisons_and_never_acks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), FlushMode::Sync)).unwrap();
    fill(&store, 3, 10).await;
    store.inject_flush_failure(1);
    let props = BTreeMap::new();
    let err = store
        .append(&draft("topic", "x", b"x", &props), 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    assert!(store.write_refusal().is_some());
    let err = store
        .append(&draft("topic", "y", b"y", &props), 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err}");
    // Reads keep working.
    store.visible().await.unwrap();
    assert_eq!(
        store
            .dispatched()
            .read_queue("topic", 0, 0, 10)
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_cut_tail_never_resurrects_stale_records() {
    let dir = tempfile::tempdir().unwrap();
    let acks = {
        let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
        let acks = fill(&store, 3, 100).await;
        store.shutdown().unwrap();
        acks
    };
    // Damage the middle record and pretend the process crashed.
    let seg = dir.path().join("commitlog").join(format!("{:020}", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[acks[1].physical_offset as usize + 50] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::write(dir.path().join("abort"), b"").unwrap();
    {
        let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
        let r = store.recovery_report();
        assert!(r.after_crash && r.cut_tail);
        assert_eq!(r.log_end, acks[1].physical_offset);
        // A record of exactly the damaged one's size lands where it was.
        let props = BTreeMap::new();
        let body = vec![9u8; 100];
        let a = store
            .append(&draft("topic", "id-1", &body, &props), 1)
            .await
            .unwrap();
        assert_eq!(a.end, acks[1].end);
        store.shutdown().unwrap();
    }
    std::fs::write(dir.path().join("abort"), b"").unwrap();
    let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
    assert_eq!(
        store.recovery_report().log_end,
        acks[1].end,
        "the third record stays gone"
    );
    assert_eq!(store.dispatched().queue_range("topic", 0), (0, 1));
    assert_eq!(store.dispatched().queue_range("topic", 1), (0, 1));
}

#[tokio::test]
async fn bad_offsets_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
    fill(&store, 5, 10).await;
    for phy in [0, 1, 7, 13, 10_000, u64::MAX - 1] {
        let _ = store.dispatched().read_at(phy, None);
        let _ = store.dispatched().read_at(phy, Some(u32::MAX));
    }
    assert!(store
        .dispatched()
        .read_queue("nope", 0, 0, 10)
        .unwrap()
        .is_empty());
    assert!(store.dispatched().find_by_id("nope").unwrap().is_none());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
    assert!(Store::open(config(dir.path(), FlushMode::Async)).is_err());
}

#[tokio::test]
async fn retention_deletes_old_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), FlushMode::Async);
    cfg.retention_hours = 0;
    let store = Store::open(cfg).unwrap();
    fill(&store, 400, 1000).await;
    store.visible().await.unwrap();
    let before = store.inner.log.segment_count();
    assert!(before > 3);
    // Let the background flush finish first: it updates the segments' modification times.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.log_offsets().1 < store.log_offsets().2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Retention goes by file age (here: any age); retry until the sealed segments count as
    // older than zero on the filesystem's coarse clock, within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        store.run_cleaner_now();
        if store.inner.log.segment_count() == 1 || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        store.inner.log.segment_count(),
        1,
        "only the active segment stays"
    );
    let (min, _, wrote) = store.log_offsets();
    assert!(min > 0 && min < wrote);
    let (qmin, qmax) = store.dispatched().queue_range("topic", 0);
    assert!(qmin > 0 && qmin < qmax, "{qmin} {qmax}");
    // What is left reads fine; what is gone is gone.
    let left = store.dispatched().read_queue("topic", 0, 0, 1000).unwrap();
    assert_eq!(left.len() as u64, qmax - qmin);
    assert_eq!(left[0].queue_offset, qmin);
    assert!(store.dispatched().find_by_id("id-0").unwrap().is_none());
    assert!(store.dispatched().find_by_id("id-399").unwrap().is_some());
    // Writes continue.
    fill(&store, 1, 10).await;
}

#[tokio::test]
async fn disk_watermark_refuses_writes_but_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
    fill(&store, 10, 100).await;
    drop(store);
    let mut cfg = config(dir.path(), FlushMode::Async);
    // Any real filesystem is fuller than this.
    cfg.disk_max_used_ratio = 1e-9;
    let store = Store::open(cfg).unwrap();
    store.run_cleaner_now();
    let props = BTreeMap::new();
    let err = store
        .append(&draft("topic", "x", b"x", &props), 0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DiskFull(_)), "{err}");
    assert!(store.write_refusal().is_some());
    assert_eq!(
        store
            .dispatched()
            .read_queue("topic", 0, 0, 100)
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn retention_moves_the_minimum_of_a_sparse_topic() {
    // A rarely written topic (a gateway's system topic): two records in old segments, one in
    // the active one; everything else is another topic.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), FlushMode::Async);
    cfg.retention_hours = 0;
    let store = Store::open(cfg).unwrap();
    let props = BTreeMap::new();
    for id in ["s-0", "s-1"] {
        store
            .append(&draft("sparse", id, b"old", &props), 0)
            .await
            .unwrap();
    }
    fill(&store, 400, 1000).await;
    store
        .append(&draft("sparse", "s-2", b"new", &props), 0)
        .await
        .unwrap();
    store.visible().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.log_offsets().1 < store.log_offsets().2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        store.run_cleaner_now();
        if store.inner.log.segment_count() == 1 || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (qmin, qmax) = store.dispatched().queue_range("sparse", 0);
    assert_eq!(
        (qmin, qmax),
        (2, 3),
        "the deleted records are below the minimum"
    );
    let left = store
        .dispatched()
        .read_queue("sparse", 0, qmin, 10)
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(&left[0].body[..], b"new");
}

/// Bytes of disk blocks under `path` (files and directories, recursively): what `du` shows.
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut bytes = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            bytes += du(&entry.unwrap().path());
        }
    }
    bytes
}

fn one_message_per_topic(topic: &str) -> (String, Vec<u8>) {
    (format!("id-{topic}"), vec![7u8; 100])
}

#[tokio::test]
async fn many_topics_with_one_message_each_take_a_few_blocks_per_queue() {
    // The probe of issue 14: 5,000 topics with one message each grew the data directory to
    // 31 GB, every used queue preallocating its whole 6,000,000-byte ConsumeQueue file.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FlushMode::Async);
    c.consume_queue_entries_per_file = StoreConfig::default().consume_queue_entries_per_file;
    c.index_slots_per_file = 1024;
    c.index_entries_per_file = 400_000;
    let topics = 200u64;
    let store = Store::open(c).unwrap();
    let props = BTreeMap::new();
    for i in 0..topics {
        let topic = format!("topic-{i}");
        let (id, body) = one_message_per_topic(&topic);
        store
            .append(&draft(&topic, &id, &body, &props), 0)
            .await
            .unwrap();
    }
    store.visible().await.unwrap();
    let written = store.log_offsets().2;
    let derived = store.inner.derived_usage.bytes();
    store.shutdown().unwrap();
    let cq = du(&dir.path().join("consumequeue"));
    let index = du(&dir.path().join("index"));
    println!("{topics} topics, {written} bytes written: consumequeue {cq} B, index {index} B, counted {derived} B");
    // Per queue: one 4 KiB page of its file, its `min` file and the topic's and queue's
    // directories (a block each on ext4), plus the `consumequeue` directory: 16 KiB a topic,
    // a small multiple of a message. Before: 6,000,000 bytes a queue (1.2 GB here).
    assert!(
        cq <= topics * 16 * 1024 + 4096,
        "{cq} bytes of ConsumeQueues for {topics} one-message queues"
    );
    // The index: its header and slot table, and a page of entries.
    assert!(index <= 64 * 1024, "{index} bytes of index");
    // What is counted against the disk limit is what the queue and index files hold.
    assert_eq!(
        derived,
        topics * 4096 + 8192,
        "one page per queue, two for the index"
    );
}

#[tokio::test]
async fn the_disk_limit_counts_consume_queues_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FlushMode::Async);
    // Room for two CommitLog segments; the queues of many topics fill it before the log does.
    c.disk_limit_bytes = Some(2 * c.segment_size);
    let store = Store::open(c).unwrap();
    let props = BTreeMap::new();
    let mut accepted = 0u64;
    let refusal = loop {
        let topic = format!("topic-{accepted}");
        let (id, body) = one_message_per_topic(&topic);
        match store.append(&draft(&topic, &id, &body, &props), 0).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        // The dispatcher creates the queue files; the next append must see their blocks.
        store.visible().await.unwrap();
        assert!(accepted < 200, "the disk limit never refused a write");
    };
    assert!(matches!(refusal, Error::DiskFull(_)), "{refusal:?}");
    assert_eq!(
        store.inner.log.segment_count(),
        1,
        "the log itself is small"
    );
    assert!(store.used_bytes() > 2 * 64 * 1024 - 4096);
    println!("refused after {accepted} topics: {refusal}");
    // Reads keep working.
    let reads = store.visible().await.unwrap();
    assert_eq!(reads.queue_range("topic-0", 0), (0, 1));
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_full_disk_in_dispatch_is_reported_reads_keep_serving_and_it_recovers() {
    // The probe: on a full disk the dispatcher stalled on a new ConsumeQueue file; acked
    // messages of every topic stayed invisible, receive and pull failed (500) and readiness
    // still said ok.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
    let props = BTreeMap::new();
    let put = |topic: &'static str, id: String| {
        let store = &store;
        let props = &props;
        async move {
            store
                .append(&draft(topic, &id, b"body", props), 0)
                .await
                .unwrap()
        }
    };
    for i in 0..3 {
        put("old", format!("old-{i}")).await;
    }
    store.visible().await.unwrap();
    assert_eq!(store.dispatch_failure(), None);

    // The disk fills up: a new queue cannot get its first page.
    disk::inject_enospc(&dir.path().join("consumequeue"), true);
    put("new", "new-0".into()).await;
    put("old", "old-3".into()).await;
    eventually(Duration::from_secs(10), "the stall to be reported", || {
        store.dispatch_failure().is_some()
    })
    .await;
    let reason = store.dispatch_failure().unwrap();
    assert!(reason.contains("No space left"), "{reason}");
    // Reads do not fail: what was dispatched before is served.
    let reads = store.visible().await.unwrap();
    assert_eq!(reads.queue_range("old", 0), (0, 3));
    assert_eq!(reads.read_queue("old", 0, 0, 10).unwrap().len(), 3);
    assert_eq!(reads.queue_range("new", 0), (0, 0));
    // Retried with a backoff: still stalled a while later, nothing lost meanwhile.
    let failed_at = store.dispatched_offset();
    tokio::time::sleep(Duration::from_millis(200)).await; // the retries are the subject
    assert_eq!(store.dispatched_offset(), failed_at);
    // Writes are refused meanwhile: nothing more is acknowledged that nobody could read.
    let refused = store
        .append(&draft("old", "refused", b"body", &props), 0)
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::DiskFull(_)), "{refused:?}");
    assert!(store.write_refusal().is_some());

    // Space returns: the dispatcher catches up by itself, and everything is readable.
    disk::inject_enospc(&dir.path().join("consumequeue"), false);
    eventually(Duration::from_secs(30), "dispatch to recover", || {
        store.dispatch_failure().is_none()
    })
    .await;
    let reads = store.visible().await.unwrap();
    assert_eq!(reads.queue_range("old", 0), (0, 4));
    assert_eq!(reads.queue_range("new", 0), (0, 1));
    let m = reads.read_queue("new", 0, 0, 1).unwrap();
    assert_eq!(m[0].message_id, "new-0");
    // And writes are taken again.
    assert_eq!(store.write_refusal(), None);
    put("old", "old-4".into()).await;
}

mod topic_reset;
