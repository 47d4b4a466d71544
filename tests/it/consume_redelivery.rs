//! T5a in-process: consumers that die mid-batch. 1,000 messages over 4 queues; one consumer
//! pops batches of up to 16 with a 500 ms invisible time and acknowledges them; 20 times a
//! "crashing" consumer pops a batch, acknowledges a random part of it (one by one or with
//! `ack_batch`) and disappears with the rest.
//!
//! Pass criteria (RELIABILITY.md T5a, with the invisible time shortened from 5 s to 500 ms):
//! - every message the crashed consumer held is delivered again, after its invisible time and
//!   within invisible time + 2 s, with the attempt counted on; nothing else is redelivered;
//! - at the end every message was acknowledged, lost = 0, and a further pop finds nothing;
//! - duplicates (deliveries beyond the first) ≤ crashes × batch;
//! - a zombie's handle (the crashed consumer's, after the redelivery) is refused and does not
//!   acknowledge the message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use rocketgate_core::{Error, Message, TopicConfig};

use crate::support;

const TOPIC: &str = "t5a";
const GROUP: &str = "t5a-consumer";
const MESSAGES: u64 = 1000;
const BATCH: usize = 16;
const CRASHES: usize = 20;
const INVISIBLE: Duration = Duration::from_millis(500);
/// How late after its invisible time a dropped message may come back.
const REDELIVERY_SLACK_MS: i64 = 2000;

/// A message the crashed consumer held and never acknowledged.
struct Dropped {
    invisible_until_ms: i64,
    attempt: u32,
    handle: String,
}

#[tokio::test]
async fn consume_t5a_crashed_consumers_lose_nothing_and_duplicates_are_bounded() {
    let mut rng = support::seeded_rng("t5a");
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker.topics().create(TopicConfig::new(TOPIC, 4)).unwrap();
    let mut id_of = HashMap::new();
    for i in 0..MESSAGES {
        let r = support::send_ok(&broker, Message::new(TOPIC, i.to_string())).await;
        id_of.insert(r.message_id, i);
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut deliveries: BTreeMap<u64, u32> = BTreeMap::new();
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut dropped: HashMap<u64, Dropped> = HashMap::new();
    let mut zombies: Vec<(u64, String)> = Vec::new();
    let (mut crashes, mut pops, mut redelivered) = (0usize, 0usize, 0usize);
    let mut worst_late_ms = 0i64;
    while acked.len() < MESSAGES as usize {
        assert!(
            Instant::now() < deadline,
            "not done within 60 s: {} acked, {} dropped awaiting redelivery",
            acked.len(),
            dropped.len()
        );
        let got = support::pop(
            &broker,
            support::pop_req(GROUP, TOPIC, BATCH, INVISIBLE, Duration::from_secs(3)),
        )
        .await;
        let now = support::now_ms();
        pops += 1;
        if got.is_empty() {
            assert!(
                !dropped.is_empty(),
                "LOST: a 3 s pop found nothing, {} of {MESSAGES} acknowledged, none in flight",
                acked.len()
            );
            continue;
        }
        let mut batch = Vec::new();
        for p in &got {
            let i = id_of[&p.message.message_id];
            assert_eq!(p.message.body, i.to_string().as_bytes());
            assert!(!acked.contains(&i), "message {i} delivered after its ack");
            *deliveries.entry(i).or_default() += 1;
            match dropped.remove(&i) {
                Some(d) => {
                    redelivered += 1;
                    assert_eq!(p.attempt, d.attempt + 1, "message {i}: attempt");
                    assert!(
                        now >= d.invisible_until_ms,
                        "message {i} redelivered at {now}, before its invisible time ended at {}",
                        d.invisible_until_ms
                    );
                    let late = now - d.invisible_until_ms;
                    worst_late_ms = worst_late_ms.max(late);
                    assert!(
                        late <= REDELIVERY_SLACK_MS,
                        "message {i} redelivered {late} ms after its invisible time"
                    );
                    zombies.push((i, d.handle));
                }
                None => assert_eq!(p.attempt, 1, "message {i} redelivered though acknowledged"),
            }
            batch.push((i, p));
        }
        // The crash schedule: about every other batch until 20 crashes.
        let crash = crashes < CRASHES && rng.gen_bool(0.5);
        let keep = if crash {
            crashes += 1;
            rng.gen_range(0..batch.len())
        } else {
            batch.len()
        };
        batch.shuffle(&mut rng);
        let (ack_now, drop_now) = batch.split_at(keep);
        if rng.gen_bool(0.5) {
            let handles: Vec<&str> = ack_now
                .iter()
                .map(|(_, p)| p.receipt_handle.as_str())
                .collect();
            let results = support::within(
                support::CALL_TIMEOUT,
                "ack_batch",
                broker.consumer().ack_batch(GROUP, &handles),
            )
            .await
            .unwrap();
            assert_eq!(results.len(), ack_now.len());
            for (r, (i, _)) in results.iter().zip(ack_now) {
                assert!(r.is_ok(), "ack_batch of {i}: {r:?}");
            }
        } else {
            for (_, p) in ack_now {
                support::ack(&broker, GROUP, &p.receipt_handle).await;
            }
        }
        acked.extend(ack_now.iter().map(|(i, _)| *i));
        for (i, p) in drop_now {
            dropped.insert(
                *i,
                Dropped {
                    invisible_until_ms: p.invisible_until_ms,
                    attempt: p.attempt,
                    handle: p.receipt_handle.clone(),
                },
            );
        }
        // Zombies: the crashed consumer comes back with its old handles, too late.
        for (i, h) in zombies.drain(..) {
            match broker.consumer().ack(GROUP, &h).await {
                Err(Error::InvalidReceiptHandle(_)) => {}
                other => panic!("zombie ack of {i} after its redelivery: {other:?}"),
            }
        }
    }
    let took = started.elapsed();

    // Nothing left.
    let rest = support::pop(
        &broker,
        support::pop_req(GROUP, TOPIC, BATCH, INVISIBLE, Duration::from_millis(1500)),
    )
    .await;
    assert!(
        rest.is_empty(),
        "delivered after everything was acknowledged: {rest:?}"
    );
    let lag = broker.consumer().lag(GROUP, TOPIC).unwrap();
    assert!(
        lag.iter()
            .all(|l| l.pop_unacked == 0 && l.pop_inflight == 0),
        "{lag:?}"
    );
    assert!(dropped.is_empty());
    assert_eq!(
        crashes, CRASHES,
        "the schedule must have crashed {CRASHES} times"
    );
    assert_eq!(acked.len() as u64, MESSAGES);
    assert_eq!(
        deliveries.len() as u64,
        MESSAGES,
        "lost = {}",
        MESSAGES - deliveries.len() as u64
    );
    let total: u64 = deliveries.values().map(|d| u64::from(*d)).sum();
    let duplicates = total - MESSAGES;
    println!(
        "T5a: {MESSAGES} messages, {crashes} crashes, {pops} pops, {redelivered} redeliveries, \
         {duplicates} duplicates (bound {}), worst redelivery {worst_late_ms} ms after the \
         invisible time, {took:?}",
        CRASHES * BATCH
    );
    assert_eq!(duplicates, redelivered as u64);
    assert!(duplicates <= (CRASHES * BATCH) as u64);
    broker.shutdown().unwrap();
}
