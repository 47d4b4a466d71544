//! Regression tests of what fuzzing the cluster admin services found (issue 14,
//! `src/fuzz/admin.rs`), end to end: a real server on 127.0.0.1:0 over a broker with
//! authentication on, called through the generated clients with signed requests. Every call
//! has a deadline, and every test stops its server and waits for `serve` to return.
//!
//! - A read of a user without rights to change the cluster created what it read from: a
//!   PullMessages with a new group created the group.
//! - A refusal echoing a long request field (an unknown access key, a reserved property key)
//!   reached the client as `INTERNAL` "h2 protocol error": its `grpc-message` header was over
//!   the client's 16 KiB of headers.
//! - AccessAdmin decoded up to 4 MiB before authenticating, 40 times that in memory for empty
//!   policy entries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::auth::{sign, Action, Decision, PolicyEntry, UserKind};
use rocketgate_core::{Broker, Config, Message, QueueSelector, SendRequest, TopicConfig};
use rocketgate_gateway_grpc::{serve, NodeInfo};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::access_admin_client::AccessAdminClient;
use rocketgate_proto::cluster::v1::broker_admin_client::BrokerAdminClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// Upper bound for any one call, connect or shutdown.
const WAIT: Duration = Duration::from_secs(10);
const ROOT: (&str, &str) = ("root", "root-secret");
const READER: (&str, &str) = ("reader", "reader-secret");

struct Running {
    admin: BrokerAdminClient<Channel>,
    access: AccessAdminClient<Channel>,
    broker: Broker,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), rocketgate_gateway_grpc::Error>>,
    _dir: tempfile::TempDir,
}

/// A broker with authentication on: the super user `root`, and `reader`, allowed `Get` and
/// `List` on the cluster; the topic `t` holds one message.
async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 4 << 20;
    config.auth.enabled = true;
    config.auth.bootstrap_access_key = Some(ROOT.0.into());
    config.auth.bootstrap_secret_key = Some(ROOT.1.into());
    let broker = Broker::open(config).unwrap();
    broker.topics().create(TopicConfig::new("t", 1)).unwrap();
    let message = Message::new("t", b"m".to_vec());
    broker
        .producer()
        .send(SendRequest::new(message, QueueSelector::Auto))
        .await
        .unwrap();
    let auth = broker.auth();
    auth.create_user(READER.0, READER.1, UserKind::Normal)
        .unwrap();
    set_policy(&broker, &[("Cluster:*", &[Action::Get, Action::List])]);
    let node = NodeInfo {
        cluster: "c1".into(),
        broker_name: "broker-a".into(),
        broker_id: 0,
        endpoints: Vec::new(),
        nameservers: Vec::new(),
        registered_nameservers: Arc::new(|| 0),
        started_at_ms: 0,
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
    Running {
        admin: BrokerAdminClient::new(channel.clone()),
        access: AccessAdminClient::new(channel),
        broker,
        stop,
        join,
        _dir: dir,
    }
}

impl Running {
    async fn shutdown(self) {
        drop(self.admin);
        drop(self.access);
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.join)
            .await
            .expect("server did not stop in time")
            .unwrap()
            .unwrap();
        self.broker.close().await.unwrap();
    }
}

/// `reader`'s policy: `Allow` of the actions on each resource.
fn set_policy(broker: &Broker, entries: &[(&str, &[Action])]) {
    let entries = entries
        .iter()
        .map(|(resource, actions)| PolicyEntry {
            resources: vec![resource.parse().unwrap()],
            actions: actions.to_vec(),
            decision: Decision::Allow,
            sources: Vec::new(),
        })
        .collect();
    broker.auth().set_policy(READER.0, entries).unwrap();
}

/// `message` signed by `who` as `rocketgate admin --ak/--sk` signs it.
fn signed<T>(who: (&str, &str), message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let date_time = sign::compact_time(rocketgate_core::now_ms());
    let header = format!(
        "MQv2-HMAC-SHA1 Credential={}, SignedHeaders=x-mq-date-time, Signature={}",
        who.0,
        sign::sign(who.1.as_bytes(), &date_time)
    );
    req.metadata_mut()
        .insert("authorization", header.parse().unwrap());
    req.metadata_mut()
        .insert("x-mq-date-time", date_time.parse().unwrap());
    req
}

fn pull(group: &str) -> pb::PullMessagesRequest {
    pb::PullMessagesRequest {
        group: group.into(),
        topic: "t".into(),
        queue_id: 0,
        offset: None,
        max: 8,
        filter: String::new(),
        wait_ms: 0,
    }
}

