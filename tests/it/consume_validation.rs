//! Bad input to the consuming half of the `Broker` API: unknown groups (with
//! `auto_create_groups = false`) and topics, illegal group names and client ids, filter
//! expressions that do not parse, invisible durations, batch sizes and waits out of range, and
//! queue ids the topic does not have. Each is refused with its typed error (variant and
//! `kind()`), before any waiting, and without creating a group.

use std::time::{Duration, Instant};

use rocketgate_core::{
    Error, ErrorKind, FilterExpression, GroupConfig, Message, Permission, TopicConfig,
};

use crate::support;

/// `refused!(what, call, kind, pattern)`: `call` (an expression, `.await` included) must fail
/// at once (nothing waits; bounded generously by `support::PROMPTLY`) with an error matching
/// `pattern`, of kind `kind`.
macro_rules! refused {
    ($what:expr, $call:expr, $kind:expr, $($pattern:tt)+) => {{
        let what: String = $what.into();
        let t = Instant::now();
        let r = support::within(support::CALL_TIMEOUT, &what, async { $call }).await;
        let took = t.elapsed();
        match r {
            Ok(v) => panic!("{what}: accepted: {v:?}"),
            Err(e) => {
                assert!(matches!(e, $($pattern)+), "{what}: wrong error {e:?}");
                assert_eq!(e.kind(), $kind, "{what}: kind of {e:?}");
            }
        }
        assert!(took < support::PROMPTLY, "{what}: refused only after {took:?}");
    }};
}

