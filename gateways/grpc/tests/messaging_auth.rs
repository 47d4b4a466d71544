//! Authentication and authorization of the MessagingService: an authenticator that refuses
//! requests is answered UNAUTHORIZED in the body (gRPC OK), for unary and streaming calls
//! alike; with the core's users on (`auth.enabled`), requests signed as the official SDKs sign
//! them (MQv2-HMAC-SHA1 over `x-mq-date-time`) are served as their user's policy allows —
//! FORBIDDEN otherwise — and unsigned, forged or stale ones are UNAUTHORIZED.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use messaging_support::*;
use rocketgate_core::auth::{sign, Action, Decision, PolicyEntry, Principal, UserKind};
use rocketgate_gateway_grpc::auth::{AuthError, Authenticator, Caller};
use rocketgate_gateway_grpc::MessagingService;

/// Accepts requests whose `authorization` header is exactly `Bearer ok`.
struct RequireToken;

impl Authenticator for RequireToken {
    fn authenticate(&self, caller: &Caller<'_>) -> Result<Principal, AuthError> {
        match caller
            .metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            Some("Bearer ok") => Ok(Principal::anonymous()),
            Some(_) => Err(AuthError("bad credentials".into())),
            None => Err(AuthError("missing header `authorization`".into())),
        }
    }
}

