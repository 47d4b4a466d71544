use std::time::Duration;

use super::*;
use crate::api::{GroupPullRequest, PopRequest, QueueSelector, SendReceipt, SendRequest};
use crate::broker::consumer_group::GroupConfig;
use crate::broker::filter::FilterExpression;
use crate::broker::topic::{MessageType, Permission};
use crate::config::Config;
use crate::error::ErrorKind;
use crate::message::Message;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.limits.max_queues_per_topic = 16;
    c
}

async fn send_to(b: &Broker, topic: &str, queue: u32, body: &str) -> SendReceipt {
    b.producer()
        .send(SendRequest::new(
            Message::new(topic, body.to_owned()),
            QueueSelector::Queue(queue),
        ))
        .await
        .unwrap()
}

fn grow(n: u32) -> TopicUpdate {
    TopicUpdate {
        queue_count: Some(n),
        ..TopicUpdate::default()
    }
}

#[tokio::test]
async fn update_topic_grows_queues_that_work_at_once_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Broker::open(config(dir.path())).unwrap();
        b.topics().create(TopicConfig::new("t", 2)).unwrap();
        send_to(&b, "t", 1, "old").await;
        b.inner.store.visible().await.unwrap();

        let info = b.topics().update("t", grow(4)).unwrap();
        assert_eq!(info.config.queue_count, 4);
        assert_eq!(info.queues.len(), 4);
        assert_eq!((info.queues[1].min, info.queues[1].max), (0, 1));

        // The new queue takes sends, pulls and pops right away.
        let r = send_to(&b, "t", 3, "new").await;
        assert_eq!((r.queue_id, r.queue_offset), (3, Some(0)));
        let pulled = b
            .consumer()
            .pull_group(GroupPullRequest {
                group: "g".into(),
                topic: "t".into(),
                queue_id: 3,
                offset: 0,
                max: 10,
                filter: None,
                wait: Duration::ZERO,
            })
            .await
            .unwrap();
        assert_eq!(pulled.messages.len(), 1);
        assert_eq!(&pulled.messages[0].body[..], b"new");
        let popped = b
            .consumer()
            .pop(PopRequest {
                group: "p".into(),
                topic: "t".into(),
                filter: None,
                max: 10,
                invisible: Duration::from_secs(30),
                wait: Duration::ZERO,
            })
            .await
            .unwrap();
        let mut queues: Vec<u32> = popped.iter().map(|m| m.message.queue_id).collect();
        queues.sort_unstable();
        assert_eq!(queues, vec![1, 3]);

        // Type and permission change; unset fields keep their value.
        let info = b
            .topics()
            .update(
                "t",
                TopicUpdate {
                    message_type: Some(MessageType::Fifo),
                    permission: Some(Permission {
                        read: true,
                        write: false,
                    }),
                    ..TopicUpdate::default()
                },
            )
            .unwrap();
        assert_eq!(info.config.queue_count, 4);
        assert_eq!(info.config.message_type, MessageType::Fifo);
        assert!(!info.config.permission.write);
        let e = b
            .producer()
            .send(Message::new("t", "x").into())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        b.shutdown().unwrap();
    }
    let b = Broker::open(config(dir.path())).unwrap();
    let info = b.topics().describe("t").await.unwrap();
    assert_eq!(info.config.queue_count, 4);
    assert_eq!(info.config.message_type, MessageType::Fifo);
    assert!(info.config.permission.read && !info.config.permission.write);
}

#[tokio::test]
async fn update_topic_refuses_shrinking_bad_counts_reserved_and_unknown_topics() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 4)).unwrap();

    let e = b.topics().update("t", grow(2)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let text = e.to_string();
    assert!(
        text.contains("only grow") && text.contains("unreadable"),
        "{text}"
    );
    for n in [0, 17] {
        let e = b.topics().update("t", grow(n)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{n}: {e:?}");
    }
    assert_eq!(
        b.topics().describe("t").await.unwrap().config.queue_count,
        4
    );

    for reserved in ["rmq_sys_timer", "%RETRY%g", "%DLQ%g"] {
        let e = b.topics().update(reserved, grow(8)).unwrap_err();
        assert!(matches!(e, Error::IllegalTopic { .. }), "{reserved}: {e:?}");
    }
    let e = b.topics().update("a b", grow(8)).unwrap_err();
    assert!(matches!(e, Error::IllegalTopic { .. }), "{e:?}");
    let e = b.topics().update("missing", grow(8)).unwrap_err();
    assert!(
        matches!(&e, Error::TopicNotFound(t) if t == "missing"),
        "{e:?}"
    );
}

#[tokio::test]
async fn topics_changed_counts_user_topic_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    let mut rx = b.topics().changed();
    assert_eq!(*rx.borrow_and_update(), 0);

    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 1);

    b.topics().update("t", grow(2)).unwrap();
    assert_eq!(*rx.borrow_and_update(), 2);
    // Nothing changed, nothing announced; refused changes neither.
    b.topics().update("t", grow(2)).unwrap();
    b.topics().update("t", grow(1)).unwrap_err();
    b.topics().create(TopicConfig::new("t", 1)).unwrap_err();
    assert!(!rx.has_changed().unwrap());

    // The broker's own topics (a group's dead-letter topic) do not count.
    b.groups().create(GroupConfig::new("g")).unwrap();
    b.dead_letters().list("g", 0, 1).await.unwrap();
    assert!(!rx.has_changed().unwrap());

    b.topics().delete("t").unwrap();
    assert_eq!(*rx.borrow_and_update(), 3);
    let topics: Vec<String> = b.topics().list_user().into_iter().map(|t| t.name).collect();
    assert!(topics.is_empty(), "{topics:?}");
    assert!(b.topics().list().iter().any(|t| t.name == "%DLQ%g"));
}

