//! A deleted and re-created topic on a master, copied to a follower: the deletion travels in
//! the CommitLog, so the follower resets the topic's queue offsets at the same point and drops
//! its old ConsumeQueue entries (issue 15).

use super::*;

async fn send_n(b: &Broker, topic: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let m = Message::new(topic, format!("{prefix}-{i}"));
        b.producer()
            .send(SendRequest::new(m, crate::api::QueueSelector::Queue(0)))
            .await
            .unwrap();
    }
}

async fn bodies(s: &Store, topic: &str) -> Vec<String> {
    s.visible()
        .await
        .unwrap()
        .read_queue(topic, 0, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

fn new_ones(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn a_deleted_and_recreated_topic_replicates() {
    let (md, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = Broker::open(config(md.path())).unwrap();
    become_master(md.path(), 1, 0).unwrap();
    master.topics().create(TopicConfig::new("t", 1)).unwrap();
    master.topics().create(TopicConfig::new("stay", 1)).unwrap();
    send_n(&master, "t", "old", 7).await;
    send_n(&master, "stay", "s", 3).await;
    master.consumer().commit_offset("g", "t", 0, 5).unwrap();
    master.consumer().persist_state().unwrap();
    let r = Replica::open(fd.path());
    // The follower has the old topic before the deletion happens.
    follow(&master, &r, 5000).await;
    assert_eq!(bodies(&r.store, "t").await, new_ones("old", 7));

    master.topics().delete("t").unwrap();
    master.topics().create(TopicConfig::new("t", 1)).unwrap();
    send_n(&master, "t", "new", 4).await;
    send_n(&master, "stay", "s2", 2).await;
    follow(&master, &r, 5000).await;
    let (ms, _) = master.replication_parts();
    assert_eq!(bodies(ms, "t").await, new_ones("new", 4));
    assert_eq!(bodies(&r.store, "t").await, new_ones("new", 4));
    assert_eq!(r.store.queue_end("t", 0), 4);
    assert_eq!(bodies(&r.store, "stay").await.len(), 5);

    // Deleted and re-created twice inside one chunk.
    master.topics().delete("t").unwrap();
    master.topics().create(TopicConfig::new("t", 1)).unwrap();
    send_n(&master, "t", "newer", 2).await;
    master.topics().delete("t").unwrap();
    master.topics().create(TopicConfig::new("t", 1)).unwrap();
    send_n(&master, "t", "newest", 3).await;
    follow(&master, &r, 64 << 10).await;
    assert_eq!(bodies(&r.store, "t").await, new_ones("newest", 3));
    assert_eq!(r.store.queue_end("t", 0), 3);

    // A fresh follower copying the whole log in one go ends in the same state.
    let fd2 = tempfile::tempdir().unwrap();
    let r2 = Replica::open(fd2.path());
    follow(&master, &r2, 64 << 10).await;
    assert_eq!(bodies(&r2.store, "t").await, new_ones("newest", 3));

    // Promoted, the follower continues the re-created topic's offsets.
    master.shutdown().unwrap();
    drop(master);
    let config = r.close();
    let end = Store::open(config.store.clone())
        .unwrap()
        .log_bound(ReadBound::Written);
    become_master(&config.store.data_dir, 2, end).unwrap();
    let promoted = Broker::open(config).unwrap();
    let (ps, _) = promoted.replication_parts();
    assert_eq!(bodies(ps, "t").await, new_ones("newest", 3));
    assert_eq!(
        promoted.consumer().committed_offset("g", "t", 0).unwrap(),
        None,
        "the old topic's committed offset is gone with it"
    );
    let sent = promoted
        .producer()
        .send(SendRequest::new(
            Message::new("t", "after"),
            crate::api::QueueSelector::Queue(0),
        ))
        .await
        .unwrap();
    assert_eq!(sent.queue_offset, Some(3));
}
