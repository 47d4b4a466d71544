//! The slave's side: `rocketgate broker` with `broker.id` ≥ 1 and replication on runs no
//! `Broker` (so no gateway) on its data directory; it opens a `Replica`, connects to its master,
//! handshakes (cutting a divergent tail when told), applies frames, reports what it wrote and
//! flushed after every frame (a reporter task, one call at a time, changes coalesced: a SYNC
//! master waits for these reports), and reconnects with a bounded backoff whenever the stream breaks. Its lag (bytes)
//! is logged: `replica caught up` (with its log end) when it reaches the master's end,
//! `replica lagging` every [`LAG_LOG_EVERY`] while behind.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use rocketgate_core::replication::{KvChange, KvState, LogChunk, OffsetOutbox, Replica};
use rocketgate_core::Broker;
use rocketgate_gateway_kit::Shutdown;
use rocketgate_proto::cluster::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::auth::{now_ms, Key};
use super::{epochs_from_pb, epochs_to_pb};

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A stream silent this long (the master heartbeats every second) is dropped.
const IDLE: Duration = Duration::from_secs(10);
/// Bound on connecting and on every unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const LAG_LOG_EVERY: Duration = Duration::from_secs(10);
const CAUGHT_UP_LOG_EVERY: Duration = Duration::from_millis(500);
/// How often the follow loop looks at its flushed offset while the master is silent (and
/// the reporter's pause after a failed report).
const POLL: Duration = Duration::from_millis(100);

/// At most this many consumer offsets ride on one report.
const MAX_REPORTED_OFFSETS: usize = super::master::MAX_REPORTED_OFFSETS;
/// How long closing the read gateways may take (they drain calls in flight first).
const READERS_CLOSE: Duration = Duration::from_secs(10);

/// What the follow loop tells the slave's read gateways (`node/reads.rs`).
pub(crate) enum ReaderEvent {
    /// Serve on this read-only broker.
    Open(Broker),
    /// Stop serving and drop every handle on the reader; answer when done.
    Close(oneshot::Sender<()>),
}

/// The follow loop's side of the read gateways: a reader is opened once the copy is open and
/// closed before anything needs the store to itself (a truncating start, a discard, the
/// final close or a promotion).
pub(crate) struct Readers(pub(crate) Option<mpsc::Sender<ReaderEvent>>);

impl Readers {
    async fn open(&self, replica: &mut Replica) {
        let Some(tx) = &self.0 else { return };
        if replica.has_reader() {
            return;
        }
        match replica.reader() {
            Ok(broker) => {
                let _ = tx.send(ReaderEvent::Open(broker)).await;
            }
            Err(e) => tracing::warn!(error = %e, "this slave serves no reads"),
        }
    }

    async fn close(&self, replica: &mut Replica) {
        let Some(tx) = &self.0 else { return };
        if !replica.has_reader() {
            return;
        }
        let (done, wait) = oneshot::channel();
        if tx.send(ReaderEvent::Close(done)).await.is_ok() {
            let _ = tokio::time::timeout(READERS_CLOSE, wait).await;
        }
        replica.release_reader();
    }
}

/// What the slave needs to follow.
#[derive(Debug, Clone)]
pub(crate) struct SlaveConfig {
    pub(crate) core: rocketgate_core::Config,
    pub(crate) master_addr: String,
    pub(crate) cluster: String,
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) key: Option<Key>,
    pub(crate) tls: Option<rocketgate_nameserver::ClientTls>,
    pub(crate) max_frame: usize,
    /// Start over from an empty directory when the master's retention deleted what this
    /// slave needs next (`replication.auto_resync`).
    pub(crate) auto_resync: bool,
    /// Where this slave would serve replication once promoted (told to the master).
    pub(crate) replication_address: String,
}

/// How a slave's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `stop` was triggered.
    Stopped,
    /// A switchover promoted it: its store is closed, it becomes the master.
    Promoted,
}