#[tokio::test]
async fn query_by_time_merges_queues_oldest_first_and_reports_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 3)).unwrap();
    let mut sent = Vec::new();
    for i in 0..12u32 {
        sent.push(send_to(&b, "t", i % 3, &format!("m{i}")).await);
        if i % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let key = |r: &SendReceipt| (r.store_timestamp_ms, r.queue_id, r.queue_offset.unwrap());
    let got = |r: &QueryResult| -> Vec<(i64, u32, u64)> {
        r.messages
            .iter()
            .map(|m| (m.store_timestamp_ms, m.queue_id, m.queue_offset))
            .collect()
    };

    // Everything, in store-time order across the queues.
    let mut all: Vec<_> = sent.iter().map(key).collect();
    all.sort_unstable();
    let r = b
        .queries()
        .by_time("t", i64::MIN, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(got(&r), all);
    assert!(!r.truncated);

    // A window: inclusive bounds.
    let (begin, end) = (sent[4].store_timestamp_ms, sent[9].store_timestamp_ms);
    let window: Vec<_> = all
        .iter()
        .copied()
        .filter(|(ts, _, _)| (begin..=end).contains(ts))
        .collect();
    let r = b.queries().by_time("t", begin, end, 100).await.unwrap();
    assert_eq!(got(&r), window);
    assert!(!r.truncated);

    // Cut short by max: the oldest ones, flagged; exactly max is not truncated.
    let r = b.queries().by_time("t", begin, end, 2).await.unwrap();
    assert_eq!(got(&r), window[..2].to_vec());
    assert!(r.truncated);
    let r = b
        .queries()
        .by_time("t", begin, end, window.len())
        .await
        .unwrap();
    assert!(!r.truncated);

    // Nothing in range.
    let r = b.queries().by_time("t", 0, 1, 10).await.unwrap();
    assert!(r.messages.is_empty() && !r.truncated);

    for (begin, end, max) in [(2, 1, 10), (0, 1, 0), (0, 1, 1025)] {
        let e = b.queries().by_time("t", begin, end, max).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    let e = b.queries().by_time("missing", 0, 1, 10).await.unwrap_err();
    assert!(matches!(e, Error::TopicNotFound(_)), "{e:?}");
}

#[tokio::test]
async fn group_topics_unite_subscriptions_offsets_and_pops() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    for t in ["a", "b", "c", "gone", "other"] {
        b.topics().create(TopicConfig::new(t, 1)).unwrap();
    }
    b.groups().create(GroupConfig::new("g")).unwrap();
    b.groups()
        .subscribe("g", "a", FilterExpression::tag("*"))
        .unwrap();
    b.groups()
        .subscribe("g", "gone", FilterExpression::tag("*"))
        .unwrap();
    b.consumer().commit_offset("g", "b", 0, 0).unwrap();
    b.consumer()
        .pop(PopRequest {
            group: "g".into(),
            topic: "c".into(),
            filter: None,
            max: 1,
            invisible: Duration::from_secs(30),
            wait: Duration::ZERO,
        })
        .await
        .unwrap();
    b.consumer().commit_offset("h", "other", 0, 0).unwrap();
    b.dead_letters().list("g", 0, 1).await.unwrap();
    b.topics().delete("gone").unwrap();

    assert_eq!(b.groups().topics("g").unwrap(), vec!["a", "b", "c"]);
    assert_eq!(b.groups().topics("h").unwrap(), vec!["other"]);
    let e = b.groups().topics("nobody").unwrap_err();
    assert!(matches!(e, Error::GroupNotFound(_)), "{e:?}");
}

#[tokio::test]
async fn queue_last_store_time_follows_the_last_message() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 2)).unwrap();
    assert_eq!(b.queries().last_store_time("t", 0).unwrap(), None);
    send_to(&b, "t", 0, "first").await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let last = send_to(&b, "t", 0, "second").await;
    b.inner.store.visible().await.unwrap();
    assert_eq!(
        b.queries().last_store_time("t", 0).unwrap(),
        Some(last.store_timestamp_ms)
    );
    assert_eq!(b.queries().last_store_time("t", 1).unwrap(), None);
    let e = b.queries().last_store_time("t", 2).unwrap_err();
    assert!(matches!(e, Error::QueueNotFound { .. }), "{e:?}");
    let e = b.queries().last_store_time("missing", 0).unwrap_err();
    assert!(matches!(e, Error::TopicNotFound(_)), "{e:?}");
}
