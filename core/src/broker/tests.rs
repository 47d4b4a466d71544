use std::time::Duration;

use super::*;
use crate::api::{GroupPullRequest, PopRequest};
use crate::broker::consumer_group::GroupConfig;
use crate::message::Message;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.consumer.min_invisible_ms = 100;
    c.consumer.retry_backoff = "0s".into();
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
        b.topics().create(TopicConfig::new("t", 2)).unwrap();
        for i in 0..4 {
            b.producer()
                .send(Message::new("t", format!("m{i}")).into())
                .await
                .unwrap();
        }
        let got = b
            .consumer()
            .pop(pop_req("g", "t", 10, 200, 0))
            .await
            .unwrap();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|m| m.attempt == 1));
        b.consumer().ack("g", &got[0].receipt_handle).await.unwrap();
        assert!(b.consumer().ack("g", &got[0].receipt_handle).await.is_err());
        assert!(b
            .consumer()
            .ack("other", &got[1].receipt_handle)
            .await
            .is_err());
        let new = b
            .consumer()
            .change_invisible_duration("g", &got[1].receipt_handle, Duration::from_millis(5000))
            .unwrap();
        assert!(b.consumer().ack("g", &got[1].receipt_handle).await.is_err());
        // Redelivery of the two untouched ones after 200 ms, attempt 2 (long poll wakes up).
        let mut again = Vec::new();
        let started = std::time::Instant::now();
        while again.len() < 2 && started.elapsed() < Duration::from_secs(5) {
            again.extend(
                b.consumer()
                    .pop(pop_req("g", "t", 10, 200, 2000))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(again.len(), 2, "{again:?}");
        assert!(again.iter().all(|m| m.attempt == 2));
        b.consumer().ack("g", &new).await.unwrap();
        b.consumer()
            .ack("g", &again[0].receipt_handle)
            .await
            .unwrap();
        b.shutdown().unwrap();
    }
    // After a clean restart only the one never acked comes back.
    let b = Broker::open(config(dir.path())).unwrap();
    let back = b
        .consumer()
        .pop(pop_req("g", "t", 10, 200, 0))
        .await
        .unwrap();
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].attempt, 3);
}

#[tokio::test]
async fn long_poll_pull_wakes_on_send() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = b2
            .consumer()
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
    b.producer()
        .send(Message::new("t", "skip").with_tag("B").into())
        .await
        .unwrap();
    b.producer()
        .send(Message::new("t", "take").with_tag("A").into())
        .await
        .unwrap();
    let (r, took) = waiter.await.unwrap();
    assert!(took < Duration::from_secs(2), "{took:?}");
    let bodies: Vec<_> = r.messages.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies, vec![bytes::Bytes::from("take")]);
    b.consumer()
        .commit_offset("g", "t", 0, r.next_offset)
        .unwrap();
    assert_eq!(b.consumer().committed_offset("g", "t", 0).unwrap(), Some(2));
    // An empty long poll returns at its deadline.
    let started = std::time::Instant::now();
    let r = b
        .consumer()
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

