use std::path::Path;
use std::time::Duration;

use rocketgate_core::{Broker, Config};
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish};
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
            tokio::time::timeout(Duration::from_secs(5), j)
                .await
                .expect("gateway stops within 5 s")
                .unwrap();
        }
        self.broker.clone()
    }
}

/// A v4 client whose incoming publishes arrive on the returned channel.
pub async fn client_v4(
    port: u16,
    id: &str,
    clean: bool,
    tweak: impl FnOnce(&mut MqttOptions),
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<Publish>,
    tokio::task::JoinHandle<()>,
) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(clean);
    o.set_keep_alive(Duration::from_secs(30));
    tweak(&mut o);
    let (client, mut el) = AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut ready = Some(ready_tx);
    let h = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("client event loop ended: {e}");
                    return;
                }
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
    (client, rx, h)
}

pub async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("message within 10 s")
        .expect("channel open")
}

pub async fn nothing<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>, ms: u64) {
    if let Ok(Some(x)) = tokio::time::timeout(Duration::from_millis(ms), rx.recv()).await {
        panic!("unexpected message {x:?}");
    }
}

/// Lets a SUBACK arrive before publishing (subscriptions start at the end of the topic).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}
