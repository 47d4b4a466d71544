//! A simple consumer on the official RocketMQ 5 Rust SDK (`rocketmq` 5.0.0), unchanged,
//! receiving from rocketgate's gRPC endpoint and acknowledging what it gets.
//!
//! ```sh
//! cargo run -p rocketgate-example-rust-sdk --bin simple_consumer -- 127.0.0.1:8081 test_topic 3
//! ```
//!
//! Arguments: access URL (default `127.0.0.1:8081`), topic (default `test_topic`), how many
//! messages to wait for (default 1; it gives up after 10 empty receives). Consumer group
//! `SimpleConsumerGroup`, tag filter `test_tag`. Prints one `received message_id=... body=...`
//! line per message, then acks it.

use rocketmq::conf::{ClientOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::SimpleConsumer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let access = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let topic = args.next().unwrap_or_else(|| "test_topic".into());
    let want: usize = args.next().map_or(Ok(1), |n| n.parse())?;

    let mut consumer_option = SimpleConsumerOption::default();
    consumer_option.set_topics(vec![topic.clone()]);
    consumer_option.set_consumer_group("SimpleConsumerGroup");
    let mut client_option = ClientOption::default();
    client_option.set_access_url(access);
    client_option.set_enable_tls(false);

    let mut consumer = SimpleConsumer::new(consumer_option, client_option)
        .map_err(|e| anyhow::anyhow!("cannot build the consumer: {e:?}"))?;
    consumer
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("simple consumer start failed: {e:?}"))?;
    let filter = FilterExpression::new(FilterType::Tag, "test_tag");
    let (mut got, mut empty) = (0, 0);
    while got < want && empty < 10 {
        let messages = consumer
            .receive(topic.clone(), &filter)
            .await
            .map_err(|e| anyhow::anyhow!("receive message failed: {e:?}"))?;
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        for message in messages {
            println!(
                "received message_id={} body={}",
                message.message_id(),
                String::from_utf8_lossy(message.body())
            );
            consumer
                .ack(&message)
                .await
                .map_err(|e| anyhow::anyhow!("ack failed: {e:?}"))?;
            got += 1;
        }
    }
    consumer
        .shutdown()
        .await
        .map_err(|e| anyhow::anyhow!("simple consumer shutdown failed: {e:?}"))?;
    anyhow::ensure!(got >= want, "received {got} of {want} messages");
    Ok(())
}