#[tokio::test]
async fn consume_validation_bad_input_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::consume_config(dir.path());
    config.consumer.auto_create_groups = false;
    config.consumer.max_wait_ms = 5_000;
    config.consumer.max_pop_batch = 32;
    config.limits.max_batch = 64;
    let c = config.consumer.clone();
    let max_batch = config.limits.max_batch;
    let broker = support::open(&config);
    broker.topics().create(TopicConfig::new("v", 4)).unwrap();
    let mut closed = TopicConfig::new("unreadable", 1);
    closed.permission = Permission {
        read: false,
        write: true,
    };
    broker.topics().create(closed).unwrap();
    broker.groups().create(GroupConfig::new("known")).unwrap();
    support::send_ok(&broker, Message::new("v", "x")).await;
    let groups_before = broker.groups().list();

    let ms = Duration::from_millis;
    let pop = |group: &str, topic: &str| support::pop_req(group, topic, 4, ms(1000), ms(0));
    let pull = |group: &str, topic: &str, q: u32| support::pull_req(group, topic, q, 0, 4, ms(0));
    let all = FilterExpression::tag("*");
    let b = &broker;
    let (nf, invalid) = (ErrorKind::NotFound, ErrorKind::InvalidArgument);

    // Unknown group (no auto-creation).
    let g = "ghost";
    let ghost = |e: &Error| matches!(e, Error::GroupNotFound(g) if g == "ghost");
    refused!("pop", b.consumer().pop(pop(g, "v")).await, nf, ref e if ghost(e));
    refused!("pull_group", b.consumer().pull_group(pull(g, "v", 0)).await, nf, ref e if ghost(e));
    refused!("commit_offset", b.consumer().commit_offset(g, "v", 0, 1), nf, ref e if ghost(e));
    refused!("committed_offset", b.consumer().committed_offset(g, "v", 0), nf, ref e if ghost(e));
    refused!("subscribe", b.groups().subscribe(g, "v", all.clone()), nf, ref e if ghost(e));
    refused!("heartbeat", b.consumer().heartbeat(g, "c1"), nf, ref e if ghost(e));
    refused!("assignment", b.consumer().assignment(g, "v", "c1"), nf, ref e if ghost(e));
    refused!("lag", b.consumer().lag(g, "v"), nf, ref e if ghost(e));
    let reset = b.consumer().reset_offset_to_time(g, "v", 0);
    refused!("reset_offset_to_time", reset.await, nf, ref e if ghost(e));
    refused!("group", b.groups().get(g), nf, ref e if ghost(e));
    refused!("delete_group", b.groups().delete(g), nf, ref e if ghost(e));

    // Unknown topic.
    let (g, t) = ("known", "nope");
    let nope = |e: &Error| matches!(e, Error::TopicNotFound(t) if t == "nope");
    refused!("pop", b.consumer().pop(pop(g, t)).await, nf, ref e if nope(e));
    refused!("pull_group", b.consumer().pull_group(pull(g, t, 0)).await, nf, ref e if nope(e));
    refused!("commit_offset", b.consumer().commit_offset(g, t, 0, 1), nf, ref e if nope(e));
    refused!("committed_offset", b.consumer().committed_offset(g, t, 0), nf, ref e if nope(e));
    refused!("subscribe", b.groups().subscribe(g, t, all.clone()), nf, ref e if nope(e));
    refused!("assignment", b.consumer().assignment(g, t, "c1"), nf, ref e if nope(e));
    refused!("lag", b.consumer().lag(g, t), nf, ref e if nope(e));
    refused!("reset_offset_to_time", b.consumer().reset_offset_to_time(g, t, 0).await, nf, ref e if nope(e));
    let mut sub = GroupConfig::new("subscribed");
    sub.subscriptions.insert(t.into(), all.clone());
    refused!("create_group subscribed to it", b.groups().create(sub), nf, ref e if nope(e));

    // Queue ids out of range.
    let q4 = |e: &Error| matches!(e, Error::QueueNotFound { queue_id: 4, .. });
    refused!("pull_group q4", b.consumer().pull_group(pull(g, "v", 4)).await, nf, ref e if q4(e));
    refused!("commit_offset q4", b.consumer().commit_offset(g, "v", 4, 0), nf, ref e if q4(e));
    refused!("committed_offset q4", b.consumer().committed_offset(g, "v", 4), nf, ref e if q4(e));
    refused!(
        "pull_group u32::MAX",
        b.consumer().pull_group(pull(g, "v", u32::MAX)).await,
        nf,
        Error::QueueNotFound {
            queue_id: u32::MAX,
            ..
        }
    );

    // Illegal group names and client ids.
    for name in ["", "a b", "a/b", &"g".repeat(128)] {
        let field = |e: &Error| {
            matches!(
                e,
                Error::IllegalField {
                    field: rocketgate_core::Field::ConsumerGroup,
                    ..
                }
            )
        };
        let what = |call: &str| format!("{call}, group {name:?}");
        refused!(what("pop"), b.consumer().pop(pop(name, "v")).await, invalid, ref e if field(e));
        let create = b.groups().create(GroupConfig::new(name));
        refused!(what("create_group"), create, invalid, ref e if field(e));
        let commit = b.consumer().commit_offset(name, "v", 0, 0);
        refused!(what("commit_offset"), commit, invalid, ref e if field(e));
        refused!(what("heartbeat"), b.consumer().heartbeat(name, "c1"), invalid, ref e if field(e));
    }
    for id in ["", "a\nb", &"c".repeat(257)] {
        refused!(
            format!("heartbeat, client id {id:?}"),
            b.consumer().heartbeat(g, id),
            invalid,
            Error::IllegalField {
                field: rocketgate_core::Field::ClientId,
                ..
            }
        );
    }

    // Filter expressions that do not parse.
    let filters = [
        FilterExpression::tag("A ||"),
        FilterExpression::tag("|| A"),
        FilterExpression::tag("A || || B"),
        FilterExpression::tag("A B"),
        FilterExpression::tag("x".repeat(5000)),
        FilterExpression::sql("a >"),
        FilterExpression::sql("a = "),
        FilterExpression::sql("AND"),
        FilterExpression::sql("(a > 1"),
        FilterExpression::sql("a > 1 b"),
        FilterExpression::sql(""),
    ];
    for f in filters {
        let text: String = f.expression.chars().take(20).collect();
        let what = |call: &str| format!("{call}, filter {:?} `{text}`", f.kind);
        let mut p = pop(g, "v");
        p.filter = Some(f.clone());
        refused!(
            what("pop"),
            b.consumer().pop(p).await,
            invalid,
            Error::IllegalFilter(_)
        );
        let mut q = pull(g, "v", 0);
        q.filter = Some(f.clone());
        refused!(
            what("pull_group"),
            b.consumer().pull_group(q).await,
            invalid,
            Error::IllegalFilter(_)
        );
        refused!(
            what("subscribe"),
            b.groups().subscribe(g, "v", f.clone()),
            invalid,
            Error::IllegalFilter(_)
        );
        let mut group = GroupConfig::new("filtered");
        group.subscriptions.insert("v".into(), f.clone());
        refused!(
            what("create_group"),
            b.groups().create(group),
            invalid,
            Error::IllegalFilter(_)
        );
    }

    // Invisible durations: 0, below the minimum (100 ms here), over the maximum (12 h).
    let (min, max) = (c.min_invisible_ms, c.max_invisible_ms);
    for got in [0, min - 1, max + 1] {
        let mut p = pop(g, "v");
        p.invisible = ms(got);
        refused!(
            format!("pop, invisible {got} ms"),
            b.consumer().pop(p).await,
            invalid,
            Error::IllegalInvisibleTime { got_ms, min_ms, max_ms }
                if got_ms == got && min_ms == min && max_ms == max
        );
    }
    let popped = support::pop(b, pop(g, "v")).await;
    assert_eq!(popped.len(), 1);
    let h = popped[0].receipt_handle.as_str();
    for got in [0, max + 1] {
        refused!(
            format!("change_invisible_duration, {got} ms"),
            b.consumer().change_invisible_duration(g, h, ms(got)),
            invalid,
            Error::IllegalInvisibleTime { got_ms, .. } if got_ms == got
        );
    }
    // The refused changes left the handle current.
    support::ack(b, g, h).await;

    // Batch sizes.
    for got in [0, c.max_pop_batch + 1, usize::MAX] {
        let mut p = pop(g, "v");
        p.max = got;
        refused!(
            format!("pop, batch {got}"),
            b.consumer().pop(p).await,
            invalid,
            Error::IllegalBatchSize { got: n, max: m } if n == got && m == c.max_pop_batch
        );
    }
    for got in [0, max_batch + 1] {
        let mut q = pull(g, "v", 0);
        q.max = got;
        refused!(
            format!("pull_group, batch {got}"),
            b.consumer().pull_group(q).await,
            invalid,
            Error::IllegalBatchSize { got: n, max: m } if n == got && m == max_batch
        );
    }
    // The limits themselves are fine.
    let mut p = pop(g, "v");
    p.max = c.max_pop_batch;
    assert!(support::pop(b, p).await.is_empty());
    let mut q = pull(g, "v", 0);
    q.max = max_batch;
    assert_eq!(support::pull_group(b, q).await.messages.len(), 1);

    // Waits over `max_wait_ms` (5 s here).
    for got in [c.max_wait_ms + 1, 3_600_000] {
        let mut p = pop(g, "v");
        p.wait = ms(got);
        let mut q = pull(g, "v", 0);
        q.wait = ms(got);
        refused!(
            format!("pop, wait {got} ms"),
            b.consumer().pop(p).await,
            invalid,
            Error::IllegalWait { got_ms, max_ms: 5000 } if got_ms == got
        );
        refused!(
            format!("pull_group, wait {got} ms"),
            b.consumer().pull_group(q).await,
            invalid,
            Error::IllegalWait { got_ms, max_ms: 5000 } if got_ms == got
        );
    }

    // An unreadable topic.
    let pd = ErrorKind::PermissionDenied;
    let denied = |e: &Error| {
        matches!(
            e,
            Error::PermissionDenied {
                what: "readable",
                ..
            }
        )
    };
    refused!("pop, unreadable", b.consumer().pop(pop(g, "unreadable")).await, pd, ref e if denied(e));
    let q = pull(g, "unreadable", 0);
    refused!("pull_group, unreadable", b.consumer().pull_group(q).await, pd, ref e if denied(e));

    // Nothing above created a group.
    assert_eq!(broker.groups().list(), groups_before);
    broker.shutdown().unwrap();
}

/// With `auto_create_groups` on (the default), the first use creates the group.
#[tokio::test]
async fn consume_validation_groups_are_auto_created_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::open(&support::consume_config(dir.path()));
    broker.topics().create(TopicConfig::new("auto", 1)).unwrap();
    assert!(broker.groups().list().is_empty());
    let got = support::pop(
        &broker,
        support::pop_req(
            "new-group",
            "auto",
            1,
            Duration::from_secs(1),
            Duration::ZERO,
        ),
    )
    .await;
    assert!(got.is_empty());
    let names: Vec<String> = broker.groups().list().into_iter().map(|g| g.name).collect();
    assert_eq!(names, vec!["new-group"]);
    assert_eq!(
        broker
            .groups()
            .get("new-group")
            .unwrap()
            .max_delivery_attempts,
        16
    );
    let e = broker
        .groups()
        .create(GroupConfig::new("new-group"))
        .unwrap_err();
    assert!(
        matches!(&e, Error::GroupExists(g) if g == "new-group"),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    broker.shutdown().unwrap();
}
