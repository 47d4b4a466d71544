//! The in-process harness: a real broker in a temp dir behind the real gateway on
//! 127.0.0.1:0, and helpers with a timeout on every wait.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use rocketgate_core::{Broker, Config};
use rocketgate_gateway_http::{serve_with, HttpConfig};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound of any one wait.
pub const WAIT: Duration = Duration::from_secs(10);
/// The HTTP body limit of these tests.
pub const MAX_BODY: usize = 128 << 10;

pub struct Server {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub broker: Broker,
    pub http: reqwest::Client,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), rocketgate_gateway_http::Error>>,
    config: Config,
    http_config: HttpConfig,
    _dir: tempfile::TempDir,
}

/// A Prometheus recorder, installed once per test binary.
pub fn recorder() -> rocketgate_gateway_http::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<rocketgate_gateway_http::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The bootstrap super user of [`start_secured`].
pub const ADMIN: (&str, &str) = ("admin", "admin-secret-1");
/// A normal user [`start_secured`] creates, with no policy.
pub const APP: (&str, &str) = ("app", "app-secret-12");

/// A server with `auth.enabled`, the super user [`ADMIN`] and the normal user [`APP`].
pub async fn start_secured(f: impl FnOnce(&mut Config, &mut HttpConfig)) -> Server {
    let s = start_with(|c, h| {
        c.auth.enabled = true;
        c.auth.bootstrap_access_key = Some(ADMIN.0.into());
        c.auth.bootstrap_secret_key = Some(ADMIN.1.into());
        f(c, h);
    })
    .await;
    s.broker
        .auth()
        .create_user(APP.0, APP.1, rocketgate_core::auth::UserKind::Normal)
        .unwrap();
    s
}

pub async fn start() -> Server {
    start_with(|_, _| {}).await
}

pub async fn start_with(f: impl FnOnce(&mut Config, &mut HttpConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.data_dir = dir.path().into();
    config.store.segment_size = 8 << 20;
    config.store.disk_max_used_ratio = 0.995;
    config.limits.max_body_bytes = 64 << 10;
    config.consumer.max_wait_ms = 2_000;
    config.consumer.retry_backoff = "0s".into();
    config.timer.delay_levels = "1s 2s".into();
    config.transaction.check_first_ms = 300;
    config.transaction.check_interval_ms = 300;
    let mut http = HttpConfig {
        max_body_bytes: MAX_BODY,
        max_wait_ms: 1_500,
        request_timeout_ms: 5_000,
        max_batch: 256,
        ws_ping_interval_ms: 2_000,
        ..HttpConfig::default()
    };
    f(&mut config, &mut http);
    serve_dir(dir, config, http).await
}

/// Opens a broker with `config` (data in `dir`) and serves it with `http`.
async fn serve_dir(dir: tempfile::TempDir, config: Config, http: HttpConfig) -> Server {
    let broker = Broker::open(config.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let join = tokio::spawn(serve_with(
        listener,
        broker.clone(),
        http.clone(),
        Some(recorder()),
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    Server {
        base: format!("http://{addr}"),
        addr,
        broker,
        http: client,
        stop,
        join,
        config,
        http_config: http,
        _dir: dir,
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        answer(r).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self.http.delete(self.url(path)).send().await.unwrap();
        answer(r).await
    }

    /// Stops the gateway and the broker cleanly, then opens and serves the same data again
    /// (on a new port).
    pub async fn restart(self) -> Server {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.join)
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
        self.broker.shutdown().unwrap();
        serve_dir(self._dir, self.config, self.http_config).await
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.join)
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
        self.broker.shutdown().unwrap();
    }
}

/// Status and JSON body (Null when empty); asserts problem+json on errors.
pub async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    if status >= 400 {
        assert_eq!(ct, "application/problem+json", "{status} {text}");
    }
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status >= 400 {
        assert_eq!(v["status"], status, "{v}");
        assert!(v["code"].is_string(), "{v}");
    }
    (status, v)
}

/// Polls `f` until it returns Some, within `WAIT`.
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The opt-out of tests that need a tool: with `RG_ALLOW_SKIP=1` such a test passes with a
/// note where the tool is missing; without it the test fails and says how to install it
/// (`scripts/test` installs every tool; docs/testing.md).
pub const ALLOW_SKIP: &str = "RG_ALLOW_SKIP";

/// The first of `names` found on `PATH`. Otherwise the test fails with `how` to install it,
/// or, only under [`ALLOW_SKIP`], `None` (the caller skips) after a note on stdout.
pub fn tool(names: &[&str], how: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    });
    if found.is_some() {
        return found;
    }
    let what = format!("{} is missing", names.join(" or "));
    assert!(
        std::env::var(ALLOW_SKIP).is_ok_and(|v| v == "1"),
        "{what}: {how} (scripts/test does), or set {ALLOW_SKIP}=1 to skip such tests on purpose"
    );
    println!("NOTE: skipped under {ALLOW_SKIP}=1: {what}");
    None
}
