//! The Mosquitto that `bench mqtt` compares with: Debian's `/usr/sbin/mosquitto` started
//! in memory (`persistence false`: it keeps nothing on disk) on an ephemeral port reserved by
//! binding :0 and releasing it, then polled until it accepts; killed when the run is over.
//!
//! Owns the process it starts and its config file in a temporary directory; must not touch a
//! Mosquitto it did not start.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::error::Context;
use crate::error::{ensure, Result};

pub(super) struct Mosquitto {
    child: tokio::process::Child,
    pub(super) address: String,
    _dir: PathBuf,
}

impl Mosquitto {
    /// Starts it on a free port and waits until it accepts connections.
    pub(super) async fn start(bin: &std::path::Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("rg-bench-mosquitto-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 0\nmax_queued_messages 0\nlog_dest none\n"
            ),
        )?;
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(&address).await.is_err() {
            ensure!(Instant::now() < deadline, "mosquitto did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child,
            address,
            _dir: dir,
        })
    }

    /// Its process id (for its CPU time).
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it and removes its directory.
    pub(super) async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}