/// Follows the master until `stop` or a promotion; closes the store cleanly.
///
/// # Errors
/// The data directory cannot be opened, or the master refuses this slave for good (another
/// cluster or group, a different segment size).
pub(crate) async fn run(
    mut cfg: SlaveConfig,
    stop: Shutdown,
    readers: Readers,
) -> anyhow::Result<Exit> {
    let mut replica = Some(open(&cfg).await?);
    if let Some(r) = replica.as_mut() {
        readers.open(r).await;
    }
    let mut backoff = MIN_BACKOFF;
    let result = loop {
        let attempt = follow_once(&cfg, &mut replica, &mut backoff, &readers);
        let outcome = tokio::select! {
            r = attempt => r,
            () = stop.clone().wait() => break Ok(Exit::Stopped),
        };
        match outcome {
            Err(Stop::Fatal(e)) => break Err(e),
            Err(Stop::Promoted) => {
                tracing::info!(master = %cfg.master_addr, "promoted by a switchover");
                break Ok(Exit::Promoted);
            }
            Err(Stop::Redirected(master)) => {
                tracing::info!(
                    old = %cfg.master_addr,
                    new = %master,
                    "switchover: following the new master"
                );
                let role = super::role::Role::Slave {
                    id: cfg.id,
                    master: master.clone(),
                };
                let dir = &cfg.core.store.data_dir;
                if let Err(e) = super::role::save(dir, &cfg.cluster, &cfg.name, &role) {
                    break Err(e);
                }
                cfg.master_addr = master;
                backoff = MIN_BACKOFF;
                continue;
            }
            Ok(reason) => tracing::warn!(
                master = %cfg.master_addr,
                reason = %reason,
                retry_in_ms = backoff.as_millis() as u64,
                "replication stream broken; reconnecting"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.clone().wait() => break Ok(Exit::Stopped),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if replica.is_none() {
            replica = Some(open(&cfg).await?);
        }
        if let Some(r) = replica.as_mut() {
            readers.open(r).await;
        }
    };
    if let Some(mut r) = replica {
        readers.close(&mut r).await;
        tokio::task::spawn_blocking(move || r.close())
            .await?
            .context("the final flush failed")?;
    }
    result
}

async fn open(cfg: &SlaveConfig) -> anyhow::Result<Replica> {
    let core = cfg.core.clone();
    let dir = core.store.data_dir.clone();
    tokio::task::spawn_blocking(move || Replica::open(core))
        .await?
        .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", dir.display()))
}

/// Why a follow session ends other than a broken stream: the master refused this slave for
/// good, or a switchover's order.
enum Stop {
    Fatal(anyhow::Error),
    /// A switchover promoted this slave (its log and KV store checked complete).
    Promoted,
    /// A switchover named a new master.
    Redirected(String),
}

fn identity(cfg: &SlaveConfig) -> pb::BrokerIdentity {
    pb::BrokerIdentity {
        cluster: cfg.cluster.clone(),
        broker_name: cfg.name.clone(),
        broker_id: cfg.id,
    }
}

fn signed<T>(cfg: &SlaveConfig, method: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = &cfg.key {
        let who = (cfg.cluster.as_str(), cfg.name.as_str(), cfg.id);
        key.sign(request.metadata_mut(), method, now_ms(), who);
    }
    request.set_timeout(CALL_TIMEOUT);
    request
}

async fn connect(cfg: &SlaveConfig) -> anyhow::Result<Channel> {
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", cfg.master_addr))?
        .connect_timeout(CALL_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10));
    if let Some(tls) = &cfg.tls {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(config)?;
    }
    Ok(endpoint.connect().await?)
}

fn is_fatal(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::PermissionDenied | tonic::Code::FailedPrecondition
    )
}

