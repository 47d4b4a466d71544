//! The client half of the NATS wire protocol: [`Parser::next`] takes complete operations
//! (`CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`) off the front of a read buffer.
//!
//! Invariants:
//! - Every size is bounded before anything is buffered for it: a control line longer than
//!   `max_control_line` is refused as soon as that many bytes arrived without a line end; a
//!   PUB/HPUB whose announced size exceeds `max_payload` (or headers over `max_header_bytes`)
//!   is refused from its control line, before its payload is read.
//! - Operation names are case-insensitive; arguments are separated by spaces or tabs; a line
//!   ends with `\r\n` (a bare `\n` is accepted, as nats-server does).
//! - An error leaves the buffer as it was: the connection ends (or skips nothing, see
//!   `ProtocolError::closes`) and no operation after it is taken.
//!
//! Pure: no I/O, no state beyond the limits. Subjects are not checked here (`subject.rs`).

use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;

use crate::error::ProtocolError;

/// The CONNECT options a client sends (unknown fields are ignored, as nats-server does).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConnectOptions {
    /// `+OK` after every operation.
    pub verbose: bool,
    /// Strict checks (subjects are always checked strictly here).
    pub pedantic: bool,
    /// Whether the client wants TLS.
    pub tls_required: bool,
    /// A bearer token.
    pub auth_token: Option<String>,
    /// User name (a core access key).
    pub user: Option<String>,
    /// Password (the user's secret key, or a token).
    pub pass: Option<String>,
    /// The client's name.
    pub name: Option<String>,
    /// The client's language.
    pub lang: Option<String>,
    /// The client's version.
    pub version: Option<String>,
    /// Protocol version (0 or 1).
    pub protocol: Option<u8>,
    /// Whether the client wants its own messages (always delivered here).
    pub echo: Option<bool>,
    /// The client understands HMSG.
    pub headers: bool,
    /// The client wants a 503 status message when a request has no responders.
    pub no_responders: bool,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `CONNECT {json}`.
    Connect(Box<ConnectOptions>),
    /// `PUB` or `HPUB`.
    Pub(Publish),
    /// `SUB subject [queue] sid`.
    Sub {
        /// The subject (a filter).
        subject: String,
        /// The queue group, if any.
        queue: Option<String>,
        /// The client's subscription id.
        sid: String,
    },
    /// `UNSUB sid [max]`.
    Unsub {
        /// The subscription id.
        sid: String,
        /// Unsubscribe after this many messages in all.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
}

/// A `PUB` / `HPUB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The subject.
    pub subject: String,
    /// The reply subject, if any.
    pub reply: Option<String>,
    /// The raw header block of an HPUB (`NATS/1.0\r\n...\r\n\r\n`).
    pub headers: Option<Bytes>,
    /// The payload.
    pub payload: Bytes,
}

/// The limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct Parser {
    /// Longest control line.
    pub max_control_line: usize,
    /// Largest payload, headers included.
    pub max_payload: usize,
    /// Largest header block.
    pub max_header_bytes: usize,
}

/// Longest subscription id accepted.
const MAX_SID: usize = 128;