#[tokio::test]
async fn refused_requests_get_unauthorized_and_accepted_ones_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 1 << 20;
    let broker = Broker::open(config).unwrap();
    broker.topics().create(TopicConfig::new("t", 2)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = NodeInfo {
        cluster: "c".into(),
        broker_name: "b".into(),
        broker_id: 0,
        endpoints: vec![("grpc".into(), addr.to_string())],
        nameservers: Vec::new(),
        registered_nameservers: Arc::new(|| 0),
        started_at_ms: 0,
        routes: None,
    };
    let service = MessagingService::new(broker.clone(), node, MessagingConfig::default(), None)
        .with_authenticator(Arc::new(RequireToken));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(WAIT)
        .connect()
        .await
        .unwrap();
    let mut c = MessagingServiceClient::new(channel);
    let route = |token: Option<&str>| {
        let mut r = req(pb::QueryRouteRequest {
            topic: res("t"),
            endpoints: None,
        });
        if let Some(t) = token {
            r.metadata_mut().insert("authorization", t.parse().unwrap());
        }
        r
    };
    for token in [None, Some("Bearer nope")] {
        let r = bounded(c.query_route(route(token)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), Code::Unauthorized, "{token:?}: {r:?}");
        assert!(r.message_queues.is_empty());
    }
    let r = bounded(c.query_route(route(Some("Bearer ok"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    assert_eq!(r.message_queues.len(), 2);

    // A refused send still answers one entry per message, and stores nothing.
    let sent = bounded(c.send_message(req(pb::SendMessageRequest {
        messages: vec![message("t", "ID-1", pb::MessageType::Normal)],
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&sent.status), Code::Unauthorized, "{sent:?}");
    assert_eq!(sent.entries.len(), 1);
    assert!(broker.queries().by_id("ID-1").await.is_err());

    // Streaming calls too: one status frame, then the end.
    let mut frames = bounded(c.receive_message(req(pb::ReceiveMessageRequest {
        group: res("g"),
        message_queue: Some(pb::MessageQueue {
            topic: res("t"),
            ..Default::default()
        }),
        batch_size: 1,
        ..Default::default()
    })))
    .await
    .unwrap()
    .into_inner();
    let first = bounded(frames.message()).await.unwrap().unwrap();
    assert!(
        matches!(first.content, Some(Content::Status(ref s)) if s.code == Code::Unauthorized as i32),
        "{first:?}"
    );
    assert!(bounded(frames.message()).await.unwrap().is_none());

    drop(c);
    let _ = stop.send(());
    bounded(server).await.unwrap().unwrap();
    broker.shutdown().unwrap();
}

/// A request signed by `ak`/`sk` as the official SDKs sign it, at `date_time`.
fn signed<T>(msg: T, ak: &str, sk: &str, date_time: &str) -> tonic::Request<T> {
    let mut r = req(msg);
    let header = format!(
        "MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={}",
        sign::sign(sk.as_bytes(), date_time)
    );
    r.metadata_mut()
        .insert("authorization", header.parse().unwrap());
    r.metadata_mut()
        .insert("x-mq-date-time", date_time.parse().unwrap());
    r
}

/// A service on a broker with authentication on and the super user `root` / `root-secret`;
/// `more` changes the rest of the configuration.
async fn start_with_auth(more: impl FnOnce(&mut Config)) -> Running {
    start_configured(
        |c| {
            c.auth.enabled = true;
            c.auth.bootstrap_access_key = Some("root".into());
            c.auth.bootstrap_secret_key = Some("root-secret".into());
            more(c);
        },
        |_| {},
    )
    .await
}

fn compact_now() -> String {
    sign::compact_time(rocketgate_core::now_ms())
}

#[tokio::test]
async fn signed_requests_are_served_as_the_users_policy_allows() {
    let mut s = start_with_auth(|_| {}).await;
    let auth = s.broker.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy(
        "app",
        vec![PolicyEntry {
            resources: vec!["Topic:normal".parse().unwrap(), "Group:g".parse().unwrap()],
            actions: vec![Action::Pub, Action::Sub],
            decision: Decision::Allow,
            sources: Vec::new(),
        }],
    )
    .unwrap();
    // An administrator created the group: `Sub` consumes from it (creating it on first use
    // would need `Create`).
    s.broker
        .groups()
        .create(rocketgate_core::GroupConfig::new("g"))
        .unwrap();
    let now = compact_now();
    let send = |topic: &str, id: &str, ak: &str, sk: &str, at: &str| {
        signed(
            pb::SendMessageRequest {
                messages: vec![message(topic, id, pb::MessageType::Normal)],
            },
            ak,
            sk,
            at,
        )
    };
    // Allowed: stored.
    let r = bounded(
        s.client
            .send_message(send("normal", "ID-OK", "app", "app-secret", &now)),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    // Not in the policy: FORBIDDEN, nothing stored.
    let r = bounded(
        s.client
            .send_message(send("single", "ID-NO", "app", "app-secret", &now)),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::Forbidden, "{r:?}");
    assert!(s.broker.queries().by_id("ID-NO").await.is_err());
    // Wrong secret, unknown user, a stale signature, no signature: UNAUTHORIZED.
    for (ak, sk, at) in [
        ("app", "not-the-secret", now.as_str()),
        ("ghost", "app-secret", now.as_str()),
        ("app", "app-secret", "20200101T000000Z"),
    ] {
        let r = bounded(s.client.send_message(send("normal", "ID-BAD", ak, sk, at)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), Code::Unauthorized, "{ak} {at}: {r:?}");
    }
    let r = bounded(s.client.send_message(req(pb::SendMessageRequest {
        messages: vec![message("normal", "ID-ANON", pb::MessageType::Normal)],
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::Unauthorized, "{r:?}");
    assert!(s.broker.queries().by_id("ID-BAD").await.is_err());
    // Receiving needs Sub on the topic and the group.
    let receive = |group: &str| {
        signed(
            pb::ReceiveMessageRequest {
                group: res(group),
                message_queue: Some(pb::MessageQueue {
                    topic: res("normal"),
                    ..Default::default()
                }),
                batch_size: 1,
                invisible_duration: dur(10_000),
                long_polling_timeout: dur(200),
                ..Default::default()
            },
            "app",
            "app-secret",
            &now,
        )
    };
    let mut frames = bounded(s.client.receive_message(receive("other-group")))
        .await
        .unwrap()
        .into_inner();
    let first = bounded(frames.message()).await.unwrap().unwrap();
    assert!(
        matches!(first.content, Some(Content::Status(ref st)) if st.code == Code::Forbidden as i32),
        "{first:?}"
    );
    let mut frames = bounded(s.client.receive_message(receive("g")))
        .await
        .unwrap()
        .into_inner();
    let mut got_message = false;
    while let Some(f) = bounded(frames.message()).await.unwrap() {
        got_message |= matches!(f.content, Some(Content::Message(_)));
    }
    assert!(got_message, "the allowed receive gets the message");
    // The super user may do everything.
    let r = bounded(
        s.client
            .send_message(send("single", "ID-ROOT", "root", "root-secret", &now)),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    s.stop().await;
}

/// A password guesser gets `auth.failure_burst` tries from its address; then even the right
/// secret is refused (unchecked) until the bucket refills.
#[tokio::test]
async fn repeated_failures_from_one_address_are_refused_before_checking() {
    let mut s = start_with_auth(|c| {
        c.auth.failure_burst = 3;
        c.auth.failure_refill_ms = 3_600_000;
    })
    .await;
    let now = compact_now();
    let send = |sk: &str| {
        signed(
            pb::SendMessageRequest {
                messages: vec![message("normal", "ID-G", pb::MessageType::Normal)],
            },
            "root",
            sk,
            &now,
        )
    };
    for guess in ["guess-1", "guess-2", "guess-3"] {
        let r = bounded(s.client.send_message(send(guess)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), Code::Unauthorized, "{r:?}");
    }
    let r = bounded(s.client.send_message(send("root-secret")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Unauthorized, "{r:?}");
    let message = r.status.map(|st| st.message).unwrap_or_default();
    assert!(message.contains("too many failed"), "{message}");
    s.stop().await;
}

/// A compact `x-mq-date-time` eight hours ahead (the Python SDK's local time in UTC+8 with a
/// literal `Z`) is accepted by default and refused with `auth.local_time_signatures` off,
/// which holds a captured signature to the clock-skew window.
#[tokio::test]
async fn local_time_signatures_can_be_refused() {
    for lenient in [true, false] {
        let mut s = start_with_auth(|c| {
            c.auth.local_time_signatures = lenient;
        })
        .await;
        let ahead = sign::compact_time(rocketgate_core::now_ms() + 8 * 3_600_000);
        let r = bounded(s.client.send_message(signed(
            pb::SendMessageRequest {
                messages: vec![message("normal", "ID-TZ", pb::MessageType::Normal)],
            },
            "root",
            "root-secret",
            &ahead,
        )))
        .await
        .unwrap()
        .into_inner();
        let want = if lenient {
            Code::Ok
        } else {
            Code::Unauthorized
        };
        assert_eq!(code(&r.status), want, "lenient {lenient}: {r:?}");
        s.stop().await;
    }
}

/// A Telemetry stream's Settings are authorized like the requests they stand for: a producer
/// lists only topics it may publish to (it would be sent their check-backs), a consumer names
/// only a group and topics it may consume; a refused Settings is answered FORBIDDEN, changes
/// nothing, and the stream stays open.
#[tokio::test]
async fn telemetry_settings_are_authorized() {
    let mut s = start_with_auth(|_| {}).await;
    let auth = s.broker.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy(
        "app",
        vec![PolicyEntry {
            resources: vec!["Topic:normal".parse().unwrap(), "Group:g".parse().unwrap()],
            actions: vec![Action::Pub, Action::Sub],
            decision: Decision::Allow,
            sources: Vec::new(),
        }],
    )
    .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut inbound = bounded(s.client.telemetry(signed(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        "app",
        "app-secret",
        &compact_now(),
    )))
    .await
    .unwrap()
    .into_inner();
    let consumer = |group: &str, topic: &str| pb::Settings {
        client_type: Some(pb::ClientType::SimpleConsumer as i32),
        pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
            group: res(group),
            subscriptions: vec![pb::SubscriptionEntry {
                topic: res(topic),
                expression: Some(pb::FilterExpression {
                    r#type: pb::FilterType::Tag as i32,
                    expression: "*".into(),
                }),
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    for (settings, want) in [
        (producer_settings(&["normal"]), Code::Ok),
        (producer_settings(&["normal", "single"]), Code::Forbidden),
        (consumer("g", "normal"), Code::Ok),
        (consumer("other", "normal"), Code::Forbidden),
        (consumer("g", "single"), Code::Forbidden),
    ] {
        let what = format!("{settings:?}");
        tx.send(pb::TelemetryCommand {
            status: None,
            command: Some(pb::telemetry_command::Command::Settings(settings)),
        })
        .await
        .unwrap();
        let reply = next_command(&mut inbound).await;
        assert_eq!(code(&reply.status), want, "{what}: {reply:?}");
        if want != Code::Ok {
            assert!(reply.command.is_none(), "{reply:?}");
        }
    }
    // The refused consumer's group was not created.
    assert!(s.broker.groups().get("other").is_err());
    drop(tx);
    s.stop().await;
}
