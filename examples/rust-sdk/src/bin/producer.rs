//! A producer on the official RocketMQ 5 Rust SDK (`rocketmq` 5.0.0), unchanged, sending to
//! rocketgate's gRPC endpoint.
//!
//! ```sh
//! cargo run -p rocketgate-example-rust-sdk --bin producer -- 127.0.0.1:8081 test_topic 3
//! ```
//!
//! Arguments: access URL (default `127.0.0.1:8081`), topic (default `test_topic`, which must
//! exist: `rocketgate admin topic create test_topic`), message count (default 1). Prints one
//! `send message success, message_id=...` line per message.

use rocketmq::conf::{ClientOption, ProducerOption};
use rocketmq::model::message::MessageBuilder;
use rocketmq::Producer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let access = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let topic = args.next().unwrap_or_else(|| "test_topic".into());
    let count: usize = args.next().map_or(Ok(1), |n| n.parse())?;

    let mut producer_option = ProducerOption::default();
    // Routes are fetched at start, so a missing topic fails fast.
    producer_option.set_topics(vec![topic.clone()]);
    let mut client_option = ClientOption::default();
    client_option.set_access_url(access);
    client_option.set_enable_tls(false);

    let mut producer = Producer::new(producer_option, client_option)
        .map_err(|e| anyhow::anyhow!("cannot build the producer: {e:?}"))?;
    producer
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("producer start failed: {e:?}"))?;
    for i in 0..count {
        let message = MessageBuilder::builder()
            .set_topic(topic.clone())
            .set_tag("test_tag")
            .set_keys(vec![format!("key-{i}")])
            .set_body(format!("hello rocketgate {i}").into_bytes())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the message: {e:?}"))?;
        let receipt = producer
            .send(message)
            .await
            .map_err(|e| anyhow::anyhow!("send message failed: {e:?}"))?;
        println!("send message success, message_id={}", receipt.message_id());
    }
    producer
        .shutdown()
        .await
        .map_err(|e| anyhow::anyhow!("producer shutdown failed: {e:?}"))?;
    Ok(())
}
