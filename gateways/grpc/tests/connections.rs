//! The gRPC listener's connection limits with raw `TcpStream`s against the real gateway on
//! 127.0.0.1:0 (`serve_with_connections`): a socket that never sends the HTTP/2 preface is
//! closed after the handshake timeout, one with no call after the idle timeout while a long
//! poll keeps its connection open; past the cap new sockets are closed at once while the
//! existing client keeps working; and the peer address still reaches the ACL sources.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use messaging_support::*;
use rocketgate_core::auth::{sign, Action, Decision, PolicyEntry, UserKind};
use rocketgate_gateway_grpc::serve_with_connections;
use rocketgate_nameserver::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection preface and an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Reads until the server closes `stream`; how long that took, or `None` if still open after
/// `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// Connects, sends the preface and reads the server's first frame header (its SETTINGS).
async fn served(port: u16) -> (bool, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    let mut header = [0u8; 9];
    let read = bounded(s.read_exact(&mut header)).await;
    (read.is_ok() && header[3] == 4, s)
}

struct Server {
    broker: Broker,
    port: u16,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), rocketgate_gateway_grpc::Error>>,
    _dir: tempfile::TempDir,
}

async fn start(limits: ConnectionLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 4 << 20;
    config.auth.enabled = true;
    config.auth.bootstrap_access_key = Some("root".into());
    config.auth.bootstrap_secret_key = Some("root-secret".into());
    let broker = Broker::open(config).unwrap();
    broker.topics().create(TopicConfig::new("t", 1)).unwrap();
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
    let messaging = MessagingConfig {
        max_long_polling_ms: 2_000,
        min_long_polling_ms: 100,
        ..MessagingConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let join = tokio::spawn(serve_with_connections(
        listener,
        broker.clone(),
        node,
        messaging,
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        broker,
        port,
        stop,
        join,
        _dir: dir,
    }
}

impl Server {
    async fn client(&self) -> Client {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect_timeout(WAIT)
            .timeout(WAIT)
            .connect()
            .await
            .unwrap();
        MessagingServiceClient::new(channel)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        bounded(self.join).await.unwrap().unwrap();
        self.broker.shutdown().unwrap();
    }
}

/// `msg` signed by `ak`/`sk` as the official SDKs sign it.
fn signed<T>(msg: T, ak: &str, sk: &str) -> tonic::Request<T> {
    let date_time = sign::compact_time(rocketgate_core::now_ms());
    let mut r = req(msg);
    let header = format!(
        "MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={}",
        sign::sign(sk.as_bytes(), &date_time)
    );
    r.metadata_mut()
        .insert("authorization", header.parse().unwrap());
    r.metadata_mut()
        .insert("x-mq-date-time", date_time.parse().unwrap());
    r
}

fn query_route() -> pb::QueryRouteRequest {
    pb::QueryRouteRequest {
        topic: res("t"),
        endpoints: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_excess_sockets_are_closed_while_clients_with_calls_keep_working() {
    let server = start(ConnectionLimits {
        max_connections: 2,
        handshake_timeout_ms: 300,
        idle_timeout_ms: 800,
        ..ConnectionLimits::default()
    })
    .await;

    // Never sends the preface: closed after the handshake timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let took = closed_within(&mut silent, WAIT)
        .await
        .expect("a socket without the HTTP/2 preface must be closed");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    drop(silent);

    // Handshake, no call: closed after the idle timeout.
    let (ok, mut idle) = served(server.port).await;
    assert!(ok);
    let took = closed_within(&mut idle, WAIT)
        .await
        .expect("a connection without calls must be closed");
    assert!(took >= Duration::from_millis(700), "{took:?}");
    drop(idle);

    // A long poll (2 s, longer than the idle timeout) is a call: its connection stays open.
    let mut c = server.client().await;
    let mut r = signed(
        receive_req("g", "t", 1, 10_000, 2_000),
        "root",
        "root-secret",
    );
    r.set_timeout(Duration::from_secs(5));
    let started = Instant::now();
    let (first, _) = receive_with(&mut c, r).await;
    assert_eq!(first, Code::MessageNotFound);
    assert!(started.elapsed() >= Duration::from_millis(1_500));

    // The client's connection plus one raw socket reach the cap of 2: a third is closed at once.
    let r = bounded(c.query_route(signed(query_route(), "root", "root-secret")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    let (ok, holder) = served(server.port).await;
    assert!(ok);
    let mut third = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let took = closed_within(&mut third, WAIT)
        .await
        .expect("a connection past the cap must be closed");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The existing client keeps working.
    let r = bounded(c.query_route(signed(query_route(), "root", "root-secret")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), Code::Ok, "{r:?}");
    drop(holder);
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_address_still_reaches_the_acl_sources() {
    let server = start(ConnectionLimits::default()).await;
    let auth = server.broker.auth();
    for (user, source) in [("local", "127.0.0.1"), ("remote", "10.0.0.0/8")] {
        auth.create_user(user, "a-user-secret", UserKind::Normal)
            .unwrap();
        auth.set_policy(
            user,
            vec![PolicyEntry {
                resources: vec!["Topic:t".parse().unwrap()],
                actions: vec![Action::Pub, Action::Sub],
                decision: Decision::Allow,
                sources: vec![source.parse().unwrap()],
            }],
        )
        .unwrap();
    }
    let mut c = server.client().await;
    for (user, want) in [("local", Code::Ok), ("remote", Code::Forbidden)] {
        let r = bounded(c.query_route(signed(query_route(), user, "a-user-secret")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), want, "{user}: {r:?}");
    }
    drop(c);
    server.stop().await;
}
