//! The MQTT client side of the cross-protocol tests (`cross_mqtt`, `cross_http`): a rumqttc
//! 3.1.1 client on 127.0.0.1 and a bounded wait for the packets it receives.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet};

/// A client `id` of the MQTT listener on 127.0.0.1:`port` (it connects on the first poll).
pub fn connect(port: u16, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(o, 16)
}

/// Polls an MQTT event loop until `want` picks an incoming packet, for at most `limit`.
pub async fn until<T>(
    events: &mut EventLoop,
    limit: Duration,
    what: &str,
    mut want: impl FnMut(&Packet) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "MQTT: no {what} within {limit:?}");
        match tokio::time::timeout(left, events.poll()).await {
            Ok(Ok(Event::Incoming(p))) => {
                if let Some(t) = want(&p) {
                    return t;
                }
            }
            Ok(Ok(Event::Outgoing(_))) => {}
            Ok(Err(e)) => panic!("MQTT connection failed waiting for {what}: {e}"),
            Err(_) => panic!("MQTT: no {what} within {limit:?}"),
        }
    }
}
