//! The quotas of `[limits]`, auto-creation under a principal, and reserved names, through the
//! broker's API (issue 14).

use std::time::Duration;

use super::*;
use crate::api::{PopRequest, SendRequest, TopicUpdate};
use crate::auth::{Credentials, Decision, PolicyEntry, UserKind};
use crate::broker::consumer_group::GroupConfig;
use crate::broker::topic::TopicConfig;
use crate::config::Config;
use crate::error::{ErrorKind, Reason};
use crate::message::Message;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.store.disk_max_used_ratio = 1.0; // the machine's disk use is not the subject
    c
}

fn pop(group: &str, topic: &str) -> PopRequest {
    PopRequest {
        group: group.into(),
        topic: topic.into(),
        filter: None,
        max: 1,
        invisible: Duration::from_secs(10),
        wait: Duration::ZERO,
    }
}

fn assert_quota(e: &Error) {
    assert!(matches!(e, Error::LimitReached { .. }), "{e:?}");
    assert_eq!(e.reason(), Reason::QuotaExceeded);
    assert_eq!(e.kind(), ErrorKind::Throttled);
}

fn assert_reserved(e: &Error) {
    assert!(matches!(e, Error::Reserved { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn topics_past_max_topics_are_refused_and_a_delete_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.max_topics = 3;
    let b = Broker::open(c).unwrap();
    for t in ["a", "b", "c"] {
        b.topics().create(TopicConfig::new(t, 1)).unwrap();
    }
    let e = b.topics().create(TopicConfig::new("d", 1)).unwrap_err();
    assert_quota(&e);
    assert!(e.to_string().contains("max_topics"), "{e}");
    // The broker's own topics (a group's retry topic, created by a pop) are not counted.
    b.consumer().pop(pop("g", "a")).await.unwrap();
    b.topics().delete("c").unwrap();
    b.topics().create(TopicConfig::new("d", 1)).unwrap();
    assert_quota(&b.topics().create(TopicConfig::new("e", 1)).unwrap_err());
}

#[tokio::test]
async fn groups_made_on_first_use_are_bounded_by_max_groups() {
    // The probe: random group names on REST pulls each created a persisted group.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.max_groups = 2;
    let b = Broker::open(c).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    b.consumer().pop(pop("g1", "t")).await.unwrap();
    b.consumer().pop(pop("g2", "t")).await.unwrap();
    let e = b.consumer().pop(pop("g3", "t")).await.unwrap_err();
    assert_quota(&e);
    assert_quota(
        &b.consumer()
            .check_subscription("g3", "t", None, Duration::from_secs(10))
            .unwrap_err(),
    );
    assert_quota(&b.groups().create(GroupConfig::new("g3")).unwrap_err());
    assert_eq!(b.groups().list().len(), 2, "nothing was created");
    // Existing groups keep working.
    b.consumer().pop(pop("g1", "t")).await.unwrap();
    b.groups().delete("g2").unwrap();
    b.consumer().pop(pop("g3", "t")).await.unwrap();
}

#[tokio::test]
async fn auto_creation_is_a_setting() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.consumer.auto_create_groups = false;
    let b = Broker::open(c).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let e = b.consumer().pop(pop("g", "t")).await.unwrap_err();
    assert!(matches!(e, Error::GroupNotFound(_)), "{e:?}");
    assert!(b.groups().list().is_empty());
}

#[tokio::test]
async fn a_principal_needs_create_to_make_a_group_or_topic_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.auth.enabled = true;
    let b = Broker::open(c).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let auth = b.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    let allow = |resources: &[&str], actions: &[Action]| PolicyEntry {
        resources: resources.iter().map(|r| r.parse().unwrap()).collect(),
        actions: actions.to_vec(),
        decision: Decision::Allow,
        sources: Vec::new(),
    };
    auth.set_policy(
        "app",
        vec![allow(&["Topic:t", "Group:*"], &[Action::Pub, Action::Sub])],
    )
    .unwrap();
    let principal = auth
        .authenticate(Credentials::Secret {
            access_key: "app",
            secret_key: "app-secret",
        })
        .unwrap();
    let app = b.as_caller(Caller::client(Some(principal), None));
    let e = app.consumer().pop(pop("fresh", "t")).await.unwrap_err();
    assert_eq!(e.reason(), Reason::Denied, "{e:?}");
    assert!(b.groups().list().is_empty(), "no group was created");
    let e = app.topics().create(TopicConfig::new("new", 1)).unwrap_err();
    assert_eq!(e.reason(), Reason::Denied, "{e:?}");

    auth.set_policy(
        "app",
        vec![
            allow(&["Topic:t", "Group:*"], &[Action::Pub, Action::Sub]),
            allow(&["Group:fresh", "Topic:new"], &[Action::Create]),
        ],
    )
    .unwrap();
    app.consumer().pop(pop("fresh", "t")).await.unwrap();
    assert_eq!(b.groups().list().len(), 1);
    app.topics().create(TopicConfig::new("new", 1)).unwrap();
    // Without a principal (an internal handle) nothing is asked.
    b.consumer().pop(pop("internal", "t")).await.unwrap();
}

#[tokio::test]
async fn a_gateways_topics_are_refused_to_other_callers() {
    // The probe: REST could delete `mqtt_sys_sessions` (every persistent MQTT session lost),
    // publish into it and read it.
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    let mqtt = b.as_caller(Caller::gateway(Gateway::Mqtt));
    let name = "mqtt_sys_sessions";
    assert_reserved(&b.topics().create(TopicConfig::new(name, 1)).unwrap_err());
    mqtt.topics().create(TopicConfig::new(name, 1)).unwrap();
    mqtt.producer()
        .send(Message::new(name, "session").into())
        .await
        .unwrap();
    let grpc_client = b.as_caller(Caller::client(None, None).via(Gateway::Grpc));
    for client in [&b, &grpc_client] {
        assert_reserved(&client.topics().delete(name).unwrap_err());
        assert_reserved(
            &client
                .producer()
                .send(Message::new(name, "forged").into())
                .await
                .unwrap_err(),
        );
        assert_reserved(&client.consumer().pull(name, 0, 0, 10).await.unwrap_err());
        assert_reserved(&client.consumer().pop(pop("g", name)).await.unwrap_err());
        assert_reserved(&client.topics().describe(name).await.unwrap_err());
        assert_reserved(&client.topics().config(name).unwrap_err());
        assert_reserved(&client.topics().queue_offsets(name, 0).await.unwrap_err());
        let grow = TopicUpdate {
            queue_count: Some(2),
            ..TopicUpdate::default()
        };
        assert_reserved(&client.topics().update(name, grow).unwrap_err());
    }
    // The gateway itself reads it back, and it is all there.
    let got = mqtt.consumer().pull(name, 0, 0, 10).await.unwrap();
    assert_eq!(got.messages.len(), 1);
    assert_eq!(&got.messages[0].body[..], b"session");
    // Not by id either.
    let id = &got.messages[0].message_id;
    assert_reserved(&b.queries().by_id(id).await.unwrap_err());
    assert_eq!(mqtt.queries().by_id(id).await.unwrap().message_id, *id);
}

#[tokio::test]
async fn gateway_properties_are_set_only_by_their_gateway() {
    // The probe: `__RG_V2_ENCODING: GZIP` sent over REST made gRPC consumers see GZIP on a
    // plain body; `mqttTopic` would forge an MQTT topic.
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.topics().create(TopicConfig::new("t", 1)).unwrap();
    let with = |k: &str| -> SendRequest { Message::new("t", "x").with_property(k, "GZIP").into() };
    let grpc = b.as_caller(Caller::client(None, None).via(Gateway::Grpc));
    let mqtt = b.as_caller(Caller::gateway(Gateway::Mqtt));
    for key in ["__RG_V2_ENCODING", "mqttTopic", "__RG_OTHER"] {
        assert_reserved(&b.producer().send(with(key)).await.unwrap_err());
        assert_reserved(&b.producer().check(&with(key)).unwrap_err());
    }
    grpc.producer()
        .send(with("__RG_V2_ENCODING"))
        .await
        .unwrap();
    assert_reserved(&grpc.producer().send(with("mqttTopic")).await.unwrap_err());
    assert_reserved(&grpc.producer().send(with("__RG_OTHER")).await.unwrap_err());
    mqtt.producer().send(with("mqttTopic")).await.unwrap();
    assert_reserved(
        &mqtt
            .producer()
            .send(with("__RG_V2_ENCODING"))
            .await
            .unwrap_err(),
    );
    // Ordinary keys that merely look alike are the client's.
    for key in ["mqtt", "mqtt_topic", "rg_v2_encoding"] {
        b.producer().send(with(key)).await.unwrap();
    }
    let stored = b.consumer().pull("t", 0, 0, 100).await.unwrap().messages;
    assert_eq!(stored.len(), 5, "only the allowed sends were stored");
}