async fn wait_for_delivery(
    b: &Broker,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<(String, i64)> {
    let deadline = std::time::Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n && std::time::Instant::now() < deadline {
        for m in b
            .consumer()
            .pop(pop_req("tg", topic, 32, 60_000, 200))
            .await
            .unwrap()
        {
            got.push((
                String::from_utf8_lossy(&m.message.body).into_owned(),
                crate::store::now_ms(),
            ));
            b.consumer().ack("tg", &m.receipt_handle).await.unwrap();
        }
    }
    got
}

/// Moves `clock` to `at`, runs the workers' next round, and returns what arrives in `topic`
/// (popped and acked by the group `tg`): waits for `expect` messages at most 5 s of real time,
/// or, when `expect` is 0, watches 300 ms for anything arriving too early.
async fn at_time(
    b: &Broker,
    clock: &crate::clock::ManualClock,
    at: i64,
    topic: &str,
    expect: usize,
) -> Vec<String> {
    clock.set(at);
    b.wake_workers();
    let got = match expect {
        0 => wait_for_delivery(b, topic, 1, Duration::from_millis(300)).await,
        n => wait_for_delivery(b, topic, n, Duration::from_secs(5)).await,
    };
    got.into_iter().map(|(body, _)| body).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_levels_and_timed_messages_arrive_on_time_and_survive_restart() {
    use crate::clock::ManualClock;
    use std::sync::Arc;
    // Time is an input: the broker's clock is moved by hand, so "on time" is exact (not
    // before, at once when due) and the test waits for no wall-clock delay.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.timer.delay_levels = "300ms 600ms".into();
    cfg.timer.persist_interval_ms = 50;
    let t0: i64 = 1_700_000_000_000;
    let clock = ManualClock::new(t0);
    {
        let b = Broker::open_with_clock(cfg.clone(), Arc::new(clock.clone())).unwrap();
        b.topics()
            .create(TopicConfig::new("d", 2).with_type(crate::MessageType::Delay))
            .unwrap();
        let send = |m: Message| {
            let b = b.clone();
            async move { b.producer().send(m.into()).await }
        };
        let r1 = send(Message::new("d", "level1").with_delay_level(1))
            .await
            .unwrap();
        assert_eq!(r1.deliver_at_ms, Some(t0 + 300));
        send(Message::new("d", "level2").with_delay_level(2))
            .await
            .unwrap();
        send(Message::new("d", "timed").with_deliver_at(t0 + 900))
            .await
            .unwrap();
        send(Message::new("d", "past").with_deliver_at(t0 - 10_000))
            .await
            .unwrap();
        let late = send(Message::new("d", "late").with_deliver_at(t0 + 1500))
            .await
            .unwrap();
        let cancelled = send(Message::new("d", "cancelled").with_deliver_at(t0 + 1200))
            .await
            .unwrap();
        b.scheduler().cancel(&cancelled.message_id).await.unwrap();
        assert!(b.scheduler().cancel("nope").await.is_err());
        // Scheduled messages are found by id under their real topic.
        let m = b.queries().by_id(&late.message_id).await.unwrap();
        assert_eq!(m.topic, "d");
        // Bad input.
        assert!(matches!(
            send(Message::new("d", "x").with_delay_level(0)).await,
            Err(Error::IllegalDelayLevel { .. })
        ));
        assert!(matches!(
            send(Message::new("d", "x").with_delay_level(3)).await,
            Err(Error::IllegalDeliveryTime { .. }) | Err(Error::IllegalDelayLevel { .. })
        ));
        assert!(matches!(
            send(Message::new("d", "x").with_deliver_at(t0 + 41 * 86_400_000)).await,
            Err(Error::IllegalDeliveryTime { .. })
        ));
        // A time in the past delivers at once; nothing else before its time.
        assert_eq!(at_time(&b, &clock, t0, "d", 1).await, vec!["past"]);
        assert!(at_time(&b, &clock, t0 + 299, "d", 0).await.is_empty());
        assert_eq!(at_time(&b, &clock, t0 + 300, "d", 1).await, vec!["level1"]);
        assert!(at_time(&b, &clock, t0 + 599, "d", 0).await.is_empty());
        assert_eq!(at_time(&b, &clock, t0 + 600, "d", 1).await, vec!["level2"]);
        assert_eq!(at_time(&b, &clock, t0 + 900, "d", 1).await, vec!["timed"]);
        b.shutdown().unwrap();
    }
    // "late" is pending across a restart; "cancelled" never comes.
    let b = Broker::open_with_clock(cfg, Arc::new(clock.clone())).unwrap();
    assert!(at_time(&b, &clock, t0 + 1499, "d", 0).await.is_empty());
    assert_eq!(at_time(&b, &clock, t0 + 1500, "d", 1).await, vec!["late"]);
    assert!(at_time(&b, &clock, t0 + 60_000, "d", 0).await.is_empty());
}

/// Moves `clock` to `at`, wakes the workers and pops one message of `t` for group `g`
/// (invisible for 1 s of the broker's clock), waiting at most `wait_ms` of real time.
async fn pop_at(
    b: &Broker,
    clock: &crate::clock::ManualClock,
    at: i64,
    wait_ms: u64,
) -> Vec<crate::api::PoppedMessage> {
    clock.set(at);
    b.wake_workers();
    b.consumer()
        .pop(pop_req("g", "t", 1, 1000, wait_ms))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_come_when_the_invisible_time_ends_then_dead_letter_once_and_resend() {
    use crate::clock::ManualClock;
    use std::sync::Arc;
    // Time is an input: each boundary is checked exactly (a ms before: nothing; at it: the
    // retry), on the broker's clock.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.consumer.retry_backoff = "0s 300ms".into();
    let t0: i64 = 1_700_000_000_000;
    let clock = ManualClock::new(t0);
    let b = Broker::open_with_clock(cfg, Arc::new(clock.clone())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let mut g = GroupConfig::new("g");
    g.max_delivery_attempts = 3;
    b.groups().create(g).unwrap();
    let sent = b
        .producer()
        .send(
            Message::new("t", "poison")
                .with_key("k1")
                .with_property("p", "v")
                .into(),
        )
        .await
        .unwrap();
    let check = |got: &[crate::api::PoppedMessage], attempt: u32| {
        assert_eq!(got.len(), 1, "attempt {attempt}");
        let m = &got[0];
        assert_eq!(m.message.topic, "t", "retries look like the original topic");
        assert_eq!(m.message.message_id, sent.message_id);
        assert_eq!(m.message.keys, vec!["k1".to_string()]);
        assert_eq!(m.message.properties.get("p").map(String::as_str), Some("v"));
        assert!(!m.message.properties.contains_key(retry::PROP_RETRY_TOPIC));
        assert_eq!(m.attempt, attempt);
    };
    check(&pop_at(&b, &clock, t0, 0).await, 1);
    // Not acknowledged: receivable again exactly when its invisible time ends — no backoff on
    // top (the invisible time was the backoff), and a waiting long poll is woken for it.
    assert!(pop_at(&b, &clock, t0 + 999, 200).await.is_empty());
    let second = pop_at(&b, &clock, t0 + 1000, 5000).await;
    check(&second, 2);
    // Nacked without a delay: the backoff of its attempt (300 ms).
    b.consumer()
        .nack("g", &second[0].receipt_handle, None)
        .await
        .unwrap();
    assert!(pop_at(&b, &clock, t0 + 1299, 200).await.is_empty());
    check(&pop_at(&b, &clock, t0 + 1300, 5000).await, 3);
    // After the third expiry: in the DLQ exactly once (moved by the pop that found it
    // expired), never delivered again.
    assert!(pop_at(&b, &clock, t0 + 2300, 200).await.is_empty());
    let dlq = b.dead_letters().list("g", 0, 10).await.unwrap().messages;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].message_id, sent.message_id);
    assert_eq!(dlq[0].reconsume_times, 3);
    assert_eq!(
        dlq[0]
            .properties
            .get(retry::PROP_RETRY_TOPIC)
            .map(String::as_str),
        Some("t")
    );
    assert!(b
        .consumer()
        .pop(pop_req("g", "t", 1, 100, 500))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.dead_letters()
            .list("g", 0, 10)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    // Found by id (newest copy: the dead letter) and by key in the DLQ topic.
    assert_eq!(
        b.queries().by_id(&sent.message_id).await.unwrap().topic,
        retry::dlq_topic("g")
    );
    let by_key = b
        .queries()
        .by_key(&retry::dlq_topic("g"), "k1", 0, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);
    // Resend: an unknown id is refused and resends nothing; then the real one comes back fresh.
    assert!(matches!(
        b.dead_letters()
            .resend(
                "g",
                retry::DlqSelection::Ids(vec![sent.message_id.clone(), "nope".into()])
            )
            .await,
        Err(Error::MessageNotFound(_))
    ));
    assert_eq!(
        b.dead_letters()
            .resend("g", retry::DlqSelection::Ids(vec![sent.message_id.clone()]))
            .await
            .unwrap(),
        1
    );
    let back = b
        .consumer()
        .pop(pop_req("g", "t", 1, 100, 2000))
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].attempt, 1);
    b.consumer()
        .ack("g", &back[0].receipt_handle)
        .await
        .unwrap();
    let trace = b.queries().trace(&sent.message_id).await.unwrap();
    let kinds: Vec<_> = trace.iter().map(|e| e.kind).collect();
    use crate::api::TraceKind::*;
    assert_eq!(kinds[0], Stored);
    assert!(
        kinds.contains(&Retry) && kinds.contains(&DeadLettered),
        "{kinds:?}"
    );
    assert_eq!(*kinds.last().unwrap(), Stored, "resent");
    assert!(matches!(
        b.queries().trace("nope").await,
        Err(Error::MessageNotFound(_))
    ));
    b.dead_letters().purge("g").unwrap();
    assert!(b
        .dead_letters()
        .list("g", 0, 10)
        .await
        .unwrap()
        .messages
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_with_a_delay_waits_exactly_that_long() {
    use crate::clock::ManualClock;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let t0: i64 = 1_700_000_000_000;
    let clock = ManualClock::new(t0);
    let b = Broker::open_with_clock(config(dir.path()), Arc::new(clock.clone())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    b.producer()
        .send(Message::new("t", "later").into())
        .await
        .unwrap();
    let first = pop_at(&b, &clock, t0, 0).await;
    b.consumer()
        .nack("g", &first[0].receipt_handle, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(pop_at(&b, &clock, t0 + 4999, 200).await.is_empty());
    let again = pop_at(&b, &clock, t0 + 5000, 5000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (&again[0].message.body[..], again[0].attempt),
        (&b"later"[..], 2)
    );
}

#[tokio::test]
async fn nack_retries_at_once_and_send_back_uses_the_group_retry_topic() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    b.producer()
        .send(Message::new("t", "a").into())
        .await
        .unwrap();
    let first = b
        .consumer()
        .pop(pop_req("g", "t", 1, 60_000, 0))
        .await
        .unwrap();
    b.consumer()
        .nack("g", &first[0].receipt_handle, None)
        .await
        .unwrap();
    assert!(
        b.consumer()
            .nack("g", &first[0].receipt_handle, None)
            .await
            .is_err(),
        "handle is spent"
    );
    let again = b
        .consumer()
        .pop(pop_req("g", "t", 1, 60_000, 2000))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    b.consumer()
        .ack("g", &again[0].receipt_handle)
        .await
        .unwrap();
    // Classic pull consumer: send back, then pull %RETRY%g.
    b.consumer().send_back("g", "t", 0, 0, None).await.unwrap();
    let r = b
        .consumer()
        .pull(&retry::group_retry_topic("g"), 0, 0, 10)
        .await
        .unwrap();
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].reconsume_times, 1);
    assert!(matches!(
        b.consumer().send_back("g", "t", 0, 99, None).await,
        Err(Error::MessageNotFound(_))
    ));
    // Users cannot create or write system-managed topics.
    assert!(b.topics().create(TopicConfig::new("%DLQ%x", 1)).is_err());
    assert!(b
        .producer()
        .send(Message::new(retry::group_retry_topic("g"), "x").into())
        .await
        .is_err());
}

struct Answer(
    transaction::CheckResult,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
);

impl transaction::TransactionChecker for Answer {
    fn check(&self, _half: transaction::HalfMessage) -> transaction::CheckFuture {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let r = self.0;
        Box::pin(async move { r })
    }
}

async fn drain(b: &Broker, topic: &str, wait_ms: u64) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let batch = b
            .consumer()
            .pop(pop_req("tx-consumer", topic, 32, 60_000, wait_ms))
            .await
            .unwrap();
        if batch.is_empty() {
            return got;
        }
        for m in batch {
            got.push(String::from_utf8_lossy(&m.message.body).into_owned());
            b.consumer()
                .ack("tx-consumer", &m.receipt_handle)
                .await
                .unwrap();
        }
    }
}

