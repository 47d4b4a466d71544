use std::path::Path;
use std::time::Duration;

use rocketgate_core::{Broker, Config};
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::{
    AsyncClient, ConnAck, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub port: u16,
    pub ws_port: u16,
    pub broker: Broker,
    stop: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

pub fn open_broker(dir: &Path) -> Broker {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 4 << 20;
    c.consumer.min_invisible_ms = 100;
    // The machine is shared: do not fail tests on a busy disk.
    c.store.disk_max_used_ratio = 0.99;
    Broker::open(c).unwrap()
}

/// A broker with the core's authentication on and the super user `root` / `root-secret`.
pub fn open_auth_broker(dir: &Path) -> Broker {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 4 << 20;
    c.consumer.min_invisible_ms = 100;
    c.store.disk_max_used_ratio = 0.99;
    c.auth.enabled = true;
    c.auth.bootstrap_access_key = Some("root".into());
    c.auth.bootstrap_secret_key = Some("root-secret".into());
    Broker::open(c).unwrap()
}

/// The CONNACK return code (3.1.1) a raw CONNECT of client `id` with `login` gets: the fourth
/// byte of `20 02 00 rc`.
pub async fn connack_v4(port: u16, id: &str, login: Option<(&str, &str)>) -> u8 {
    let mut c = rumqttc::Connect::new(id);
    if let Some((u, p)) = login {
        c.set_login(u, p);
    }
    connack_raw(port, c).await
}

/// The CONNACK return code (3.1.1) of the raw CONNECT `c`.
pub async fn connack_raw(port: u16, c: rumqttc::Connect) -> u8 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut b = bytes::BytesMut::new();
    c.write(&mut b).unwrap();
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    sock.write_all(&b).await.unwrap();
    let mut ack = [0u8; 4];
    tokio::time::timeout(WAIT, sock.read_exact(&mut ack))
        .await
        .expect("CONNACK within 10 s")
        .unwrap();
    assert_eq!(ack[..3], [0x20, 2, 0], "a CONNACK: {ack:02x?}");
    ack[3]
}

impl Server {
    pub async fn start(dir: &Path, config: MqttConfig) -> Self {
        Self::with_broker(open_broker(dir), config).await
    }

    pub async fn with_broker(broker: Broker, config: MqttConfig) -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let ws_port = ws.local_addr().unwrap().port();
        let (tx, rx) = oneshot::channel();
        let b = broker.clone();
        let join = tokio::spawn(async move {
            rocketgate_gateway_mqtt::serve(Some(tcp), Some(ws), b, config, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        // Ready when a TCP connect succeeds and CONNACK comes back.
        Self {
            port,
            ws_port,
            broker,
            stop: Some(tx),
            join: Some(join),
        }
    }

    pub async fn stop(mut self) -> Broker {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            tokio::time::timeout(WAIT, j)
                .await
                .expect("gateway stops within 10 s")
                .unwrap();
        }
        self.broker.clone()
    }
}

/// A v4 client (rumqttc) whose event loop runs in a task of its own; dereferences to the
/// `AsyncClient`. Incoming publishes go to the receiver [`client_v4`] returns; SUBACK, PUBACK
/// and PUBCOMP to `acks`, so that a test waits for the acknowledgement it is about.
pub struct Client {
    client: AsyncClient,
    /// The CONNACK of the connection.
    pub connack: ConnAck,
    acks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Packet>>,
}

impl std::ops::Deref for Client {
    type Target = AsyncClient;

    fn deref(&self) -> &AsyncClient {
        &self.client
    }
}

impl Client {
    /// Subscribes to `filter` and waits for the SUBACK, which must grant it. The gateway
    /// answers once the subscription is positioned in the core, so every later publish
    /// reaches it.
    pub async fn subscribed(&self, filter: &str, qos: QoS) {
        let mut acks = self.acks.lock().await;
        while acks.try_recv().is_ok() {}
        self.client.subscribe(filter, qos).await.unwrap();
        let codes = next_ack(&mut acks, "SUBACK", |p| match p {
            Packet::SubAck(a) => Some(a.return_codes),
            _ => None,
        })
        .await;
        assert!(
            matches!(codes[..], [SubscribeReasonCode::Success(_)]),
            "SUBACK of {filter}: {codes:?}"
        );
    }