impl Parser {
    /// Takes the next complete operation off `buf`; `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// The [`ProtocolError`] to send; the buffer is left unchanged.
    pub fn next(&self, buf: &mut BytesMut) -> Result<Option<Op>, ProtocolError> {
        let Some(nl) = buf
            .iter()
            .take(self.max_control_line + 2)
            .position(|&b| b == b'\n')
        else {
            return if buf.len() > self.max_control_line + 1 {
                Err(ProtocolError::ControlLine)
            } else {
                Ok(None)
            };
        };
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if line_end > self.max_control_line {
            return Err(ProtocolError::ControlLine);
        }
        let line =
            std::str::from_utf8(&buf[..line_end]).map_err(|_| ProtocolError::UnknownOperation)?;
        let line = line.trim_start_matches([' ', '\t']);
        let (name, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        let args: Vec<&str> = rest.split([' ', '\t']).filter(|a| !a.is_empty()).collect();
        let name = name.to_ascii_uppercase();
        let op = match name.as_str() {
            "PING" if args.is_empty() => Op::Ping,
            "PONG" if args.is_empty() => Op::Pong,
            "CONNECT" => {
                let json = rest.trim();
                let options: ConnectOptions =
                    serde_json::from_str(json).map_err(|_| ProtocolError::InvalidClientProtocol)?;
                if options.protocol.is_some_and(|p| p > 1) {
                    return Err(ProtocolError::InvalidClientProtocol);
                }
                Op::Connect(Box::new(options))
            }
            "SUB" => {
                let (subject, queue, sid) = match args[..] {
                    [s, sid] => (s, None, sid),
                    [s, q, sid] => (s, Some(q.to_owned()), sid),
                    _ => return Err(ProtocolError::UnknownOperation),
                };
                Op::Sub {
                    subject: subject.to_owned(),
                    queue,
                    sid: sid_of(sid)?,
                }
            }
            "UNSUB" => match args[..] {
                [sid] => Op::Unsub {
                    sid: sid_of(sid)?,
                    max: None,
                },
                [sid, max] => Op::Unsub {
                    sid: sid_of(sid)?,
                    max: Some(number(max)?),
                },
                _ => return Err(ProtocolError::UnknownOperation),
            },
            "PUB" | "HPUB" => {
                let line = self.pub_line(name == "HPUB", &args)?;
                return take_pub(buf, nl + 1, line);
            }
            _ => return Err(ProtocolError::UnknownOperation),
        };
        buf.advance(nl + 1);
        Ok(Some(op))
    }
}

/// A PUB / HPUB control line, checked against the limits.
struct PubLine {
    subject: String,
    reply: Option<String>,
    /// The header block's size (HPUB).
    headers: Option<usize>,
    total: usize,
}

impl Parser {
    fn pub_line(&self, hpub: bool, args: &[&str]) -> Result<PubLine, ProtocolError> {
        let (subject, reply, hdr, total) = match (hpub, args) {
            (false, [s, n]) => (*s, None, 0, number(n)?),
            (false, [s, r, n]) => (*s, Some(*r), 0, number(n)?),
            (true, [s, h, n]) => (*s, None, number(h)?, number(n)?),
            (true, [s, r, h, n]) => (*s, Some(*r), number(h)?, number(n)?),
            _ => return Err(ProtocolError::UnknownOperation),
        };
        if total > self.max_payload as u64 || hdr > self.max_header_bytes as u64 {
            return Err(ProtocolError::MaxPayload);
        }
        if hdr > total {
            return Err(ProtocolError::UnknownOperation);
        }
        Ok(PubLine {
            subject: subject.to_owned(),
            reply: reply.map(str::to_owned),
            headers: hpub.then_some(hdr as usize),
            total: total as usize,
        })
    }
}

/// The publish whose payload starts at `start`, once all of it and its CRLF arrived.
fn take_pub(buf: &mut BytesMut, start: usize, line: PubLine) -> Result<Option<Op>, ProtocolError> {
    let end = start + line.total;
    if buf.len() < end + 2 {
        buf.reserve(end + 2 - buf.len());
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ProtocolError::UnknownOperation);
    }
    buf.advance(start);
    let mut body = buf.split_to(line.total).freeze();
    buf.advance(2);
    let headers = line.headers.map(|h| body.split_to(h));
    Ok(Some(Op::Pub(Publish {
        subject: line.subject,
        reply: line.reply,
        headers,
        payload: body,
    })))
}

fn number(s: &str) -> Result<u64, ProtocolError> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtocolError::UnknownOperation);
    }
    s.parse().map_err(|_| ProtocolError::UnknownOperation)
}

fn sid_of(s: &str) -> Result<String, ProtocolError> {
    if s.len() > MAX_SID || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProtocolError::UnknownOperation);
    }
    Ok(s.to_owned())
}

/// Header entries of an HPUB's header block: the `NATS/1.0` line, then `Name: value` lines
/// (a name may repeat), then an empty line.
///
/// # Errors
/// [`ProtocolError::UnknownOperation`] for a block that is not one.
pub fn headers(block: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let bad = || ProtocolError::UnknownOperation;
    let text = std::str::from_utf8(block).map_err(|_| bad())?;
    let body = text.strip_suffix("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = body.split("\r\n");
    let first = lines.next().ok_or_else(bad)?;
    if !first.starts_with("NATS/1.0") {
        return Err(bad());
    }
    let mut out = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(bad)?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        out.push((k.to_owned(), v.trim().to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
