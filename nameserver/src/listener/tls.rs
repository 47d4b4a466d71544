//! TLS on a gRPC listener of this crate ([`super::Incoming`] with a [`ServerTls`]): every
//! accepted connection (already counted against the cap, with its idle deadline) is handshaken
//! on its own task within the handshake timeout, so a client that never says hello holds up
//! nobody; completed ones are handed to tonic as [`Stream::Tls`]. The verified client
//! certificate chain (mTLS) travels in [`super::ConnectionInfo::peer_certificates`].
//!
//! Where the certificate comes from (files, reloads) is the caller's business: [`ServerTls`]
//! answers the configuration to use for the next handshake. No crypto provider or file reading
//! here.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use super::{Connection, ConnectionInfo};

/// The TLS server side of a listener.
pub trait ServerTls: Send + Sync + 'static {
    /// The configuration for the next handshake (a reload shows here).
    fn config(&self) -> Arc<rustls::ServerConfig>;
    /// How long a client has to complete the handshake.
    fn handshake_timeout(&self) -> Duration;
}

/// Handshakes a connection.
pub(super) async fn handshake(
    tls: Arc<dyn ServerTls>,
    conn: Connection,
) -> io::Result<tokio_rustls::server::TlsStream<Connection>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    match tokio::time::timeout(tls.handshake_timeout(), acceptor.accept(conn)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "tls handshake timed out",
        )),
    }
}

/// An accepted connection, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(Connection),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<Connection>>),
}

impl Connected for Stream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        match self {
            Self::Plain(c) => c.connect_info(),
            Self::Tls(s) => {
                let (c, session) = s.get_ref();
                let mut info = c.connect_info();
                info.peer_certificates = session
                    .peer_certificates()
                    .map(|certs| Arc::new(certs.iter().map(CertificateDer::clone).collect()));
                info
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(c) => c.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
