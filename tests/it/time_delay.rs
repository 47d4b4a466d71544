//! Delay levels and timed delivery (docs/time.md) on the real store, with unit-scale time:
//! `timer.delay_levels = "1s 2s"` ([`rocketgate_tests::time::config`]).
//!
//! - On time: a message of level 1, one of level 2 and one timed 2.5 s ahead arrive no earlier
//!   than due and at most [`MAX_LATENESS_MS`] after, measured by a consumer that long-polls with
//!   `pop` (the lateness of each is printed). Before it is due a message is invisible to pulls,
//!   found by id under its target topic, traced as `Scheduled`, counted by
//!   `scheduled_pending`; once delivered it is the message that was sent (same id, key, tag,
//!   properties, body, target queue), traced `Scheduled → Stored`, delivered exactly once, and
//!   can no longer be cancelled. A cancelled message is never delivered.
//! - Clean restart: the same three are sent (and a fourth, cancelled) and the broker shut down
//!   at once; it is reopened after level 1 fell due. The level-1 message (due while the broker
//!   was down) arrives right after the start (within [`MAX_LATENESS_MS`] of `open` returning),
//!   the other two on time, each once, the cancelled one never; a second restart delivers
//!   nothing again.
//! - `kill -9`: a child process (`rg-time-child schedule`, SYNC_FLUSH) schedules the three and
//!   is killed with SIGKILL while they are pending; the store is opened in this process after
//!   level 1 fell due, with the same expectations.
//!
//! Regression tests of former bugs (fixed): the pending count no longer counts cancelled
//! messages (`…scheduled_pending_does_not_count_cancelled_messages`); a clean shutdown in the
//! middle of a backlog due in one millisecond does not deliver the delivered part again after the
//! restart (`…backlog_cut_by_a_clean_shutdown_is_not_delivered_twice`).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use rocketgate_core::api::TraceKind;
use rocketgate_core::{Broker, Error, ErrorKind, FlushMode, Message, PoppedMessage, TopicConfig};
use rocketgate_tests::time::{self, Line, DELAY_LEVELS_MS, DELAY_TOPIC, QUEUES, TIMED_AFTER_MS};

use crate::support;

/// Most a delayed or timed message may arrive after it is due (and, for one that fell due while
/// the broker was down, after the broker is open again).
pub const MAX_LATENESS_MS: i64 = 1000;

/// What a test expects of one scheduled message.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Due time from the receipt.
    pub deliver_at_ms: i64,
    /// Target queue from the receipt.
    pub queue_id: u32,
    /// The message as sent.
    pub message: Message,
    /// A label for the output.
    pub label: String,
}

/// One delivery seen by [`consume_scheduled`].
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When the pop returned it (ms).
    pub popped_ms: i64,
    /// What was popped.
    pub popped: PoppedMessage,
}

/// Pops `topic` for `group` with long polling until every expected id arrived (failing after
/// `limit`), acknowledging everything; fails on an unexpected or repeated id and if anything
/// arrives in the 300 ms after the last. Checks every arrival against what was sent.
pub async fn consume_scheduled(
    broker: &Broker,
    group: &str,
    topic: &str,
    expected: &BTreeMap<String, Expected>,
    limit: Duration,
) -> BTreeMap<String, Arrival> {
    let deadline = Instant::now() + limit;
    let mut got: BTreeMap<String, Arrival> = BTreeMap::new();
    while got.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "not delivered within {limit:?}: {:?}",
            expected
                .iter()
                .filter(|(id, _)| !got.contains_key(*id))
                .map(|(_, e)| &e.label)
                .collect::<Vec<_>>()
        );
        let wait = left.min(Duration::from_secs(5));
        let batch = support::pop(
            broker,
            support::pop_req(group, topic, 16, Duration::from_secs(30), wait),
        )
        .await;
        let popped_ms = support::now_ms();
        for p in batch {
            let id = p.message.message_id.clone();
            let Some(e) = expected.get(&id) else {
                panic!("unexpected delivery {id}: {p:?}");
            };
            assert!(!got.contains_key(&id), "{}: delivered twice", e.label);
            check_delivered(&p, e);
            support::ack(broker, group, &p.receipt_handle).await;
            got.insert(
                id,
                Arrival {
                    popped_ms,
                    popped: p,
                },
            );
        }
    }
    let more = support::pop(
        broker,
        support::pop_req(
            group,
            topic,
            16,
            Duration::from_secs(30),
            Duration::from_millis(300),
        ),
    )
    .await;
    assert!(more.is_empty(), "delivered again: {more:?}");
    got
}

