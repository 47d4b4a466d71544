//! Bad input to the `Broker` API: every refused request gets its typed error (variant and
//! `kind()`), and nothing is written to the CommitLog.

use std::collections::BTreeMap;

use rocketgate_core::{
    Broker, Error, ErrorKind, FlushMode, Message, Permission, QueueSelector, SendRequest,
    StoreError, TopicConfig,
};

use crate::support;

/// Sends `req`, expects an error satisfying `check` with `kind`, and checks nothing was written.
async fn refused(
    broker: &Broker,
    what: &str,
    req: impl Into<SendRequest>,
    kind: ErrorKind,
    check: impl Fn(&Error) -> bool,
) {
    let before = broker.storage().log_offsets();
    match support::send(broker, req).await {
        Ok(r) => panic!("{what}: accepted ({r:?})"),
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

fn msg(topic: &str) -> Message {
    Message::new(topic, "body")
}

#[tokio::test]
async fn bad_input_is_refused_with_typed_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Segments big enough for a maximal (4 MiB) body.
    let config = support::config(dir.path(), 8 << 20, FlushMode::Async);
    let broker = support::open(&config);
    broker.topics().create(TopicConfig::new("ok", 4)).unwrap();
    let seed = support::send_ok(&broker, msg("ok")).await;

    // Topic names.
    let illegal = |e: &Error| matches!(e, Error::IllegalTopic { .. });
    let long = "a".repeat(128);
    for name in ["", long.as_str(), "a b", "a/b", "a.b", "é", "a\0b"] {
        let e = broker
            .topics()
            .create(TopicConfig::new(name, 4))
            .unwrap_err();
        assert!(illegal(&e), "create {name:?}: {e:?}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        refused(
            &broker,
            &format!("send to {name:?}"),
            msg(name),
            ErrorKind::InvalidArgument,
            illegal,
        )
        .await;
        let e = broker.consumer().pull(name, 0, 0, 1).await.unwrap_err();
        assert!(illegal(&e), "pull {name:?}: {e:?}");
    }
    let max_name = "b".repeat(127);
    broker
        .topics()
        .create(TopicConfig::new(max_name.as_str(), 1))
        .unwrap();

    // Queue counts and duplicates.
    for n in [0, 1025] {
        let e = broker
            .topics()
            .create(TopicConfig::new("q", n))
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{n} queues: {e:?}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
    let e = broker
        .topics()
        .create(TopicConfig::new("ok", 2))
        .unwrap_err();
    assert!(matches!(&e, Error::TopicExists(t) if t == "ok"), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        broker
            .topics()
            .describe("ok")
            .await
            .unwrap()
            .config
            .queue_count,
        4
    );

    // Unknown topic.
    let not_found = |e: &Error| matches!(e, Error::TopicNotFound(t) if t == "nope");
    refused(
        &broker,
        "unknown topic",
        msg("nope"),
        ErrorKind::NotFound,
        not_found,
    )
    .await;
    let e = broker.consumer().pull("nope", 0, 0, 1).await.unwrap_err();
    assert!(not_found(&e) && e.kind() == ErrorKind::NotFound, "{e:?}");
    let e = broker.topics().queue_offsets("nope", 0).await.unwrap_err();
    assert!(not_found(&e), "{e:?}");
    let e = broker
        .queries()
        .by_key("nope", "k", 0, i64::MAX, 1)
        .await
        .unwrap_err();
    assert!(not_found(&e), "{e:?}");

    // Body size: the limit itself is fine, one byte more is not.
    let limit = config.limits.max_body_bytes;
    assert_eq!(limit, 4 << 20);
    support::send_ok(&broker, Message::new("ok", vec![1u8; limit])).await;
    refused(
        &broker,
        "body over 4 MiB",
        Message::new("ok", vec![1u8; limit + 1]),
        ErrorKind::InvalidArgument,
        |e| matches!(e, Error::BodyTooLarge { size, max } if *size == limit + 1 && *max == limit),
    )
    .await;

    // Properties.
    let props = |e: &Error| {
        matches!(
            e.reason(),
            rocketgate_core::Reason::PropertiesTooLarge
                | rocketgate_core::Reason::IllegalPropertyKey
        )
    };
    let mut many = msg("ok");
    for i in 0..=128 {
        many = many.with_property(format!("k{i}"), "v");
    }
    refused(
        &broker,
        "129 properties",
        many,
        ErrorKind::InvalidArgument,
        props,
    )
    .await;
    let mut max = msg("ok");
    for i in 0..128 {
        max = max.with_property(format!("k{i}"), "v");
    }
    support::send_ok(&broker, max).await;
    for key in ["UNIQ_KEY", "KEYS", "TAGS", "DELAY", " "] {
        refused(
            &broker,
            &format!("property {key:?}"),
            msg("ok").with_property(key, "v"),
            ErrorKind::InvalidArgument,
            props,
        )
        .await;
    }
    refused(
        &broker,
        "properties over 32 KiB",
        msg("ok").with_property("big", "v".repeat(32 << 10)),
        ErrorKind::InvalidArgument,
        props,
    )
    .await;

    // Other fields.
    let field = |name: rocketgate_core::Field| move |e: &Error| matches!(e, Error::IllegalField { field, .. } if *field == name);
    refused(
        &broker,
        "empty tag",
        msg("ok").with_tag(""),
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::Tag),
    )
    .await;
    refused(
        &broker,
        "tag with ||",
        msg("ok").with_tag("a||b"),
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::Tag),
    )
    .await;
    refused(
        &broker,
        "empty key",
        msg("ok").with_key(""),
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::Key),
    )
    .await;
    refused(
        &broker,
        "key with a control character",
        msg("ok").with_key("a\nb"),
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::Key),
    )
    .await;
    refused(
        &broker,
        "key over 1 KiB",
        msg("ok").with_key("k".repeat(1025)),
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::Key),
    )
    .await;
    let mut keys = msg("ok");
    for i in 0..33 {
        keys = keys.with_key(format!("k{i}"));
    }
    refused(
        &broker,
        "33 keys",
        keys,
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::Key),
    )
    .await;
    refused(
        &broker,
        "empty message group",
        msg("ok").with_group(""),
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::MessageGroup),
    )
    .await;
    let mut empty_id = msg("ok");
    empty_id.message_id = Some(String::new());
    refused(
        &broker,
        "empty message id",
        empty_id,
        ErrorKind::InvalidArgument,
        field(rocketgate_core::Field::MessageId),
    )
    .await;

    // Permissions.
    let mut read_only = TopicConfig::new("read-only", 1);
    read_only.permission = Permission {
        read: true,
        write: false,
    };
    broker.topics().create(read_only).unwrap();
    refused(
        &broker,
        "send to a read-only topic",
        msg("read-only"),
        ErrorKind::PermissionDenied,
        |e| {
            matches!(
                e,
                Error::PermissionDenied {
                    what: "writable",
                    ..
                }
            )
        },
    )
    .await;
    let mut write_only = TopicConfig::new("write-only", 1);
    write_only.permission = Permission {
        read: false,
        write: true,
    };
    broker.topics().create(write_only).unwrap();
    let e = broker
        .consumer()
        .pull("write-only", 0, 0, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::PermissionDenied {
                what: "readable",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    // Queue ids.
    refused(
        &broker,
        "queue 4 of 4",
        SendRequest::new(msg("ok"), QueueSelector::Queue(4)),
        ErrorKind::NotFound,
        |e| matches!(e, Error::QueueNotFound { topic, queue_id: 4 } if topic == "ok"),
    )
    .await;
    let e = broker.consumer().pull("ok", 4, 0, 1).await.unwrap_err();
    assert!(
        matches!(e, Error::QueueNotFound { queue_id: 4, .. }),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = broker
        .topics()
        .queue_offsets("ok", u32::MAX)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::QueueNotFound { .. }), "{e:?}");

    // Batch sizes.
    for max in [0, 1025] {
        let e = broker.consumer().pull("ok", 0, 0, max).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_)),
            "pull max {max}: {e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = broker
            .queries()
            .by_key("ok", "k", 0, i64::MAX, max)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_)),
            "query max {max}: {e:?}"
        );
    }
    assert!(broker.consumer().pull("ok", 0, 0, 1024).await.is_ok());
    let e = broker
        .queries()
        .by_key("ok", "k", 10, 9, 1)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");

    // Lookups of what is not there.
    let e = broker.queries().by_id("0123456789").await.unwrap_err();
    assert!(matches!(e, Error::MessageNotFound(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    for id in [String::new(), "x".repeat(1025)] {
        let e = broker.queries().by_id(&id).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::IllegalField {
                    field: rocketgate_core::Field::MessageId,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    // A record larger than a segment is refused by the store with its own error.
    let small_dir = tempfile::tempdir().unwrap();
    let small = support::open(&support::config(
        small_dir.path(),
        64 * 1024,
        FlushMode::Async,
    ));
    small.topics().create(TopicConfig::new("ok", 1)).unwrap();
    refused(
        &small,
        "record over the segment size",
        Message::new("ok", vec![0u8; 100 * 1024]),
        ErrorKind::InvalidArgument,
        |e| matches!(e, Error::Store(StoreError::RecordTooLarge { .. })),
    )
    .await;
    assert_eq!(
        small.storage().log_offsets(),
        rocketgate_core::LogOffsets::default()
    );

    // Nothing refused reached any queue: only the accepted messages are there.
    let mut counts = BTreeMap::new();
    for q in 0..4 {
        counts.insert(q, support::drain(&broker, "ok", q).await.len());
    }
    assert_eq!(counts.values().sum::<usize>(), 3, "{counts:?}");
    let first = broker.queries().by_id(&seed.message_id).await.unwrap();
    assert_eq!(&first.body[..], b"body");
}

/// The store directory is locked while open: a second open (here in the same process) is
/// refused without touching anything, and the first keeps working.
#[tokio::test]
async fn a_second_open_of_an_open_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config(dir.path(), 64 * 1024, FlushMode::Async);
    let first = support::open(&config);
    first.topics().create(TopicConfig::new("lock", 1)).unwrap();
    let a = support::send_ok(&first, msg("lock")).await;
    match Broker::open(config.clone()) {
        Ok(_) => panic!("a second open of an open store succeeded"),
        Err(e) => {
            assert!(matches!(e, Error::Store(StoreError::Io { .. })), "{e:?}");
        }
    }
    assert!(dir.path().join("abort").exists());
    let b = support::send_ok(&first, msg("lock")).await;
    assert_eq!(b.queue_offset, a.queue_offset.map(|o| o + 1));
    first.shutdown().unwrap();
    drop(first);
    let again = support::open(&config);
    assert!(!again.storage().recovery_report().after_crash);
    assert_eq!(support::drain(&again, "lock", 0).await.len(), 2);
}
