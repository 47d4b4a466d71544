//! The BrokerAdmin service end to end: a real server on 127.0.0.1:0 over a broker in a temp
//! dir, called through the generated client. Every call has a deadline (the channel's request
//! timeout), every test stops its server and waits for `serve` to return, and each error is
//! followed by calls on the same connection that still work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::{Broker, Config, GroupConfig};
use rocketgate_gateway_grpc::{serve, NodeInfo};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::broker_admin_client::BrokerAdminClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

/// Upper bound for any one call, connect or shutdown.
const WAIT: Duration = Duration::from_secs(10);
/// The broker's body limit in these tests (small, so oversized requests are cheap).
const MAX_BODY: usize = 64 << 10;

type Client = BrokerAdminClient<Channel>;

struct Running {
    client: Client,
    broker: Broker,
    registered: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), rocketgate_gateway_grpc::Error>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 4 << 20;
    config.limits.max_body_bytes = MAX_BODY;
    config.limits.max_batch = 64;
    config.limits.max_queues_per_topic = 16;
    config.consumer.max_wait_ms = 2_000;
    let broker = Broker::open(config).unwrap();
    let registered = Arc::new(AtomicUsize::new(1));
    let count = registered.clone();
    let node = NodeInfo {
        cluster: "c1".into(),
        broker_name: "broker-a".into(),
        broker_id: 0,
        endpoints: vec![("grpc".into(), "127.0.0.1:1".into())],
        nameservers: vec!["127.0.0.1:2".into(), "127.0.0.1:3".into()],
        registered_nameservers: Arc::new(move || count.load(Ordering::Relaxed)),
        started_at_ms: 42,
        routes: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let join = tokio::spawn(serve(listener, broker.clone(), node, async {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .unwrap();
    let client = BrokerAdminClient::new(channel).max_decoding_message_size(64 << 20);
    Running {
        client,
        broker,
        registered,
        stop,
        join,
        _dir: dir,
    }
}

impl Running {
    async fn shutdown(self) {
        drop(self.client);
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.join)
            .await
            .expect("server did not stop in time")
            .unwrap()
            .unwrap();
        self.broker.shutdown().unwrap();
    }
}

fn ok<T>(r: Result<Response<T>, Status>) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("unexpected status {:?}: {}", s.code(), s.message()),
    }
}

/// Asserts a refusal with `code` whose message contains every one of `words`.
fn refused<T: std::fmt::Debug>(r: Result<Response<T>, Status>, code: Code, words: &[&str]) {
    let status = match r {
        Ok(r) => panic!("expected {code:?}, got {:?}", r.into_inner()),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "{}", status.message());
    for w in words {
        assert!(
            status.message().contains(w),
            "{:?} does not mention {w:?}",
            status.message()
        );
    }
}

fn spec(name: &str, queues: u32) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        topic: Some(pb::TopicSpec {
            name: name.into(),
            queue_count: queues,
            message_type: 0,
            permission: 0,
        }),
    }
}

