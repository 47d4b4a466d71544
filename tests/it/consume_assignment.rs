//! Queue assignment of push-style consumers: three live clients of a group share the queues of
//! a topic in disjoint blocks covering every queue; a client that stops heartbeating loses its
//! queues to the others once `consumer.client_expiry_ms` has passed (not before), and
//! `unregister_client` hands its queues over at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rocketgate_core::{Broker, TopicConfig};

use crate::support;

const GROUP: &str = "assign";
const TOPIC: &str = "assigned";
const QUEUES: u32 = 8;
const EXPIRY: Duration = Duration::from_millis(300);

/// The assignments of `clients` (each call is also their heartbeat), checked to be disjoint and
/// to cover every queue exactly once.
fn assignments(broker: &Broker, clients: &[&str]) -> BTreeMap<String, Vec<u32>> {
    let mut out = BTreeMap::new();
    let mut owner: BTreeMap<u32, &str> = BTreeMap::new();
    for c in clients {
        let queues = broker.consumer().assignment(GROUP, TOPIC, c).unwrap();
        for q in &queues {
            assert!(*q < QUEUES, "{c} got queue {q} of {QUEUES}");
            if let Some(other) = owner.insert(*q, c) {
                panic!("queue {q} assigned to both {other} and {c}: {out:?} {queues:?}");
            }
        }
        out.insert((*c).to_owned(), queues);
    }
    assert_eq!(
        owner.keys().copied().collect::<Vec<_>>(),
        (0..QUEUES).collect::<Vec<_>>(),
        "assignments must cover every queue: {out:?}"
    );
    out
}

#[test]
fn consume_assignment_disjoint_covering_and_rebalanced_on_expiry_and_unregister() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::consume_config(dir.path());
    config.consumer.client_expiry_ms = EXPIRY.as_millis() as u64;
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new(TOPIC, QUEUES))
        .unwrap();

    for c in ["c1", "c2", "c3"] {
        broker.consumer().heartbeat(GROUP, c).unwrap();
    }
    assert_eq!(broker.consumer().clients(GROUP), vec!["c1", "c2", "c3"]);
    let three = assignments(&broker, &["c1", "c2", "c3"]);
    println!("3 clients: {three:?}");
    for (c, q) in &three {
        assert!(
            (2..=3).contains(&q.len()),
            "8 queues over 3 clients: {c} got {q:?}"
        );
    }
    // Stable while membership is stable.
    assert_eq!(assignments(&broker, &["c1", "c2", "c3"]), three);

    // c2 goes silent; c1 and c3 keep heartbeating (every assignment call is one) every 50 ms.
    let silent_since = Instant::now();
    broker.consumer().heartbeat(GROUP, "c2").unwrap();
    let deadline = silent_since + Duration::from_secs(10);
    let two = loop {
        std::thread::sleep(Duration::from_millis(50));
        let live = broker.consumer().clients(GROUP);
        let elapsed = silent_since.elapsed();
        if live.iter().any(|c| c == "c2") {
            assert!(
                elapsed < EXPIRY + Duration::from_secs(2),
                "c2 still live {elapsed:?} after its last heartbeat (expiry {EXPIRY:?})"
            );
            // Until it expires, c2 keeps its share: the others' shares do not change (asking
            // for c2's own share would be a heartbeat).
            for c in ["c1", "c3"] {
                let a = broker.consumer().assignment(GROUP, TOPIC, c).unwrap();
                assert_eq!(a, three[c], "{c} reassigned while c2 was still live");
            }
        } else {
            assert!(
                elapsed >= EXPIRY,
                "c2 dropped after {elapsed:?}, before the expiry of {EXPIRY:?}"
            );
            println!("c2 expired after {elapsed:?} (expiry {EXPIRY:?})");
            break assignments(&broker, &["c1", "c3"]);
        }
        assert!(Instant::now() < deadline, "c2 never expired");
    };
    println!("2 clients: {two:?}");
    assert_eq!(broker.consumer().clients(GROUP), vec!["c1", "c3"]);
    assert!(two.values().all(|q| q.len() == 4), "{two:?}");
    // c2's queues went to the others.
    for q in &three["c2"] {
        assert!(
            two.values().any(|qs| qs.contains(q)),
            "queue {q} of c2 unassigned"
        );
    }

    // A clean leave hands the queues over at once, without waiting for the expiry.
    broker.consumer().unregister_client(GROUP, "c3");
    assert_eq!(broker.consumer().clients(GROUP), vec!["c1"]);
    let one = assignments(&broker, &["c1"]);
    assert_eq!(one["c1"], (0..QUEUES).collect::<Vec<_>>());
    // A client that is not live gets nothing (asking makes it live again, so ask c1's view).
    broker.consumer().heartbeat(GROUP, "c2").unwrap();
    let back = assignments(&broker, &["c1", "c2"]);
    assert!(back.values().all(|q| q.len() == 4), "{back:?}");
    broker.shutdown().unwrap();
}
