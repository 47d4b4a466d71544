//! A broker with only the MQTT gateway, for trying clients and benchmarking before the
//! `rocketgate` binary wires MQTT in:
//!
//! `cargo run --release -p rocketgate-gateway-mqtt --example standalone -- [DATA_DIR] [TCP_ADDR] [WS_ADDR]`
//!
//! Defaults: a temporary directory, `127.0.0.1:1883`, `127.0.0.1:8083`. ASYNC flush. Stops on
//! Ctrl-C.

use rocketgate_core::{Broker, Config};
use rocketgate_gateway_mqtt::MqttConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let tcp = args.next().unwrap_or_else(|| "127.0.0.1:1883".into());
    let ws = args.next().unwrap_or_else(|| "127.0.0.1:8083".into());
    let mut config = Config::default();
    config.store.data_dir = dir;
    let broker = Broker::open(config)?;
    let tcp = tokio::net::TcpListener::bind(&tcp).await?;
    let ws = tokio::net::TcpListener::bind(&ws).await?;
    println!(
        "listening addr={} ws={}",
        tcp.local_addr()?,
        ws.local_addr()?
    );
    rocketgate_gateway_mqtt::serve(
        Some(tcp),
        Some(ws),
        broker.clone(),
        MqttConfig::default(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await?;
    broker.shutdown()?;
    Ok(())
}