fn send_req(topic: &str, body: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        topic: topic.into(),
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn pull_req(group: &str, topic: &str, queue_id: u32) -> pb::PullMessagesRequest {
    pb::PullMessagesRequest {
        group: group.into(),
        topic: topic.into(),
        queue_id,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_info_reports_identity_and_store() {
    let mut s = start().await;
    ok(s.client.create_topic(spec("orders", 2)).await);
    s.registered.store(2, Ordering::Relaxed);

    let info = ok(s.client.get_broker_info(pb::GetBrokerInfoRequest {}).await);
    let broker = info.broker.unwrap();
    assert_eq!(
        (broker.cluster.as_str(), broker.broker_name.as_str()),
        ("c1", "broker-a")
    );
    assert_eq!(info.role, pb::BrokerRole::Master as i32);
    assert_eq!(info.endpoints.len(), 1);
    assert_eq!(info.endpoints[0].protocol, "grpc");
    assert_eq!(info.nameservers.len(), 2);
    assert_eq!(info.registered_nameservers, 2);
    assert_eq!(info.flush_mode, "ASYNC");
    assert!(info.log_min_offset <= info.log_durable_offset);
    assert!(info.log_durable_offset <= info.log_end_offset);
    assert!(info.write_refusal.is_empty());
    assert!(!info.recovered_after_crash);
    assert_eq!(info.topic_count, 1);
    assert_eq!(info.started_at_ms, 42);
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_updated_listed_and_deleted() {
    let mut s = start().await;
    let c = &mut s.client;

    // UNSPECIFIED type and permission mean NORMAL and READ_WRITE.
    let status = ok(c.create_topic(spec("orders", 2)).await);
    let topic = status.topic.unwrap();
    assert_eq!(topic.queue_count, 2);
    assert_eq!(topic.message_type, pb::MessageType::Normal as i32);
    assert_eq!(topic.permission, pb::Permission::ReadWrite as i32);
    assert_eq!(status.queues.len(), 2);
    assert!(status.queues.iter().all(|q| q.last_store_timestamp_ms == 0));

    refused(
        c.create_topic(spec("orders", 2)).await,
        Code::AlreadyExists,
        &["orders"],
    );
    refused(
        c.create_topic(spec("a b", 2)).await,
        Code::InvalidArgument,
        &["a b"],
    );
    refused(
        c.create_topic(spec("%DLQ%x", 2)).await,
        Code::InvalidArgument,
        &["reserved"],
    );
    refused(
        c.create_topic(spec("zero", 0)).await,
        Code::InvalidArgument,
        &["queue_count"],
    );
    refused(
        c.create_topic(spec("many", 17)).await,
        Code::InvalidArgument,
        &["queue_count", "16"],
    );
    refused(
        c.create_topic(pb::CreateTopicRequest { topic: None }).await,
        Code::InvalidArgument,
        &["topic", "required"],
    );
    let mut bad_type = spec("typed", 1);
    bad_type.topic.as_mut().unwrap().message_type = 9;
    refused(
        c.create_topic(bad_type).await,
        Code::InvalidArgument,
        &["message_type", "9"],
    );
    let mut bad_perm = spec("typed", 1);
    bad_perm.topic.as_mut().unwrap().permission = -3;
    refused(
        c.create_topic(bad_perm).await,
        Code::InvalidArgument,
        &["permission", "-3"],
    );
    let mut fifo = spec("fifo", 1);
    fifo.topic.as_mut().unwrap().message_type = pb::MessageType::Fifo as i32;
    fifo.topic.as_mut().unwrap().permission = pb::Permission::Read as i32;
    let topic = ok(c.create_topic(fifo).await).topic.unwrap();
    assert_eq!(topic.message_type, pb::MessageType::Fifo as i32);
    assert_eq!(topic.permission, pb::Permission::Read as i32);

    // Status shows offsets and the last store time.
    let sent = ok(c
        .send_message(pb::SendMessageRequest {
            queue_id: Some(1),
            ..send_req("orders", "x")
        })
        .await);
    let status = ok(c
        .get_topic_status(pb::GetTopicStatusRequest {
            name: "orders".into(),
        })
        .await);
    let q1 = &status.queues[1];
    assert_eq!((q1.min_offset, q1.max_offset), (0, 1));
    assert_eq!(q1.last_store_timestamp_ms, sent.store_timestamp_ms);
    assert_eq!(status.queues[0].last_store_timestamp_ms, 0);
    refused(
        c.get_topic_status(pb::GetTopicStatusRequest {
            name: "missing".into(),
        })
        .await,
        Code::NotFound,
        &["missing"],
    );

    // Update: grow only; unset fields keep their value; UNSPECIFIED set explicitly is refused.
    let update = |queue_count, message_type, permission| pb::UpdateTopicRequest {
        name: "orders".into(),
        queue_count,
        message_type,
        permission,
    };
    let status = ok(c.update_topic(update(Some(4), None, None)).await);
    assert_eq!(status.topic.as_ref().unwrap().queue_count, 4);
    assert_eq!(status.queues.len(), 4);
    assert_eq!(status.queues[1].max_offset, 1);
    ok(c.send_message(pb::SendMessageRequest {
        queue_id: Some(3),
        ..send_req("orders", "y")
    })
    .await);
    refused(
        c.update_topic(update(Some(2), None, None)).await,
        Code::InvalidArgument,
        &["queue_count", "only grow", "orders"],
    );
    refused(
        c.update_topic(update(None, Some(0), None)).await,
        Code::InvalidArgument,
        &["message_type", "UNSPECIFIED"],
    );
    refused(
        c.update_topic(update(None, None, Some(0))).await,
        Code::InvalidArgument,
        &["permission", "UNSPECIFIED"],
    );
    refused(
        c.update_topic(update(None, None, Some(77))).await,
        Code::InvalidArgument,
        &["permission", "77"],
    );
    let status = ok(c
        .update_topic(update(None, None, Some(pb::Permission::Read as i32)))
        .await);
    assert_eq!(status.topic.as_ref().unwrap().queue_count, 4);
    refused(
        c.send_message(send_req("orders", "z")).await,
        Code::PermissionDenied,
        &["orders", "writable"],
    );
    refused(
        c.update_topic(pb::UpdateTopicRequest {
            name: "missing".into(),
            queue_count: Some(2),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        &["missing"],
    );

    // Listing: user topics only, sorted (the dead-letter topic of a group is left out).
    s.broker.groups().create(GroupConfig::new("g")).unwrap();
    ok(c.list_dead_letters(pb::ListDeadLettersRequest {
        group: "g".into(),
        ..Default::default()
    })
    .await);
    let names: Vec<String> = ok(c.list_topics(pb::ListTopicsRequest {}).await)
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["fifo", "orders"]);

    // Delete.
    ok(c.delete_topic(pb::DeleteTopicRequest {
        name: "fifo".into(),
    })
    .await);
    refused(
        c.delete_topic(pb::DeleteTopicRequest {
            name: "fifo".into(),
        })
        .await,
        Code::NotFound,
        &["fifo"],
    );
    refused(
        c.delete_topic(pb::DeleteTopicRequest {
            name: "rmq_sys_timer".into(),
        })
        .await,
        Code::PermissionDenied,
        &["rmq_sys_timer"],
    );
    refused(
        c.delete_topic(pb::DeleteTopicRequest { name: "".into() })
            .await,
        Code::InvalidArgument,
        &["topic"],
    );
    let names = ok(c.list_topics(pb::ListTopicsRequest {}).await).topics;
    assert_eq!(names.len(), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pull_commit_and_group_status() {
    let mut s = start().await;
    let c = &mut s.client;
    ok(c.create_topic(spec("t", 2)).await);

    let mut properties = HashMap::new();
    properties.insert("color".to_owned(), "red".to_owned());
    let a = ok(c
        .send_message(pb::SendMessageRequest {
            tag: "A".into(),
            keys: vec!["k1".into()],
            properties,
            queue_id: Some(0),
            ..send_req("t", "first")
        })
        .await);
    assert_eq!(
        (a.queue_id, a.queue_offset, a.deliver_at_ms),
        (0, Some(0), 0)
    );
    assert!(!a.message_id.is_empty());
    ok(c.send_message(pb::SendMessageRequest {
        tag: "B".into(),
        queue_id: Some(0),
        ..send_req("t", "second")
    })
    .await);
    // Delayed and timed messages (on their own topic: their delivery must not change the lag
    // of `t` checked below).
    let mut delay_topic = spec("d", 1);
    delay_topic.topic.as_mut().unwrap().message_type = pb::MessageType::Delay as i32;
    ok(c.create_topic(delay_topic).await);
    let delayed = ok(c
        .send_message(pb::SendMessageRequest {
            delay_level: 1,
            ..send_req("d", "later")
        })
        .await);
    assert!(delayed.deliver_at_ms >= delayed.store_timestamp_ms);
    assert_eq!(delayed.queue_offset, None, "no offset until it is due");
    // A DELAY topic takes only delayed messages; a NORMAL one no delayed message.
    refused(
        c.send_message(send_req("d", "now")).await,
        Code::InvalidArgument,
        &["message type", "`d` accepts DELAY messages, not NORMAL"],
    );
    refused(
        c.send_message(pb::SendMessageRequest {
            delay_level: 1,
            ..send_req("t", "later")
        })
        .await,
        Code::InvalidArgument,
        &["`t` accepts NORMAL messages, not DELAY"],
    );
    let timed = ok(c
        .send_message(pb::SendMessageRequest {
            deliver_at_ms: delayed.store_timestamp_ms + 60_000,
            ..send_req("d", "timed")
        })
        .await);
    assert_eq!(timed.deliver_at_ms, delayed.store_timestamp_ms + 60_000);

    // Bad sends.
    refused(
        c.send_message(pb::SendMessageRequest {
            delay_level: 1,
            deliver_at_ms: 1,
            ..send_req("t", "x")
        })
        .await,
        Code::InvalidArgument,
        &["delay_level", "deliver_at_ms"],
    );
    refused(
        c.send_message(pb::SendMessageRequest {
            delay_level: 99,
            ..send_req("t", "x")
        })
        .await,
        Code::InvalidArgument,
        &["delay level 99"],
    );
    refused(
        c.send_message(pb::SendMessageRequest {
            queue_id: Some(7),
            ..send_req("t", "x")
        })
        .await,
        Code::NotFound,
        &["t", "7"],
    );
    refused(
        c.send_message(send_req("missing", "x")).await,
        Code::NotFound,
        &["missing"],
    );
    refused(
        c.send_message(send_req("bad/name", "x")).await,
        Code::InvalidArgument,
        &["bad/name"],
    );
    let mut reserved = HashMap::new();
    reserved.insert("UNIQ_KEY".to_owned(), "v".to_owned());
    refused(
        c.send_message(pb::SendMessageRequest {
            properties: reserved,
            ..send_req("t", "x")
        })
        .await,
        Code::InvalidArgument,
        &["UNIQ_KEY"],
    );
    let over = pb::SendMessageRequest {
        body: vec![0u8; MAX_BODY + 1],
        ..send_req("t", "")
    };
    refused(
        c.send_message(over).await,
        Code::InvalidArgument,
        &["body", &(MAX_BODY + 1).to_string()],
    );
    let way_over = pb::SendMessageRequest {
        body: vec![0u8; MAX_BODY + (2 << 20)],
        ..send_req("t", "")
    };
    refused(
        c.send_message(way_over).await,
        Code::OutOfRange,
        &["too large"],
    );

    // Pull from the start (no committed offset), with and without a filter.
    let r = ok(c.pull_messages(pull_req("g", "t", 0)).await);
    assert_eq!(r.status, pb::PullStatus::Found as i32);
    let bodies: Vec<&[u8]> = r.messages.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, vec![&b"first"[..], &b"second"[..]]);
    let first = &r.messages[0];
    assert_eq!(first.tag, "A");
    assert_eq!(first.keys, vec!["k1"]);
    assert_eq!(
        first.properties.get("color").map(String::as_str),
        Some("red")
    );
    assert_eq!((r.next_offset, r.max_offset), (2, 2));
    let r = ok(c
        .pull_messages(pb::PullMessagesRequest {
            filter: "B".into(),
            ..pull_req("g", "t", 0)
        })
        .await);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].tag, "B");
    let r = ok(c
        .pull_messages(pb::PullMessagesRequest {
            offset: Some(9),
            ..pull_req("g", "t", 0)
        })
        .await);
    assert_eq!(r.status, pb::PullStatus::OffsetTooBig as i32);

    refused(
        c.pull_messages(pb::PullMessagesRequest {
            max: 65,
            ..pull_req("g", "t", 0)
        })
        .await,
        Code::InvalidArgument,
        &["max", "64"],
    );
    refused(
        c.pull_messages(pb::PullMessagesRequest {
            wait_ms: 2_001,
            ..pull_req("g", "t", 0)
        })
        .await,
        Code::InvalidArgument,
        &["wait_ms", "2000"],
    );
    refused(
        c.pull_messages(pb::PullMessagesRequest {
            filter: "a ||".into(),
            ..pull_req("g", "t", 0)
        })
        .await,
        Code::InvalidArgument,
        &["filter"],
    );
    refused(
        c.pull_messages(pull_req("g", "t", 5)).await,
        Code::NotFound,
        &["t", "5"],
    );
    refused(
        c.pull_messages(pull_req("bad group", "t", 0)).await,
        Code::InvalidArgument,
        &["group", "bad group"],
    );

    // Commit; a pull without offset continues from it (long polling returns at its deadline).
    ok(c.commit_offset(pb::CommitOffsetRequest {
        group: "g".into(),
        topic: "t".into(),
        queue_id: 0,
        offset: 1,
    })
    .await);
    let r = ok(c.pull_messages(pull_req("g", "t", 0)).await);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(&r.messages[0].body[..], b"second");
    ok(c.commit_offset(pb::CommitOffsetRequest {
        group: "g".into(),
        topic: "t".into(),
        queue_id: 0,
        offset: 2,
    })
    .await);
    let started = std::time::Instant::now();
    let r = ok(c
        .pull_messages(pb::PullMessagesRequest {
            wait_ms: 200,
            ..pull_req("g", "t", 0)
        })
        .await);
    assert_eq!(r.status, pb::PullStatus::NoNewMessage as i32);
    assert!(started.elapsed() >= Duration::from_millis(150));
    refused(
        c.commit_offset(pb::CommitOffsetRequest {
            group: "g".into(),
            topic: "missing".into(),
            queue_id: 0,
            offset: 1,
        })
        .await,
        Code::NotFound,
        &["missing"],
    );

    // Group status and listing.
    s.broker.consumer().heartbeat("g", "client-b").unwrap();
    s.broker.consumer().heartbeat("g", "client-a").unwrap();
    let status = ok(c
        .get_group_status(pb::GetGroupStatusRequest {
            group: "g".into(),
            topic: String::new(),
        })
        .await);
    assert_eq!(status.group.as_ref().unwrap().client_count, 2);
    assert_eq!(status.clients, vec!["client-a", "client-b"]);
    let lags: Vec<(&str, u32, Option<u64>, u64)> = status
        .lags
        .iter()
        .map(|l| (l.topic.as_str(), l.queue_id, l.committed_offset, l.pull_lag))
        .collect();
    assert_eq!(lags, vec![("t", 0, Some(2), 0), ("t", 1, None, 0)]);
    assert_eq!(status.total_pull_lag, 0);
    let status = ok(c
        .get_group_status(pb::GetGroupStatusRequest {
            group: "g".into(),
            topic: "t".into(),
        })
        .await);
    assert_eq!(status.lags.len(), 2);
    refused(
        c.get_group_status(pb::GetGroupStatusRequest {
            group: "nobody".into(),
            topic: String::new(),
        })
        .await,
        Code::NotFound,
        &["nobody"],
    );
    refused(
        c.get_group_status(pb::GetGroupStatusRequest {
            group: "g".into(),
            topic: "missing".into(),
        })
        .await,
        Code::NotFound,
        &["missing"],
    );
    let groups = ok(c.list_groups(pb::ListGroupsRequest {}).await).groups;
    let g = groups.iter().find(|g| g.name == "g").unwrap();
    assert_eq!((g.client_count, g.max_delivery_attempts), (2, 16));

    // Reset to the beginning of time: every queue back to its first offset.
    let reset = ok(c
        .reset_offset(pb::ResetOffsetRequest {
            group: "g".into(),
            topic: "t".into(),
            timestamp_ms: 0,
        })
        .await);
    let offsets: Vec<(u32, u64)> = reset
        .offsets
        .iter()
        .map(|o| (o.queue_id, o.offset))
        .collect();
    assert_eq!(offsets, vec![(0, 0), (1, 0)]);
    let status = ok(c
        .get_group_status(pb::GetGroupStatusRequest {
            group: "g".into(),
            topic: "t".into(),
        })
        .await);
    assert_eq!(status.total_pull_lag, 2);
    refused(
        c.reset_offset(pb::ResetOffsetRequest {
            group: "g".into(),
            topic: "missing".into(),
            timestamp_ms: 0,
        })
        .await,
        Code::NotFound,
        &["missing"],
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_queried_by_id_key_and_time() {
    let mut s = start().await;
    let c = &mut s.client;
    ok(c.create_topic(spec("t", 2)).await);
    let mut sent = Vec::new();
    for i in 0..6u32 {
        let r = ok(c
            .send_message(pb::SendMessageRequest {
                keys: vec![if i % 2 == 0 { "even" } else { "odd" }.into()],
                queue_id: Some(i % 2),
                ..send_req("t", &format!("m{i}"))
            })
            .await);
        sent.push(r);
        // Distinct store timestamps for the queries by time (not a synchronisation).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    // By id.
    let r = ok(c
        .query_message_by_id(pb::QueryMessageByIdRequest {
            message_id: sent[3].message_id.clone(),
        })
        .await);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(&r.messages[0].body[..], b"m3");
    assert!(!r.truncated);
    refused(
        c.query_message_by_id(pb::QueryMessageByIdRequest {
            message_id: "00FFFF".into(),
        })
        .await,
        Code::NotFound,
        &["00FFFF"],
    );
    refused(
        c.query_message_by_id(pb::QueryMessageByIdRequest {
            message_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        &["message_id"],
    );

    // By key: 0/0 is any time; newest first; `max` cuts it short.
    let by_key = |key: &str, max| pb::QueryMessagesByKeyRequest {
        topic: "t".into(),
        key: key.into(),
        begin_ms: 0,
        end_ms: 0,
        max,
    };
    let r = ok(c.query_messages_by_key(by_key("even", 0)).await);
    let bodies: Vec<&[u8]> = r.messages.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, vec![&b"m4"[..], &b"m2"[..], &b"m0"[..]]);
    assert!(!r.truncated);
    let r = ok(c.query_messages_by_key(by_key("even", 2)).await);
    assert_eq!(r.messages.len(), 2);
    assert!(r.truncated);
    let r = ok(c.query_messages_by_key(by_key("none", 0)).await);
    assert!(r.messages.is_empty());
    refused(
        c.query_messages_by_key(by_key("even", 65)).await,
        Code::InvalidArgument,
        &["max", "64"],
    );
    refused(
        c.query_messages_by_key(by_key("", 0)).await,
        Code::InvalidArgument,
        &["key"],
    );
    refused(
        c.query_messages_by_key(pb::QueryMessagesByKeyRequest {
            begin_ms: 5,
            end_ms: 4,
            ..by_key("even", 0)
        })
        .await,
        Code::InvalidArgument,
        &["begin_ms", "end_ms"],
    );
    refused(
        c.query_messages_by_key(pb::QueryMessagesByKeyRequest {
            topic: "missing".into(),
            ..by_key("even", 0)
        })
        .await,
        Code::NotFound,
        &["missing"],
    );

    // By time: oldest first across both queues.
    let by_time = |begin_ms, end_ms, max| pb::QueryMessagesByTimeRequest {
        topic: "t".into(),
        begin_ms,
        end_ms,
        max,
    };
    let (begin, end) = (sent[1].store_timestamp_ms, sent[4].store_timestamp_ms);
    let r = ok(c.query_messages_by_time(by_time(begin, end, 0)).await);
    let times: Vec<i64> = r.messages.iter().map(|m| m.store_timestamp_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times.iter().all(|t| (begin..=end).contains(t)));
    let bodies: Vec<&[u8]> = r.messages.iter().map(|m| &m.body[..]).collect();
    for want in [&b"m1"[..], b"m2", b"m3", b"m4"] {
        assert!(bodies.contains(&want), "{bodies:?}");
    }
    assert!(!r.truncated);
    let r = ok(c.query_messages_by_time(by_time(begin, end, 1)).await);
    assert_eq!(r.messages.len(), 1);
    assert!(r.truncated);
    refused(
        c.query_messages_by_time(by_time(end, begin - 1, 0)).await,
        Code::InvalidArgument,
        &["begin_ms"],
    );
    refused(
        c.query_messages_by_time(by_time(0, 1, 1000)).await,
        Code::InvalidArgument,
        &["max"],
    );
    refused(
        c.query_messages_by_time(pb::QueryMessagesByTimeRequest {
            topic: "missing".into(),
            ..by_time(0, 1, 0)
        })
        .await,
        Code::NotFound,
        &["missing"],
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_resent() {
    let mut s = start().await;
    let c = &mut s.client;
    ok(c.create_topic(spec("t", 1)).await);
    let mut group = GroupConfig::new("g");
    group.max_delivery_attempts = 1;
    s.broker.groups().create(group).unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(ok(c.send_message(send_req("t", &format!("d{i}"))).await).message_id);
    }
    for offset in 0..3 {
        // One attempt allowed: sending back dead-letters at once.
        s.broker
            .consumer()
            .send_back("g", "t", 0, offset, None)
            .await
            .unwrap();
    }

    let list = |offset, max| pb::ListDeadLettersRequest {
        group: "g".into(),
        offset,
        max,
    };
    let r = ok(c.list_dead_letters(list(0, 0)).await);
    assert_eq!(r.messages.len(), 3);
    assert_eq!((r.min_offset, r.max_offset, r.next_offset), (0, 3, 3));
    let r = ok(c.list_dead_letters(list(1, 1)).await);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].message_id, ids[1]);
    assert_eq!(r.next_offset, 2);
    refused(
        c.list_dead_letters(list(0, 65)).await,
        Code::InvalidArgument,
        &["max"],
    );
    refused(
        c.list_dead_letters(pb::ListDeadLettersRequest {
            group: "nobody".into(),
            ..list(0, 0)
        })
        .await,
        Code::NotFound,
        &["nobody"],
    );

    let resend = |message_ids: Vec<String>, all| pb::ResendDeadLettersRequest {
        group: "g".into(),
        message_ids,
        all,
    };
    refused(
        c.resend_dead_letters(resend(Vec::new(), false)).await,
        Code::InvalidArgument,
        &["message_ids", "all"],
    );
    refused(
        c.resend_dead_letters(resend(vec![ids[0].clone()], true))
            .await,
        Code::InvalidArgument,
        &["all", "message_ids"],
    );
    refused(
        c.resend_dead_letters(resend(vec!["nope".into()], false))
            .await,
        Code::NotFound,
        &["nope"],
    );
    refused(
        c.resend_dead_letters(resend(vec!["x".into(); 65], false))
            .await,
        Code::InvalidArgument,
        &["message_ids", "64"],
    );
    let r = ok(c
        .resend_dead_letters(resend(vec![ids[2].clone()], false))
        .await);
    assert_eq!(r.resent, 1);
    let r = ok(c.resend_dead_letters(resend(Vec::new(), true)).await);
    assert_eq!(r.resent, 3);
    // Back in the topic: three originals and four resent copies.
    let status = ok(c
        .get_topic_status(pb::GetTopicStatusRequest { name: "t".into() })
        .await);
    assert_eq!(status.queues[0].max_offset, 7);
    s.shutdown().await;
}