/// Moves the clock to `at`, wakes the workers and waits (at most 5 s of real time) until
/// `calls` reaches `want`; when `want` is the current count it watches 200 ms for a check-back
/// that comes too early.
async fn check_back_at(
    b: Broker,
    clock: crate::clock::ManualClock,
    t0: i64,
    at: i64,
    calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    want: u32,
) {
    use std::sync::atomic::Ordering;
    clock.set(at);
    b.wake_workers();
    let early_watch = calls.load(Ordering::SeqCst) == want;
    let deadline = std::time::Instant::now()
        + if early_watch {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
    while std::time::Instant::now() < deadline
        && (early_watch || calls.load(Ordering::SeqCst) < want)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        want,
        "check-backs at t0 + {} ms",
        at - t0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_rollback_check_back_and_restart() {
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use transaction::{CheckResult, Resolution};
    // Check-backs run on the broker's clock: each one is checked at its exact due time.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.transaction.check_first_ms = 6_000;
    cfg.transaction.check_interval_ms = 60_000;
    cfg.transaction.max_checks = 3;
    let t0: i64 = 1_700_000_000_000;
    let clock = ManualClock::new(t0);
    let check_at = |b: &Broker, at: i64, calls: &Arc<AtomicU32>, want: u32| {
        check_back_at(b.clone(), clock.clone(), t0, at, calls.clone(), want)
    };
    let pending_id;
    {
        let b = Broker::open_with_clock(cfg.clone(), Arc::new(clock.clone())).unwrap();
        b.topics()
            .create(TopicConfig::new("t", 2).with_type(crate::MessageType::Transaction))
            .unwrap();
        let c = b
            .transactions()
            .send_half(Message::new("t", "commit").into(), "pg")
            .await
            .unwrap();
        let r = b
            .transactions()
            .send_half(Message::new("t", "rollback").into(), "pg")
            .await
            .unwrap();
        assert!(drain(&b, "t", 100).await.is_empty(), "halves are invisible");
        let ctx = c.transaction_id.clone().unwrap();
        b.transactions()
            .end(&ctx, Resolution::Commit)
            .await
            .unwrap();
        for _ in 0..2 {
            assert!(matches!(
                b.transactions().end(&ctx, Resolution::Commit).await,
                Err(Error::TransactionResolved {
                    committed: true,
                    ..
                })
            ));
        }
        b.transactions()
            .end(r.transaction_id.as_deref().unwrap(), Resolution::Rollback)
            .await
            .unwrap();
        assert!(matches!(
            b.transactions().end("nope", Resolution::Commit).await,
            Err(Error::InvalidTransactionId(_))
        ));
        assert_eq!(drain(&b, "t", 300).await, vec!["commit"]);
        assert_eq!(b.queries().by_id(&c.message_id).await.unwrap().topic, "t");
        // Unknown answers until the maximum: checked first after 6 s, then every 60 s;
        // discarded and recorded after the third.
        let calls = Arc::new(AtomicU32::new(0));
        b.transactions().register_checker(
            "pg-unknown",
            Arc::new(Answer(CheckResult::Unknown, calls.clone())),
        );
        let u = b
            .transactions()
            .send_half(Message::new("t", "unknown").into(), "pg-unknown")
            .await
            .unwrap();
        check_at(&b, t0 + 5_999, &calls, 0).await;
        check_at(&b, t0 + 6_000, &calls, 1).await;
        check_at(&b, t0 + 65_999, &calls, 1).await;
        check_at(&b, t0 + 66_000, &calls, 2).await;
        check_at(&b, t0 + 126_000, &calls, 3).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b.transactions().discarded().is_empty() && std::time::Instant::now() < deadline {
            clock.advance(Duration::from_secs(60));
            b.wake_workers();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let d = b.transactions().discarded();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].transaction_id, u.transaction_id.clone().unwrap());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "no check after the maximum"
        );
        // A half left pending across a restart (no checker registered yet).
        pending_id = b
            .transactions()
            .send_half(Message::new("t", "after-restart").into(), "pg-late")
            .await
            .unwrap();
        b.shutdown().unwrap();
    }
    let b = Broker::open_with_clock(cfg, Arc::new(clock.clone())).unwrap();
    assert_eq!(b.transactions().pending(), 1);
    let calls = Arc::new(AtomicU32::new(0));
    b.transactions().register_checker(
        "pg-late",
        Arc::new(Answer(
            CheckResult::Resolve(Resolution::Commit),
            calls.clone(),
        )),
    );
    // Checked (and committed by the answer) once its first check is due.
    let now = crate::clock::Clock::now_ms(&clock);
    check_at(&b, now + 6_000, &calls, 1).await;
    let got = {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.is_empty() && std::time::Instant::now() < deadline {
            got = drain(&b, "t", 200).await;
        }
        got
    };
    assert_eq!(got, vec!["after-restart"]);
    assert_eq!(b.transactions().pending(), 0);
    assert!(matches!(
        b.transactions()
            .end(
                pending_id.transaction_id.as_deref().unwrap(),
                Resolution::Commit
            )
            .await,
        Err(Error::TransactionResolved {
            committed: true,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_retried_without_a_polling_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::new(1_700_000_000_000);
    let b =
        Broker::open_with_clock(config(dir.path()), std::sync::Arc::new(clock.clone())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let sent = b
        .producer()
        .send(Message::new("t", "a").into())
        .await
        .unwrap();
    assert_eq!(
        b.consumer()
            .pop(pop_req("g", "t", 1, 100, 0))
            .await
            .unwrap()
            .len(),
        1
    );
    let id = sent.message_id.clone();
    let kinds = |b: Broker| {
        let id = id.clone();
        async move {
            b.queries()
                .trace(&id)
                .await
                .unwrap()
                .iter()
                .map(|e| e.kind)
                .collect::<Vec<_>>()
        }
    };
    // Still invisible: the reviver leaves it alone.
    b.wake_workers();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(kinds(b.clone()).await, vec![crate::api::TraceKind::Stored]);
    // Nobody pops again: once the clock passes its invisible time, the reviver moves it to the
    // retry topic on its own.
    clock.advance(Duration::from_millis(101));
    b.wake_workers();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        seen = kinds(b.clone()).await;
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen,
        vec![crate::api::TraceKind::Stored, crate::api::TraceKind::Retry]
    );
}

#[tokio::test]
async fn dead_letter_moves_a_popped_message_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let sent = b
        .producer()
        .send(Message::new("t", "a").into())
        .await
        .unwrap();
    let got = b
        .consumer()
        .pop(pop_req("g", "t", 1, 100, 0))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attempt, 1);
    b.consumer()
        .dead_letter("g", &got[0].receipt_handle)
        .await
        .unwrap();
    // The handle is spent, the message sits in the DLQ and is not delivered again.
    assert!(b.consumer().ack("g", &got[0].receipt_handle).await.is_err());
    assert!(b
        .consumer()
        .dead_letter("g", &got[0].receipt_handle)
        .await
        .is_err());
    assert!(b.consumer().dead_letter("g", "garbled").await.is_err());
    let dlq = b.dead_letters().list("g", 0, 10).await.unwrap().messages;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].message_id, sent.message_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b
        .consumer()
        .pop(pop_req("g", "t", 1, 100, 0))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn pop_stops_at_the_byte_budget_and_a_big_first_message_comes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.consumer.max_pop_bytes = 2500;
    let b = Broker::open(c).unwrap();
    // Two queues: the budget is shared by every queue of one pop.
    b.topics().create(TopicConfig::new("t", 2)).unwrap();
    for i in 0..6 {
        b.producer()
            .send(
                Message::new("t", vec![b'x'; 1000])
                    .with_key(format!("k{i}"))
                    .into(),
            )
            .await
            .unwrap();
    }
    b.producer()
        .send(Message::new("t", vec![b'y'; 5000]).into())
        .await
        .unwrap();
    let mut sizes = Vec::new();
    let mut seen = 0;
    for _ in 0..10 {
        let got = b
            .consumer()
            .pop(pop_req("g", "t", 32, 60_000, 0))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        let bytes: usize = got.iter().map(|m| m.message.body.len()).sum();
        assert!(
            bytes <= 2500 || got.len() == 1,
            "{} messages of {bytes} bytes in one pop",
            got.len()
        );
        seen += got.len();
        sizes.push(got.len());
    }
    // Every message delivered exactly once, two ~1 KiB records per pop at most.
    assert_eq!(seen, 7, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 2), "{sizes:?}");
    b.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_message_may_ask_for_a_later_first_check() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use transaction::{CheckResult, PROP_CHECK_IMMUNITY_SECS};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.transaction.check_first_ms = 100;
    cfg.transaction.check_interval_ms = 100;
    let b = Broker::open(cfg).unwrap();
    b.topics()
        .create(TopicConfig::new("t", 1).with_type(crate::MessageType::Transaction))
        .unwrap();
    let late = std::sync::Arc::new(AtomicU32::new(0));
    let early = std::sync::Arc::new(AtomicU32::new(0));
    b.transactions().register_checker(
        "pg-late",
        std::sync::Arc::new(Answer(
            CheckResult::Resolve(transaction::Resolution::Commit),
            late.clone(),
        )),
    );
    b.transactions().register_checker(
        "pg-early",
        std::sync::Arc::new(Answer(
            CheckResult::Resolve(transaction::Resolution::Commit),
            early.clone(),
        )),
    );
    let sent = std::time::Instant::now();
    b.transactions()
        .send_half(
            Message::new("t", "late")
                .with_property(PROP_CHECK_IMMUNITY_SECS, "2")
                .into(),
            "pg-late",
        )
        .await
        .unwrap();
    b.transactions()
        .send_half(Message::new("t", "early").into(), "pg-early")
        .await
        .unwrap();
    let deadline = sent + Duration::from_secs(10);
    while late.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_late = sent.elapsed();
    assert_eq!(late.load(Ordering::SeqCst), 1, "checked back within 10 s");
    assert!(first_late >= Duration::from_secs(2), "{first_late:?}");
    assert_eq!(
        early.load(Ordering::SeqCst),
        1,
        "the default still applies to others"
    );
    b.shutdown().unwrap();
}

