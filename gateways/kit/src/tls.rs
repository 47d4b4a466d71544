//! TLS for every listener of a node: a [`TlsAcceptor`] built from a certificate chain and key
//! in PEM files (rustls, the `ring` provider), optionally checking client certificates against
//! a CA (mTLS: off, optional or required), with a bounded handshake time, and reloadable
//! without a restart — [`TlsAcceptor::reload_if_changed`] re-reads the files when they change,
//! and a reload that fails keeps the configuration that works. Connections already open keep
//! the certificate they were accepted with; new ones get the new one.
//!
//! Also here: [`MaybeTls`], one stream type for a listener that serves plain TCP or TLS,
//! [`peer_subject`], the common name of a verified client certificate (what the node maps to a
//! user), and [`client_config`], the client side for the node's own calls (broker →
//! NameServer) and for tests.
//!
//! Owns the TLS material and handshakes only. It must not know a wire protocol (each gateway
//! passes its ALPN names) or decide who a subject is (that is the core's `Auth`); it spawns no
//! task (the caller runs [`TlsAcceptor::watch`]).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::shutdown::Shutdown;

/// Whether clients must present a certificate signed by the configured CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    Off,
    /// A client may present one; if it does, it must verify.
    Optional,
    /// Every client must present a certificate that verifies.
    Required,
}

/// Where a listener's TLS material is and how it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; needed unless
    /// `client_auth` is [`ClientAuth::Off`].
    pub client_ca: Option<PathBuf>,
    /// Whether client certificates are asked for.
    pub client_auth: ClientAuth,
    /// How long a client has to complete the handshake.
    pub handshake_timeout: Duration,
}

/// Why TLS could not be set up or a handshake failed. The text names the file, never key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("tls: {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The material does not make a configuration (key does not match, bad CA, …).
    #[error("tls: {0}")]
    Config(String),
    /// The client did not finish the handshake in time.
    #[error("tls handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The handshake failed.
    #[error("tls handshake failed: {0}")]
    Handshake(io::Error),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads a PEM certificate chain.
///
/// # Errors
/// [`TlsError::File`]: unreadable, not PEM, or no certificate in it.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in it"));
    }
    Ok(certs)
}

/// Reads a PEM private key.
///
/// # Errors
/// [`TlsError::File`]: unreadable or no key in it.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file_error(path, format!("no usable private key in it: {e}")))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in read_certs(path)? {
        store
            .add(cert)
            .map_err(|e| file_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(settings: &TlsSettings, alpn: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(&settings.cert)?;
    let key = read_key(&settings.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match settings.client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let Some(ca) = &settings.client_ca else {
                return Err(TlsError::Config(
                    "client certificates are asked for but no client CA is set".into(),
                ));
            };
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            let verifier = if settings.client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Config(format!(
            "{} and {} do not make a server identity: {e}",
            settings.cert.display(),
            settings.key.display()
        ))
    })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

/// What a reload compares: the files' modification times and lengths.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(settings: &TlsSettings) -> Stamp {
    let mut paths = vec![settings.cert.as_path(), settings.key.as_path()];
    paths.extend(settings.client_ca.as_deref());
    paths
        .into_iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// A listener's TLS server side, shared by its connections; cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: Arc<Inner>,
}

