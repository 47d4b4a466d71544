//! Long polling: a `pull_group` and a `pop` that wait for messages return promptly once a
//! message is sent (bound 1 s, the measured latency is printed), and an empty one returns at
//! its deadline, not before it (and not much after it).
//!
//! Regression test of a former bug (fixed): a pop waiting while the only message is in flight
//! is woken when `change_invisible_duration` makes that message visible sooner
//! (`…pop_wakes_when_a_visibility_change_shortens_the_deadline`).

use std::time::{Duration, Instant};

use rocketgate_core::{Broker, Message, TopicConfig};

use crate::support;

const GROUP: &str = "poller";
/// How long the waiting request is left alone before the send.
const HOLD: Duration = Duration::from_millis(300);
/// Upper bound on send → return.
/// Generous on purpose (see [`support::PROMPTLY`]); the waits it is compared with are ≥ 5 s,
/// except the empty polls' deadlines, where it bounds the overshoot.
const PROMPT: Duration = support::PROMPTLY;

/// Spawns `wait_for`, sends one message after [`HOLD`], and returns (latency from the end of
/// the send to the return, the request's result).
async fn latency<T: Send + 'static>(
    broker: &Broker,
    topic: &str,
    wait_for: impl std::future::Future<Output = T> + Send + 'static,
) -> (Duration, T) {
    let waiter = tokio::spawn(async move {
        let r = wait_for.await;
        (Instant::now(), r)
    });
    tokio::time::sleep(HOLD).await;
    assert!(
        !waiter.is_finished(),
        "the long poll returned before the send"
    );
    support::send_ok(broker, Message::new(topic, "wake up")).await;
    let sent = Instant::now();
    let (done, r) = support::within(Duration::from_secs(30), "long poll", waiter)
        .await
        .unwrap();
    (done.saturating_duration_since(sent), r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_long_poll_wakes_on_send_and_expires_at_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker.topics().create(TopicConfig::new("lp", 1)).unwrap();
    broker
        .topics()
        .create(TopicConfig::new("lp-pop", 4))
        .unwrap();

    // pull_group, several times.
    let mut pull_latencies = Vec::new();
    for round in 0..3u64 {
        let b = broker.clone();
        let req = support::pull_req(GROUP, "lp", 0, round, 16, Duration::from_secs(10));
        let (took, r) = latency(
            &broker,
            "lp",
            async move { support::pull_group(&b, req).await },
        )
        .await;
        assert_eq!(r.messages.len(), 1, "round {round}: {r:?}");
        assert_eq!(r.messages[0].queue_offset, round);
        assert_eq!(r.next_offset, round + 1);
        pull_latencies.push(took);
    }
    println!("pull_group long-poll latency after send: {pull_latencies:?}");

    // pop, several times.
    let mut pop_latencies = Vec::new();
    for round in 0..3 {
        let b = broker.clone();
        let req = support::pop_req(
            GROUP,
            "lp-pop",
            16,
            Duration::from_secs(60),
            Duration::from_secs(10),
        );
        let (took, r) = latency(
            &broker,
            "lp-pop",
            async move { support::pop(&b, req).await },
        )
        .await;
        assert_eq!(r.len(), 1, "round {round}: {r:?}");
        assert_eq!(r[0].attempt, 1);
        support::ack(&broker, GROUP, &r[0].receipt_handle).await;
        pop_latencies.push(took);
    }
    println!("pop long-poll latency after send: {pop_latencies:?}");
    for took in pull_latencies.iter().chain(&pop_latencies) {
        assert!(
            *took <= PROMPT,
            "long poll returned {took:?} after the send"
        );
    }

    // Empty long polls return at their deadline: not before, and not much after.
    for wait in [Duration::from_millis(250), Duration::from_millis(700)] {
        let t = Instant::now();
        let r = support::pull_group(&broker, support::pull_req(GROUP, "lp", 0, 3, 16, wait)).await;
        let pull_took = t.elapsed();
        assert!(r.messages.is_empty(), "{r:?}");
        assert_eq!(r.next_offset, 3);
        let t = Instant::now();
        let p = support::pop(
            &broker,
            support::pop_req(GROUP, "lp-pop", 16, Duration::from_secs(60), wait),
        )
        .await;
        let pop_took = t.elapsed();
        assert!(p.is_empty(), "{p:?}");
        println!("empty long poll of {wait:?}: pull_group {pull_took:?}, pop {pop_took:?}");
        for (what, took) in [("pull_group", pull_took), ("pop", pop_took)] {
            assert!(took >= wait, "{what} returned after {took:?} < {wait:?}");
            assert!(
                took <= wait + PROMPT,
                "{what} returned after {took:?}, deadline {wait:?}"
            );
        }
    }

    // A zero wait never blocks.
    let t = Instant::now();
    let r = support::pull_group(
        &broker,
        support::pull_req(GROUP, "lp", 0, 3, 16, Duration::ZERO),
    )
    .await;
    assert!(r.messages.is_empty());
    assert!(t.elapsed() < PROMPT);
    broker.shutdown().unwrap();
}

/// A pop waiting while the only message is in flight gets it promptly once a visibility change
/// makes it visible again soon (the "retry sooner" pattern), not at the end of its own wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_long_poll_pop_wakes_when_a_visibility_change_shortens_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker
        .topics()
        .create(TopicConfig::new("lp-change", 1))
        .unwrap();
    support::send_ok(&broker, Message::new("lp-change", "retry me")).await;
    let long = Duration::from_secs(60);
    let got = support::pop(
        &broker,
        support::pop_req(GROUP, "lp-change", 1, long, Duration::ZERO),
    )
    .await;
    assert_eq!(got.len(), 1);
    let b = broker.clone();
    let wait = Duration::from_secs(5);
    let waiter = tokio::spawn(async move {
        let r = support::pop(&b, support::pop_req(GROUP, "lp-change", 1, long, wait)).await;
        (Instant::now(), r)
    });
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    broker
        .consumer()
        .change_invisible_duration(GROUP, &got[0].receipt_handle, Duration::from_millis(100))
        .unwrap();
    let changed = Instant::now();
    let (done, again) = support::within(Duration::from_secs(30), "waiting pop", waiter)
        .await
        .unwrap();
    let took = done.saturating_duration_since(changed);
    println!("pop waiting {wait:?} returned {took:?} after the visibility change to 100 ms");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert!(
        took < Duration::from_millis(100) + PROMPT,
        "the message visible again after 100 ms was handed out only {took:?} after the change"
    );
    broker.shutdown().unwrap();
}
