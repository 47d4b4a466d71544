//! [`Handshakes`]: TLS handshakes of a listener's accepted connections, run concurrently so
//! that a client that connects and says nothing never holds up the accept loop (each has the
//! acceptor's handshake timeout), at most `max_pending` at once (one more is dropped at once
//! and counted), yielding the connections whose handshake completed.
//!
//! For listeners whose framework pulls connections one at a time (axum's `Listener`, tonic's
//! incoming stream): their accept step selects between accepting the next TCP connection
//! ([`Handshakes::start`]) and the next completed handshake ([`Handshakes::next`]). The tasks
//! live in a `JoinSet` owned by the value: dropping it aborts the handshakes in flight.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use crate::tls::{TlsAcceptor, TlsError};

/// Handshakes in flight (see the module doc).
pub struct Handshakes<IO> {
    acceptor: TlsAcceptor,
    max_pending: usize,
    tasks: JoinSet<Outcome<IO>>,
    /// Completed handshakes reaped by `start` before `next` asked for them.
    ready: std::collections::VecDeque<(TlsStream<IO>, SocketAddr)>,
    dropped: u64,
}

type Outcome<IO> = Result<(TlsStream<IO>, SocketAddr), (TlsError, SocketAddr)>;

fn reaped<IO>(
    joined: Result<Outcome<IO>, tokio::task::JoinError>,
) -> Option<(TlsStream<IO>, SocketAddr)> {
    match joined {
        Ok(Ok(done)) => Some(done),
        Ok(Err((e, peer))) => {
            tracing::debug!(%peer, error = %e, "tls handshake failed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "tls handshake task failed");
            None
        }
    }
}

impl<IO> std::fmt::Debug for Handshakes<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshakes")
            .field("pending", &self.tasks.len())
            .field("max_pending", &self.max_pending)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl<IO> Handshakes<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Handshakes with `acceptor`, at most `max_pending` at once.
    pub fn new(acceptor: TlsAcceptor, max_pending: usize) -> Self {
        Self {
            acceptor,
            max_pending: max_pending.max(1),
            tasks: JoinSet::new(),
            ready: std::collections::VecDeque::new(),
            dropped: 0,
        }
    }

    /// Starts the handshake of a connection from `peer`; drops it when `max_pending`
    /// handshakes are already running.
    pub fn start(&mut self, io: IO, peer: SocketAddr) {
        // Finished handshakes no longer count against the bound.
        while let Some(joined) = self.tasks.try_join_next() {
            if let Some(done) = reaped(joined) {
                self.ready.push_back(done);
            }
        }
        if self.tasks.len() + self.ready.len() >= self.max_pending {
            self.dropped += 1;
            tracing::warn!(%peer, pending = self.tasks.len(), "tls: too many handshakes in flight; connection dropped");
            return;
        }
        let acceptor = self.acceptor.clone();
        self.tasks.spawn(async move {
            match acceptor.accept(io).await {
                Ok(stream) => Ok((stream, peer)),
                Err(e) => Err((e, peer)),
            }
        });
    }

    /// The next connection whose handshake completed (failures are logged at debug and
    /// skipped). Pending forever while none is in flight, so it can sit in a `select!` beside
    /// the accept.
    pub async fn next(&mut self) -> (TlsStream<IO>, SocketAddr) {
        loop {
            match self.tasks.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok(Ok(done))) => return done,
                Some(Ok(Err((e, peer)))) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed")
                }
                Some(Err(e)) => tracing::warn!(error = %e, "tls handshake task failed"),
            }
        }
    }

    /// Handshakes running or completed but not yet taken.
    pub fn pending(&self) -> usize {
        self.tasks.len() + self.ready.len()
    }

    /// Connections dropped because too many handshakes were running.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::test_ca::TestCa;
    use crate::tls::{client_config, ClientAuth, TlsSettings};

    #[tokio::test]
    async fn a_silent_client_does_not_hold_up_the_others_and_the_bound_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "root").unwrap();
        let server = ca.server("server").unwrap();
        let acceptor = TlsAcceptor::new(
            TlsSettings {
                cert: server.cert,
                key: server.key,
                client_ca: None,
                client_auth: ClientAuth::Off,
                handshake_timeout: Duration::from_secs(30),
            },
            &[],
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut handshakes = Handshakes::new(acceptor, 2);

        // Two silent clients fill the bound; a third connection is dropped.
        let _silent: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        for _ in 0..2 {
            let (tcp, peer) = listener.accept().await.unwrap();
            handshakes.start(tcp, peer);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        handshakes.start(tcp, peer);
        assert_eq!((handshakes.pending(), handshakes.dropped()), (2, 1));
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut byte))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "the dropped one is closed");

        // The silent clients hang up: their handshakes end (failed) and free the bound; a real
        // client then completes and is handed over.
        drop(_silent);
        for _ in 0..2 {
            let joined =
                tokio::time::timeout(Duration::from_secs(10), handshakes.tasks.join_next())
                    .await
                    .unwrap()
                    .unwrap();
            assert!(
                reaped(joined).is_none(),
                "a silent client completes nothing"
            );
        }
        let config = Arc::new(client_config(&ca.ca_pem, None, &[]).unwrap());
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut s = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .unwrap();
            s.write_all(b"x").await.unwrap();
            s.flush().await.unwrap();
            s
        });
        let done = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (tcp, peer) = accepted.unwrap();
                        handshakes.start(tcp, peer);
                    }
                    done = handshakes.next() => break done,
                }
            }
        })
        .await
        .unwrap();
        let (mut stream, _) = done;
        let mut got = [0u8; 1];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"x");
        drop(client.await.unwrap());
    }
}
