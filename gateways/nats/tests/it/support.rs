use std::path::Path;
use std::time::Duration;

use rocketgate_core::{Broker, Config};
use rocketgate_nats::NatsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn core_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 4 << 20;
    c.consumer.min_invisible_ms = 100;
    // The machine is shared: do not fail tests on a busy disk.
    c.store.disk_max_used_ratio = 0.99;
    c
}

pub fn open_broker(dir: &Path) -> Broker {
    Broker::open(core_config(dir)).unwrap()
}

/// A broker with the core's authentication on and the super user `root` / `root-secret`.
pub fn open_auth_broker(dir: &Path) -> Broker {
    let mut c = core_config(dir);
    c.auth.enabled = true;
    c.auth.bootstrap_access_key = Some("root".into());
    c.auth.bootstrap_secret_key = Some("root-secret".into());
    Broker::open(c).unwrap()
}

pub struct Server {
    pub addr: String,
    pub broker: Broker,
    stop: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(dir: &Path, config: NatsConfig) -> Self {
        Self::with_broker(open_broker(dir), config).await
    }

    pub async fn with_broker(broker: Broker, config: NatsConfig) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel();
        let b = broker.clone();
        let join = tokio::spawn(async move {
            rocketgate_nats::serve(l, b, config, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            broker,
            stop: Some(tx),
            join: Some(join),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    pub async fn client(&self) -> async_nats::Client {
        tokio::time::timeout(WAIT, async_nats::connect(self.url()))
            .await
            .expect("connect within 10 s")
            .unwrap()
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

/// A raw connection: INFO read, nothing sent yet.
pub struct Raw {
    pub sock: TcpStream,
    pub info: String,
    seen: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: &str) -> Self {
        let sock = TcpStream::connect(addr).await.unwrap();
        let mut r = Self {
            sock,
            info: String::new(),
            seen: Vec::new(),
        };
        r.info = r.line().await;
        assert!(r.info.starts_with("INFO {"), "{}", r.info);
        r
    }

    /// Connected with `CONNECT {options}`.
    pub async fn connected(addr: &str, options: &str) -> Self {
        let mut r = Self::connect(addr).await;
        r.send(format!("CONNECT {options}\r\nPING\r\n").as_bytes())
            .await;
        r.expect("PONG\r\n").await;
        r
    }

    pub async fn send(&mut self, b: &[u8]) {
        self.sock.write_all(b).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 64 << 10];
        match tokio::time::timeout(WAIT, self.sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.seen.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => panic!(
                "nothing within 10 s; seen: {:?}",
                String::from_utf8_lossy(&self.seen)
            ),
        }
    }

    /// The next line (without its CRLF).
    pub async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.seen.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.seen[..i]).into_owned();
                self.seen.drain(..i + 2);
                return line;
            }
            assert!(self.fill().await, "closed before a line");
        }
    }

    /// Reads until `text` has arrived; drops everything up to and including it.
    pub async fn expect(&mut self, text: &str) {
        loop {
            if let Some(i) = self
                .seen
                .windows(text.len())
                .position(|w| w == text.as_bytes())
            {
                self.seen.drain(..i + text.len());
                return;
            }
            assert!(
                self.fill().await,
                "closed before {text:?}; seen: {:?}",
                String::from_utf8_lossy(&self.seen)
            );
        }
    }

    /// Reads to the end of the connection; everything that arrived.
    pub async fn until_closed(&mut self) -> String {
        while self.fill().await {}
        String::from_utf8_lossy(&std::mem::take(&mut self.seen)).into_owned()
    }
}

/// Messages stored in `topic` (0 if it does not exist).
pub async fn stored(broker: &Broker, topic: &str) -> u64 {
    let Ok(config) = broker.topics().config(topic) else {
        return 0;
    };
    let mut n = 0;
    for q in 0..config.queue_count {
        let o = broker.topics().queue_offsets(topic, q).await.unwrap();
        n += o.max - o.min;
    }
    n
}

/// Returns once the server handled everything `c` sent before (its SUBs are in place):
/// `async-nats`'s `flush` only writes, so a message to itself through a new inbox is the
/// round trip (operations of one connection are handled in order).
pub async fn barrier(c: &async_nats::Client) {
    use futures_util::StreamExt;
    let inbox = c.new_inbox();
    let mut s = c.subscribe(inbox.clone()).await.unwrap();
    c.publish(inbox, "barrier".into()).await.unwrap();
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("the barrier comes back within 10 s")
        .unwrap();
    s.unsubscribe().await.unwrap();
}
