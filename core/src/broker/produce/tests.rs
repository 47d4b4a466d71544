//! What a send answers (a queue offset only when the message is in its queue) and which
//! message types a topic takes.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{PopRequest, SendRequest};
use crate::broker::consumer_group::GroupConfig;
use crate::broker::retry::DlqSelection;
use crate::broker::topic::TopicConfig;
use crate::clock::{Clock, ManualClock};
use crate::error::Error;
use crate::message::Message;
use crate::{Broker, Config, MessageType};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.consumer.retry_backoff = "0s".into();
    c
}

fn pop(group: &str, topic: &str, wait_ms: u64) -> PopRequest {
    PopRequest {
        group: group.into(),
        topic: topic.into(),
        filter: None,
        max: 10,
        invisible: Duration::from_secs(30),
        wait: Duration::from_millis(wait_ms),
    }
}

fn typed(b: &Broker, name: &str, t: MessageType) {
    b.topics()
        .create(TopicConfig::new(name, 1).with_type(t))
        .unwrap();
}

#[tokio::test]
async fn a_receipt_has_a_queue_offset_only_when_the_message_is_in_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let b = Broker::open_with_clock(config(dir.path()), Arc::new(clock.clone())).unwrap();
    typed(&b, "n", MessageType::Normal);
    typed(&b, "d", MessageType::Delay);
    typed(&b, "tx", MessageType::Transaction);
    // Earlier scheduled records take timer offsets 0 and 1: a receipt must not report those.
    for _ in 0..2 {
        b.producer()
            .send(Message::new("n", "x").into())
            .await
            .unwrap();
    }
    let plain = b
        .producer()
        .send(Message::new("n", "x").into())
        .await
        .unwrap();
    assert_eq!(plain.queue_offset, Some(2));
    assert_eq!(plain.deliver_at_ms, None);
    let at = clock.now_ms() + 60_000;
    let mut scheduled = Vec::new();
    for i in 0..3 {
        let m = Message::new("d", format!("later{i}")).with_deliver_at(at);
        scheduled.push(b.producer().send(m.into()).await.unwrap());
    }
    for r in &scheduled {
        assert_eq!(r.queue_offset, None, "{r:?}");
        assert_eq!(r.deliver_at_ms, Some(at));
        assert_eq!(r.queue_id, 0, "the queue it will go to");
    }
    let half = b
        .transactions()
        .send_half(Message::new("tx", "h").into(), "pg")
        .await
        .unwrap();
    assert_eq!(half.queue_offset, None);
    assert!(half.transaction_id.is_some());
    // When due, the messages get offsets 0, 1, 2 of `d` (not the timer's).
    clock.advance(Duration::from_secs(60));
    b.wake_workers();
    let mut got = Vec::new();
    while got.len() < 3 {
        let popped = tokio::time::timeout(
            Duration::from_secs(10),
            b.consumer().pop(pop("g", "d", 5_000)),
        )
        .await
        .unwrap()
        .unwrap();
        got.extend(popped);
    }
    let mut offsets: Vec<(String, u64)> = got
        .iter()
        .map(|p| (p.message.message_id.clone(), p.message.queue_offset))
        .collect();
    offsets.sort_by_key(|(_, o)| *o);
    let ids: Vec<&str> = scheduled.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(
        offsets
            .iter()
            .map(|(id, o)| (id.as_str(), *o))
            .collect::<Vec<_>>(),
        vec![(ids[0], 0), (ids[1], 1), (ids[2], 2)]
    );
}

#[tokio::test]
async fn a_topic_takes_only_its_message_type_unless_mixed() {
    use MessageType::*;
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    for (name, t) in [
        ("normal", Normal),
        ("fifo", Fifo),
        ("delay", Delay),
        ("tx", Transaction),
        ("mixed", Mixed),
    ] {
        typed(&b, name, t);
    }
    let later = crate::store::now_ms() + 60_000;
    // (kind, message): what each send is, by its fields.
    let plain = |t: &str| Message::new(t, "x");
    let grouped = |t: &str| Message::new(t, "x").with_group("g");
    let delayed = |t: &str| Message::new(t, "x").with_deliver_at(later);
    for topic in ["normal", "fifo", "delay", "tx", "mixed"] {
        let sends = [
            ("normal", b.producer().send(plain(topic).into()).await),
            ("fifo", b.producer().send(grouped(topic).into()).await),
            ("delay", b.producer().send(delayed(topic).into()).await),
            (
                "tx",
                b.transactions().send_half(plain(topic).into(), "pg").await,
            ),
        ];
        for (kind, r) in sends {
            let ok = topic == "mixed" || topic == kind;
            match r {
                Ok(_) => assert!(ok, "{kind} message accepted by topic {topic}"),
                Err(e) => {
                    assert!(!ok, "{kind} into {topic}: {e}");
                    assert!(matches!(e, Error::MessageTypeConflict(_)), "{e:?}");
                    assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
                }
            }
        }
    }
    // A batch with one mismatched message stores none.
    let batch = vec![
        SendRequest::from(plain("fifo").with_group("g")),
        SendRequest::from(plain("fifo")),
    ];
    let err = b.producer().send_batch(batch).await.unwrap_err();
    assert_eq!((err.index, err.stored), (1, 0));
    let conflict = b
        .producer()
        .send(plain("tx").into())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        conflict.contains("accepts TRANSACTION messages, not NORMAL"),
        "{conflict}"
    );
}

#[tokio::test]
async fn the_type_check_can_be_relaxed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.topic_message_type_check = false;
    let b = Broker::open(c).unwrap();
    typed(&b, "tx", MessageType::Transaction);
    typed(&b, "normal", MessageType::Normal);
    b.producer()
        .send(Message::new("tx", "plain").into())
        .await
        .unwrap();
    b.transactions()
        .send_half(Message::new("normal", "half").into(), "pg")
        .await
        .unwrap();
    // What a declared type needs is still checked.
    let no_group = SendRequest::from(Message::new("normal", "x")).with_type(MessageType::Fifo);
    assert!(matches!(
        b.producer().send(no_group).await,
        Err(Error::IllegalField { .. })
    ));
}

#[tokio::test]
async fn a_dead_letter_resend_goes_back_into_a_typed_topic() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    typed(&b, "d", MessageType::Delay);
    let mut g = GroupConfig::new("g");
    g.max_delivery_attempts = 1;
    b.groups().create(g).unwrap();
    let sent = b
        .producer()
        .send(
            Message::new("d", "due")
                .with_deliver_at(crate::store::now_ms() - 1)
                .into(),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        b.consumer().pop(pop("g", "d", 5_000)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got.len(), 1);
    b.consumer()
        .nack("g", &got[0].receipt_handle, None)
        .await
        .unwrap();
    let dlq = b.dead_letters().list("g", 0, 10).await.unwrap().messages;
    assert_eq!(dlq.len(), 1);
    // Delivered, it has no delivery time any more; the broker puts it back all the same.
    b.dead_letters()
        .resend("g", DlqSelection::Ids(vec![sent.message_id.clone()]))
        .await
        .unwrap();
    let again = tokio::time::timeout(
        Duration::from_secs(10),
        b.consumer().pop(pop("g", "d", 5_000)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(again[0].message.message_id, sent.message_id);
}
