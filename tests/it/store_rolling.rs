//! Segment rolling: 10,000 messages of mixed sizes (some records filling more than half a
//! 64 KiB segment) over two topics are all readable, byte for byte and with their metadata, in
//! queue order, by id and by key; and again after a clean restart.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use rocketgate_core::{Broker, FlushMode, Message, QueueSelector, SendRequest, TopicConfig};

use crate::support::{self, Sent};

const SEGMENT: u64 = 64 * 1024;
const TOPICS: [(&str, u32); 2] = [("roll", 4), ("roll-b", 3)];
const COUNT: usize = 10_000;

fn random_message(rng: &mut StdRng, i: usize) -> SendRequest {
    let (topic, queues) = if rng.gen_ratio(1, 10) {
        TOPICS[1]
    } else {
        TOPICS[0]
    };
    // 3% of bodies are larger than half a segment (a record of them leaves room for no second
    // one), the rest small.
    let len = if rng.gen_ratio(3, 100) {
        rng.gen_range(32 * 1024 + 1..=60 * 1024)
    } else {
        rng.gen_range(1..=600)
    };
    let mut body = vec![0u8; len];
    rng.fill(&mut body[..]);
    let mut m = Message::new(topic, Bytes::from(body))
        .with_key(format!("k-{i}"))
        .with_key(format!("g-{}", i / 10));
    if rng.gen_bool(0.7) {
        m = m.with_tag(format!("tag{}", rng.gen_range(0..5)));
    }
    for p in 0..rng.gen_range(0..4) {
        m = m.with_property(format!("p{p}"), format!("v{}-é-{}", rng.gen::<u32>(), i));
    }
    if i.is_multiple_of(13) {
        m = m.with_group(format!("grp-{}", i % 3));
    }
    if i.is_multiple_of(17) {
        m.born_host = Some("10.0.0.7:4242".into());
        m.born_timestamp_ms = Some(1_700_000_000_000 + i as i64);
    }
    let queue = match rng.gen_range(0..10) {
        0 => QueueSelector::Queue(rng.gen_range(0..queues)),
        1 => QueueSelector::ShardingKey(format!("shard-{}", rng.gen_range(0..50))),
        _ => QueueSelector::Auto,
    };
    SendRequest::new(m, queue)
}

/// Checks every message by queue, by id and by key.
async fn verify_all(broker: &Broker, sent: &[Sent]) {
    // Per queue, in order.
    let mut by_queue: BTreeMap<(String, u32), Vec<&Sent>> = BTreeMap::new();
    for s in sent {
        by_queue
            .entry((s.message.topic.clone(), s.receipt.queue_id))
            .or_default()
            .push(s);
    }
    for (topic, queues) in TOPICS {
        for q in 0..queues {
            let stored = support::drain(broker, topic, q).await;
            let expected = by_queue.remove(&(topic.to_owned(), q)).unwrap_or_default();
            assert_eq!(stored.len(), expected.len(), "{topic}/{q}: message count");
            for (m, s) in stored.iter().zip(&expected) {
                support::assert_same(m, s);
                // A record never straddles a segment boundary.
                assert!(m.physical_offset % SEGMENT + u64::from(m.size) <= SEGMENT);
            }
        }
    }
    assert!(by_queue.is_empty(), "messages in unexpected queues");

    // By id.
    for s in sent {
        let m = support::within(
            support::CALL_TIMEOUT,
            "message_by_id",
            broker.queries().by_id(&s.receipt.message_id),
        )
        .await
        .unwrap_or_else(|e| panic!("message {} not found by id: {e}", s.receipt.message_id));
        support::assert_same(&m, s);
    }

    // By unique key, and by a key shared by ten messages (newest first).
    let mut groups: BTreeMap<(String, String), Vec<&Sent>> = BTreeMap::new();
    for s in sent {
        let topic = &s.message.topic;
        let found = broker
            .queries()
            .by_key(topic, &s.message.keys[0], 0, i64::MAX, 16)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "key {} of {topic}", s.message.keys[0]);
        support::assert_same(&found[0], s);
        groups
            .entry((topic.clone(), s.message.keys[1].clone()))
            .or_default()
            .push(s);
    }
    // Time windows: a message is found in a window holding its store time, and not outside.
    for s in sent.iter().step_by(37) {
        let (topic, key) = (&s.message.topic, &s.message.keys[0]);
        let ts = s.receipt.store_timestamp_ms;
        for (begin, end, hit) in [
            (ts, ts, true),
            (ts - 1, ts + 1, true),
            (ts + 1, i64::MAX, false),
            (0, ts - 1, false),
        ] {
            let found = broker
                .queries()
                .by_key(topic, key, begin, end, 16)
                .await
                .unwrap();
            assert_eq!(
                found.len(),
                usize::from(hit),
                "key {key} in [{begin}, {end}]"
            );
        }
    }
    for ((topic, key), members) in groups {
        let found = broker
            .queries()
            .by_key(&topic, &key, 0, i64::MAX, 64)
            .await
            .unwrap();
        let mut want: Vec<u64> = members.iter().map(|s| s.receipt.physical_offset).collect();
        want.reverse();
        let got: Vec<u64> = found.iter().map(|m| m.physical_offset).collect();
        assert_eq!(got, want, "key {key} of {topic}: all matches, newest first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_rolling_keeps_every_message_readable() {
    let mut rng = support::seeded_rng("segment_rolling");
    let dir = tempfile::tempdir().unwrap();
    let config = support::config(dir.path(), SEGMENT, FlushMode::Async);
    let broker = support::open(&config);
    for (t, q) in TOPICS {
        broker
            .topics()
            .create(TopicConfig::new(t, q).with_type(rocketgate_core::MessageType::Mixed))
            .unwrap();
    }
    let mut sent = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        let req = random_message(&mut rng, i);
        let receipt = support::send_ok(&broker, req.clone()).await;
        sent.push(Sent {
            message: req.message,
            receipt,
        });
    }
    verify_all(&broker, &sent).await;
    let wrote = broker.storage().log_offsets().end;
    broker.shutdown().unwrap();
    drop(broker);

    let files = support::segments(dir.path());
    assert!(
        files.len() as u64 >= wrote / SEGMENT,
        "{} segment files for {wrote} bytes",
        files.len()
    );
    println!("{COUNT} messages in {} segments of 64 KiB", files.len());
    for (i, (base, path)) in files.iter().enumerate() {
        assert_eq!(*base, i as u64 * SEGMENT, "segments are contiguous");
        assert_eq!(std::fs::metadata(path).unwrap().len(), SEGMENT);
    }

    let broker = support::open(&config);
    let report = broker.storage().recovery_report();
    assert!(!report.after_crash, "{report:?}");
    assert!(!report.cut_tail, "{report:?}");
    assert_eq!(broker.storage().log_offsets().end, wrote);
    verify_all(&broker, &sent).await;

    // Appends continue each queue where it stopped.
    for (topic, queues) in TOPICS {
        for q in 0..queues {
            let next = sent
                .iter()
                .filter(|s| s.message.topic == topic && s.receipt.queue_id == q)
                .count() as u64;
            let r = support::send_ok(
                &broker,
                SendRequest::new(
                    Message::new(topic, "after restart"),
                    QueueSelector::Queue(q),
                ),
            )
            .await;
            assert_eq!(r.queue_offset, Some(next), "{topic}/{q}");
            assert!(r.physical_offset >= wrote);
        }
    }
}

