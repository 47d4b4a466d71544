//! MessagingService end to end, producer side: routes and heartbeats, SendMessage and its
//! refusals, FIFO order, delay, transactions and their check-back over Telemetry, and the
//! Telemetry Settings replies. Harness in `messaging_support`; every test stops its server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use messaging_support::*;

#[tokio::test]
async fn route_heartbeat_and_termination() {
    let mut s = start().await;
    let c = &mut s.client;
    let r = bounded(c.query_route(req(pb::QueryRouteRequest {
        topic: res("normal"),
        endpoints: None,
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::Ok);
    assert_eq!(r.message_queues.len(), 4);
    for (i, q) in r.message_queues.iter().enumerate() {
        assert_eq!(q.id, i as i32);
        assert_eq!(q.topic, res("normal"));
        assert_eq!(q.permission, pb::Permission::ReadWrite as i32);
        assert_eq!(q.accept_message_types, vec![pb::MessageType::Normal as i32]);
        let b = q.broker.as_ref().unwrap();
        assert_eq!((b.name.as_str(), b.id), ("broker-a", 0));
        let e = b.endpoints.as_ref().unwrap();
        assert_eq!(e.scheme, pb::AddressScheme::IPv4 as i32);
        assert_eq!(e.addresses[0].host, "127.0.0.1");
        assert_eq!(e.addresses[0].port, i32::from(s.port));
    }
    let r = bounded(c.query_route(req(pb::QueryRouteRequest {
        topic: res("mixed"),
        endpoints: None,
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(r.message_queues[0].accept_message_types.len(), 4);
    for (topic, want) in [
        ("no_such_topic", Code::TopicNotFound),
        ("", Code::IllegalTopic),
        ("a b", Code::IllegalTopic),
    ] {
        let r = bounded(c.query_route(req(pb::QueryRouteRequest {
            topic: res(topic),
            endpoints: None,
        })))
        .await
        .unwrap()
        .into_inner();
        assert_eq!(code(&r.status), want, "{topic}");
        assert!(r.message_queues.is_empty());
    }
    // Missing client id.
    let r = bounded(c.query_route(Request::new(pb::QueryRouteRequest {
        topic: res("normal"),
        endpoints: None,
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::ClientIdRequired);

    let hb = |group: Option<pb::Resource>, t: pb::ClientType| pb::HeartbeatRequest {
        group,
        client_type: t as i32,
    };
    for (r, want) in [
        (hb(None, pb::ClientType::Producer), Code::Ok),
        (hb(res("g1"), pb::ClientType::SimpleConsumer), Code::Ok),
        (
            hb(None, pb::ClientType::SimpleConsumer),
            Code::IllegalConsumerGroup,
        ),
        (
            hb(None, pb::ClientType::Unspecified),
            Code::UnrecognizedClientType,
        ),
    ] {
        let got = bounded(c.heartbeat(req(r))).await.unwrap().into_inner();
        assert_eq!(code(&got.status), want);
    }
    assert_eq!(s.broker.consumer().clients("g1"), vec![CLIENT.to_owned()]);
    for _ in 0..2 {
        let r = bounded(
            c.notify_client_termination(req(pb::NotifyClientTerminationRequest {
                group: res("g1"),
            })),
        )
        .await
        .unwrap()
        .into_inner();
        assert_eq!(code(&r.status), Code::Ok);
    }
    assert!(s.broker.consumer().clients("g1").is_empty());
    s.stop().await;
}

#[tokio::test]
async fn send_refusals_keep_the_connection_usable() {
    let mut s = start().await;
    let c = &mut s.client;
    let with = |f: &dyn Fn(&mut pb::Message)| {
        let mut m = message("normal", "x", pb::MessageType::Normal);
        f(&mut m);
        m
    };
    let cases: Vec<(pb::Message, Code)> = vec![
        (
            with(&|m| {
                m.user_properties.insert("UNIQ_KEY".into(), "v".into());
            }),
            Code::IllegalMessagePropertyKey,
        ),
        (
            with(&|m| {
                m.user_properties.insert(" ".into(), "v".into());
            }),
            Code::IllegalMessagePropertyKey,
        ),
        (
            with(&|m| {
                m.user_properties.insert("__RG_V2_TYPE".into(), "v".into());
            }),
            Code::IllegalMessagePropertyKey,
        ),
        (
            with(&|m| m.system_properties.as_mut().unwrap().tag = Some("a|b".into())),
            Code::IllegalMessageTag,
        ),
        (
            with(&|m| m.system_properties.as_mut().unwrap().keys = vec![" ".into()]),
            Code::IllegalMessageKey,
        ),
        (
            with(&|m| m.system_properties.as_mut().unwrap().message_id = String::new()),
            Code::IllegalMessageId,
        ),
        (
            with(&|m| m.body = vec![0; MAX_BODY + 1]),
            Code::MessageBodyTooLarge,
        ),
        // Above tonic's default 4 MiB decoding limit: still an answer in the body.
        (
            with(&|m| m.body = vec![0; 5 << 20]),
            Code::MessageBodyTooLarge,
        ),
        (
            with(&|m| {
                m.system_properties.as_mut().unwrap().message_type = pb::MessageType::Fifo as i32
            }),
            Code::IllegalMessageGroup,
        ),
        (
            with(&|m| {
                let p = m.system_properties.as_mut().unwrap();
                p.message_type = pb::MessageType::Delay as i32;
                p.delivery_timestamp = Some(now_ts(2 * 3_600_000));
            }),
            Code::IllegalDeliveryTime,
        ),
        (
            with(&|m| {
                let p = m.system_properties.as_mut().unwrap();
                p.message_type = pb::MessageType::Delay as i32;
                p.delivery_timestamp = Some(now_ts(1000));
            }),
            Code::MessagePropertyConflictWithType,
        ),
        (
            with(&|m| m.topic = res("no_such_topic")),
            Code::TopicNotFound,
        ),
        (with(&|m| m.topic = res("")), Code::IllegalTopic),
    ];
    for (m, want) in cases {
        let r = send(c, vec![m.clone()]).await;
        assert_eq!(code(&r.status), want, "{m:?}");
        assert_eq!(r.entries.len(), 1);
        assert_eq!(code(&r.entries[0].status), want);
    }
    // Wrong type for the topic.
    let r = send(c, vec![fifo("f", "G")]).await;
    assert_eq!(code(&r.status), Code::Ok);
    let r = send(c, vec![message("fifo", "n", pb::MessageType::Normal)]).await;
    assert_eq!(code(&r.status), Code::MessagePropertyConflictWithType);
    // Mixed results: one entry each, in order.
    let bad = with(&|m| m.system_properties.as_mut().unwrap().tag = Some("a|b".into()));
    let r = send(
        c,
        vec![message("normal", "ok", pb::MessageType::Normal), bad],
    )
    .await;
    assert_eq!(code(&r.status), Code::MultipleResults);
    assert_eq!(r.entries.len(), 2);
    assert_eq!(code(&r.entries[0].status), Code::Ok);
    assert_eq!(code(&r.entries[1].status), Code::IllegalMessageTag);
    // No client id: every entry refused.
    let r = bounded(c.send_message(Request::new(pb::SendMessageRequest {
        messages: vec![message("normal", "a", pb::MessageType::Normal)],
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::ClientIdRequired);
    assert_eq!(r.entries.len(), 1);
    // Mixed topics accept everything; the connection still works.
    send_ok(c, vec![message("mixed", "a", pb::MessageType::Normal)]).await;
    s.stop().await;
}

#[tokio::test]
async fn topics_take_only_their_message_type() {
    let mut s = start().await;
    let c = &mut s.client;
    let mut delayed = message("normal", "d", pb::MessageType::Delay);
    delayed
        .system_properties
        .as_mut()
        .unwrap()
        .delivery_timestamp = Some(now_ts(60_000));
    let mut grouped = message("normal", "g", pb::MessageType::Unspecified);
    grouped.system_properties.as_mut().unwrap().message_group = Some("G".into());
    let cases = [
        message("tx", "plain into tx", pb::MessageType::Normal),
        message("normal", "half into normal", pb::MessageType::Transaction),
        message("fifo", "no group", pb::MessageType::Unspecified),
        message("delay", "no time", pb::MessageType::Unspecified),
        delayed,
        grouped,
    ];
    for m in cases {
        let r = send(c, vec![m.clone()]).await;
        assert_eq!(
            code(&r.status),
            Code::MessagePropertyConflictWithType,
            "{m:?}"
        );
        let status = r.entries[0].status.as_ref().unwrap();
        assert!(status.message.contains("accepts"), "{}", status.message);
    }
    // What is in its queue answers its offset.
    let e = send_ok(c, vec![message("single", "a", pb::MessageType::Normal)]).await;
    assert_eq!(e[0].offset, 0);
    let e = send_ok(c, vec![message("single", "b", pb::MessageType::Normal)]).await;
    assert_eq!(e[0].offset, 1);
    s.stop().await;
}

#[tokio::test]
async fn the_type_check_can_be_relaxed() {
    let mut s = start_configured(|c| c.limits.topic_message_type_check = false, |_| {}).await;
    let c = &mut s.client;
    send_ok(c, vec![message("tx", "plain", pb::MessageType::Normal)]).await;
    send_ok(
        c,
        vec![message("fifo", "no group", pb::MessageType::Unspecified)],
    )
    .await;
    // Producers are told not to check `accept_message_types` either.
    let (_ptx, mut pin) = telemetry(c, "p@1#0", producer_settings(&["normal"])).await;
    let reply = next_command(&mut pin).await;
    let Some(pb::telemetry_command::Command::Settings(set)) = reply.command else {
        panic!("{reply:?}");
    };
    let Some(pb::settings::PubSub::Publishing(p)) = set.pub_sub else {
        panic!()
    };
    assert!(!p.validate_message_type);
    s.stop().await;
}

#[tokio::test]
async fn fifo_groups_are_delivered_in_order() {
    let mut s = start().await;
    let c = &mut s.client;
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.push(fifo(&format!("G-{i}"), "G"));
        batch.push(fifo(&format!("H-{i}"), "H"));
    }
    send_ok(c, batch).await;
    let mut got_g = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got_g.len() < 5 && Instant::now() < deadline {
        let msgs = receive(c, "fg", "fifo", 32, 10_000, 300).await;
        let mut handles = Vec::new();
        for m in &msgs {
            let p = sys(m);
            assert_eq!(p.message_type, pb::MessageType::Fifo as i32);
            if p.message_group.as_deref() == Some("G") {
                got_g.push(p.message_id.clone());
            }
            handles.push(handle(m));
        }
        if !handles.is_empty() {
            // While unacked, no later message of their groups comes.
            let more = receive(c, "fg", "fifo", 32, 10_000, 100).await;
            assert!(more.is_empty(), "{more:?}");
            assert_eq!(code(&ack(c, "fg", "fifo", &handles).await.status), Code::Ok);
        }
    }
    let want: Vec<_> = (0..5).map(|i| format!("G-{i}")).collect();
    assert_eq!(got_g, want);
    s.stop().await;
}

#[tokio::test]
async fn delayed_messages_arrive_on_time() {
    let mut s = start().await;
    let c = &mut s.client;
    let mut m = message("delay", "d", pb::MessageType::Delay);
    let at = now_ts(1500);
    m.system_properties.as_mut().unwrap().delivery_timestamp = Some(at);
    let e = send_ok(c, vec![m]).await;
    assert_eq!(e[0].offset, -1, "no queue offset until it is due");
    assert!(receive(c, "dg", "delay", 32, 10_000, 200).await.is_empty());
    let started = Instant::now();
    let mut got = Vec::new();
    while got.is_empty() && started.elapsed() < WAIT {
        got = receive(c, "dg", "delay", 32, 10_000, 1000).await;
    }
    assert_eq!(got.len(), 1);
    let now = now_ts(0);
    assert!(
        now.seconds * 1000 + i64::from(now.nanos / 1_000_000)
            >= at.seconds * 1000 + i64::from(at.nanos / 1_000_000) - 50
    );
    let p = sys(&got[0]);
    assert_eq!(p.message_type, pb::MessageType::Delay as i32);
    assert_eq!(p.delivery_timestamp, Some(at));
    s.stop().await;
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let mut s = start().await;
    let c = &mut s.client;
    let e = send_ok(
        c,
        vec![
            message("tx", "t-commit", pb::MessageType::Transaction),
            message("tx", "t-rollback", pb::MessageType::Transaction),
        ],
    )
    .await;
    assert!(e.iter().all(|e| !e.transaction_id.is_empty()));
    assert!(
        e.iter().all(|e| e.offset == -1),
        "no queue offset until committed"
    );
    assert!(receive(c, "tg", "tx", 32, 10_000, 200).await.is_empty());
    use pb::TransactionResolution::{Commit, Rollback, Unspecified};
    use pb::TransactionSource::SourceClient;
    assert_eq!(
        end(
            c,
            "t-commit",
            &e[0].transaction_id,
            Unspecified,
            SourceClient
        )
        .await,
        Code::BadRequest
    );
    assert_eq!(
        end(c, "t-commit", &e[0].transaction_id, Commit, SourceClient).await,
        Code::Ok
    );
    assert_eq!(
        end(c, "t-commit", &e[0].transaction_id, Commit, SourceClient).await,
        Code::Ok
    );
    assert_eq!(
        end(
            c,
            "t-rollback",
            &e[1].transaction_id,
            Rollback,
            SourceClient
        )
        .await,
        Code::Ok
    );
    assert_eq!(
        end(c, "x", "garbled", Commit, SourceClient).await,
        Code::InvalidTransactionId
    );
    assert_eq!(
        end(c, "x", "", Commit, SourceClient).await,
        Code::InvalidTransactionId
    );
    let got = receive(c, "tg", "tx", 32, 10_000, 1000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(sys(&got[0]).message_id, "t-commit");
    assert!(receive(c, "tg", "tx", 32, 10_000, 300).await.is_empty());
    s.stop().await;
}

/// Opens a Telemetry stream as `client_id` and sends `settings`; returns the outbound sender
/// and the inbound stream.

#[tokio::test]
async fn telemetry_settings_replies() {
    let mut s = start().await;
    let c = &mut s.client;
    let (ptx, mut pin) = telemetry(c, "p@1#0", producer_settings(&["normal"])).await;
    let reply = next_command(&mut pin).await;
    assert_eq!(code(&reply.status), Code::Ok);
    let Some(pb::telemetry_command::Command::Settings(set)) = reply.command else {
        panic!("{reply:?}");
    };
    let policy = set.backoff_policy.unwrap();
    assert_eq!(policy.max_attempts, 3);
    assert!(matches!(
        policy.strategy,
        Some(pb::retry_policy::Strategy::ExponentialBackoff(_))
    ));
    let Some(pb::settings::PubSub::Publishing(p)) = set.pub_sub else {
        panic!()
    };
    assert_eq!(p.max_body_size, MAX_BODY as i32);
    assert!(p.validate_message_type);
    assert_eq!(p.topics.len(), 1);

    // Consumer, on two streams of one client id; a Settings without pub_sub is refused and
    // the stream stays open.
    let consumer = pb::Settings {
        client_type: Some(pb::ClientType::SimpleConsumer as i32),
        pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
            group: res("cg"),
            subscriptions: Vec::new(),
            fifo: Some(false),
            receive_batch_size: None,
            long_polling_timeout: dur(40_000),
        })),
        ..Default::default()
    };
    let (ctx1, mut cin1) = telemetry(c, "c@1#0", consumer.clone()).await;
    let (ctx2, mut cin2) = telemetry(c, "c@1#0", consumer.clone()).await;
    for inbound in [&mut cin1, &mut cin2] {
        let reply = next_command(inbound).await;
        assert_eq!(code(&reply.status), Code::Ok);
        let Some(pb::telemetry_command::Command::Settings(set)) = reply.command else {
            panic!("{reply:?}");
        };
        let Some(pb::settings::PubSub::Subscription(sub)) = set.pub_sub else {
            panic!()
        };
        assert_eq!(sub.fifo, Some(false));
        assert_eq!(sub.receive_batch_size, Some(32));
        assert_eq!(sub.long_polling_timeout, dur(POLL_CAP_MS));
        let policy = set.backoff_policy.unwrap();
        assert_eq!(policy.max_attempts, 16);
        let Some(pb::retry_policy::Strategy::CustomizedBackoff(b)) = policy.strategy else {
            panic!()
        };
        assert_eq!(b.next, vec![dur(0).unwrap()]);
    }
    ctx1.send(pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(
            pb::Settings::default(),
        )),
    })
    .await
    .unwrap();
    assert_eq!(
        code(&next_command(&mut cin1).await.status),
        Code::BadRequest
    );
    ctx1.send(pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(consumer)),
    })
    .await
    .unwrap();
    assert_eq!(code(&next_command(&mut cin1).await.status), Code::Ok);
    // A FIFO group is reported as such once it consumed a FIFO topic.
    receive(c, "cg-fifo", "fifo", 1, 10_000, 100).await;
    let fifo_consumer = pb::Settings {
        pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
            group: res("cg-fifo"),
            ..Default::default()
        })),
        ..Default::default()
    };
    ctx2.send(pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(fifo_consumer)),
    })
    .await
    .unwrap();
    let reply = next_command(&mut cin2).await;
    let Some(pb::telemetry_command::Command::Settings(pb::Settings {
        pub_sub: Some(pb::settings::PubSub::Subscription(sub)),
        ..
    })) = reply.command
    else {
        panic!("{reply:?}");
    };
    assert_eq!(sub.fifo, Some(true));
    // Without a client id: one status frame, then the end of the stream.
    let (_tx, rx) = mpsc::channel::<pb::TelemetryCommand>(1);
    let mut anonymous = bounded(c.telemetry(Request::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        code(&next_command(&mut anonymous).await.status),
        Code::ClientIdRequired
    );
    assert!(bounded(anonymous.next()).await.is_none());
    // Half-close: the server ends its side.
    drop(ptx);
    assert!(bounded(pin.next()).await.is_none());
    drop((ctx1, ctx2));
    s.stop().await;
}

#[tokio::test]
async fn orphaned_transactions_are_checked_back_over_telemetry() {
    let mut s = start().await;
    let mut producer = s.client.clone();
    let (_ptx, mut pin) = telemetry(&mut producer, "p@1#0", producer_settings(&["tx"])).await;
    assert_eq!(code(&next_command(&mut pin).await.status), Code::Ok);
    let c = &mut s.client;
    let e = send_ok(
        c,
        vec![message("tx", "orphan", pb::MessageType::Transaction)],
    )
    .await;
    let cmd = loop {
        let cmd = next_command(&mut pin).await;
        if let Some(pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(r)) =
            cmd.command
        {
            break r;
        }
    };
    assert_eq!(cmd.transaction_id, e[0].transaction_id);
    let m = cmd.message.unwrap();
    assert_eq!(m.topic.as_ref().unwrap().name, "tx");
    assert_eq!(sys(&m).message_id, "orphan");
    assert_eq!(
        end(
            c,
            "orphan",
            &cmd.transaction_id,
            pb::TransactionResolution::Commit,
            pb::TransactionSource::SourceServerCheck
        )
        .await,
        Code::Ok
    );
    let got = receive(c, "tg", "tx", 32, 10_000, 1000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(sys(&got[0]).message_id, "orphan");
    s.stop().await;
}

#[tokio::test]
async fn orphaned_transaction_recovery_duration_delays_the_first_check() {
    // The broker checks halves 300 ms after they are stored; this producer asks for 2 s.
    let mut s = start().await;
    let mut producer = s.client.clone();
    let (_ptx, mut pin) = telemetry(&mut producer, "p@2#0", producer_settings(&["tx"])).await;
    assert_eq!(code(&next_command(&mut pin).await.status), Code::Ok);
    let mut m = message("tx", "patient", pb::MessageType::Transaction);
    m.system_properties
        .as_mut()
        .unwrap()
        .orphaned_transaction_recovery_duration = dur(2000);
    let sent = Instant::now();
    let e = send_ok(&mut s.client, vec![m]).await;
    let cmd = loop {
        let cmd = next_command(&mut pin).await;
        if let Some(pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(r)) =
            cmd.command
        {
            break r;
        }
    };
    let waited = sent.elapsed();
    assert_eq!(cmd.transaction_id, e[0].transaction_id);
    assert!(
        waited >= Duration::from_millis(1900),
        "checked after {waited:?}"
    );
    // The checker sees the duration it asked for, not a user property.
    let m = cmd.message.unwrap();
    assert_eq!(
        sys(&m).orphaned_transaction_recovery_duration,
        dur(2000),
        "{m:?}"
    );
    assert!(
        !m.user_properties
            .contains_key("CHECK_IMMUNITY_TIME_IN_SECONDS"),
        "{:?}",
        m.user_properties
    );
    s.stop().await;
}
