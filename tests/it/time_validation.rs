//! Bad input to the time-semantics half of the API: every refusal has its typed error (variant
//! and `kind()`) and writes nothing; the accepted edge cases behave as documented.
//!
//! - Delay level 0 or beyond the configured list → `IllegalDelayLevel` (InvalidArgument), also
//!   for `send_back`.
//! - A delivery time in the past → accepted and delivered at once (no `deliver_at_ms`); one
//!   more than `timer.max_delay_ms` ahead → `IllegalDeliveryTime` (InvalidArgument), one just
//!   inside → scheduled.
//! - `end_transaction` of an unknown id → `InvalidTransactionId` (InvalidArgument); of a
//!   resolved one → `TransactionResolved` (Conflict).
//! - `dlq_resend` of an id not in the DLQ → `MessageNotFound` (NotFound); DLQ calls for an
//!   unknown group → `GroupNotFound`.
//! - `cancel_scheduled` of a delivered, an unscheduled or an unknown id → `MessageNotFound`.
//! - `nack` with a garbled handle → `InvalidReceiptHandle`.
//! - Configuration: empty or zero delay levels, an unparsable retry backoff → refused at open.

use std::time::Duration;

use rocketgate_core::DlqSelection;
use rocketgate_core::Resolution;
use rocketgate_core::{Broker, Error, ErrorKind, FlushMode, Message, TopicConfig};
use rocketgate_tests::time;

use crate::support;

const TOPIC: &str = "time-bad";

