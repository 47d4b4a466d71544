//! MQTT over WebSocket: the handshake (path `/mqtt`, subprotocol `mqtt`, the browser's
//! `Origin`) and a byte-stream adapter so that the same connection code serves both
//! transports.
//!
//! Browser defence: a page on any site can make a browser open a WebSocket to this port (with
//! the user's network position), and the browser says which site in `Origin`. So an upgrade
//! with an `Origin` is served only when it is the request's own `Host` (same origin) or one of
//! `mqtt.ws_allowed_origins`; otherwise 403. An upgrade without `Origin` is not from a browser
//! page and is served (MQTT clients, tools).
//!
//! The adapter reads binary messages into a buffer (a message larger than the maximum packet
//! size + 8 bytes of framing is refused by tungstenite's limits) and writes each write call as
//! one binary message.
//!
//! Concurrency: owned by the connection task; no locks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use rocketgate_gateway_kit::MaybeTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Whether `s` is an origin as browsers send it: `scheme://host[:port]`, nothing after.
pub(crate) fn is_origin(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, authority)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+')
            && !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@', ' '])
    })
}

/// Whether an upgrade with `origin` (the header, if any) for `host` (the `Host` header) may
/// proceed (see the module doc).
pub(crate) fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    let bare = |a: &str| -> String {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(b) if !default_port.is_empty() => b.to_owned(),
            _ => a,
        }
    };
    host.is_some_and(|h| bare(h) == bare(authority))
}

/// Accepts a WebSocket handshake for MQTT, from a browser page only of the listener's own
/// origin or of `allowed_origins`.
///
/// # Errors
/// Handshake failures (wrong path, no `mqtt` subprotocol, a foreign `Origin`, I/O).
pub async fn accept(
    stream: MaybeTls<TcpStream>,
    max_packet: usize,
    allowed_origins: &[String],
) -> Result<WsBytes, WsError> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(max_packet + 8);
    config.max_frame_size = Some(max_packet + 8);
    // tungstenite's callback signature fixes the error type.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != "/mqtt" {
            let mut e = ErrorResponse::new(Some("MQTT is served at /mqtt".into()));
            *e.status_mut() = StatusCode::NOT_FOUND;
            return Err(e);
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        };
        if !origin_allowed(header("origin"), header("host"), allowed_origins) {
            tracing::info!(origin = ?header("origin"), "MQTT WebSocket upgrade from a foreign origin refused");
            let mut e = ErrorResponse::new(Some(
                "this Origin may not open MQTT over WebSocket (mqtt.ws_allowed_origins)".into(),
            ));
            *e.status_mut() = StatusCode::FORBIDDEN;
            return Err(e);
        }
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
        if !offered {
            let mut e = ErrorResponse::new(Some("subprotocol mqtt required".into()));
            *e.status_mut() = StatusCode::BAD_REQUEST;
            return Err(e);
        }
        resp.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        Ok(resp)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await?;
    Ok(WsBytes {
        ws,
        read: Bytes::new(),
    })
}

/// A WebSocket as a byte stream.
pub struct WsBytes {
    ws: WebSocketStream<MaybeTls<TcpStream>>,
    read: Bytes,
}

fn io_err(e: WsError) -> std::io::Error {
    std::io::Error::other(e)
}

impl AsyncRead for WsBytes {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.read.is_empty() {
                let n = self.read.len().min(buf.remaining());
                buf.put_slice(&self.read[..n]);
                self.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io_err(e))),
                Poll::Ready(Some(Ok(Message::Binary(b)))) => self.read = b,
                Poll::Ready(Some(Ok(Message::Close(_)))) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(Message::Text(_)))) => {
                    return Poll::Ready(Err(std::io::Error::other(
                        "text frame on an MQTT WebSocket",
                    )))
                }
                Poll::Ready(Some(Ok(_))) => {}
            }
        }
    }
}

impl AsyncWrite for WsBytes {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.ws).poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(io_err(e))),
            Poll::Ready(Ok(())) => {}
        }
        let msg = Message::Binary(Bytes::copy_from_slice(buf));
        if let Err(e) = Pin::new(&mut self.ws).start_send(msg) {
            return Poll::Ready(Err(io_err(e)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::{is_origin, origin_allowed};

    #[test]
    fn only_the_same_origin_or_a_listed_one_may_upgrade() {
        let none: &[String] = &[];
        let host = Some("broker.example:8083");
        assert!(origin_allowed(None, host, none), "not a browser");
        assert!(origin_allowed(
            Some("http://broker.example:8083"),
            host,
            none
        ));
        assert!(origin_allowed(
            Some("https://BROKER.example:8083"),
            host,
            none
        ));
        assert!(!origin_allowed(Some("http://evil.example"), host, none));
        assert!(!origin_allowed(Some("null"), host, none));
        assert!(!origin_allowed(
            Some("http://broker.example:8083"),
            None,
            none
        ));
        assert!(origin_allowed(
            Some("https://b.example"),
            Some("b.example:443"),
            none
        ));
        assert!(origin_allowed(
            Some("http://b.example:80"),
            Some("b.example"),
            none
        ));
        let listed = ["https://app.example".to_owned()];
        assert!(origin_allowed(Some("https://app.example"), host, &listed));
        assert!(!origin_allowed(Some("http://app.example"), host, &listed));
        assert!(is_origin("https://app.example:8443") && !is_origin("app.example"));
    }
}
