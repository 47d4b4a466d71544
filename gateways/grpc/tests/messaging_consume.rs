//! MessagingService end to end, consumer side: receive / ack, redelivery after invisibility,
//! ChangeInvisibleDuration and receipt refusals, dead letters, QueryAssignment, pull and offsets,
//! and the long-poll cap. Harness in `messaging_support`; every test stops its server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use messaging_support::*;

#[tokio::test]
async fn send_batch_receive_and_ack() {
    let mut s = start().await;
    let c = &mut s.client;
    let ids = ["m-1", "m-2", "m-3"];
    let entries = send_ok(
        c,
        ids.iter()
            .map(|id| message("normal", id, pb::MessageType::Normal))
            .collect(),
    )
    .await;
    let got: Vec<_> = entries.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(got, ids);
    assert!(entries.iter().all(|e| code(&e.status) == Code::Ok));

    let msgs = receive(c, "g", "normal", 32, 10_000, 1000).await;
    assert_eq!(msgs.len(), 3);
    let mut seen: Vec<_> = msgs.iter().map(|m| sys(m).message_id.clone()).collect();
    seen.sort();
    assert_eq!(seen, ids);
    let m = &msgs[0];
    assert_eq!(m.topic.as_ref().unwrap().name, "normal");
    assert_eq!(m.user_properties.get("k").map(String::as_str), Some("v"));
    assert_eq!(m.user_properties.len(), 1, "{:?}", m.user_properties);
    let p = sys(m);
    assert_eq!(p.tag.as_deref(), Some("tag"));
    assert_eq!(p.keys, vec!["key".to_owned()]);
    assert_eq!(p.message_type, pb::MessageType::Normal as i32);
    assert_eq!(p.delivery_attempt, Some(1));
    assert_eq!(p.born_host, "host");
    assert!(p.born_timestamp.is_some() && p.store_timestamp.is_some());
    assert!(p.queue_offset.is_some() && p.invisible_duration.is_some());
    assert_eq!(m.body, format!("body-{}", p.message_id).into_bytes());
    let digest = p.body_digest.as_ref().unwrap();
    assert_eq!(digest.r#type, pb::DigestType::Md5 as i32);
    assert_eq!(digest.checksum.len(), 32);
    assert_eq!(digest.checksum, digest.checksum.to_uppercase());

    let handles: Vec<_> = msgs.iter().map(handle).collect();
    let r = ack(c, "g", "normal", &handles).await;
    assert_eq!(code(&r.status), Code::Ok);
    assert!(receive(c, "g", "normal", 32, 10_000, 300).await.is_empty());
    // Acked again: stale.
    let r = ack(c, "g", "normal", &handles[..1]).await;
    assert_eq!(code(&r.status), Code::InvalidReceiptHandle);
    s.stop().await;
}

#[tokio::test]
async fn invisibility_expiry_redelivers_with_a_new_handle() {
    let mut s = start().await;
    let c = &mut s.client;
    send_ok(c, vec![message("normal", "r", pb::MessageType::Normal)]).await;
    let first = receive(c, "rg", "normal", 32, 300, 500).await;
    assert_eq!(first.len(), 1);
    let mut again = Vec::new();
    let started = Instant::now();
    while again.is_empty() && started.elapsed() < WAIT {
        again = receive(c, "rg", "normal", 32, 10_000, 1000).await;
    }
    assert_eq!(again.len(), 1);
    assert_eq!(sys(&again[0]).message_id, "r");
    assert_eq!(sys(&again[0]).delivery_attempt, Some(2));
    assert_ne!(handle(&first[0]), handle(&again[0]));
    let r = ack(c, "rg", "normal", &[handle(&first[0])]).await;
    assert_eq!(code(&r.status), Code::InvalidReceiptHandle);
    let r = ack(c, "rg", "normal", &[handle(&again[0])]).await;
    assert_eq!(code(&r.status), Code::Ok);
    s.stop().await;
}

#[tokio::test]
async fn change_invisible_duration_and_receipt_refusals() {
    let mut s = start().await;
    let c = &mut s.client;
    send_ok(
        c,
        vec![
            message("normal", "a", pb::MessageType::Normal),
            message("normal", "b", pb::MessageType::Normal),
        ],
    )
    .await;
    let msgs = receive(c, "cg", "normal", 32, 10_000, 1000).await;
    assert_eq!(msgs.len(), 2);
    let change =
        |h: String, ms: Option<prost_types::Duration>| pb::ChangeInvisibleDurationRequest {
            group: res("cg"),
            topic: res("normal"),
            receipt_handle: h,
            invisible_duration: ms,
            message_id: "a".into(),
        };
    let r = bounded(c.change_invisible_duration(req(change(handle(&msgs[0]), dur(20_000)))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Ok);
    assert!(!r.receipt_handle.is_empty() && r.receipt_handle != handle(&msgs[0]));
    for (h, d, want) in [
        (handle(&msgs[0]), dur(20_000), Code::InvalidReceiptHandle),
        (
            "garbled".to_owned(),
            dur(20_000),
            Code::InvalidReceiptHandle,
        ),
        (r.receipt_handle.clone(), None, Code::IllegalInvisibleTime),
    ] {
        let got = bounded(c.change_invisible_duration(req(change(h, d))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&got.status), want);
    }
    // Mixed ack: one entry each, top-level MULTIPLE_RESULTS.
    let a = ack(
        c,
        "cg",
        "normal",
        &[r.receipt_handle.clone(), "garbled".into()],
    )
    .await;
    assert_eq!(code(&a.status), Code::MultipleResults);
    assert_eq!(code(&a.entries[0].status), Code::Ok);
    assert_eq!(code(&a.entries[1].status), Code::InvalidReceiptHandle);
    assert_eq!(a.entries[1].receipt_handle, "garbled");
    let a = ack(c, "cg", "normal", &["garbled".into()]).await;
    assert_eq!(code(&a.status), Code::InvalidReceiptHandle);
    assert_eq!(
        code(&ack(c, "cg", "normal", &[handle(&msgs[1])]).await.status),
        Code::Ok
    );
    s.stop().await;
}

#[tokio::test]
async fn forward_to_dead_letter_queue() {
    let mut s = start().await;
    let c = &mut s.client;
    send_ok(c, vec![message("normal", "dead", pb::MessageType::Normal)]).await;
    let msgs = receive(c, "dg", "normal", 32, 300, 1000).await;
    assert_eq!(msgs.len(), 1);
    let fwd = |h: String| pb::ForwardMessageToDeadLetterQueueRequest {
        group: res("dg"),
        topic: res("normal"),
        receipt_handle: h,
        message_id: "dead".into(),
        delivery_attempt: 1,
        max_delivery_attempts: 16,
    };
    let r = bounded(c.forward_message_to_dead_letter_queue(req(fwd(handle(&msgs[0])))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Ok);
    let r = bounded(c.forward_message_to_dead_letter_queue(req(fwd("garbled".into()))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::InvalidReceiptHandle);
    let dlq = s
        .broker
        .dead_letters()
        .list("dg", 0, 10)
        .await
        .unwrap()
        .messages;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].message_id, "dead");
    // Not redelivered after its (short) invisible time.
    assert!(receive(&mut s.client, "dg", "normal", 32, 10_000, 800)
        .await
        .is_empty());
    s.stop().await;
}

#[tokio::test]
async fn query_assignment() {
    let mut s = start().await;
    let c = &mut s.client;
    let qa = |topic: &str, group: &str| pb::QueryAssignmentRequest {
        topic: res(topic),
        group: res(group),
        endpoints: None,
    };
    let r = bounded(c.query_assignment(req(qa("normal", "ag"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Ok);
    assert_eq!(r.assignments.len(), 4);
    let q = r.assignments[0].message_queue.as_ref().unwrap();
    assert!(q.broker.as_ref().unwrap().endpoints.is_some());
    for (t, g, want) in [
        ("no_such_topic", "ag", Code::TopicNotFound),
        ("", "ag", Code::IllegalTopic),
        ("normal", "", Code::IllegalConsumerGroup),
    ] {
        let r = bounded(c.query_assignment(req(qa(t, g))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), want);
    }
    // A second live client shares the queues.
    let r = bounded(c.query_assignment(req_as("other@1#0", qa("normal", "ag"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.assignments.len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn pull_and_offsets() {
    let mut s = start().await;
    let c = &mut s.client;
    send_ok(
        c,
        vec![
            message("single", "p1", pb::MessageType::Normal),
            message("single", "p2", pb::MessageType::Normal),
        ],
    )
    .await;
    let mq = Some(pb::MessageQueue {
        topic: res("single"),
        id: 0,
        ..Default::default()
    });
    let mut stream = bounded(c.pull_message(req(pb::PullMessageRequest {
        group: res("pg"),
        message_queue: mq.clone(),
        offset: 0,
        batch_size: 32,
        filter_expression: None,
        long_polling_timeout: dur(500),
    })))
    .await
    .unwrap()
    .into_inner();
    let mut frames = Vec::new();
    while let Some(f) = bounded(stream.next()).await {
        frames.push(f.unwrap().content.unwrap());
    }
    use pb::pull_message_response::Content as P;
    assert!(
        matches!(&frames[0], P::Status(st) if st.code == Code::Ok as i32),
        "{frames:?}"
    );
    assert_eq!(frames.len(), 4);
    assert!(matches!(frames[3], P::NextOffset(2)));
    let r = bounded(c.update_offset(req(pb::UpdateOffsetRequest {
        group: res("pg"),
        message_queue: mq.clone(),
        offset: 2,
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::Ok);
    let r = bounded(c.get_offset(req(pb::GetOffsetRequest {
        group: res("pg"),
        message_queue: mq.clone(),
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!((code(&r.status), r.offset), (Code::Ok, 2));
    let r = bounded(c.get_offset(req(pb::GetOffsetRequest {
        group: res("other"),
        message_queue: mq.clone(),
    })))
    .await
    .unwrap()
    .into_inner();
    assert!(matches!(
        code(&r.status),
        Code::NotFound | Code::ConsumerGroupNotFound
    ));
    for (policy, want) in [
        (pb::QueryOffsetPolicy::Beginning, 0),
        (pb::QueryOffsetPolicy::End, 2),
    ] {
        let r = bounded(c.query_offset(req(pb::QueryOffsetRequest {
            message_queue: mq.clone(),
            query_offset_policy: policy as i32,
            timestamp: None,
        })))
        .await
        .unwrap()
        .into_inner();
        assert_eq!((code(&r.status), r.offset), (Code::Ok, want));
    }
    s.stop().await;
}

#[tokio::test]
async fn long_polls_are_capped_and_wake_up() {
    // A reserve of 600 ms before the caller's deadline (200 ms by default): room for a loaded
    // machine in the deadline case below.
    let mut s = start_with(|m| m.deadline_reserve_ms = 600).await;
    // RC's shape: a 40 s poll with a 40 s deadline ends with MESSAGE_NOT_FOUND at the cap.
    let mut r = req(receive_req("lg", "normal", 32, 10_000, 40_000));
    r.set_timeout(Duration::from_secs(40));
    let started = Instant::now();
    let (code, msgs) = receive_with(&mut s.client, r).await;
    let took = started.elapsed();
    assert_eq!(code, Code::MessageNotFound);
    assert!(msgs.is_empty());
    // At the cap (1.5 s), not at the 40 s asked for: 15 s is a generous bound between them.
    assert!(
        took >= Duration::from_millis(POLL_CAP_MS - 200) && took < Duration::from_secs(15),
        "{took:?}"
    );
    // A deadline shorter than the poll: answered before it, by the server (MESSAGE_NOT_FOUND
    // after 1.5 s - 600 ms); an answer after it would be the client's DEADLINE_EXCEEDED.
    let mut r = req(receive_req("lg", "normal", 32, 10_000, 40_000));
    r.set_timeout(Duration::from_millis(1_500));
    let (code, _) = receive_with(&mut s.client, r).await;
    assert_eq!(code, Code::MessageNotFound);
    // Bad receive input: one status frame, connection still usable.
    for (r, want) in [
        (
            receive_req("", "normal", 32, 10_000, 100),
            Code::IllegalConsumerGroup,
        ),
        (receive_req("lg", "", 32, 10_000, 100), Code::IllegalTopic),
        (
            receive_req("lg", "no_such_topic", 32, 10_000, 100),
            Code::TopicNotFound,
        ),
        (
            receive_req("lg", "normal", 32, 10, 100),
            Code::IllegalInvisibleTime,
        ),
    ] {
        let (code, _) = receive_with(&mut s.client, req(r)).await;
        assert_eq!(code, want);
    }
    let (code, _) = receive_with(
        &mut s.client,
        Request::new(receive_req("lg", "normal", 32, 10_000, 100)),
    )
    .await;
    assert_eq!(code, Code::ClientIdRequired);
    s.stop().await;
}

#[tokio::test]
async fn a_waiting_receive_wakes_up_when_a_message_arrives() {
    // Polls of up to 8 s here: waking up is told from the end of the poll by a wide margin.
    let mut s = start_with(|m| m.max_long_polling_ms = 20_000).await;
    let mut other = s.client.clone();
    let poll =
        tokio::spawn(async move { receive(&mut other, "wg", "normal", 32, 10_000, 8_000).await });
    // A head start for the poll to park (not observable from here). Not a synchronisation:
    // had the message come first, the poll would return it at once, and pass as well.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    send_ok(
        &mut s.client,
        vec![message("normal", "wake", pb::MessageType::Normal)],
    )
    .await;
    let got = bounded(poll).await.unwrap();
    let woke = sent.elapsed();
    assert_eq!(got.len(), 1);
    assert_eq!(sys(&got[0]).message_id, "wake");
    // Woken by the arrival (milliseconds), long before the poll's end (7.7 s after the send):
    // 4 s is a generous bound between the two.
    assert!(woke < Duration::from_secs(4), "{woke:?}");
    s.stop().await;
}

/// A ReceiveMessage of a push consumer (`auto_renew`) as `client`.
fn renewing(client: &str, group: &str, topic: &str) -> Request<pb::ReceiveMessageRequest> {
    let mut r = receive_req(group, topic, 32, 10_000, 500);
    r.auto_renew = true;
    req_as(client, r)
}

#[tokio::test]
async fn auto_renew_keeps_messages_invisible_until_acked_or_the_consumer_leaves() {
    // Messages would become visible after 600 ms without renewal; renewed every 100 ms.
    let mut s = start_with(|m| {
        m.default_invisible_ms = 600;
        m.auto_renew_interval_ms = 100;
    })
    .await;
    let c = &mut s.client;
    send_ok(
        c,
        vec![message("single", "long-job", pb::MessageType::Normal)],
    )
    .await;
    let (first_code, got) = receive_with(c, renewing("push@1#0", "push-g", "single")).await;
    assert_eq!(first_code, Code::Ok);
    assert_eq!(got.len(), 1);
    let first = handle(&got[0]);
    // Three invisible durations later nobody else has it: the gateway renewed it (the time
    // passing is the point).
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let others = receive(c, "push-g", "single", 32, 10_000, 200).await;
    assert!(others.is_empty(), "redelivered while renewed: {others:?}");
    // The ack with the handle the consumer received works (the gateway maps it).
    let a = ack(c, "push-g", "single", &[first]).await;
    assert_eq!(code(&a.status), Code::Ok, "{a:?}");
    // Acked: it does not come back after its invisible time (the time passing is the point).
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(receive(c, "push-g", "single", 32, 10_000, 200)
        .await
        .is_empty());

    // A consumer that terminates: renewal stops, the message comes back with attempt 2.
    send_ok(
        c,
        vec![message("single", "abandoned", pb::MessageType::Normal)],
    )
    .await;
    let (_, got) = receive_with(c, renewing("push@2#0", "push-g", "single")).await;
    assert_eq!(got.len(), 1);
    let bye = bounded(c.notify_client_termination(req_as(
        "push@2#0",
        pb::NotifyClientTerminationRequest {
            group: res("push-g"),
        },
    )))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&bye.status), Code::Ok);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = Vec::new();
    while again.is_empty() && Instant::now() < deadline {
        again = receive(c, "push-g", "single", 32, 10_000, 500).await;
    }
    assert_eq!(again.len(), 1, "redelivered after its consumer left");
    assert_eq!(sys(&again[0]).message_id, "abandoned");
    assert_eq!(sys(&again[0]).delivery_attempt, Some(2));
    s.stop().await;
}

/// The code of the first frame of a PullMessage of queue 0 of `topic` by `group` that waits
/// up to `wait_ms`.
async fn pull_code(c: &mut Client, group: &str, topic: &str, wait_ms: u64) -> Code {
    let r = req(pb::PullMessageRequest {
        group: res(group),
        message_queue: Some(pb::MessageQueue {
            topic: res(topic),
            id: 0,
            ..Default::default()
        }),
        offset: 0,
        batch_size: 32,
        filter_expression: None,
        long_polling_timeout: dur(wait_ms),
    });
    let mut stream = bounded(c.pull_message(r)).await.unwrap().into_inner();
    let first = bounded(stream.next()).await.expect("a frame").unwrap();
    match first.content {
        Some(pb::pull_message_response::Content::Status(st)) => code(&Some(st)),
        other => panic!("first frame is not a status: {other:?}"),
    }
}

#[tokio::test]
async fn waiting_receives_and_pulls_beyond_the_cap_get_too_many_requests() {
    let mut s = start_with(|m| {
        m.max_long_polls = 1;
        m.max_long_polling_ms = 10_000;
    })
    .await;
    // Two waiting receives at once: one gets the only permit and waits its 3 s out; the
    // other is refused at once, so it ends first (no head start needed).
    let [mut a, mut b] = [0, 1].map(|_| {
        let mut c = s.client.clone();
        tokio::spawn(async move {
            receive_with(
                &mut c,
                req(receive_req("cap-g", "normal", 32, 10_000, 3_000)),
            )
            .await
        })
    });
    let (first, waiting) = bounded(async {
        tokio::select! {
            r = &mut a => (r, b),
            r = &mut b => (r, a),
        }
    })
    .await;
    let (code, _) = first.unwrap();
    assert_eq!(
        code,
        Code::TooManyRequests,
        "the first to end is the refused one"
    );
    // The other holds the permit while it waits: a waiting pull is refused too, one that
    // does not wait needs no permit.
    assert_eq!(
        pull_code(&mut s.client, "cap-p", "normal", 1_000).await,
        Code::TooManyRequests
    );
    assert_eq!(
        pull_code(&mut s.client, "cap-p", "normal", 0).await,
        Code::MessageNotFound
    );
    let (code, _) = bounded(waiting).await.unwrap();
    assert_eq!(code, Code::MessageNotFound, "the other waited");
    // The permit is back: a waiting pull waits normally.
    assert_eq!(
        pull_code(&mut s.client, "cap-p", "normal", 200).await,
        Code::MessageNotFound
    );
    // The permit is back: the next receive waits normally.
    let (code, _) = receive_with(
        &mut s.client,
        req(receive_req("cap-g", "normal", 32, 10_000, 200)),
    )
    .await;
    assert_eq!(code, Code::MessageNotFound);
    s.stop().await;
}
