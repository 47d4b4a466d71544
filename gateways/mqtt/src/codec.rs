//! The MQTT wire codec: framing with a size check before any allocation, decoding of MQTT
//! 3.1.1 and 5.0 packets into one model (the v5 packet types of `rumqttc`'s `mqttbytes`), and
//! encoding of the server's packets in the connection's protocol version.
//!
//! Invariants:
//! - The remaining length is read from the fixed header (at most 4 bytes, else malformed) and
//!   compared with the maximum packet size *before* the frame is awaited or buffered, so no
//!   buffer is ever sized by an attacker's length field beyond the configured maximum.
//! - Before CONNECT only a CONNECT frame is accepted; its protocol level picks the decoder
//!   (4 → 3.1.1, 5 → 5.0; anything else is refused with "unsupported protocol version").
//! - Decoding never panics; every malformed input is a [`DecodeError`] (fuzzed, see `fuzz/`).
//!
//! Why `rumqttc`'s `mqttbytes` and not rumqttd: its packet structs have public fields (QoS,
//! packet id, properties) and a pure `read(&mut BytesMut)` framing function, so the session
//! state machine here can send PUBACK/PUBREC only after the core stored the message; rumqttd's
//! broker acknowledges from its in-memory router and keeps sessions and retained messages only
//! in memory. Two gaps of `mqttbytes` are closed here: a v5 DISCONNECT without a reason code
//! (remaining length 0, valid per the spec), and UTF-8 validation of v5 topic names (`Bytes`).
//!
//! Who calls it: `connection` (its driver decodes and encodes, its state machine sizes
//! outgoing PUBLISH packets) and the fuzz target. No I/O, no locks.

use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5::{
    self as v5, ConnAck, ConnectReturnCode, Disconnect, DisconnectReasonCode, Filter, PubAck,
    PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PubRel, PubRelReason, Publish,
    RetainForwardRule, SubAck, SubscribeReasonCode, UnsubAck, UnsubAckReason,
};
use rumqttc::v5::mqttbytes::QoS;

/// The packet model (MQTT 5 types; 3.1.1 packets are converted).
pub type Packet = v5::Packet;

/// Protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.0.
    V5,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length exceeds the maximum packet size.
    #[error("packet of {0} bytes exceeds the maximum packet size")]
    TooLarge(usize),
    /// Malformed bytes (lengths, flags, strings, properties).
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A well-formed packet that is not allowed here (not CONNECT first, server-only packets).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A CONNECT with a protocol level other than 4 or 5.
    #[error("unsupported protocol level {0}")]
    UnsupportedVersion(u8),
}

/// The fixed header of a frame: first byte, header length, remaining length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Packet type and flags.
    pub byte1: u8,
    /// Length of the fixed header (1 + length bytes).
    pub header_len: usize,
    /// Remaining length.
    pub remaining: usize,
}

/// Parses the fixed header; `Ok(None)` when more bytes are needed.
///
/// # Errors
/// [`DecodeError::Malformed`] for a remaining length over 4 bytes, [`DecodeError::TooLarge`].
pub fn frame_header(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if remaining > max {
                return Err(DecodeError::TooLarge(remaining));
            }
            return Ok(Some(FrameHeader {
                byte1,
                header_len: 2 + i,
                remaining,
            }));
        }
    }
    Err(DecodeError::Malformed(
        "remaining length over 4 bytes".into(),
    ))
}

fn malformed(e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(e.to_string())
}

