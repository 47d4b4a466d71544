//! Metrics cardinality: short-lived MQTT clients leave no series of their own (a recorder keeps
//! every series it saw until the process ends). The finding: 300 short-lived clients left 600
//! permanent series, one `rocketgate_messages_out_total` and one `rocketgate_acks_total` per
//! session group `mqtt-<client id>`.

use rocketgate_core::Message;
use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::QoS;

use crate::support::*;

#[tokio::test]
async fn short_lived_clients_leave_no_series_of_their_own() {
    // The only test of this binary that installs a recorder (the facade's is process-wide).
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), MqttConfig::default()).await;
    s.broker
        .topics()
        .create(rocketgate_core::TopicConfig::new("churn", 1))
        .unwrap();
    for i in 0..30 {
        let (c, mut rx, h) = client_v4(s.port, &format!("churn-client-{i}"), true, |_| {}).await;
        c.subscribed("churn/#", QoS::AtLeastOnce).await;
        s.broker
            .producer()
            .send(Message::new("churn", format!("m{i}")).into())
            .await
            .unwrap();
        // Popped (messages out), received, acknowledged (acks) through its session group.
        assert_eq!(recv(&mut rx).await.payload, format!("m{i}").as_bytes());
        c.disconnect().await.unwrap();
        ended(h).await;
    }
    // The acknowledgements are sent by a task of the connection: wait for all 30 of them.
    let text = eventually("the acknowledgements are recorded", || {
        let text = prometheus.render();
        let acked: f64 = text
            .lines()
            .filter(|l| l.starts_with("rocketgate_acks_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        std::future::ready((acked >= 30.0).then_some(text))
    })
    .await;
    let own: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("churn-client"))
        .collect();
    assert!(own.is_empty(), "series per client: {own:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("rocketgate_messages_out_total")
                && l.contains("group=\"mqtt-session\"")),
        "{text}"
    );
    s.stop().await;
}