/// A delivered scheduled message is the message that was sent, in its target queue.
fn check_delivered(p: &PoppedMessage, e: &Expected) {
    let m = &p.message;
    let what = &e.label;
    assert_eq!(m.topic, e.message.topic, "{what}: topic");
    assert_eq!(m.queue_id, e.queue_id, "{what}: queue");
    assert_eq!(m.body, e.message.body, "{what}: body");
    assert_eq!(m.keys, e.message.keys, "{what}: keys");
    assert_eq!(m.tag, e.message.tag, "{what}: tag");
    assert_eq!(m.properties, e.message.properties, "{what}: properties");
    assert_eq!(m.reconsume_times, 0, "{what}: reconsume times");
    assert_eq!(p.attempt, 1, "{what}: attempt");
    assert!(
        m.store_timestamp_ms >= e.deliver_at_ms,
        "{what}: stored in its topic at {} before it was due at {}",
        m.store_timestamp_ms,
        e.deliver_at_ms
    );
}

/// Asserts "no earlier than due, at most [`MAX_LATENESS_MS`] after `max(due, not_before)`" for
/// each arrival and prints the figures. `not_before` is when the broker (re)opened.
fn check_lateness(
    what: &str,
    expected: &BTreeMap<String, Expected>,
    got: &BTreeMap<String, Arrival>,
    not_before: i64,
) {
    for (id, e) in expected {
        let a = &got[id];
        let late = a.popped_ms - e.deliver_at_ms;
        let after_open = a.popped_ms - not_before;
        println!(
            "{what}: {}: due {} ms after the reference, popped {late} ms after due{}",
            e.label,
            e.deliver_at_ms - not_before,
            if e.deliver_at_ms < not_before {
                format!(" (fell due while down; {after_open} ms after the broker opened)")
            } else {
                String::new()
            }
        );
        assert!(late >= 0, "{what}: {} popped {late} ms early", e.label);
        let allowed_from = e.deliver_at_ms.max(not_before);
        assert!(
            a.popped_ms - allowed_from <= MAX_LATENESS_MS,
            "{what}: {} popped {} ms after it was due (or the broker opened)",
            e.label,
            a.popped_ms - allowed_from
        );
    }
}

/// Sends the three scheduled messages of [`time::scheduled_message`]: level 1, level 2, timed.
async fn send_three(broker: &Broker) -> BTreeMap<String, Expected> {
    let mut out = BTreeMap::new();
    for n in 0..3u32 {
        let before = support::now_ms();
        let m = time::scheduled_message(n, before + TIMED_AFTER_MS);
        let r = support::send_ok(broker, m.clone()).await;
        let after = support::now_ms();
        let at = r
            .deliver_at_ms
            .expect("a scheduled message has deliver_at_ms");
        let (lo, hi) = match n {
            0 | 1 => (
                before + DELAY_LEVELS_MS[n as usize],
                after + DELAY_LEVELS_MS[n as usize],
            ),
            _ => (before + TIMED_AFTER_MS, before + TIMED_AFTER_MS),
        };
        assert!(
            (lo..=hi).contains(&at),
            "message {n}: deliver_at {at} not in [{lo}, {hi}]"
        );
        assert!(r.queue_id < QUEUES);
        assert_eq!(r.transaction_id, None);
        out.insert(
            r.message_id.clone(),
            Expected {
                deliver_at_ms: at,
                queue_id: r.queue_id,
                message: m,
                label: label(n),
            },
        );
    }
    out
}

