//! The official Rust SDK (`rocketmq` 5.0.0) against a broker with authentication on: a
//! producer and a consumer configured with a user's access key and secret key (the SDK signs
//! every request with MQv2-HMAC-SHA1) send and receive what the user's policy allows, and are
//! refused where it does not; a wrong secret and no credentials are refused. A consumer group
//! the user may read but not create is not created on first use.

use rocketgate_core::auth::{Action, Decision, PolicyEntry, UserKind};
use rocketmq::model::message::MessageBuilder;

use crate::grpc_sdk::{call, GrpcServer, FIFO_TOPIC, NORMAL_TOPIC};

fn policy() -> Vec<PolicyEntry> {
    vec![PolicyEntry {
        resources: vec![
            format!("Topic:{NORMAL_TOPIC}").parse().unwrap(),
            "Group:sdk-auth*".parse().unwrap(),
        ],
        actions: vec![Action::Pub, Action::Sub],
        decision: Decision::Allow,
        sources: Vec::new(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sdk_with_ak_sk_is_served_as_its_policy_allows() {
    let server = GrpcServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.bootstrap_access_key = Some("root".into());
        c.auth.bootstrap_secret_key = Some("root-secret".into());
    })
    .await;
    let auth = server.broker.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy("app", policy()).unwrap();
    // The group exists (an administrator created it): `Sub` is enough to consume from it.
    server
        .broker
        .groups()
        .create(rocketgate_core::GroupConfig::new("sdk-auth"))
        .unwrap();
    let with = |ak: &str, sk: &str| {
        let mut o = server.client_option();
        o.set_access_key(ak);
        o.set_secret_key(sk);
        o
    };

    // Allowed: sent and received.
    let p = server
        .producer_with(&[NORMAL_TOPIC], with("app", "app-secret"))
        .await;
    let m = MessageBuilder::builder()
        .set_topic(NORMAL_TOPIC)
        .set_tag("auth")
        .set_body(b"signed".to_vec())
        .build()
        .unwrap();
    let receipt = call("send", p.send(m)).await.expect("an allowed send");
    let c = server
        .consumer_with("sdk-auth", &[NORMAL_TOPIC], with("app", "app-secret"))
        .await;
    let got = crate::grpc_sdk::receive_n(
        &c,
        NORMAL_TOPIC,
        &crate::grpc_sdk::tag("auth"),
        1,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(20),
    )
    .await;
    assert_eq!(got[0].1.message_id(), receipt.message_id());
    crate::grpc_sdk::ack(&c, &got[0].1).await;

    // A topic the policy does not name: refused (FORBIDDEN), nothing stored.
    let m = MessageBuilder::builder()
        .set_topic(FIFO_TOPIC)
        .set_message_group("g")
        .set_body(b"forbidden".to_vec())
        .build()
        .unwrap();
    let e = call("send", p.send(m)).await.expect_err("a forbidden send");
    assert!(
        e.to_string().to_uppercase().contains("FORBIDDEN") || format!("{e:?}").contains("403"),
        "{e:?}"
    );
    let fifo = server.broker.topics().describe(FIFO_TOPIC).await.unwrap();
    assert!(
        fifo.queues.iter().all(|q| q.max == 0),
        "nothing stored: {fifo:?}"
    );

    // A group the user may read (`Group:sdk-auth*`) but not create: refused on first use with
    // FORBIDDEN naming the missing `Create`, and not created.
    let fresh = server
        .consumer_with("sdk-auth-new", &[NORMAL_TOPIC], with("app", "app-secret"))
        .await;
    let e = crate::grpc_sdk::try_receive(
        &fresh,
        NORMAL_TOPIC,
        &crate::grpc_sdk::tag("*"),
        1,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(1),
    )
    .await
    .expect_err("a group the user may not create");
    assert!(
        e.to_string().contains("FORBIDDEN") && e.to_string().contains("Create"),
        "{e}"
    );
    assert!(server.broker.groups().get("sdk-auth-new").is_err());
    crate::grpc_sdk::shutdown_consumer(fresh).await;

    // A wrong secret cannot even start a producer.
    let mut bad = rocketmq::Producer::new(
        {
            let mut o = rocketmq::conf::ProducerOption::default();
            o.set_topics(vec![NORMAL_TOPIC]);
            o
        },
        with("app", "wrong-secret"),
    )
    .unwrap();
    let started = call("producer.start", bad.start()).await;
    assert!(started.is_err(), "a wrong secret was accepted");
    crate::grpc_sdk::shutdown_producer(p).await;
    crate::grpc_sdk::shutdown_consumer(c).await;
    server.stop().await;
}