/// The record layout puts a segment's end in one of three states: exactly full, 1–7 spare bytes
/// (too few for a filler), or closed by a filler. Records are sized here to leave each gap from
/// 0 to 9 bytes (and 100) before a segment boundary; every message stays readable, also after a
/// clean restart and after a full crash recovery that scans every segment from the first.
#[tokio::test]
async fn segment_ends_exactly_full_or_with_a_few_spare_bytes() {
    const TOPIC: &str = "edge";
    let dir = tempfile::tempdir().unwrap();
    let config = support::config(dir.path(), SEGMENT, FlushMode::Sync);
    let broker = support::open(&config);
    broker.topics().create(TopicConfig::new(TOPIC, 1)).unwrap();
    let mut sent: Vec<Sent> = Vec::new();
    // Same-length ids and no optional fields: the record size is body length + a constant.
    let message = |i: usize, len: usize| {
        let mut m = Message::new(TOPIC, Bytes::from(vec![(i % 251) as u8; len]));
        m.message_id = Some(format!("edge-{i:06}"));
        m
    };
    let send = |broker: Broker, m: Message| async move {
        let receipt = support::send_ok(&broker, m.clone()).await;
        Sent {
            message: m,
            receipt,
        }
    };
    let first = send(broker.clone(), message(0, 100)).await;
    let stored = support::drain(&broker, TOPIC, 0).await;
    let overhead = stored[0].size as usize - 100;
    sent.push(first);
    for gap in [0usize, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100] {
        // Get at least 1000 bytes of room in the current segment.
        loop {
            let pos = broker.storage().log_offsets().end;
            if SEGMENT - pos % SEGMENT >= 1000 {
                break;
            }
            let s = send(broker.clone(), message(sent.len(), 300)).await;
            sent.push(s);
        }
        let pos = broker.storage().log_offsets().end;
        let remaining = (SEGMENT - pos % SEGMENT) as usize;
        let s = send(
            broker.clone(),
            message(sent.len(), remaining - gap - overhead),
        )
        .await;
        assert_eq!(s.receipt.physical_offset, pos, "gap {gap}: the record fits");
        sent.push(s);
        assert_eq!(
            broker.storage().log_offsets().end % SEGMENT,
            (SEGMENT - gap as u64) % SEGMENT,
            "gap {gap}"
        );
        let next = send(broker.clone(), message(sent.len(), 10)).await;
        assert_eq!(
            next.receipt.physical_offset % SEGMENT,
            0,
            "gap {gap}: the next record opens the next segment"
        );
        sent.push(next);
    }
    let check = |broker: Broker, sent: Vec<Sent>| async move {
        let stored = support::drain(&broker, TOPIC, 0).await;
        assert_eq!(stored.len(), sent.len());
        for (m, s) in stored.iter().zip(&sent) {
            support::assert_same(m, s);
            let by_id = broker.queries().by_id(&s.receipt.message_id).await.unwrap();
            support::assert_same(&by_id, s);
        }
    };
    check(broker.clone(), sent.clone()).await;
    let end = broker.storage().log_offsets().end;
    broker.shutdown().unwrap();
    drop(broker);

    let broker = support::open(&config);
    assert_eq!(broker.storage().log_offsets().end, end);
    check(broker.clone(), sent.clone()).await;
    broker.shutdown().unwrap();
    drop(broker);

    // A full crash recovery: no checkpoint, abort marker: every segment is scanned.
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    support::leave_abort_marker(dir.path());
    let before = support::commitlog_bytes(dir.path());
    let broker = support::open(&config);
    let report = broker.storage().recovery_report();
    assert!(report.after_crash && !report.cut_tail, "{report:?}");
    assert_eq!(report.log_end, end);
    assert_eq!(support::commitlog_bytes(dir.path()), before);
    check(broker.clone(), sent.clone()).await;
    let s = send(broker.clone(), message(sent.len(), 10)).await;
    assert_eq!(s.receipt.physical_offset, end);
}
