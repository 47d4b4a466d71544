//! The authentication seam: a MessagingService with an authenticator that refuses requests
//! answers UNAUTHORIZED in the body (gRPC OK), for unary and streaming calls alike, and serves
//! the requests it accepts; the default accepts everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use messaging_support::*;
use rocketgate_gateway_grpc::auth::{AuthError, Authenticator};
use rocketgate_gateway_grpc::MessagingService;

/// Accepts requests whose `authorization` header is exactly `Bearer ok`.
struct RequireToken;

impl Authenticator for RequireToken {
    fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), AuthError> {
        match metadata.get("authorization").and_then(|v| v.to_str().ok()) {
            Some("Bearer ok") => Ok(()),
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