fn label(n: u32) -> String {
    match n {
        0 => "delay level 1 (1 s)".into(),
        1 => "delay level 2 (2 s)".into(),
        _ => format!("timed (+{TIMED_AFTER_MS} ms)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_delay_levels_and_timed_messages_arrive_on_time_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&time::config(dir.path(), FlushMode::Async));
    broker
        .topics()
        .create(
            TopicConfig::new(DELAY_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Delay),
        )
        .unwrap();
    let sent_at = support::now_ms();
    let expected = send_three(&broker).await;

    // Pending: invisible to pulls, found by id under the target topic with the properties it
    // was sent with, traced as scheduled with its due time, counted by `scheduled_pending`
    // (not necessarily at once: the timer thread loads new entries itself).
    let drained_at = support::now_ms();
    for m in support::drain_topic(&broker, DELAY_TOPIC, QUEUES).await {
        let e = &expected[&m.message_id];
        assert!(
            e.deliver_at_ms <= drained_at,
            "{} visible {} ms before it is due",
            e.label,
            e.deliver_at_ms - drained_at
        );
    }
    for (id, e) in &expected {
        let m = broker.queries().by_id(id).await.unwrap();
        assert_eq!(
            (m.topic.as_str(), m.queue_id),
            (DELAY_TOPIC, e.queue_id),
            "{}",
            e.label
        );
        assert_eq!(m.properties, e.message.properties, "{}", e.label);
        assert_eq!(m.keys, e.message.keys, "{}", e.label);
        assert_eq!(m.body, e.message.body, "{}", e.label);
        let trace = broker.queries().trace(id).await.unwrap();
        assert_eq!(trace[0].kind, TraceKind::Scheduled, "{trace:?}");
        assert_eq!(trace[0].topic, DELAY_TOPIC);
        assert_eq!(trace[0].deliver_at_ms, Some(e.deliver_at_ms));
    }
    let immediately = broker.scheduler().pending();
    support::eventually(
        Duration::from_secs(1),
        Duration::from_millis(5),
        "scheduled_pending() counts the 3 pending messages",
        || broker.scheduler().pending() >= 3 || support::now_ms() >= expected_first_due(&expected),
    )
    .await;
    println!(
        "scheduled_pending() right after the sends: {immediately}, a moment later: {}",
        broker.scheduler().pending()
    );

    // A fourth, cancelled before it is due: never delivered; a second cancel finds nothing.
    let cancelled = support::send_ok(
        &broker,
        Message::new(DELAY_TOPIC, "cancelled").with_deliver_at(support::now_ms() + 1500),
    )
    .await;
    within_call(broker.scheduler().cancel(&cancelled.message_id))
        .await
        .unwrap();
    let again = within_call(broker.scheduler().cancel(&cancelled.message_id)).await;
    assert!(
        matches!(again, Err(Error::MessageNotFound(_))),
        "cancel twice: {again:?}"
    );

    let got = consume_scheduled(
        &broker,
        "delay-consumer",
        DELAY_TOPIC,
        &expected,
        Duration::from_secs(10),
    )
    .await;
    check_lateness("on time", &expected, &got, sent_at);
    // The cancelled one was due before the last of the three.
    assert!(cancelled.deliver_at_ms.unwrap() < support::now_ms());
    assert_eq!(broker.scheduler().pending(), 0);
    for (id, e) in &expected {
        let kinds: Vec<TraceKind> = broker
            .queries()
            .trace(id)
            .await
            .unwrap()
            .iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![TraceKind::Scheduled, TraceKind::Stored],
            "{}",
            e.label
        );
        let r = within_call(broker.scheduler().cancel(id)).await;
        assert!(
            matches!(&r, Err(Error::MessageNotFound(_))),
            "cancel after delivery: {r:?}"
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
    }
    // Exactly once in the queues too (pulls see each once, the cancelled one never).
    let all = support::drain_topic(&broker, DELAY_TOPIC, QUEUES).await;
    assert_eq!(all.len(), 3, "{all:?}");
    broker.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_scheduled_messages_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = time::config(dir.path(), FlushMode::Async);
    let expected;
    {
        let broker = support::open(&config);
        broker
            .topics()
            .create(
                TopicConfig::new(DELAY_TOPIC, QUEUES)
                    .with_type(rocketgate_core::MessageType::Delay),
            )
            .unwrap();
        expected = send_three(&broker).await;
        // Cancelled before the restart, due before the last of the three: never delivered.
        let cancelled = support::send_ok(
            &broker,
            Message::new(DELAY_TOPIC, "cancelled").with_deliver_at(support::now_ms() + 1800),
        )
        .await;
        within_call(broker.scheduler().cancel(&cancelled.message_id))
            .await
            .unwrap();
        broker.shutdown().unwrap();
    }
    // Down until level 1 is due.
    let level1 = expected.values().map(|e| e.deliver_at_ms).min().unwrap();
    sleep_until_ms(level1 + 200).await;
    let broker = support::open(&config);
    let opened = support::now_ms();
    let got = consume_scheduled(
        &broker,
        "restart-consumer",
        DELAY_TOPIC,
        &expected,
        Duration::from_secs(10),
    )
    .await;
    check_lateness("clean restart", &expected, &got, opened);
    assert_eq!(broker.scheduler().pending(), 0);
    broker.shutdown().unwrap();
    drop(broker);

    // Nothing is delivered a second time after another restart.
    let broker = support::open(&config);
    let again = support::pop(
        &broker,
        support::pop_req(
            "restart-consumer",
            DELAY_TOPIC,
            16,
            Duration::from_secs(30),
            Duration::from_millis(1500),
        ),
    )
    .await;
    assert!(again.is_empty(), "delivered again: {again:?}");
    assert_eq!(broker.scheduler().pending(), 0);
    assert_eq!(
        support::drain_topic(&broker, DELAY_TOPIC, QUEUES)
            .await
            .len(),
        3
    );
    broker.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_scheduled_messages_survive_kill9_of_the_scheduling_process() {
    let dir = support::memory_tempdir();
    let (guard, reader) = support::spawn_child(
        env!("CARGO_BIN_EXE_rg-time-child"),
        &["schedule".into(), dir.path().display().to_string()],
    );
    let mut expected = BTreeMap::new();
    loop {
        let (_, line) = reader
            .next_within(Duration::from_secs(60))
            .expect("the schedule child ended without READY");
        match line.parse::<Line>() {
            Ok(Line::Ready) => break,
            Ok(Line::Scheduled {
                n,
                id,
                deliver_at_ms,
                queue_id,
            }) => {
                expected.insert(
                    id,
                    Expected {
                        deliver_at_ms,
                        queue_id,
                        message: time::scheduled_message(n, deliver_at_ms),
                        label: label(n),
                    },
                );
            }
            _ => panic!("the schedule child printed {line:?}"),
        }
    }
    assert_eq!(expected.len(), 3);
    let killed_at = support::now_ms();
    let status = guard.kill();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let rest = reader.finish();
    assert!(rest.is_empty(), "after READY: {rest:?}");
    let first_due = expected.values().map(|e| e.deliver_at_ms).min().unwrap();
    assert!(
        killed_at < first_due,
        "the child was killed {} ms after the first message was due: too slow to test \
         pending messages",
        killed_at - first_due
    );

    sleep_until_ms(first_due + 200).await;
    let broker = support::open(&time::config(dir.path(), FlushMode::Sync));
    let opened = support::now_ms();
    assert!(broker.storage().recovery_report().after_crash);
    let got = consume_scheduled(
        &broker,
        "kill-consumer",
        DELAY_TOPIC,
        &expected,
        Duration::from_secs(10),
    )
    .await;
    check_lateness("after kill -9", &expected, &got, opened);
    for (id, e) in &expected {
        // The timed message keeps what the child set; its deliver time is only in the receipt.
        assert_eq!(got[id].popped.message.keys, e.message.keys);
    }
    assert_eq!(broker.scheduler().pending(), 0);
    broker.shutdown().unwrap();
}

fn expected_first_due(expected: &BTreeMap<String, Expected>) -> i64 {
    expected.values().map(|e| e.deliver_at_ms).min().unwrap()
}

async fn sleep_until_ms(at_ms: i64) {
    let left = at_ms - support::now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

async fn within_call<T>(fut: impl std::future::Future<Output = T>) -> T {
    support::within(support::CALL_TIMEOUT, "broker call", fut).await
}

/// `scheduled_pending()` is documented as "scheduled messages not yet delivered": a cancelled
/// message will never be delivered and must not be counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_scheduled_pending_does_not_count_cancelled_messages() {
    let dir = support::memory_tempdir();
    let broker = support::open(&time::config(dir.path(), FlushMode::Async));
    broker
        .topics()
        .create(
            TopicConfig::new(DELAY_TOPIC, QUEUES).with_type(rocketgate_core::MessageType::Delay),
        )
        .unwrap();
    let keep = support::send_ok(
        &broker,
        Message::new(DELAY_TOPIC, "kept").with_deliver_at(support::now_ms() + 5000),
    )
    .await;
    let cancel = support::send_ok(
        &broker,
        Message::new(DELAY_TOPIC, "cancelled").with_deliver_at(support::now_ms() + 5000),
    )
    .await;
    support::eventually(
        Duration::from_secs(2),
        Duration::from_millis(5),
        "both scheduled messages counted",
        || broker.scheduler().pending() == 2,
    )
    .await;
    within_call(broker.scheduler().cancel(&cancel.message_id))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let counted_right = support::now_ms() + 1000;
    while support::now_ms() < counted_right {
        seen.push(broker.scheduler().pending());
        if seen.last() == Some(&1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.last(),
        Some(&1),
        "scheduled_pending() during the second after cancelling one of two pending messages: \
         {seen:?}"
    );
    assert!(support::now_ms() < keep.deliver_at_ms.unwrap());
    broker.shutdown().unwrap();
}

/// A backlog of messages all due in the same millisecond (a producer scheduling a batch "at
/// 09:00:00.000"), falling due while the broker is down, is delivered in rounds after the start.
/// A clean shutdown in the middle of that backlog must not make the already delivered part be
/// delivered again after the next start.
///
/// Mechanism (core/src/broker/timer.rs): after a round the watermark becomes
/// `min(now, next due - 1)`; with the rest of the backlog due at the same millisecond `T` it
/// stays at `T - 1`, and at the next start every entry with a time `> T - 1` — the delivered
/// ones included — is loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_backlog_cut_by_a_clean_shutdown_is_not_delivered_twice() {
    const N: usize = 12_000;
    let dir = support::memory_tempdir();
    let config = time::config(dir.path(), FlushMode::Async);
    let due;
    {
        let broker = support::open(&config);
        broker
            .topics()
            .create(TopicConfig::new(DELAY_TOPIC, 1).with_type(rocketgate_core::MessageType::Delay))
            .unwrap();
        due = support::now_ms() + 4000;
        for i in 0..N {
            support::send_ok(
                &broker,
                Message::new(DELAY_TOPIC, i.to_string()).with_deliver_at(due),
            )
            .await;
        }
        assert!(support::now_ms() < due, "sending took too long");
        broker.shutdown().unwrap();
    }
    sleep_until_ms(due + 100).await;
    {
        let broker = support::open(&config);
        // Shut down as soon as the first round has taken its batch out of the schedule: the
        // shutdown lets that round finish, then persists the progress.
        support::eventually(
            Duration::from_secs(10),
            Duration::from_millis(1),
            "the delivery of the backlog starts",
            || broker.scheduler().pending() < N,
        )
        .await;
        broker.shutdown().unwrap();
    }
    let broker = support::open(&config);
    println!(
        "backlog: right after the restart {} of {N} are scheduled (less one round of 4096 if the \
         timer already took it)",
        broker.scheduler().pending()
    );
    // Everything delivered, then a moment more for duplicates.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "only {} delivered", all.len());
        all = support::drain(&broker, DELAY_TOPIC, 0).await;
        let distinct: std::collections::BTreeSet<&str> =
            all.iter().map(|m| m.message_id.as_str()).collect();
        if distinct.len() == N && broker.scheduler().pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A window in which nothing more may happen: the sleep is the check's subject, not a
    // synchronization.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = support::drain(&broker, DELAY_TOPIC, 0).await;
    assert_eq!(
        all.len(),
        N,
        "the backlog of {N} was delivered {} times in total: {} duplicates after a clean restart",
        all.len(),
        all.len() - N
    );
    broker.shutdown().unwrap();
}