/// One connection: handshake, then frames until the stream breaks. Returns why it broke.
async fn follow_once(
    cfg: &SlaveConfig,
    slot: &mut Option<Replica>,
    backoff: &mut Duration,
    readers: &Readers,
) -> Result<String, Stop> {
    let Some(replica) = slot.as_ref() else {
        return Ok("the store is closed".into());
    };
    let hello = match replica.hello() {
        Ok(h) => h,
        Err(e) => return Err(Stop::Fatal(e.into())),
    };
    let channel = match connect(cfg).await {
        Ok(c) => c,
        Err(e) => return Ok(format!("cannot connect: {e:#}")),
    };
    let mut client = pb::replication_client::ReplicationClient::new(channel)
        .max_decoding_message_size(cfg.max_frame + (64 << 10));
    let request = pb::ReplicaHandshakeRequest {
        broker: Some(identity(cfg)),
        segment_size: hello.segment_size,
        epochs: epochs_to_pb(&hello.epochs),
        log_end: hello.log_end,
        kv_sequence: hello.kv_sequence,
        replication_address: cfg.replication_address.clone(),
    };
    let reply = match client.handshake(signed(cfg, "Handshake", request)).await {
        Ok(r) => r.into_inner(),
        Err(s) if is_fatal(&s) => {
            return Err(Stop::Fatal(anyhow::anyhow!(
                "the master refused this slave: {}",
                s.message()
            )))
        }
        Err(s) => return Ok(format!("handshake failed: {}", s.message())),
    };
    let mut welcome = rocketgate_core::replication::MasterWelcome {
        start: reply.start,
        epochs: epochs_from_pb(&reply.epochs),
        min_offset: reply.min_offset,
        kv_snapshot_needed: reply.kv_snapshot_needed,
    };
    tracing::info!(
        master = %cfg.master_addr,
        local_end = hello.log_end,
        start = welcome.start,
        master_log_end = reply.master_log_end,
        kv_snapshot = welcome.kv_snapshot_needed,
        "replication handshake done"
    );
    if welcome.start < welcome.min_offset {
        // The master's retention deleted what this slave would need next.
        if hello.log_end == 0 && hello.epochs.is_empty() {
            tracing::info!(
                min_offset = welcome.min_offset,
                "an empty slave starts at the master's oldest offset, with a KV snapshot"
            );
            welcome.start = welcome.min_offset;
            welcome.kv_snapshot_needed = true;
        } else if cfg.auto_resync {
            tracing::warn!(
                local_end = hello.log_end,
                needed = welcome.start,
                master_oldest = welcome.min_offset,
                "the master no longer has what this slave needs (retention): discarding the \
                 local copy and starting over"
            );
            let Some(mut r) = slot.take() else {
                return Ok("the store is closed".into());
            };
            readers.close(&mut r).await;
            return match tokio::task::spawn_blocking(move || r.discard()).await {
                Ok(Ok(r)) => {
                    *slot = Some(r);
                    *backoff = MIN_BACKOFF;
                    Ok("started over from an empty directory".into())
                }
                Ok(Err(e)) => Err(Stop::Fatal(anyhow::anyhow!(
                    "cannot discard the local copy: {e}"
                ))),
                Err(e) => Err(Stop::Fatal(anyhow::anyhow!(
                    "cannot discard the local copy: {e}"
                ))),
            };
        } else {
            return Ok(format!(
                "the master no longer has offset {} (its oldest is {}): empty this slave's data \
                 directory, or set replication.auto_resync",
                welcome.start, welcome.min_offset
            ));
        }
    }
    let mut started = false;
    if !welcome.kv_snapshot_needed {
        let Some(mut r) = slot.take() else {
            return Ok("the store is closed".into());
        };
        if r.would_truncate(&welcome) {
            readers.close(&mut r).await;
        }
        let w = welcome.clone();
        match tokio::task::spawn_blocking(move || r.start(&w, None)).await {
            Ok(Ok(r)) => *slot = Some(r),
            Ok(Err(e)) => return Ok(format!("cannot start following: {e}")),
            Err(e) => return Ok(format!("cannot start following: {e}")),
        }
        if let Some(r) = slot.as_mut() {
            readers.open(r).await;
        }
        started = true;
    }
    let Some(replica) = slot.as_ref() else {
        return Ok("the store is closed".into());
    };
    let follow = pb::FollowRequest {
        broker: Some(identity(cfg)),
        from: welcome.start,
        kv_sequence: replica.kv_sequence(),
        kv_snapshot: welcome.kv_snapshot_needed,
    };
    let mut request = signed(cfg, "Follow", follow);
    // The stream lives as long as the master has something to say; IDLE bounds each frame.
    request.set_timeout(Duration::from_secs(365 * 24 * 3600));
    let mut stream = match client.follow(request).await {
        Ok(s) => s.into_inner(),
        Err(s) => return Ok(format!("follow refused: {}", s.message())),
    };
    *backoff = MIN_BACKOFF;
    let mut progress = Progress::new(reply.master_log_end);
    // What this slave has (written, flushed, KV sequence), sent by the reporter as fast as
    // the master answers: SYNC sends on the master wait for it.
    let (position, rx) = tokio::sync::watch::channel((0u64, 0u64, 0u64));
    let master_end = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(reply.master_log_end));
    let outbox = slot.as_ref().and_then(Replica::outbox);
    let reporter = Reporter(tokio::spawn(report_loop(
        cfg.clone(),
        client.clone(),
        rx,
        master_end.clone(),
        outbox,
    )));
    let mut snapshot = KvState::default();
    let mut silent = Duration::ZERO;
    loop {
        let frame = match tokio::time::timeout(POLL, stream.message()).await {
            Err(_) => {
                silent += POLL;
                if silent >= IDLE {
                    return Ok("the master said nothing for 10 s".into());
                }
                // Nothing new from the master, but the local flusher may have moved on.
                if let (true, Some(r)) = (started, slot.as_ref()) {
                    position.send_if_modified(|p| update(p, r));
                }
                continue;
            }
            Ok(Err(s)) => return Ok(format!("stream error: {}", s.message())),
            Ok(Ok(None)) => return Ok("the master closed the stream".into()),
            Ok(Ok(Some(f))) => f,
        };
        silent = Duration::ZERO;
        let applied = match frame.frame {
            Some(pb::follow_frame::Frame::Snapshot(part)) => {
                snapshot.seq = part.seq;
                snapshot.entries.extend(
                    part.entries
                        .into_iter()
                        .map(|e| (e.namespace, e.key.into(), e.value.into())),
                );
                if !part.last {
                    continue;
                }
                let state = std::mem::take(&mut snapshot);
                if started {
                    let Some(r) = slot.as_ref() else {
                        return Ok("the store is closed".into());
                    };
                    r.install_kv(state).map_err(|e| e.to_string())
                } else {
                    let Some(mut r) = slot.take() else {
                        return Ok("the store is closed".into());
                    };
                    if r.would_truncate(&welcome) {
                        readers.close(&mut r).await;
                    }
                    let w = welcome.clone();
                    match tokio::task::spawn_blocking(move || r.start(&w, Some(state))).await {
                        Ok(Ok(mut r)) => {
                            readers.open(&mut r).await;
                            *slot = Some(r);
                            started = true;
                            Ok(())
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            }
            Some(pb::follow_frame::Frame::Log(log)) => {
                master_end.fetch_max(log.master_log_end, Ordering::Relaxed);
                match slot.as_ref() {
                    Some(r) if started => r
                        .apply(LogChunk {
                            from: log.from,
                            data: log.data,
                            seals_segment: log.seals_segment,
                        })
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    _ => Err("a log chunk before the KV snapshot".into()),
                }
            }
            Some(pb::follow_frame::Frame::Kv(kv)) => match slot.as_ref() {
                Some(r) if started => {
                    let changes = kv
                        .changes
                        .into_iter()
                        .map(|c| KvChange {
                            seq: c.seq,
                            namespace: c.namespace,
                            key: c.key.into(),
                            value: c.value.map(Into::into),
                        })
                        .collect();
                    r.apply_kv(changes).map(|_| ()).map_err(|e| e.to_string())
                }
                _ => Err("KV changes before the KV snapshot".into()),
            },
            Some(pb::follow_frame::Frame::Promote(p)) => {
                let Some(r) = slot.as_ref() else {
                    return Ok("the store is closed".into());
                };
                let (end, kv) = (r.log_end(), r.kv_sequence());
                if !started || end != p.log_end || kv != p.kv_sequence {
                    return Ok(format!(
                        "promotion refused: this slave has log end {end} and KV sequence {kv}, \
                         the master stopped at {} and {}",
                        p.log_end, p.kv_sequence
                    ));
                }
                if let Some(r) = slot.as_mut() {
                    readers.close(r).await;
                }
                return Err(Stop::Promoted);
            }
            Some(pb::follow_frame::Frame::Redirect(r)) => {
                return Err(Stop::Redirected(r.master_address));
            }
            Some(pb::follow_frame::Frame::HeartbeatLogEnd(end)) => {
                master_end.fetch_max(end, Ordering::Relaxed);
                Ok(())
            }
            None => Err("an empty frame".into()),
        };
        if let Err(e) = applied {
            return Ok(format!("cannot apply a frame: {e}"));
        }
        let Some(r) = slot.as_ref() else {
            return Ok("the store is closed".into());
        };
        if started {
            position.send_if_modified(|p| update(p, r));
            progress.master_end = master_end.load(Ordering::Relaxed);
            progress.observe(r.log_end());
        }
        if reporter.0.is_finished() {
            return Ok("the reporter stopped".into());
        }
    }
}

/// Sets `p` to what `r` has now; whether that changed it.
fn update(p: &mut (u64, u64, u64), r: &Replica) -> bool {
    let now = (r.log_end(), r.flushed(), r.kv_sequence());
    let changed = *p != now;
    *p = now;
    changed
}

/// The reporter task of one follow session, aborted when the session ends.
struct Reporter(tokio::task::JoinHandle<()>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends a `Report` whenever the position changed (one call at a time: changes made during a
/// call are coalesced into the next) or consumer offsets committed on this slave wait in the
/// `outbox` (looked at every [`POLL`]), and notes the master's end from each answer.
async fn report_loop(
    cfg: SlaveConfig,
    mut client: pb::replication_client::ReplicationClient<Channel>,
    mut rx: tokio::sync::watch::Receiver<(u64, u64, u64)>,
    master_end: std::sync::Arc<std::sync::atomic::AtomicU64>,
    outbox: Option<OffsetOutbox>,
) {
    loop {
        let moved = tokio::select! {
            changed = rx.changed() => match changed {
                Ok(()) => true,
                Err(_) => return,
            },
            () = tokio::time::sleep(POLL), if outbox.is_some() => false,
        };
        let offsets = outbox
            .as_ref()
            .map(|o| o.next(MAX_REPORTED_OFFSETS))
            .unwrap_or_default();
        if !moved && offsets.is_empty() {
            continue;
        }
        let (written, flushed, kv_sequence) = *rx.borrow_and_update();
        let report = pb::ReplicaReport {
            broker: Some(identity(&cfg)),
            written,
            flushed,
            kv_sequence,
            offsets: offsets
                .iter()
                .map(|o| pb::SlaveOffset {
                    group: o.group.clone(),
                    topic: o.topic.clone(),
                    queue_id: o.queue_id,
                    offset: o.offset,
                })
                .collect(),
        };
        match client.report(signed(&cfg, "Report", report)).await {
            Ok(ack) => {
                let ack = ack.into_inner();
                master_end.fetch_max(ack.master_log_end, Ordering::Relaxed);
                if let (Some(o), false) = (&outbox, offsets.is_empty()) {
                    o.sent(&offsets);
                    tracing::info!(
                        offsets = offsets.len(),
                        committed = ack.offsets_committed,
                        "the master took the consumer offsets committed on this slave"
                    );
                }
            }
            Err(s) => {
                tracing::debug!(error = %s.message(), "replication report failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// The slave's view of its lag, and when to log it.
struct Progress {
    master_end: u64,
    /// The log end last logged as caught up.
    logged_end: Option<u64>,
    last_log: Instant,
}

impl Progress {
    fn new(master_end: u64) -> Self {
        let now = Instant::now();
        Self {
            master_end,
            logged_end: None,
            last_log: now.checked_sub(CAUGHT_UP_LOG_EVERY).unwrap_or(now),
        }
    }

    /// Logs the lag (`replica caught up` with the end reached, at most every
    /// [`CAUGHT_UP_LOG_EVERY`] while the end moves; `replica lagging` every [`LAG_LOG_EVERY`]).
    fn observe(&mut self, local_end: u64) {
        let lag = self.master_end.saturating_sub(local_end);
        let now = Instant::now();
        if lag == 0 {
            let moved = self.logged_end != Some(local_end);
            if moved && now.duration_since(self.last_log) >= CAUGHT_UP_LOG_EVERY {
                self.logged_end = Some(local_end);
                self.last_log = now;
                tracing::info!(log_end = local_end, lag_bytes = 0u64, "replica caught up");
            }
        } else if now.duration_since(self.last_log) >= LAG_LOG_EVERY {
            self.last_log = now;
            tracing::info!(log_end = local_end, lag_bytes = lag, "replica lagging");
        }
    }
}