#[tokio::test]
async fn pull_stops_at_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.consumer.max_pop_bytes = 2500;
    let b = Broker::open(c).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    for _ in 0..5 {
        b.producer()
            .send(Message::new("t", vec![b'x'; 1000]).into())
            .await
            .unwrap();
    }
    let mut offset = 0;
    let mut got = 0;
    while got < 5 {
        let r = b
            .consumer()
            .pull_group(GroupPullRequest {
                group: "g".into(),
                topic: "t".into(),
                queue_id: 0,
                offset,
                max: 32,
                filter: None,
                wait: Duration::ZERO,
            })
            .await
            .unwrap();
        assert!(
            !r.messages.is_empty() && r.messages.len() <= 2,
            "{}",
            r.messages.len()
        );
        assert_eq!(r.messages[0].queue_offset, offset, "nothing skipped");
        got += r.messages.len();
        offset = r.next_offset;
    }
    assert_eq!(offset, 5);
    b.shutdown().unwrap();
}

/// Time is an input: with a manual clock, invisibility and delays are tested by moving the
/// clock, not by sleeping.
mod manual_clock {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn open(dir: &std::path::Path, clock: &ManualClock) -> Broker {
        let b = Broker::open_with_clock(config(dir), Arc::new(clock.clone())).unwrap();
        b.topics()
            .create(TopicConfig::new("t", 1).with_type(crate::MessageType::Mixed))
            .unwrap();
        b
    }