/// Reads the protocol level of a complete CONNECT frame.
fn connect_level(frame: &[u8], h: &FrameHeader) -> Result<u8, DecodeError> {
    let body = frame.get(h.header_len..).unwrap_or_default();
    let name_len = match body {
        [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => return Err(malformed("short CONNECT")),
    };
    let name = body
        .get(2..2 + name_len)
        .ok_or_else(|| malformed("short CONNECT"))?;
    let level = *body
        .get(2 + name_len)
        .ok_or_else(|| malformed("short CONNECT"))?;
    if name != b"MQTT" {
        return match (name, level) {
            (b"MQIsdp", 3) => Err(DecodeError::UnsupportedVersion(3)),
            _ => Err(malformed("protocol name is not MQTT")),
        };
    }
    if level != 4 && level != 5 {
        return Err(DecodeError::UnsupportedVersion(level));
    }
    Ok(level)
}

/// Decodes one packet from `buf`, consuming its bytes; `Ok(None)` when the frame is not
/// complete yet (the buffer never needs more than `max + 5` bytes). `version` is `None` until
/// CONNECT: then only a CONNECT is accepted, and the returned version is the one it asked for.
///
/// # Errors
/// See [`DecodeError`].
pub fn decode(
    buf: &mut BytesMut,
    version: Option<Version>,
    max: usize,
) -> Result<Option<(Packet, Version)>, DecodeError> {
    let Some(h) = frame_header(buf, max)? else {
        return Ok(None);
    };
    let frame_len = h.header_len + h.remaining;
    if buf.len() < frame_len {
        buf.reserve(frame_len - buf.len());
        return Ok(None);
    }
    let packet_type = h.byte1 >> 4;
    let version = match version {
        Some(v) => {
            if packet_type == 1 {
                return Err(DecodeError::Protocol("second CONNECT"));
            }
            v
        }
        None => {
            if packet_type != 1 {
                return Err(DecodeError::Protocol("the first packet must be CONNECT"));
            }
            match connect_level(&buf[..frame_len], &h)? {
                5 => Version::V5,
                _ => Version::V4,
            }
        }
    };
    // Fixed-header flags that the spec fixes (MQTT-2.2.2-1/2).
    let flags = h.byte1 & 0x0f;
    let expected = match packet_type {
        6 | 8 | 10 => Some(0b0010),
        3 => None,
        _ => Some(0),
    };
    if expected.is_some_and(|e| e != flags) {
        return Err(malformed("reserved fixed-header flags"));
    }
    if packet_type == 3 && flags & 0b0110 == 0b0110 {
        return Err(malformed("QoS 3"));
    }
    let packet = match version {
        Version::V5 => {
            if packet_type == 14 && h.remaining == 0 {
                let _ = buf.split_to(frame_len);
                Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection))
            } else {
                v5::Packet::read(buf, Some(max)).map_err(malformed)?
            }
        }
        Version::V4 => from_v4(v4::read(buf, max).map_err(malformed)?)?,
    };
    check_strings(&packet)?;
    Ok(Some((packet, version)))
}

fn check_strings(p: &Packet) -> Result<(), DecodeError> {
    let topic = match p {
        Packet::Publish(p) => &p.topic,
        Packet::Connect(_, Some(w), _) => &w.topic,
        _ => return Ok(()),
    };
    if std::str::from_utf8(topic).is_err() {
        return Err(malformed("topic is not UTF-8"));
    }
    Ok(())
}

fn from_v4(p: v4::Packet) -> Result<Packet, DecodeError> {
    Ok(match p {
        v4::Packet::Connect(c) => Packet::Connect(
            v5::Connect {
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                clean_start: c.clean_session,
                properties: None,
            },
            c.last_will.map(|w| v5::LastWill {
                topic: Bytes::from(w.topic),
                message: w.message,
                qos: qos5(w.qos),
                retain: w.retain,
                properties: None,
            }),
            c.login.map(|l| v5::Login {
                username: l.username,
                password: l.password,
            }),
        ),
        v4::Packet::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: qos5(p.qos),
            retain: p.retain,
            topic: Bytes::from(p.topic),
            pkid: p.pkid,
            payload: p.payload,
            properties: None,
        }),
        v4::Packet::PubAck(a) => Packet::PubAck(PubAck::new(a.pkid, None)),
        v4::Packet::PubRec(a) => Packet::PubRec(PubRec::new(a.pkid, None)),
        v4::Packet::PubRel(a) => Packet::PubRel(PubRel::new(a.pkid, None)),
        v4::Packet::PubComp(a) => Packet::PubComp(PubComp::new(a.pkid, None)),
        v4::Packet::Subscribe(s) => Packet::Subscribe(v5::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter {
                    path: f.path,
                    qos: qos5(f.qos),
                    nolocal: false,
                    preserve_retain: false,
                    retain_forward_rule: RetainForwardRule::OnEverySubscribe,
                })
                .collect(),
            properties: None,
        }),
        v4::Packet::Unsubscribe(u) => Packet::Unsubscribe(v5::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
            properties: None,
        }),
        v4::Packet::PingReq => Packet::PingReq(v5::PingReq),
        v4::Packet::Disconnect => {
            Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection))
        }
        v4::Packet::ConnAck(_)
        | v4::Packet::SubAck(_)
        | v4::Packet::UnsubAck(_)
        | v4::Packet::PingResp => return Err(DecodeError::Protocol("server-only packet")),
    })
}

