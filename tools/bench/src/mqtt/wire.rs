//! The raw MQTT 3.1.1 client of `bench mqtt`: CONNECT, PUBLISH, SUBSCRIBE and frame reading,
//! the frames any device sends, without a client library's own queueing.
//!
//! Owns only the wire format; the cases that use it are in [`super`]. Must not print.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{bail, ensure, Result};

pub(super) fn put_len(b: &mut BytesMut, mut n: usize) {
    loop {
        let mut x = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            x |= 0x80;
        }
        b.put_u8(x);
        if n == 0 {
            return;
        }
    }
}

pub(super) fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len() as u16);
    b.put_slice(s.as_bytes());
}

pub(super) fn publish(b: &mut BytesMut, topic: &str, qos: u8, pkid: u16, payload: &[u8]) {
    b.put_u8(0x30 | (qos << 1));
    put_len(
        b,
        2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload.len(),
    );
    put_str(b, topic);
    if qos > 0 {
        b.put_u16(pkid);
    }
    b.put_slice(payload);
}

pub(super) async fn connect(addr: &str, id: &str) -> Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut b = BytesMut::new();
    let mut body = BytesMut::new();
    put_str(&mut body, "MQTT");
    body.put_u8(4);
    body.put_u8(0x02);
    body.put_u16(60);
    put_str(&mut body, id);
    b.put_u8(0x10);
    put_len(&mut b, body.len());
    b.put_slice(&body);
    s.write_all(&b).await?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack)).await??;
    ensure!(ack[0] == 0x20 && ack[3] == 0, "CONNACK refused: {ack:?}");
    Ok(s)
}

/// Reads one frame (type byte and body) from `buf`, refilling from `s`.
pub(super) async fn frame(s: &mut TcpStream, buf: &mut BytesMut) -> Result<(u8, BytesMut)> {
    loop {
        if buf.len() >= 2 {
            let mut len = 0usize;
            let mut i = 1;
            let mut complete = false;
            while i < buf.len() && i <= 4 {
                len |= usize::from(buf[i] & 0x7f) << (7 * (i - 1));
                i += 1;
                if buf[i - 1] & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if complete && buf.len() >= i + len {
                let t = buf[0];
                buf.advance(i);
                return Ok((t, buf.split_to(len)));
            }
        }
        if s.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
    }
}
