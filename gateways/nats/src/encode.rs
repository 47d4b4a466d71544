//! The server half of the NATS wire protocol: INFO, MSG / HMSG, +OK, -ERR, PING, PONG, and the
//! conversion of a NATS publish into a core message and of a stored message back into the
//! header block a subscriber receives.
//!
//! Mapping (docs/nats.md): the subject goes to the property `natsSubject`, the reply subject
//! to `natsReply`; each header becomes a property of the same name (a repeated header keeps its
//! values joined by `,`); `Nats-Msg-Id` is also the message key. On delivery every property is
//! a header except those reserved to gateways (`nats*`, `mqtt*`, `__RG_*`, each with an
//! upper-case letter after the prefix) and RocketMQ's own system properties.
//!
//! Pure; no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use rocketgate_core::{Message, StoredMessage};
use serde::Serialize;

use crate::parse::Publish;
use crate::subject::{PROP_REPLY, PROP_SUBJECT};

/// The header of a message's id, kept as its key.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The INFO the server sends first.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// Server id.
    pub server_id: String,
    /// Server name.
    pub server_name: String,
    /// Version.
    pub version: &'static str,
    /// Protocol version.
    pub proto: u8,
    /// The go version field clients print (ours: the crate's).
    pub go: &'static str,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Headers supported.
    pub headers: bool,
    /// Largest payload.
    pub max_payload: usize,
    /// Whether CONNECT must carry credentials.
    pub auth_required: bool,
    /// Whether the connection must upgrade to TLS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// The connection's id.
    pub client_id: u64,
    /// The client's address.
    pub client_ip: String,
}

/// `INFO {json}\r\n`.
pub fn info(i: &Info) -> Bytes {
    let mut s = String::from("INFO ");
    s.push_str(&serde_json::to_string(i).unwrap_or_else(|_| "{}".into()));
    s.push_str("\r\n");
    Bytes::from(s)
}

/// `-ERR '<text>'\r\n`.
pub fn err(text: &str) -> Bytes {
    Bytes::from(format!("-ERR '{text}'\r\n"))
}

/// `+OK\r\n`.
pub const OK: &[u8] = b"+OK\r\n";
/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";

/// The core message of a NATS publish to `topic`, with `headers` already parsed.
pub fn to_message(topic: &str, p: &Publish, headers: &[(String, String)]) -> Message {
    let mut m = Message::new(topic, p.payload.clone());
    let mut props: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        props
            .entry(k.clone())
            .and_modify(|old| {
                old.push(',');
                old.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    if let Some(id) = props.get(MSG_ID_HEADER).filter(|v| !v.is_empty()) {
        m = m.with_key(id.clone());
    }
    props.insert(PROP_SUBJECT.into(), p.subject.clone());
    match &p.reply {
        Some(r) => {
            props.insert(PROP_REPLY.into(), r.clone());
        }
        None => {
            props.remove(PROP_REPLY);
        }
    }
    m.properties = props;
    m
}

/// Whether a property is shown to NATS subscribers as a header.
fn shown(k: &str) -> bool {
    let b = k.as_bytes();
    let reserved =
        |p: &[u8]| b.len() > p.len() && b.starts_with(p) && b[p.len()].is_ascii_uppercase();
    let hidden = reserved(b"nats")
        || reserved(b"mqtt")
        || k.starts_with("__RG_")
        || rocketgate_core::rules::RESERVED_PROPERTY_KEYS.contains(&k)
        || k.bytes().any(|c| c == b':' || !c.is_ascii_graphic());
    !hidden
}

/// The header block a subscriber gets for `m` (`None`: no header to send).
pub fn header_block(m: &StoredMessage) -> Option<Bytes> {
    let mut s = String::new();
    for (k, v) in &m.properties {
        if shown(k) {
            let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            let _ = write!(s, "{k}: {v}\r\n");
        }
    }
    if s.is_empty() {
        return None;
    }
    Some(Bytes::from(format!("NATS/1.0\r\n{s}\r\n")))
}

/// A `MSG` (no headers) or `HMSG` frame.
pub fn msg(
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> Bytes {
    let mut out = BytesMut::with_capacity(
        subject.len() + sid.len() + 48 + headers.map_or(0, <[u8]>::len) + payload.len(),
    );
    let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
    match headers {
        Some(h) => {
            let _ = write!(
                Fmt(&mut out),
                "HMSG {subject} {sid}{reply} {} {}\r\n",
                h.len(),
                h.len() + payload.len()
            );
            out.put_slice(h);
        }
        None => {
            let _ = write!(
                Fmt(&mut out),
                "MSG {subject} {sid}{reply} {}\r\n",
                payload.len()
            );
        }
    }
    out.put_slice(payload);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The status message a requester gets when nobody listens (`no_responders`).
pub fn no_responders(reply: &str, sid: &str) -> Bytes {
    msg(reply, sid, None, Some(b"NATS/1.0 503\r\n\r\n"), b"")
}

struct Fmt<'a>(&'a mut BytesMut);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_what_nats_clients_read() {
        assert_eq!(
            &msg("a.b", "1", None, None, b"hi")[..],
            b"MSG a.b 1 2\r\nhi\r\n"
        );
        assert_eq!(
            &msg(
                "a.b",
                "1",
                Some("_INBOX.x"),
                Some(b"NATS/1.0\r\n\r\n"),
                b"hi"
            )[..],
            b"HMSG a.b 1 _INBOX.x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        );
        assert_eq!(&err("Slow Consumer")[..], b"-ERR 'Slow Consumer'\r\n");
        assert_eq!(
            &no_responders("_INBOX.a", "9")[..],
            b"HMSG _INBOX.a 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        );
    }

    #[test]
    fn headers_become_properties_and_come_back() {
        let p = Publish {
            subject: "orders.eu".into(),
            reply: Some("_INBOX.1".into()),
            headers: None,
            payload: Bytes::from_static(b"x"),
        };
        let h = vec![
            ("A".to_owned(), "1".to_owned()),
            ("A".to_owned(), "2".to_owned()),
            (MSG_ID_HEADER.to_owned(), "id-7".to_owned()),
            ("natsSubject".to_owned(), "forged".to_owned()),
        ];
        let m = to_message("orders", &p, &h);
        assert_eq!(m.properties["A"], "1,2");
        assert_eq!(m.properties[PROP_SUBJECT], "orders.eu");
        assert_eq!(m.properties[PROP_REPLY], "_INBOX.1");
        assert_eq!(m.keys, vec!["id-7".to_owned()]);
        let mut stored = crate::subject::tests_support::stored("orders");
        stored.properties = m.properties;
        stored.properties.insert("mqttQos".into(), "1".into());
        let block = header_block(&stored).unwrap();
        assert_eq!(
            &block[..],
            b"NATS/1.0\r\nA: 1,2\r\nNats-Msg-Id: id-7\r\n\r\n"
        );
    }
}