    /// Publishes with QoS 1 or 2 and waits for the PUBACK or PUBCOMP: the message is stored.
    /// (Matches the next acknowledgement: use it for every QoS 1/2 publish of the client.)
    pub async fn published(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        assert_ne!(qos, QoS::AtMostOnce, "a QoS 0 publish is not acknowledged");
        let mut acks = self.acks.lock().await;
        while acks.try_recv().is_ok() {}
        self.client
            .publish(topic, qos, retain, payload)
            .await
            .unwrap();
        let what = if qos == QoS::AtLeastOnce {
            "PUBACK"
        } else {
            "PUBCOMP"
        };
        next_ack(&mut acks, what, |p| match (p, qos) {
            (Packet::PubAck(_), QoS::AtLeastOnce) | (Packet::PubComp(_), QoS::ExactlyOnce) => {
                Some(())
            }
            _ => None,
        })
        .await;
    }
}

/// The next acknowledgement `pick` accepts, within [`WAIT`].
async fn next_ack<T>(
    acks: &mut mpsc::UnboundedReceiver<Packet>,
    what: &str,
    mut pick: impl FnMut(Packet) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let p = acks.recv().await.expect("client event loop running");
            if let Some(v) = pick(p) {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

/// A v4 client whose incoming publishes arrive on the returned channel, once connected.
pub async fn client_v4(
    port: u16,
    id: &str,
    clean: bool,
    tweak: impl FnOnce(&mut MqttOptions),
) -> (
    Client,
    mpsc::UnboundedReceiver<Publish>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(clean);
    o.set_keep_alive(Duration::from_secs(30));
    tweak(&mut o);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut ready = Some(ready_tx);
    let h = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(a);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(Event::Incoming(
                    p @ (Packet::SubAck(_) | Packet::PubAck(_) | Packet::PubComp(_)),
                )) => {
                    let _ = acks_tx.send(p);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("client event loop ended: {e}");
                    return;
                }
            }
        }
    });
    let connack = tokio::time::timeout(WAIT, ready_rx)
        .await
        .expect("CONNACK within 10 s")
        .unwrap();
    let client = Client {
        client,
        connack,
        acks: tokio::sync::Mutex::new(acks),
    };
    (client, rx, h)
}

/// Waits (bounded) for a client's event loop to end, e.g. after its DISCONNECT.
pub async fn ended(h: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(WAIT, h)
        .await
        .expect("the client's event loop ends within 10 s")
        .unwrap();
}

pub async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("message within 10 s")
        .expect("channel open")
}

/// Fails if anything arrives within `ms`: for checks that something does *not* happen, where
/// the waiting is the point.
pub async fn nothing<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>, ms: u64) {
    if let Ok(Some(x)) = tokio::time::timeout(Duration::from_millis(ms), rx.recv()).await {
        panic!("unexpected message {x:?}");
    }
}

/// Polls `check` every 20 ms until it returns `Some`; fails after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(WAIT, what, check).await
}

/// Polls `check` every 20 ms until it returns `Some`; fails after `within`.
pub async fn eventually_within<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one MQTT packet from a raw socket: (first byte, body), or `None` when the server
/// closed the connection; within [`WAIT`].
pub async fn read_packet(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, async {
        let first = s.read_u8().await.ok()?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = s.read_u8().await.ok()?;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.ok()?;
        Some((first, body))
    })
    .await
    .expect("a packet or a close within 10 s")
}

/// The opt-out of tests that need a tool: with `RG_ALLOW_SKIP=1` such a test passes with a
/// note where the tool is missing; without it the test fails and says how to install it
/// (`scripts/test` installs every tool; docs/testing.md).
pub const ALLOW_SKIP: &str = "RG_ALLOW_SKIP";

/// `path` when it exists. Otherwise the test fails with `how` to install it, or, only under
/// [`ALLOW_SKIP`], `None` (the caller skips) after a note on stdout.
pub fn tool<'a>(path: &'a str, how: &str) -> Option<&'a std::path::Path> {
    let p = std::path::Path::new(path);
    if p.exists() {
        return Some(p);
    }
    let what = format!("{path} is missing");
    assert!(
        std::env::var(ALLOW_SKIP).is_ok_and(|v| v == "1"),
        "{what}: {how} (scripts/test does), or set {ALLOW_SKIP}=1 to skip such tests on purpose"
    );
    println!("NOTE: skipped under {ALLOW_SKIP}=1: {what}");
    None
}
