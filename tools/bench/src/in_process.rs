//! The in-process server of the protocol benchmarks (`bench grpc`, `bench http`, `bench
//! mqtt` without `--target`): a broker (ASYNC flush) in a benchmark directory and one gateway
//! serving it on 127.0.0.1:0, started on the caller's runtime, stopped within 5 s.
//!
//! Owns only that start/stop sequence; each benchmark passes the gateway's serve call.
//!
//! Must not touch the binary's configuration or node (a benchmark's server is its own, not a
//! `rocketgate` node), nor write outside the benchmark directory.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::error::Context;
use crate::error::{BenchError, Result};
use rocketgate_core::Broker;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A broker and one gateway serving it in this process.
pub struct InProcess<E> {
    /// Where the gateway listens (`127.0.0.1:PORT`).
    pub address: String,
    /// The broker behind it.
    pub broker: Broker,
    what: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), E>>,
}

/// Resolves when the benchmark stops the server.
pub type Stopped = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

impl<E> InProcess<E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    /// Opens a broker under `dir/store` (ASYNC flush, `tweak` applied) and spawns
    /// `serve(listener, broker, stopped)` for the gateway `what`.
    pub async fn start<Fut>(
        dir: &Path,
        what: &'static str,
        tweak: impl FnOnce(&mut rocketgate_core::Config),
        serve: impl FnOnce(TcpListener, Broker, Stopped) -> Fut,
    ) -> Result<Self>
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let mut config = rocketgate_core::Config::default();
        config.store.data_dir = dir.join("store");
        config.store.flush_mode = rocketgate_core::FlushMode::Async;
        tweak(&mut config);
        let broker = Broker::open(config).context("opening the bench broker")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped: Stopped = Box::pin(async {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(listener, broker.clone(), stopped));
        Ok(Self {
            address,
            broker,
            what,
            stop,
            task,
        })
    }

    /// Stops the gateway (at most 5 s) and closes the broker.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(joined) => joined?.map_err(BenchError::server)?,
            Err(_) => eprintln!("bench: the {} server did not stop within 5 s", self.what),
        }
        self.broker.shutdown()?;
        Ok(())
    }
}
