//! The two deliberately minimal clients of `bench http`: HTTP/1.1 with keep-alive over one
//! `TcpStream` per connection (`Content-Length` bodies only, which is what the gateway answers)
//! and a WebSocket client (masked text frames out, unmasked frames in). They keep the client
//! side cheap so the figures are the server's.
//!
//! Owns only the wire format of these two clients; the cases that use them are in
//! [`super`]. Must not print.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::Context;
use crate::error::{bail, ensure, Result};

/// One keep-alive HTTP/1.1 connection.
pub(super) struct Conn {
    io: BufReader<TcpStream>,
    pub(super) host: String,
    buf: Vec<u8>,
}

impl Conn {
    pub(super) async fn open(target: &str) -> Result<Self> {
        let stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("cannot connect to {target}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::new(stream),
            host: target.to_owned(),
            buf: Vec::new(),
        })
    }

    /// Sends one request; answers the status and body.
    pub(super) async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.io.get_mut().write_all(&req).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            ensure!(self.io.read_line(&mut line).await? > 0, "connection closed");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().context("bad Content-Length")?;
                }
            }
        }
        ensure!(length <= 64 << 20, "answer too large");
        self.buf.resize(length, 0);
        self.io.read_exact(&mut self.buf).await?;
        Ok((status, std::mem::take(&mut self.buf)))
    }
}

/// Microseconds since the epoch.
pub(super) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A minimal WebSocket client: handshake, masked text frames out, frames in.
pub(super) struct Ws {
    io: BufReader<TcpStream>,
}

impl Ws {
    pub(super) async fn open(target: &str) -> Result<Self> {
        let mut conn = Conn::open(target).await?;
        let req = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.io.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        conn.io.read_line(&mut line).await?;
        ensure!(line.contains(" 101 "), "WebSocket upgrade refused: {line}");
        loop {
            line.clear();
            ensure!(
                conn.io.read_line(&mut line).await? > 0,
                "closed in the handshake"
            );
            if line.trim_end().is_empty() {
                break;
            }
        }
        Ok(Self { io: conn.io })
    }

    pub(super) async fn send(&mut self, text: &str) -> Result<()> {
        let payload = text.as_bytes();
        let mut frame = vec![0x81_u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // A zero mask key: valid, and the payload goes out as is.
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        self.io.get_mut().write_all(&frame).await?;
        Ok(())
    }

    /// The next text frame (pings are answered, other control frames skipped).
    pub(super) async fn recv(&mut self) -> Result<String> {
        loop {
            let mut head = [0u8; 2];
            self.io.read_exact(&mut head).await?;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                len = u64::from(self.io.read_u16().await?);
            } else if len == 127 {
                len = self.io.read_u64().await?;
            }
            ensure!(len <= 64 << 20, "frame too large");
            let mut payload = vec![0u8; usize::try_from(len)?];
            self.io.read_exact(&mut payload).await?;
            match head[0] & 0x0f {
                0x1 => return Ok(String::from_utf8(payload)?),
                0x8 => bail!("the server closed the WebSocket"),
                0x9 => {
                    let mut pong = vec![0x8a_u8, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.io.get_mut().write_all(&pong).await?;
                }
                _ => {}
            }
        }
    }
}
