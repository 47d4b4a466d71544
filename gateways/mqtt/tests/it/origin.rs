//! MQTT over WebSocket and browsers: an upgrade from a foreign page (`Origin` neither the
//! listener's own host nor in `mqtt.ws_allowed_origins`) is refused with 403; clients without
//! `Origin` (not browsers) and the same origin are served.

use rocketgate_gateway_mqtt::MqttConfig;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::*;

/// The HTTP status of an MQTT WebSocket upgrade with `origin` (101 when it succeeded).
async fn upgrade(ws_port: u16, origin: Option<&str>) -> u16 {
    let url = format!("ws://127.0.0.1:{ws_port}/mqtt");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", ws_port))
        .await
        .unwrap();
    let r = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("an answer to the upgrade within 10 s");
    match r {
        Ok((_ws, resp)) => resp.status().as_u16(),
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("upgrade with {origin:?}: {e}"),
    }
}

#[tokio::test]
async fn a_foreign_origin_may_not_open_mqtt_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let config = MqttConfig {
        ws_allowed_origins: vec!["https://app.example".into()],
        ..MqttConfig::default()
    };
    let s = Server::start(dir.path(), config).await;
    let own = format!("http://127.0.0.1:{}", s.ws_port);
    assert_eq!(upgrade(s.ws_port, Some("http://evil.example")).await, 403);
    assert_eq!(upgrade(s.ws_port, Some("null")).await, 403);
    assert_eq!(upgrade(s.ws_port, None).await, 101, "not a browser");
    assert_eq!(upgrade(s.ws_port, Some(&own)).await, 101, "same origin");
    assert_eq!(
        upgrade(s.ws_port, Some("https://app.example")).await,
        101,
        "listed"
    );
    s.stop().await;
}