fn qos5(q: rumqttc::mqttbytes::QoS) -> QoS {
    match q {
        rumqttc::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos4(q: QoS) -> rumqttc::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => rumqttc::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}

fn put_remaining_length(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if len == 0 {
            break;
        }
    }
}

/// Encodes a server packet for a connection of `version` (v5-only packets such as a server
/// DISCONNECT are skipped for 3.1.1, which closes the connection instead). Returns the
/// encoded size.
///
/// # Errors
/// Only for packets the codec cannot represent (over 256 MiB).
pub fn encode(p: &Packet, version: Version, out: &mut BytesMut) -> Result<usize, EncodeError> {
    let start = out.len();
    match (version, p) {
        // rumqttc 0.24 writes a DISCONNECT with a reason and no properties as
        // `E0 01 <reason> 00`: a remaining length of 1 followed by two bytes, which no client
        // can parse (rumqttc's own reader waits for a property byte that never comes).
        // Written here as reason code + empty properties, remaining length 2.
        (Version::V5, Packet::Disconnect(d))
            if d.properties.is_none()
                && d.reason_code != DisconnectReasonCode::NormalDisconnection =>
        {
            out.extend_from_slice(&[0xE0, 0x02, d.reason_code as u8, 0x00]);
        }
        (Version::V5, _) => {
            p.write(out).map_err(|e| EncodeError(e.to_string()))?;
        }
        (Version::V4, _) => encode_v4(p, out)?,
    }
    Ok(out.len() - start)
}

/// The size of a server PUBLISH once [`encode`]d for `version` (its packet id set), without
/// encoding it: what a v5 client's Maximum Packet Size is checked against.
pub fn publish_size(p: &Publish, version: Version) -> usize {
    match version {
        Version::V5 => p.size(),
        Version::V4 => {
            let pkid_len = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
            let len = 2 + p.topic.len() + pkid_len + p.payload.len();
            let len_len = match len {
                0..=127 => 1,
                128..=16_383 => 2,
                16_384..=2_097_151 => 3,
                _ => 4,
            };
            1 + len_len + len
        }
    }
}

/// A packet that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode packet: {0}")]
pub struct EncodeError(String);

