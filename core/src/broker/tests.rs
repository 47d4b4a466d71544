use std::time::Duration;

use super::*;
use crate::api::{GroupPullRequest, PopRequest};
use crate::message::Message;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.consumer.min_invisible_ms = 100;
    c
}

fn pop_req(group: &str, topic: &str, max: usize, invisible_ms: u64, wait_ms: u64) -> PopRequest {
    PopRequest {
        group: group.into(),
        topic: topic.into(),
        filter: None,
        max,
        invisible: Duration::from_millis(invisible_ms),
        wait: Duration::from_millis(wait_ms),
    }
}

#[tokio::test]
async fn pop_ack_redeliver_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(config(dir.path())).unwrap();
        b.create_topic(TopicConfig::new("t", 2)).unwrap();
        for i in 0..4 {
            b.send(Message::new("t", format!("m{i}")).into())
                .await
                .unwrap();
        }
        let got = b.pop(pop_req("g", "t", 10, 200, 0)).await.unwrap();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|m| m.attempt == 1));
        b.ack("g", &got[0].receipt_handle).await.unwrap();
        assert!(b.ack("g", &got[0].receipt_handle).await.is_err());
        assert!(b.ack("other", &got[1].receipt_handle).await.is_err());
        let new = b
            .change_invisible_duration("g", &got[1].receipt_handle, Duration::from_millis(5000))
            .unwrap();
        assert!(b.ack("g", &got[1].receipt_handle).await.is_err());
        // Redelivery of the two untouched ones after 200 ms, attempt 2 (long poll wakes up).
        let again = b.pop(pop_req("g", "t", 10, 200, 2000)).await.unwrap();
        assert_eq!(again.len(), 2, "{again:?}");
        assert!(again.iter().all(|m| m.attempt == 2));
        b.ack("g", &new).await.unwrap();
        b.ack("g", &again[0].receipt_handle).await.unwrap();
        b.shutdown().unwrap();
    }
    // After a clean restart only the one never acked comes back.
    let b = Broker::open(config(dir.path())).unwrap();
    let back = b.pop(pop_req("g", "t", 10, 200, 0)).await.unwrap();
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].attempt, 3);
}

#[tokio::test]
async fn long_poll_pull_wakes_on_send() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.create_topic(TopicConfig::new("t", 1)).unwrap();
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = b2
            .pull_group(GroupPullRequest {
                group: "g".into(),
                topic: "t".into(),
                queue_id: 0,
                offset: 0,
                max: 10,
                filter: Some(crate::broker::filter::FilterExpression::tag("A")),
                wait: Duration::from_secs(5),
            })
            .await
            .unwrap();
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.send(Message::new("t", "skip").with_tag("B").into())
        .await
        .unwrap();
    b.send(Message::new("t", "take").with_tag("A").into())
        .await
        .unwrap();
    let (r, took) = waiter.await.unwrap();
    assert!(took < Duration::from_secs(2), "{took:?}");
    let bodies: Vec<_> = r.messages.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, vec![bytes::Bytes::from("take")]);
    b.commit_offset("g", "t", 0, r.next_offset).unwrap();
    assert_eq!(b.committed_offset("g", "t", 0).unwrap(), Some(2));
    // An empty long poll returns at its deadline.
    let started = std::time::Instant::now();
    let r = b
        .pull_group(GroupPullRequest {
            group: "g".into(),
            topic: "t".into(),
            queue_id: 0,
            offset: 2,
            max: 10,
            filter: None,
            wait: Duration::from_millis(300),
        })
        .await
        .unwrap();
    assert!(r.messages.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(290));
}
