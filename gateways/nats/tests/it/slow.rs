//! A subscriber that does not read is cut off at `max_pending_bytes` with `-ERR 'Slow
//! Consumer'`, and the gateway's memory for it stays bounded.

use rocketgate_nats::NatsConfig;

use crate::support::{Raw, Server};

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        NatsConfig {
            max_pending_bytes: 64 << 10,
            ..NatsConfig::default()
        },
    )
    .await;
    let mut lazy = Raw::connected(&server.addr, "{}").await;
    lazy.send(b"SUB firehose 1\r\nPING\r\n").await;
    lazy.expect("PONG\r\n").await;
    let publisher = server.client().await;
    let body = bytes::Bytes::from(vec![b'x'; 16 << 10]);
    // Far more than the socket buffers and the pending bound hold.
    for _ in 0..2000 {
        publisher.publish("firehose", body.clone()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    let all = lazy.until_closed().await;
    assert!(
        all.ends_with("-ERR 'Slow Consumer'\r\n"),
        "ends with the error: …{:?}",
        &all[all.len().saturating_sub(80)..]
    );
    let delivered = all.matches("MSG firehose 1 ").count();
    assert!(delivered < 2000, "cut off before the end: {delivered}");
    drop(publisher);
    server.stop().await;
}