struct Inner {
    settings: TlsSettings,
    alpn: Vec<Vec<u8>>,
    config: RwLock<Arc<ServerConfig>>,
    stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the material; `alpn` are the protocols the listener speaks (`h2`, `http/1.1`,
    /// `mqtt`), in preference order.
    ///
    /// # Errors
    /// [`TlsError`] naming the file or setting that is wrong.
    pub fn new(settings: TlsSettings, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|a| a.to_vec()).collect();
        let before = stamp(&settings);
        let config = build(&settings, &alpn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                alpn,
                config: RwLock::new(Arc::new(config)),
                stamp: Mutex::new(before),
            }),
        })
    }

    /// The settings it was made from.
    pub fn settings(&self) -> &TlsSettings {
        &self.inner.settings
    }

    /// The configuration for the next handshake (a reload shows here).
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.inner.config.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Re-reads the files now. On failure the configuration in use stays.
    ///
    /// # Errors
    /// [`TlsError`] naming what is wrong with the new material.
    pub fn reload(&self) -> Result<(), TlsError> {
        let before = stamp(&self.inner.settings);
        let config = build(&self.inner.settings, &self.inner.alpn)?;
        match self.inner.config.write() {
            Ok(mut c) => *c = Arc::new(config),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
        }
        match self.inner.stamp.lock() {
            Ok(mut s) => *s = before,
            Err(poisoned) => *poisoned.into_inner() = before,
        }
        Ok(())
    }

    /// Reloads if a file's modification time or length changed since the last load; answers
    /// whether it reloaded. A failed reload is retried at the next change or call.
    ///
    /// # Errors
    /// [`TlsError`] from the reload (the old configuration stays).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.inner.settings);
        let changed = match self.inner.stamp.lock() {
            Ok(s) => *s != now,
            Err(poisoned) => *poisoned.into_inner() != now,
        };
        if !changed {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// Checks the files every `every` until `shutdown`, reloading on a change and logging the
    /// outcome (one warning per failed attempt; the old certificate stays in use). Run it on
    /// a task of the listener.
    pub async fn watch(self, every: Duration, shutdown: Shutdown) {
        let stopped = shutdown.wait();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(every) => {}
            }
            let this = self.clone();
            let outcome = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
            match outcome {
                Ok(Ok(true)) => tracing::info!(
                    cert = %self.inner.settings.cert.display(),
                    "tls: certificate reloaded"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    // Forget the stamp so that the next tick tries again.
                    if let Ok(mut s) = self.inner.stamp.lock() {
                        s.clear();
                    }
                    tracing::warn!(error = %e, "tls: reload failed; the previous certificate stays in use");
                }
                Err(e) => tracing::warn!(error = %e, "tls: reload task failed"),
            }
        }
    }

    /// Performs the server handshake on `io` within the configured time.
    ///
    /// # Errors
    /// [`TlsError::HandshakeTimeout`], [`TlsError::Handshake`].
    pub async fn accept<IO>(&self, io: IO) -> Result<tokio_rustls::server::TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let limit = self.inner.settings.handshake_timeout;
        match tokio::time::timeout(limit, acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(TlsError::Handshake(e)),
            Err(_) => Err(TlsError::HandshakeTimeout(limit)),
        }
    }
}

/// The common name (or, without one, the whole subject) of the client certificate a
/// completed handshake verified; `None` when the client presented none.
pub fn peer_subject<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> Option<String> {
    let (_, connection) = stream.get_ref();
    subject_of(connection.peer_certificates()?.first()?)
}

/// The common name (or, without one, the whole subject) of a certificate (DER); `None` if it
/// does not parse. For listeners whose framework hands over the verified chain (tonic).
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Some(cn.unwrap_or_else(|| subject.to_string()))
}

/// A client configuration trusting the CAs in `ca` (PEM), presenting `identity` (a
/// certificate chain and key in PEM) when given, speaking `alpn`.
///
/// # Errors
/// [`TlsError`] naming the file that is wrong.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| TlsError::Config(format!("client identity: {e}")))?,
    };
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// A connection that is plain TCP or TLS, so a listener has one stream type either way.
#[derive(Debug)]
pub enum MaybeTls<IO> {
    /// Plain.
    Plain(IO),
    /// TLS (boxed: the session state is large).
    Tls(Box<tokio_rustls::server::TlsStream<IO>>),
}

impl<IO> MaybeTls<IO> {
    /// The verified client certificate's subject (see [`peer_subject`]); `None` on plain TCP.
    pub fn peer_subject(&self) -> Option<String> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(s) => peer_subject(s),
        }
    }

    /// The underlying connection.
    pub fn get_ref(&self) -> &IO {
        match self {
            Self::Plain(io) => io,
            Self::Tls(s) => s.get_ref().0,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
