//! The core's users over NATS: `auth_required`, user/password, tokens, refusals, and
//! authorization of publishes and subscriptions.

use rocketgate_core::auth::{Action, Decision, PolicyEntry, ResourcePattern, UserKind};
use rocketgate_nats::NatsConfig;

use crate::support::{open_auth_broker, stored, Raw, Server, WAIT};

async fn connect(
    server: &Server,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    tokio::time::timeout(WAIT, options.connect(server.url()))
        .await
        .unwrap_or_else(|_| panic!("connect attempt within 10 s"))
}

#[tokio::test]
async fn clients_log_in_as_core_users_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_broker(open_auth_broker(dir.path()), NatsConfig::default()).await;
    let auth = server.broker.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy(
        "app",
        vec![PolicyEntry {
            resources: vec![
                "Topic:allowed".parse::<ResourcePattern>().unwrap(),
                "Topic:_INBOX".parse().unwrap(),
                "Group:nats-*".parse().unwrap(),
            ],
            actions: vec![Action::Pub, Action::Sub, Action::Create],
            decision: Decision::Allow,
            sources: Vec::new(),
        }],
    )
    .unwrap();
    let token = auth.issue_token("app", None).unwrap();

    let mut raw = Raw::connect(&server.addr).await;
    assert!(raw.info.contains("\"auth_required\":true"), "{}", raw.info);
    raw.send(b"CONNECT {}\r\n").await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );
    let mut raw = Raw::connect(&server.addr).await;
    raw.send(b"CONNECT {\"user\":\"app\",\"pass\":\"wrong\"}\r\n")
        .await;
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );

    let refused = connect(
        &server,
        async_nats::ConnectOptions::with_user_and_password("app".into(), "nope".into()),
    )
    .await;
    assert!(refused.is_err(), "a wrong password is refused");

    let by_secret = connect(
        &server,
        async_nats::ConnectOptions::with_user_and_password("app".into(), "app-secret".into()),
    )
    .await
    .unwrap();
    let by_token = connect(
        &server,
        async_nats::ConnectOptions::with_token(token.token.clone()),
    )
    .await
    .unwrap();
    let mut sub = by_token.subscribe("allowed.x").await.unwrap();
    crate::support::barrier(&by_token).await;
    by_secret.publish("allowed.x", "hi".into()).await.unwrap();
    crate::support::barrier(&by_secret).await;
    let m = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"hi");

    // Not in the policy: refused, connection kept, nothing stored.
    let mut raw = Raw::connected(&server.addr, "{\"user\":\"app\",\"pass\":\"app-secret\"}").await;
    raw.send(b"PUB secret.x 1\r\nx\r\nSUB secret.> 1\r\nPING\r\n")
        .await;
    assert_eq!(
        raw.line().await,
        "-ERR 'Permissions Violation for Publish to \"secret.x\"'"
    );
    assert_eq!(
        raw.line().await,
        "-ERR 'Permissions Violation for Subscription to \"secret.>\"'"
    );
    assert_eq!(raw.line().await, "PONG");
    assert_eq!(stored(&server.broker, "secret").await, 0);

    // Credentials that stop being valid close the open connection.
    auth.delete_user("app").unwrap();
    assert_eq!(
        raw.until_closed().await,
        "-ERR 'Authorization Violation'\r\n"
    );
    drop((by_secret, by_token));
    server.stop().await;
}