    #[tokio::test]
    async fn an_unacked_message_returns_when_the_clock_passes_its_invisible_time() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_700_000_000_000);
        let b = open(dir.path(), &clock);
        b.producer()
            .send(Message::new("t", "once").into())
            .await
            .unwrap();
        let first = b
            .consumer()
            .pop(pop_req("g", "t", 1, 30_000, 0))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempt, 1);
        assert_eq!(first[0].invisible_until_ms, 1_700_000_030_000);
        clock.advance(Duration::from_millis(29_999));
        assert!(b
            .consumer()
            .pop(pop_req("g", "t", 1, 30_000, 0))
            .await
            .unwrap()
            .is_empty());
        clock.advance(Duration::from_millis(2));
        // The expired message moves to the group's retry topic and is popped from there (the
        // long poll wakes on its arrival; nothing waits for wall-clock time to pass).
        let again = b
            .consumer()
            .pop(pop_req("g", "t", 1, 30_000, 10_000))
            .await
            .unwrap();
        assert_eq!(
            again.len(),
            1,
            "redelivered once the clock passed the invisible time"
        );
        assert_eq!(again[0].attempt, 2);
        assert_eq!(again[0].message.message_id, first[0].message.message_id);
        // The old handle is stale; the new one acks.
        assert!(b
            .consumer()
            .ack("g", &first[0].receipt_handle)
            .await
            .is_err());
        b.consumer()
            .ack("g", &again[0].receipt_handle)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_timed_message_is_delivered_when_the_clock_reaches_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_700_000_000_000);
        let b = open(dir.path(), &clock);
        let at = clock.now_ms() + 3_600_000;
        let receipt = b
            .producer()
            .send(Message::new("t", "later").with_deliver_at(at).into())
            .await
            .unwrap();
        assert_eq!(receipt.deliver_at_ms, Some(at));
        b.wake_workers();
        assert!(b
            .consumer()
            .pop(pop_req("g", "t", 1, 30_000, 0))
            .await
            .unwrap()
            .is_empty());
        let listed = b.scheduler().list(0, 10).await.unwrap();
        assert_eq!(listed.messages.len(), 1, "waiting for its time");
        clock.advance(Duration::from_secs(3_600));
        b.wake_workers();
        // The timer worker delivers it now; the long poll wakes on its arrival.
        let got = b
            .consumer()
            .pop(pop_req("g", "t", 1, 30_000, 10_000))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].message.body[..], b"later");
        assert_eq!(b.scheduler().pending(), 0);
    }
}