#[tokio::test]
async fn a_read_creates_no_group_its_caller_may_not_create() {
    let mut s = start().await;
    let groups = |b: &Broker| {
        b.groups()
            .list()
            .into_iter()
            .map(|g| g.name)
            .collect::<Vec<_>>()
    };
    // Before the fix: the group was created and the pull answered.
    let refused = s.admin.pull_messages(signed(READER, pull("g-new"))).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().code(),
        Code::PermissionDenied
    );
    assert!(groups(&s.broker).is_empty(), "{:?}", groups(&s.broker));
    // Reads of what exists, and creations the policy allows, still work.
    set_policy(
        &s.broker,
        &[
            ("Cluster:*", &[Action::Get, Action::List]),
            ("Group:g-*", &[Action::Create]),
        ],
    );
    let pulled = s.admin.pull_messages(signed(READER, pull("g-new"))).await;
    assert_eq!(
        pulled.unwrap().into_inner().status,
        pb::PullStatus::Found as i32
    );
    let again = s.admin.pull_messages(signed(READER, pull("g-new"))).await;
    assert!(again.is_ok(), "{again:?}");
    // The super user's reads create as before; changes are the cluster's right, not a group's.
    let root = s
        .admin
        .pull_messages(signed(ROOT, pull("root-group")))
        .await;
    assert!(root.is_ok(), "{root:?}");
    let created = s
        .admin
        .create_topic(signed(
            ROOT,
            pb::CreateTopicRequest {
                topic: Some(pb::TopicSpec {
                    name: "t2".into(),
                    queue_count: 1,
                    message_type: 0,
                    permission: 0,
                }),
            },
        ))
        .await;
    assert!(created.is_ok(), "{created:?}");
    assert_eq!(groups(&s.broker), ["g-new", "root-group"]);
    s.shutdown().await;
}

#[tokio::test]
async fn a_refusal_echoing_a_long_field_reaches_the_client_as_its_status() {
    let mut s = start().await;
    // 6,000 bytes that percent-encode to 18,000: over the client's 16 KiB of headers.
    let key = "é".repeat(3000);
    let deleted = s
        .access
        .delete_user(signed(ROOT, pb::DeleteUserRequest { access_key: key }))
        .await;
    let status = deleted.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().starts_with("user `éé"), "{status:?}");
    assert!(status.message().ends_with('…'), "{status:?}");
    assert!(status.message().len() <= rocketgate_gateway_grpc::status::MAX_MESSAGE_BYTES);
    let sent = s
        .admin
        .send_message(signed(
            ROOT,
            pb::SendMessageRequest {
                topic: "t".into(),
                body: b"x".to_vec(),
                properties: [(format!("__RG_{}", "k".repeat(6000)), "v".to_owned())].into(),
                ..Default::default()
            },
        ))
        .await;
    let status = sent.map(|_| ()).unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("__RG_kkk"), "{status:?}");
    // The connection is fine for the next call.
    let users = s
        .access
        .list_users(signed(ROOT, pb::ListUsersRequest {}))
        .await;
    assert_eq!(users.unwrap().into_inner().users.len(), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn access_admin_requests_over_256_kib_are_refused_before_decoding() {
    let mut s = start().await;
    let limit = rocketgate_gateway_grpc::access_admin::MAX_REQUEST_BYTES;
    // Empty policy entries, two bytes each on the wire, 80 in memory once decoded.
    let policy = |bytes: usize| pb::SetPolicyRequest {
        access_key: READER.0.into(),
        entries: vec![pb::PolicyEntry::default(); bytes / 2],
    };
    let unsigned = s
        .access
        .set_policy(tonic::Request::new(policy(limit + 1024)))
        .await;
    assert_eq!(unsigned.map(|_| ()).unwrap_err().code(), Code::OutOfRange);
    let signed_big = s
        .access
        .set_policy(signed(ROOT, policy(limit + 1024)))
        .await;
    assert_eq!(signed_big.map(|_| ()).unwrap_err().code(), Code::OutOfRange);
    // Under the limit: decoded, then refused for what it is.
    let unsigned = s
        .access
        .set_policy(tonic::Request::new(policy(limit - 1024)))
        .await;
    assert_eq!(
        unsigned.map(|_| ()).unwrap_err().code(),
        Code::Unauthenticated
    );
    let refused = s.access.set_policy(signed(ROOT, policy(1024))).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().code(),
        Code::InvalidArgument
    );
    s.shutdown().await;
}