fn encode_v4(p: &Packet, out: &mut BytesMut) -> Result<(), EncodeError> {
    let err = |e: rumqttc::mqttbytes::Error| EncodeError(e.to_string());
    match p {
        Packet::Publish(p) => {
            // Hand-rolled: `v4::Publish` owns a `String` topic; this avoids copying it.
            let pkid_len = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
            let len = 2 + p.topic.len() + pkid_len + p.payload.len();
            if len > 268_435_455 {
                return Err(EncodeError("PUBLISH over 256 MiB".into()));
            }
            out.reserve(5 + len);
            out.put_u8(
                0b0011_0000 | u8::from(p.retain) | (p.qos as u8) << 1 | u8::from(p.dup) << 3,
            );
            put_remaining_length(out, len);
            out.put_u16(p.topic.len() as u16);
            out.extend_from_slice(&p.topic);
            if pkid_len > 0 {
                out.put_u16(p.pkid);
            }
            out.extend_from_slice(&p.payload);
        }
        Packet::ConnAck(c) => {
            let code = match c.code {
                ConnectReturnCode::Success => v4::ConnectReturnCode::Success,
                ConnectReturnCode::UnsupportedProtocolVersion
                | ConnectReturnCode::RefusedProtocolVersion => {
                    v4::ConnectReturnCode::RefusedProtocolVersion
                }
                ConnectReturnCode::ClientIdentifierNotValid | ConnectReturnCode::BadClientId => {
                    v4::ConnectReturnCode::BadClientId
                }
                ConnectReturnCode::BadUserNamePassword => {
                    v4::ConnectReturnCode::BadUserNamePassword
                }
                // A will topic this server does not accept: 3.1.1 has no topic code, and
                // "server unavailable" would make the client retry as if for an outage.
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::TopicNameInvalid => {
                    v4::ConnectReturnCode::NotAuthorized
                }
                _ => v4::ConnectReturnCode::ServiceUnavailable,
            };
            v4::ConnAck::new(code, c.session_present)
                .write(out)
                .map_err(err)?;
        }
        Packet::PubAck(a) => {
            v4::PubAck::new(a.pkid).write(out).map_err(err)?;
        }
        Packet::PubRec(a) => {
            v4::PubRec::new(a.pkid).write(out).map_err(err)?;
        }
        Packet::PubRel(a) => {
            v4::PubRel::new(a.pkid).write(out).map_err(err)?;
        }
        Packet::PubComp(a) => {
            v4::PubComp::new(a.pkid).write(out).map_err(err)?;
        }
        Packet::SubAck(s) => {
            let codes = s
                .return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => v4::SubscribeReasonCode::Success(qos4(*q)),
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect();
            v4::SubAck::new(s.pkid, codes).write(out).map_err(err)?;
        }
        Packet::UnsubAck(u) => {
            v4::UnsubAck::new(u.pkid).write(out).map_err(err)?;
        }
        Packet::PingResp(_) => out.extend_from_slice(&[0xd0, 0]),
        // 3.1.1 has no server DISCONNECT: the caller closes the connection.
        _ => {}
    }
    Ok(())
}

/// A PUBACK with a reason (v5) or plain (3.1.1, which ignores the reason).
pub fn puback(pkid: u16, reason: PubAckReason) -> Packet {
    Packet::PubAck(PubAck {
        pkid,
        reason,
        properties: None,
    })
}

/// A PUBREC with a reason.
pub fn pubrec(pkid: u16, reason: PubRecReason) -> Packet {
    Packet::PubRec(PubRec {
        pkid,
        reason,
        properties: None,
    })
}

/// A PUBREL.
pub fn pubrel(pkid: u16) -> Packet {
    Packet::PubRel(PubRel {
        pkid,
        reason: PubRelReason::Success,
        properties: None,
    })
}

/// A PUBCOMP, with "packet identifier not found" when `found` is false.
pub fn pubcomp(pkid: u16, found: bool) -> Packet {
    Packet::PubComp(PubComp {
        pkid,
        reason: if found {
            PubCompReason::Success
        } else {
            PubCompReason::PacketIdentifierNotFound
        },
        properties: None,
    })
}

/// An UNSUBACK.
pub fn unsuback(pkid: u16, reasons: Vec<UnsubAckReason>) -> Packet {
    Packet::UnsubAck(UnsubAck {
        pkid,
        reasons,
        properties: None,
    })
}

/// A SUBACK.
pub fn suback(pkid: u16, return_codes: Vec<SubscribeReasonCode>) -> Packet {
    Packet::SubAck(SubAck {
        pkid,
        return_codes,
        properties: None,
    })
}

/// A CONNACK without properties.
pub fn connack(code: ConnectReturnCode, session_present: bool) -> ConnAck {
    ConnAck {
        session_present,
        code,
        properties: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
