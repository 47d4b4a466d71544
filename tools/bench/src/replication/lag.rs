//! The replication lag of `bench replication`, read from the master's HTTP `/metrics` while
//! the load runs: `rocketgate_replication_lag_bytes{slave}`,
//! `rocketgate_replication_lag_seconds{slave}` and `rocketgate_replication_in_sync_replicas`.
//!
//! Owns: the scrape (one HTTP/1.0 `GET /metrics` on a fresh connection, so the body is never
//! chunked), the parsing of those three series ([`parse`]), the wait for a complete in-sync
//! set before a case ([`wait_in_sync`]), the sampler task ([`Sampler`]) and the lag summary
//! ([`LagResult`]).
//!
//! Invariants:
//! - Every slave's reading of a scrape is one sample; the percentiles pool all slaves.
//! - A `lag_seconds` of −1 (the slave has not caught up once yet) is counted apart, never
//!   folded into the percentiles; a scrape that fails or times out (1 s) is counted, not
//!   retried.
//! - Percentiles are nearest-rank over the samples (p99 of 100 samples is the 99th largest
//!   but one); the granularity of the seconds figure is the master's, not the sampler's.
//!
//! Who calls it: [`super::one_case`], on the client runtime. Reads the master's `/metrics` only.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{bail, Context, Result};

/// One scrape of the master's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// `rocketgate_replication_lag_bytes`, one per slave.
    pub lag_bytes: Vec<f64>,
    /// `rocketgate_replication_lag_seconds`, one per slave.
    pub lag_secs: Vec<f64>,
    /// `rocketgate_replication_in_sync_replicas` (the master included).
    pub in_sync: Option<f64>,
}

/// The three replication series of a Prometheus text exposition; other lines are ignored.
pub fn parse(text: &str) -> Scrape {
    let mut out = Scrape::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.trim().rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        match key.split('{').next().unwrap_or_default() {
            "rocketgate_replication_lag_bytes" => out.lag_bytes.push(value),
            "rocketgate_replication_lag_seconds" => out.lag_secs.push(value),
            "rocketgate_replication_in_sync_replicas" => out.in_sync = Some(value),
            _ => {}
        }
    }
    out
}

/// Reads `http://ADDRESS/metrics`.
///
/// # Errors
/// The connection, a non-200 answer, or no answer within a second.
pub async fn scrape(address: &str) -> Result<Scrape> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(address).await?;
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(1), fetch)
        .await?
        .with_context(|| format!("cannot read http://{address}/metrics"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        bail!("http://{address}/metrics answered {status:?}");
    }
    Ok(parse(body))
}

/// Waits until the master at `address` counts `replicas` in-sync replicas (itself included).
///
/// # Errors
/// Not so within `within` (the last reading named).
pub async fn wait_in_sync(address: &str, replicas: usize, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = scrape(address).await;
        if let Ok(s) = &last {
            if s.in_sync.is_some_and(|n| n >= replicas as f64) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            let seen = match last {
                Ok(s) => format!("{:?}", s.in_sync),
                Err(e) => e.to_string(),
            };
            bail!(
                "the master did not count {replicas} in-sync replicas within {within:?} (last \
                 reading: {seen})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// p50, p99 and the largest of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// `None` for no samples.
    pub fn of(mut samples: Vec<f64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let rank = |q: f64| -> Option<f64> {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            samples.get(i).copied()
        };
        Some(Self {
            p50: rank(0.50)?,
            p99: rank(0.99)?,
            max: *samples.last()?,
        })
    }
}

/// The replication lag during one case's load.
#[derive(Debug, Clone, Serialize)]
pub struct LagResult {
    /// Milliseconds between scrapes.
    pub every_ms: f64,
    /// Scrapes read.
    pub scrapes: u64,
    /// Scrapes that failed or timed out.
    pub failed_scrapes: u64,
    /// Lag in CommitLog bytes, every slave's readings pooled.
    pub bytes: Option<Spread>,
    /// Lag in milliseconds (the master's `lag_seconds` × 1000), pooled likewise.
    pub ms: Option<Spread>,
    /// Readings of −1 s (a slave that had not caught up once yet), left out of `ms`.
    pub not_caught_up: u64,
    /// Fewest in-sync replicas (the master included) a scrape counted.
    pub in_sync_min: Option<f64>,
    /// Most.
    pub in_sync_max: Option<f64>,
}

/// A task scraping the master's `/metrics` at a fixed interval until stopped.
pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<LagResult>,
}

impl Sampler {
    /// Starts sampling `address` every `every` (the first scrape at once), on the current
    /// runtime.
    pub fn start(address: String, every: Duration) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut bytes, mut ms) = (Vec::new(), Vec::new());
            let (mut scrapes, mut failed, mut not_caught_up) = (0, 0, 0);
            let (mut in_sync_min, mut in_sync_max) = (None::<f64>, None::<f64>);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let Ok(s) = scrape(&address).await else {
                    failed += 1;
                    continue;
                };
                scrapes += 1;
                bytes.extend(&s.lag_bytes);
                for secs in s.lag_secs {
                    if secs < 0.0 {
                        not_caught_up += 1;
                    } else {
                        ms.push(secs * 1e3);
                    }
                }
                if let Some(n) = s.in_sync {
                    in_sync_min = Some(in_sync_min.map_or(n, |m| m.min(n)));
                    in_sync_max = Some(in_sync_max.map_or(n, |m| m.max(n)));
                }
            }
            LagResult {
                every_ms: every.as_secs_f64() * 1e3,
                scrapes,
                failed_scrapes: failed,
                bytes: Spread::of(bytes),
                ms: Spread::of(ms),
                not_caught_up,
                in_sync_min,
                in_sync_max,
            }
        });
        Self { stop, task }
    }

    /// Stops sampling and summarises the samples.
    ///
    /// # Errors
    /// The sampler task panicked.
    pub async fn stop(self) -> Result<LagResult> {
        let _ = self.stop.send(());
        Ok(self.task.await?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_replication_series() {
        let text = "# HELP rocketgate_replication_lag_bytes bytes\n\
                    # TYPE rocketgate_replication_lag_bytes gauge\n\
                    rocketgate_replication_lag_bytes{slave=\"1\"} 4096\n\
                    rocketgate_replication_lag_bytes{slave=\"2\"} 0\n\
                    rocketgate_replication_lag_seconds{slave=\"1\"} 0.25\n\
                    rocketgate_replication_lag_seconds{slave=\"2\"} -1\n\
                    rocketgate_replication_in_sync_replicas 2\n\
                    rocketgate_replication_in_sync_replicas_total 9\n\
                    rocketgate_messages_total{topic=\"a b\"} 7\n\
                    garbage line\n";
        let s = parse(text);
        assert_eq!(s.lag_bytes, vec![4096.0, 0.0]);
        assert_eq!(s.lag_secs, vec![0.25, -1.0]);
        assert_eq!(s.in_sync, Some(2.0));
        assert_eq!(parse(""), Scrape::default());
    }

    #[test]
    fn spreads_are_nearest_rank() {
        assert_eq!(Spread::of(Vec::new()), None);
        let s = Spread::of((1..=200).rev().map(f64::from).collect()).unwrap();
        assert_eq!((s.p50, s.p99, s.max), (100.0, 198.0, 200.0));
        let one = Spread::of(vec![7.0]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
    }

    #[test]
    fn a_closed_port_is_an_error_not_a_hang() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        });
        assert!(rt.block_on(scrape(&addr)).is_err());
    }
}