/// Expects `r` to be an error matching `check` of `kind`, and the CommitLog unchanged since
/// `before`.
fn refused<T: std::fmt::Debug>(
    broker: &Broker,
    what: &str,
    before: rocketgate_core::LogOffsets,
    r: rocketgate_core::Result<T>,
    kind: ErrorKind,
    check: impl Fn(&Error) -> bool,
) {
    match r {
        Ok(v) => panic!("{what}: accepted ({v:?})"),
        Err(e) => {
            assert!(check(&e), "{what}: wrong error {e:?}");
            assert_eq!(e.kind(), kind, "{what}: kind of {e:?}");
        }
    }
    assert_eq!(
        broker.storage().log_offsets().end,
        before.end,
        "{what}: wrote something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_bad_input_is_refused_with_typed_errors() {
    let dir = support::memory_tempdir();
    let mut config = time::config(dir.path(), FlushMode::Async);
    config.timer.max_delay_ms = 60_000;
    let broker = support::open(&config);
    broker
        .topics()
        .create(TopicConfig::new(TOPIC, 2).with_type(rocketgate_core::MessageType::Mixed))
        .unwrap();
    let m = || Message::new(TOPIC, "x");

    // Delay levels: 1..=2 are valid.
    for (level, max) in [(0, 2), (3, 2), (u32::MAX, 2)] {
        let before = broker.storage().log_offsets();
        let r = support::send(&broker, m().with_delay_level(level)).await;
        refused(
            &broker,
            &format!("delay level {level}"),
            before,
            r,
            ErrorKind::InvalidArgument,
            |e| matches!(e, Error::IllegalDelayLevel { got, max: m } if *got == level && *m == max),
        );
    }

    // Delivery times.
    let now = support::now_ms();
    let before = broker.storage().log_offsets();
    let r = support::send(&broker, m().with_deliver_at(now + 60_000 + 5_000)).await;
    refused(
        &broker,
        "beyond max_delay_ms",
        before,
        r,
        ErrorKind::InvalidArgument,
        |e| {
            matches!(
                e,
                Error::IllegalDeliveryTime {
                    max_delay_ms: 60_000,
                    ..
                }
            )
        },
    );
    let before = broker.storage().log_offsets();
    let r = support::send(&broker, m().with_deliver_at(i64::MAX)).await;
    refused(
        &broker,
        "deliver at i64::MAX",
        before,
        r,
        ErrorKind::InvalidArgument,
        |e| matches!(e, Error::IllegalDeliveryTime { .. }),
    );
    let inside = support::send_ok(&broker, m().with_deliver_at(now + 55_000)).await;
    assert_eq!(inside.deliver_at_ms, Some(now + 55_000));
    for past in [now - 10_000, 0, i64::MIN] {
        let r = support::send_ok(
            &broker,
            Message::new(TOPIC, format!("past {past}")).with_deliver_at(past),
        )
        .await;
        assert_eq!(r.deliver_at_ms, None, "a time in the past delivers at once");
        let found = support::drain(&broker, TOPIC, r.queue_id).await;
        assert!(
            found.iter().any(|s| s.message_id == r.message_id),
            "a message timed in the past is visible at once"
        );
    }

    // cancel_scheduled.
    let plain = support::send_ok(&broker, m()).await;
    for (what, id) in [
        ("an unscheduled message", plain.message_id.as_str()),
        ("an unknown id", "0123456789ABCDEF0123456789ABCDEF00"),
    ] {
        let before = broker.storage().log_offsets();
        let r = broker.scheduler().cancel(id).await;
        refused(
            &broker,
            &format!("cancel {what}"),
            before,
            r,
            ErrorKind::NotFound,
            |e| matches!(e, Error::MessageNotFound(_)),
        );
    }
    let soon = support::send_ok(&broker, m().with_deliver_at(support::now_ms() + 200)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !support::drain(&broker, TOPIC, soon.queue_id)
        .await
        .iter()
        .any(|s| s.message_id == soon.message_id)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "timed message not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = broker.scheduler().cancel(&soon.message_id).await;
    assert!(
        matches!(&r, Err(Error::MessageNotFound(_))),
        "cancel delivered: {r:?}"
    );
    assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);

    // Transactions.
    let before = broker.storage().log_offsets();
    let r = broker
        .transactions()
        .end("0123456789ABCDEF0123456789ABCDEF00", Resolution::Commit)
        .await;
    refused(
        &broker,
        "end an unknown transaction",
        before,
        r,
        ErrorKind::InvalidArgument,
        |e| matches!(e, Error::InvalidTransactionId(_)),
    );
    let before = broker.storage().log_offsets();
    let r = broker.transactions().end("", Resolution::Rollback).await;
    refused(
        &broker,
        "end an empty transaction id",
        before,
        r,
        ErrorKind::InvalidArgument,
        |e| matches!(e, Error::InvalidTransactionId(_)),
    );
    let half = broker
        .transactions()
        .send_half(m().into(), "bad-pg")
        .await
        .unwrap();
    let tx = half.transaction_id.unwrap();
    broker
        .transactions()
        .end(&tx, Resolution::Rollback)
        .await
        .unwrap();
    let before = broker.storage().log_offsets();
    let r = broker.transactions().end(&tx, Resolution::Commit).await;
    refused(
        &broker,
        "commit a rolled-back transaction",
        before,
        r,
        ErrorKind::Conflict,
        |e| {
            matches!(
                e,
                Error::TransactionResolved {
                    committed: false,
                    ..
                }
            )
        },
    );

    // Retries and dead letters.
    broker
        .groups()
        .create(rocketgate_core::GroupConfig::new("bad-group"))
        .unwrap();
    let before = broker.storage().log_offsets();
    let r = broker
        .dead_letters()
        .resend(
            "bad-group",
            DlqSelection::Ids(vec![plain.message_id.clone()]),
        )
        .await;
    refused(
        &broker,
        "resend an id that is not a dead letter",
        before,
        r,
        ErrorKind::NotFound,
        |e| matches!(e, Error::MessageNotFound(id) if *id == plain.message_id),
    );
    let before = broker.storage().log_offsets();
    let r = broker
        .dead_letters()
        .resend("no-such-group", DlqSelection::All)
        .await;
    refused(
        &broker,
        "resend for an unknown group",
        before,
        r,
        ErrorKind::NotFound,
        |e| matches!(e, Error::GroupNotFound(_)),
    );
    let r = broker.dead_letters().list("no-such-group", 0, 10).await;
    assert!(matches!(r, Err(Error::GroupNotFound(_))), "{r:?}");
    let r = broker.dead_letters().purge("no-such-group");
    assert!(matches!(r, Err(Error::GroupNotFound(_))), "{r:?}");
    let before = broker.storage().log_offsets();
    let r = broker
        .consumer()
        .send_back(
            "bad-group",
            TOPIC,
            plain.queue_id,
            plain.queue_offset.unwrap(),
            Some(3),
        )
        .await;
    refused(
        &broker,
        "send_back with delay level 3",
        before,
        r,
        ErrorKind::InvalidArgument,
        |e| matches!(e, Error::IllegalDelayLevel { got: 3, max: 2 }),
    );
    let before = broker.storage().log_offsets();
    let r = broker.consumer().nack("bad-group", "garbage", None).await;
    refused(
        &broker,
        "nack with a garbled handle",
        before,
        r,
        ErrorKind::InvalidArgument,
        |e| matches!(e, Error::InvalidReceiptHandle(_)),
    );
    broker.shutdown().unwrap();
}

#[test]
fn time_bad_configuration_is_refused_at_open() {
    let dir = support::memory_tempdir();
    let base = time::config(dir.path(), FlushMode::Async);
    let mut cases = Vec::new();
    for levels in ["", "0s", "1s 0ms", "1x", "s"] {
        let mut c = base.clone();
        c.timer.delay_levels = levels.into();
        cases.push((format!("delay_levels {levels:?}"), c, "timer.delay_levels"));
    }
    for backoff in ["", "soon", "1s -1s"] {
        let mut c = base.clone();
        c.consumer.retry_backoff = backoff.into();
        cases.push((
            format!("retry_backoff {backoff:?}"),
            c,
            "consumer.retry_backoff",
        ));
    }
    let mut c = base.clone();
    c.timer.persist_interval_ms = 0;
    cases.push((
        "timer.persist_interval_ms 0".into(),
        c,
        "timer.persist_interval_ms",
    ));
    for (what, c, key) in cases {
        match Broker::open(c) {
            Err(Error::Config(e)) => {
                assert_eq!(e.key, key, "{what}");
                assert_eq!(Error::Config(e).kind(), ErrorKind::InvalidArgument);
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}
