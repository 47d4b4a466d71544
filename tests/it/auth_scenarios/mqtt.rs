//! The MQTT column of the authorization scenarios: each cell runs twice, with a rumqttc
//! MQTT 5 client and then a rumqttc MQTT 3.1.1 client, and answers `"<5.0> · <3.1.1>"`.
//!
//! Credentials: CONNECT username = access key, password = secret key or bearer token.
//! Publish is a QoS 1 PUBLISH to `<topic>/x`; receive is SUBSCRIBE `orders/#` at QoS 1 (the
//! session's group `mqtt-<client id>`), then one message stored through the core, which must
//! arrive as a PUBLISH. Answers in the protocol's own terms: `CONNACK 0x86` / `0x87` (5.0) and
//! `CONNACK 4` / `5` (3.1.1); `PUBACK 0x00` / `0x87` (5.0), `PUBACK` / `closed` (3.1.1 cannot
//! refuse a PUBLISH otherwise); `SUBACK 0x01` / `0x87` (5.0), `SUBACK 1` / `0x80` (3.1.1).
//! rumqttc reports a refused CONNACK, PUBACK or SUBACK of 5.0 as an error of its event loop;
//! the reason code is read from it. Every wait is bounded.
//!
//! Used by `auth_scenarios` only; no state of its own.

use std::time::Duration;

use tokio::time::Instant;

use super::server::{Server, ORDERS};
use super::{Act, Cell, Login};

/// Bound on one awaited packet.
const WAIT: Duration = Duration::from_secs(8);

/// Runs one cell over MQTT 5 and MQTT 3.1.1.
pub async fn run(s: &Server, cell: &Cell) -> String {
    if matches!(cell.act, Act::AdminTopic | Act::ReceiveNewGroup) {
        return "n/a".into();
    }
    let five = v5(s, cell).await;
    let four = v311(s, cell).await;
    format!("{five} · {four}")
}

fn credentials(login: &Login) -> Option<(String, String)> {
    match login {
        Login::Anonymous => None,
        Login::Secret { ak, sk } => Some((ak.clone(), sk.clone())),
        Login::Token { ak, token } | Login::Expired { ak, token, .. } => {
            Some((ak.clone(), token.clone()))
        }
    }
}

fn publish_topic(cell: &Cell) -> String {
    format!("{}/x", cell.topic)
}

/// The next incoming MQTT 5 packet by `deadline`; a refusal rumqttc reports as an error is
/// the answer in the table's terms.
async fn next_v5(
    events: &mut rumqttc::v5::EventLoop,
    deadline: Instant,
) -> Result<rumqttc::v5::mqttbytes::v5::Packet, String> {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAckReason, SubscribeReasonCode};
    use rumqttc::v5::{ConnectionError, Event, StateError};
    loop {
        let e = match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => return Err(format!("nothing within {WAIT:?}")),
            Ok(Ok(Event::Incoming(p))) => return Ok(p),
            Ok(Ok(Event::Outgoing(_))) => continue,
            Ok(Err(e)) => e,
        };
        return Err(match e {
            ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword) => {
                "CONNACK 0x86".into()
            }
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
                "CONNACK 0x87".into()
            }
            ConnectionError::MqttState(StateError::PubAckFail {
                reason: PubAckReason::NotAuthorized,
            }) => "PUBACK 0x87".into(),
            ConnectionError::MqttState(StateError::SubFail {
                reason: SubscribeReasonCode::NotAuthorized,
            }) => "SUBACK 0x87".into(),
            other => format!("error: {other}"),
        });
    }
}

async fn v5(s: &Server, cell: &Cell) -> String {
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, MqttOptions};

    let mut o = MqttOptions::new(format!("{}-v5", cell.client), "127.0.0.1", s.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = credentials(&cell.login) {
        o.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(o, 16);
    let deadline = Instant::now() + WAIT;
    let answer = async {
        while !matches!(next_v5(&mut events, deadline).await?, Packet::ConnAck(_)) {}
        if matches!(cell.act, Act::PublishOrders | Act::PublishOther) {
            client
                .publish(publish_topic(cell), QoS::AtLeastOnce, false, "from MQTT 5")
                .await
                .map_err(|e| e.to_string())?;
            loop {
                if let Packet::PubAck(a) = next_v5(&mut events, deadline).await? {
                    return Ok::<_, String>(match a.reason {
                        PubAckReason::Success => "PUBACK 0x00".into(),
                        other => format!("PUBACK {other:?}"),
                    });
                }
            }
        }
        client
            .subscribe(format!("{ORDERS}/#"), QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            if let Packet::SubAck(a) = next_v5(&mut events, deadline).await? {
                if a.return_codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
                    return Ok(format!("SUBACK {:?}", a.return_codes));
                }
                break;
            }
        }
        s.put_order().await;
        while !matches!(next_v5(&mut events, deadline).await?, Packet::Publish(_)) {}
        Ok("SUBACK 0x01, PUBLISH".into())
    }
    .await;
    drop(client);
    answer.unwrap_or_else(|e| e)
}

/// The next incoming MQTT 3.1.1 packet by `deadline`; a refused CONNACK or a closed
/// connection is the answer in the table's terms.
async fn next_v311(
    events: &mut rumqttc::EventLoop,
    deadline: Instant,
) -> Result<rumqttc::Packet, String> {
    use rumqttc::{ConnectReturnCode, ConnectionError, Event, StateError};
    loop {
        let e = match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => return Err(format!("nothing within {WAIT:?}")),
            Ok(Ok(Event::Incoming(p))) => return Ok(p),
            Ok(Ok(Event::Outgoing(_))) => continue,
            Ok(Err(e)) => e,
        };
        return Err(match e {
            ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword) => {
                "CONNACK 4".into()
            }
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
                "CONNACK 5".into()
            }
            ConnectionError::Io(_) | ConnectionError::MqttState(StateError::Io(_)) => {
                "closed".into()
            }
            other => format!("error: {other}"),
        });
    }
}

async fn v311(s: &Server, cell: &Cell) -> String {
    use rumqttc::{AsyncClient, MqttOptions, Packet, QoS, SubscribeReasonCode};

    let mut o = MqttOptions::new(format!("{}-v4", cell.client), "127.0.0.1", s.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = credentials(&cell.login) {
        o.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(o, 16);
    let deadline = Instant::now() + WAIT;
    let answer = async {
        while !matches!(next_v311(&mut events, deadline).await?, Packet::ConnAck(_)) {}
        if matches!(cell.act, Act::PublishOrders | Act::PublishOther) {
            client
                .publish(
                    publish_topic(cell),
                    QoS::AtLeastOnce,
                    false,
                    "from MQTT 3.1.1",
                )
                .await
                .map_err(|e| e.to_string())?;
            while !matches!(next_v311(&mut events, deadline).await?, Packet::PubAck(_)) {}
            return Ok::<_, String>("PUBACK".into());
        }
        client
            .subscribe(format!("{ORDERS}/#"), QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            if let Packet::SubAck(a) = next_v311(&mut events, deadline).await? {
                match a.return_codes.as_slice() {
                    [SubscribeReasonCode::Success(QoS::AtLeastOnce)] => break,
                    [SubscribeReasonCode::Failure] => return Ok("SUBACK 0x80".into()),
                    other => return Ok(format!("SUBACK {other:?}")),
                }
            }
        }
        s.put_order().await;
        while !matches!(next_v311(&mut events, deadline).await?, Packet::Publish(_)) {}
        Ok("SUBACK 1, PUBLISH".into())
    }
    .await;
    drop(client);
    answer.unwrap_or_else(|e| e)
}
