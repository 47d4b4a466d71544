//! Tests of the consumer state and the timer progress as KV records: what is written (only
//! what changed), what a restart loads, the import of the files of earlier versions, and the
//! cancellations the timer forgets once no rebuild can see their messages again.

use std::sync::Arc;

use super::consumer_state::ConsumerState;
use super::pop::{QueuePop, QueuePopSnapshot};
use super::*;
use crate::kv::{KvStore, Limits};
use crate::message::Message;

fn kv(dir: &std::path::Path) -> Arc<KvStore> {
    let limits = Limits {
        max_value: 1 << 20,
        max_total: 64 << 20,
        compact_log_bytes: 1 << 20,
    };
    Arc::new(KvStore::open(&dir.join("kv"), limits).unwrap())
}

fn pop_state(low: u64) -> QueuePopSnapshot {
    QueuePopSnapshot {
        low,
        acked: vec![low + 2],
        attempts: vec![(low, 3)],
    }
}

fn pop_of(state: &ConsumerState, group: &str, topic: &str, queue: u32) -> QueuePopSnapshot {
    state
        .existing_topic_pop(group, topic)
        .unwrap()
        .lock()
        .queue(queue)
        .snapshot()
}

#[test]
fn offsets_and_pop_state_are_records_written_only_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let kv = kv(dir.path());
    let state = ConsumerState::load(kv.clone(), dir.path(), 0).unwrap();
    for q in 0..4 {
        state.commit("g1", "orders", q, 10 + u64::from(q));
    }
    state.commit("g2", "orders", 0, 7);
    *state.topic_pop("g1", "jobs").lock().queue(1) = QueuePop::restore(&pop_state(40));
    state.persist(1234).unwrap();
    assert_eq!(kv.len("core.offsets"), 5);
    // Queue 0 of `jobs` exists (the table grew to reach queue 1): two pop records.
    assert_eq!(kv.len("core.pops"), 2);
    let seq = kv.last_sequence();

    // Nothing changed: nothing is written.
    state.persist(1234).unwrap();
    assert_eq!(kv.last_sequence(), seq);
    // One offset and the journal position changed: two records.
    state.commit("g1", "orders", 2, 99);
    state.persist(1300).unwrap();
    assert_eq!(kv.last_sequence(), seq + 2);
    // A deleted group's records are deleted.
    state.forget_group("g2");
    state.persist(1300).unwrap();
    assert_eq!(kv.last_sequence(), seq + 3);
    assert_eq!(kv.len("core.offsets"), 4);
    drop(state);

    let state = ConsumerState::load(kv, dir.path(), 0).unwrap();
    assert_eq!(state.journal_offset(), 1300);
    assert_eq!(state.committed("g1", "orders", 2), Some(99));
    assert_eq!(state.committed("g1", "orders", 3), Some(13));
    assert_eq!(state.committed("g2", "orders", 0), None);
    let jobs = pop_of(&state, "g1", "jobs", 1);
    assert_eq!(
        (jobs.low, jobs.acked, jobs.attempts),
        (40, vec![42], vec![(40, 3)])
    );
}

#[test]
fn the_snapshot_file_of_an_earlier_version_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("consumer_offsets.json");
    std::fs::write(
        &file,
        r#"{"journal_offset":77,
            "offsets":[{"group":"g","topic":"t","queue_id":1,"offset":5}],
            "pops":[{"group":"g","topic":"p","queue_id":0,"low":3,"acked":[5],"attempts":[[3,2]]}]}"#,
    )
    .unwrap();
    let kv = kv(dir.path());
    let state = ConsumerState::load(kv.clone(), dir.path(), 0).unwrap();
    assert!(!file.exists(), "imported, then removed");
    assert_eq!(state.journal_offset(), 77);
    assert_eq!(state.committed("g", "t", 1), Some(5));
    assert_eq!(pop_of(&state, "g", "p", 0).low, 3);
    state.commit("g", "t", 1, 6);
    state.persist(80).unwrap();
    drop(state);
    let state = ConsumerState::load(kv, dir.path(), 0).unwrap();
    assert_eq!(state.committed("g", "t", 1), Some(6));
    assert_eq!(state.journal_offset(), 80);
}

#[test]
fn a_record_that_does_not_parse_refuses_the_load_with_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let kv = kv(dir.path());
    kv.put(
        "core.offsets",
        b"g\tt\tnot-a-queue",
        bytes::Bytes::from_static(b"1"),
    )
    .unwrap();
    let err = ConsumerState::load(kv, dir.path(), 0).unwrap_err();
    assert!(err.to_string().contains("core.offsets"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_is_a_record_until_the_watermark_passes_its_time() {
    use crate::clock::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.store.data_dir = dir.path().to_path_buf();
    cfg.store.segment_size = 1 << 20;
    let t0: i64 = 1_700_000_000_000;
    let clock = ManualClock::new(t0);
    let b = Broker::open_with_clock(cfg.clone(), Arc::new(clock.clone())).unwrap();
    b.topics()
        .create(TopicConfig::new("d", 1).with_type(crate::MessageType::Delay))
        .unwrap();
    let send = |body: &str, at: i64| {
        let b = b.clone();
        let m = Message::new("d", body.to_owned()).with_deliver_at(at);
        async move { b.producer().send(m.into()).await.unwrap() }
    };
    let cancelled = send("cancelled", t0 + 1000).await;
    send("after", t0 + 1001).await;
    b.scheduler().cancel(&cancelled.message_id).await.unwrap();
    let kv = b.inner.kv.clone();
    assert_eq!(kv.len("core.timer.cancelled"), 1);
    let page = b.scheduler().list(0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1, "a cancelled message is not listed");

    // Deliver "after": the watermark passes the cancelled message's time.
    clock.set(t0 + 1001);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.scheduler().pending() > 0 && std::time::Instant::now() < deadline {
        b.wake_workers();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(b.scheduler().pending(), 0, "delivered within 10 s");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        b.inner.timer.persist().unwrap();
        if kv.len("core.timer.cancelled") == 0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        kv.len("core.timer.cancelled"),
        0,
        "forgotten once no rebuild can see it"
    );
    assert!(kv.get("core.timer", b"progress").is_some());
    b.close().await.unwrap();

    // After a restart the cancelled message still never comes.
    let b = Broker::open_with_clock(cfg, Arc::new(clock.clone())).unwrap();
    assert_eq!(b.scheduler().pending(), 0);
}

#[test]
fn the_timer_progress_file_of_an_earlier_version_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("config");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("timer.json"),
        r#"{"watermark_ms":1700000000000,"loaded":0,"cancelled":[4096]}"#,
    )
    .unwrap();
    let mut cfg = Config::default();
    cfg.store.data_dir = dir.path().to_path_buf();
    cfg.store.segment_size = 1 << 20;
    // A clock before the imported watermark, so the timer's rounds leave it where it is.
    let clock = crate::clock::ManualClock::new(1_600_000_000_000);
    let b = Broker::open_with_clock(cfg, Arc::new(clock)).unwrap();
    assert!(!meta.join("timer.json").exists(), "imported, then removed");
    assert_eq!(b.inner.timer.schedule.lock().watermark, 1_700_000_000_000);
    assert!(b.inner.timer.is_cancelled(4096));
    assert_eq!(b.inner.kv.len("core.timer.cancelled"), 1);
}
