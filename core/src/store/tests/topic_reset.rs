//! `delete_queues` as a CommitLog record: the deletion happens at its place in the log, so a
//! lagging dispatcher and a replay after a crash end where the live store was (issue 15).

use super::*;
use crate::store::power_loss::t1c::copy_dir;

async fn send(store: &Store, topic: &str, prefix: &str, n: usize) {
    let props = BTreeMap::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        store
            .append(&draft(topic, &id, id.as_bytes(), &props), 0)
            .await
            .unwrap();
    }
}

async fn ids(store: &Store, topic: &str) -> Vec<String> {
    store
        .visible()
        .await
        .unwrap()
        .read_queue(topic, 0, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn a_deletion_survives_replay_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FlushMode::Async);
    // No checkpoint after open: the crash image replays everything from the start.
    c.checkpoint_interval_ms = 3_600_000;
    let store = Store::open(c.clone()).unwrap();
    send(&store, "t", "old", 6).await;
    send(&store, "other", "o", 2).await;
    assert_eq!(ids(&store, "t").await, names("old", 6));
    store.delete_queues("t").unwrap();
    assert!(ids(&store, "t").await.is_empty());
    assert_eq!(store.queue_end("t", 0), 0);
    send(&store, "t", "new", 3).await;
    assert_eq!(ids(&store, "t").await, names("new", 3));

    // What a `kill -9` leaves (the page cache survives): the abort marker, an old checkpoint.
    store.inner.log.flush(false).unwrap();
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), image.path()).unwrap();
    store.shutdown().unwrap();

    let mut ic = c.clone();
    ic.data_dir = image.path().to_path_buf();
    let recovered = Store::open(ic).unwrap();
    let r = recovered.recovery_report();
    assert!(r.after_crash && r.replayed_records > 0, "{r:?}");
    assert_eq!(ids(&recovered, "t").await, names("new", 3));
    assert_eq!(recovered.dispatched().queue_range("t", 0), (0, 3));
    assert_eq!(ids(&recovered, "other").await, names("o", 2));
    let props = BTreeMap::new();
    let a = recovered
        .append(&draft("t", "next", b"x", &props), 0)
        .await
        .unwrap();
    assert_eq!(a.queue_offset, 3);
    recovered.shutdown().unwrap();

    // The cleanly shut down original reopens the same way.
    let store = Store::open(c).unwrap();
    assert_eq!(ids(&store, "t").await, names("new", 3));
    assert_eq!(store.queue_end("t", 0), 3);
}

#[tokio::test]
async fn a_lagging_dispatcher_never_brings_back_deleted_entries() {
    for mode in [FlushMode::Async, FlushMode::Sync] {
        lagging_dispatcher(mode).await;
    }
}

async fn lagging_dispatcher(mode: FlushMode) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), mode)).unwrap();
    // Appended but not dispatched yet when the topic is deleted.
    let props = BTreeMap::new();
    for i in 0..50 {
        let id = format!("old-{i}");
        store
            .append_nowait(&draft("t", &id, b"x", &props), 0)
            .unwrap();
    }
    store.delete_queues("t").unwrap();
    send(&store, "t", "new", 2).await;
    assert_eq!(ids(&store, "t").await, names("new", 2));
    assert_eq!(store.dispatched().queue_range("t", 0), (0, 2));
}

#[tokio::test]
async fn a_slaves_copy_refuses_a_local_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), FlushMode::Async)).unwrap();
    send(&store, "t", "old", 2).await;
    store.set_following(true);
    assert!(matches!(store.delete_queues("t"), Err(Error::Follower)));
    assert_eq!(ids(&store, "t").await, names("old", 2));
    assert_eq!(store.log_offsets().2, store.dispatched_offset());
}
