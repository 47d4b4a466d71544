//! T8b: malformed input against the live listener: closed (at once, or after the 500 ms
//! connect timeout; the tests allow a generous 5 s), others still served.
use std::time::Duration;

use rocketgate_gateway_mqtt::MqttConfig;
use rumqttc::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Sends `bytes` and expects the server to close the connection. Expected at once (or after
/// the 500 ms connect timeout); the 5 s bound is generous, for a loaded machine.
async fn closed(port: u16, bytes: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 256];
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "connection not closed for {bytes:02x?}");
}

fn connect_bytes(v5: bool) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    if v5 {
        let c = rumqttc::v5::mqttbytes::v5::Connect {
            keep_alive: 30,
            client_id: "bad".into(),
            clean_start: true,
            properties: None,
        };
        c.write(&None, &None, &mut b).unwrap();
    } else {
        rumqttc::Connect::new("bad").write(&mut b).unwrap();
    }
    b.to_vec()
}

#[tokio::test]
async fn malformed_input_closes_the_connection_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = MqttConfig {
        connect_timeout_ms: 500,
        ..MqttConfig::default()
    };
    let s = Server::start(dir.path(), config).await;
    // Remaining length 268,435,455 before CONNECT.
    closed(s.port, &[0x10, 0xff, 0xff, 0xff, 0x7f]).await;
    // PUBLISH, PUBACK, CONNACK before CONNECT.
    closed(s.port, &[0x30, 0x05, 0, 1, b'a', b'x', b'y']).await;
    closed(s.port, &[0x40, 0x02, 0, 1]).await;
    closed(s.port, &[0x20, 0x02, 0, 0]).await;
    // A remaining length over 4 bytes.
    closed(s.port, &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
    // Nothing at all: the connect timeout.
    closed(s.port, &[]).await;
    for v5 in [false, true] {
        let mut c = connect_bytes(v5);
        // Invalid UTF-8 topic (QoS 0).
        let mut p = c.clone();
        if v5 {
            p.extend_from_slice(&[0x30, 5, 0, 2, 0xff, 0xfe, 0]);
        } else {
            p.extend_from_slice(&[0x30, 4, 0, 2, 0xff, 0xfe]);
        }
        closed(s.port, &p).await;
        // Illegal topics (QoS 0): empty, wildcard, a first level that cannot be mapped.
        for t in [&b""[..], b"a/+", b"a.b/c"] {
            let mut p = c.clone();
            let extra = usize::from(v5);
            p.push(0x30);
            p.push((2 + t.len() + extra + 1) as u8);
            p.extend_from_slice(&(t.len() as u16).to_be_bytes());
            p.extend_from_slice(t);
            if v5 {
                p.push(0);
            }
            p.push(b'x');
            closed(s.port, &p).await;
        }
        // A second CONNECT.
        let again = c.clone();
        c.extend_from_slice(&again);
        closed(s.port, &c).await;
    }
    // Others are still served.
    let (cl, mut rx, h) = client_v4(s.port, "good", true, |_| {}).await;
    cl.subscribed("ok/#", QoS::AtLeastOnce).await;
    cl.publish("ok/1", QoS::AtLeastOnce, false, "fine")
        .await
        .unwrap();
    assert_eq!(&recv(&mut rx).await.payload[..], b"fine");
    h.abort();
    s.stop().await;
}

#[tokio::test]
async fn bad_credentials_are_refused_when_anonymous_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = MqttConfig {
        allow_anonymous: Some(false),
        users: [("dev".to_owned(), "secret".to_owned())].into(),
        ..MqttConfig::default()
    };
    let s = Server::start(dir.path(), config).await;
    for login in [None, Some(("dev", "wrong"))] {
        let mut c = rumqttc::Connect::new("x");
        if let Some((u, p)) = login {
            c.set_login(u, p);
        }
        let mut b = bytes::BytesMut::new();
        c.write(&mut b).unwrap();
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .unwrap();
        sock.write_all(&b).await.unwrap();
        let mut ack = [0u8; 4];
        sock.read_exact(&mut ack).await.unwrap();
        assert_eq!(ack, [0x20, 2, 0, 4], "bad username or password");
    }
    let (_c, _rx, h) = client_v4(s.port, "ok", true, |o| {
        o.set_credentials("dev", "secret");
    })
    .await;
    h.abort();
    s.stop().await;
}

#[tokio::test]
async fn keep_alive_and_never_released_qos2_ids_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config = MqttConfig {
        receive_maximum: 2,
        ..MqttConfig::default()
    };
    let s = Server::start(dir.path(), config).await;
    // Keep-alive 1 s and silence: closed after 1.5 s, not before (the deadline is generous).
    let mut c = rumqttc::Connect::new("sleepy");
    c.keep_alive = 1;
    let mut b = bytes::BytesMut::new();
    c.write(&mut b).unwrap();
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    sock.write_all(&b).await.unwrap();
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut all))
        .await
        .expect("closed by keep-alive")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    // QoS 2 publishes never released, beyond the receive maximum (v5): DISCONNECT 0x93.
    let mut bytes = connect_bytes(true);
    for pkid in 1u8..=3 {
        bytes.extend_from_slice(&[0x34, 9, 0, 3, b'q', b'/', b'2', 0, pkid, 0, b'x'][..]);
    }
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    sock.write_all(&bytes).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut all))
        .await
        .expect("closed (at once; the bound is generous)")
        .unwrap();
    assert!(all.contains(&0x93), "{all:02x?}");
    s.stop().await;
}