#[tokio::test]
async fn topic_and_group_tables_of_an_earlier_version_are_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("config");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("topics.json"),
        r#"{"topics":[{"name":"old-orders","queue_count":3}]}"#,
    )
    .unwrap();
    std::fs::write(
        meta.join("groups.json"),
        r#"{"groups":[{"name":"old-group"}]}"#,
    )
    .unwrap();
    {
        let b = Broker::open(config(dir.path())).unwrap();
        assert_eq!(b.topics().config("old-orders").unwrap().queue_count, 3);
        assert!(b.groups().get("old-group").is_ok());
        assert!(!meta.join("topics.json").exists(), "imported, then removed");
        assert!(!meta.join("groups.json").exists());
        b.topics().create(TopicConfig::new("new", 1)).unwrap();
        b.topics().delete("old-orders").unwrap();
        b.shutdown().unwrap();
    }
    // The KV store is the table now: changes after the import survive a restart.
    let b = Broker::open(config(dir.path())).unwrap();
    assert!(b.topics().config("old-orders").is_err());
    assert_eq!(b.topics().config("new").unwrap().queue_count, 1);
    assert!(b.groups().get("old-group").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_topics_of_different_groups_and_topics_never_collide() {
    use crate::clock::ManualClock;
    use std::sync::Arc;
    // Group `a` on topic `b_c` and group `a_b` on topic `c` once shared `%RETRY%a_b_c`.
    let dir = tempfile::tempdir().unwrap();
    let t0: i64 = 1_700_000_000_000;
    let clock = ManualClock::new(t0);
    let b = Broker::open_with_clock(config(dir.path()), Arc::new(clock.clone())).unwrap();
    assert_ne!(
        retry::retry_topic("a", "b_c"),
        retry::retry_topic("a_b", "c")
    );
    let pairs = [("a", "b_c"), ("a_b", "c")];
    for (group, topic) in pairs {
        b.topics().create(TopicConfig::new(topic, 1)).unwrap();
        b.producer()
            .send(Message::new(topic, format!("for {group}")).into())
            .await
            .unwrap();
        let got = b
            .consumer()
            .pop(pop_req(group, topic, 1, 1000, 0))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
    }
    // Both expire and are retried; each group gets back only its own message.
    clock.set(t0 + 1000);
    b.wake_workers();
    for (group, topic) in pairs {
        let mut bodies = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while bodies.is_empty() && std::time::Instant::now() < deadline {
            for m in b
                .consumer()
                .pop(pop_req(group, topic, 8, 60_000, 500))
                .await
                .unwrap()
            {
                assert_eq!(m.attempt, 2);
                bodies.push(String::from_utf8_lossy(&m.message.body).into_owned());
            }
        }
        assert_eq!(bodies, vec![format!("for {group}")], "group {group}");
        assert!(b
            .consumer()
            .pop(pop_req(group, topic, 8, 60_000, 200))
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn retries_an_earlier_version_stored_under_the_old_name_are_still_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let sent = b
        .producer()
        .send(Message::new("t", "old retry").into())
        .await
        .unwrap();
    let g = b.resolve_group("g").unwrap();
    // What an earlier version left: a retry copy in `%RETRY%g_t`.
    let legacy = retry::legacy_retry_topic("g", "t");
    assert_eq!(legacy, "%RETRY%g_t");
    b.ensure_internal_topic(&legacy).unwrap();
    let m = b.queries().by_id(&sent.message_id).await.unwrap();
    b.move_message(&g, m, 1, false, legacy, Some(0))
        .await
        .unwrap();
    let first = b
        .consumer()
        .pop(pop_req("g", "t", 8, 60_000, 2000))
        .await
        .unwrap();
    let mut bodies: Vec<(String, u32)> = first
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(&m.message.body).into_owned(),
                m.attempt,
            )
        })
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        vec![("old retry".into(), 1), ("old retry".into(), 2)],
        "the original and its old retry copy"
    );
    let retried = first.iter().find(|m| m.attempt == 2).unwrap();
    assert_eq!(retried.message.topic, "t");
}
