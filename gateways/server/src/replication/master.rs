//! The master's `Replication` service: refuses brokers of another cluster or group and
//! unsigned calls (when the cluster has a secret), answers handshakes, streams bounded frames
//! (KV snapshot parts, KV change batches, CommitLog chunks, heartbeats), and hands what each
//! slave reports, and when its stream opens and closes, to core's in-sync set (which SYNC
//! sends wait on). Reads only through `ReplicationSource`; writes nothing. Each slave's link
//! (`links.rs`: its replication address, KV sequence and a control channel into its stream)
//! is what a switchover (`switch.rs`) uses to promote one slave and redirect the others.

use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::replication::{
    ForwardedOffset, KvBatch, ReplicaErrorKind, ReplicationMode, ReplicationSource, SlaveHello,
};
use rocketgate_proto::cluster::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::{now_ms, Key};
use super::links::{Control, Links};
use super::{epochs_from_pb, epochs_to_pb};

/// Room left in a frame for its envelope (offsets, flags, field tags).
const FRAME_OVERHEAD: usize = 4 << 10;
/// At most this many consumer offsets in one slave report (`ReplicaReport.offsets`).
pub(crate) const MAX_REPORTED_OFFSETS: usize = 1024;
/// A heartbeat is sent after this long without anything new.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// While writes are fenced for a switchover, the stream looks for KV changes this often (the
/// broker's last offset and state writes must reach the target quickly).
const FENCED_POLL: Duration = Duration::from_millis(20);
/// How often the in-sync set is judged against the clock (a slave that went silent leaves it).
const REFRESH: Duration = Duration::from_millis(500);
/// Under ASYNC replication, when less than [`BATCH_BYTES`] is waiting, the stream waits this
/// long for more before reading a chunk: one frame then carries the records of a few
/// milliseconds of sends instead of one or two (every frame costs both processes a gRPC
/// message, a slave append and dispatch, and a report). It adds at most this much to an ASYNC
/// slave's lag; SYNC sends wait for the slave, so a SYNC stream never waits.
const LINGER: Duration = Duration::from_millis(2);
/// What is worth a frame at once under ASYNC replication (see [`LINGER`]).
const BATCH_BYTES: u64 = 64 << 10;

/// The service state.
#[derive(Debug, Clone)]
pub(crate) struct Master {
    source: ReplicationSource,
    cluster: String,
    name: String,
    key: Option<Key>,
    max_frame: usize,
    links: Links,
}

impl Master {
    pub(crate) fn new(
        source: ReplicationSource,
        cluster: String,
        name: String,
        key: Option<Key>,
        max_frame: usize,
    ) -> Self {
        Self {
            source,
            cluster,
            name,
            key,
            max_frame,
            links: Links::default(),
        }
    }

    /// The slaves' links (for a switchover).
    pub(crate) fn links(&self) -> &Links {
        &self.links
    }

    /// The replication source this service streams from.
    pub(crate) fn source(&self) -> &ReplicationSource {
        &self.source
    }

    pub(crate) fn into_server(self) -> pb::replication_server::ReplicationServer<Self> {
        let max = self.max_frame + FRAME_OVERHEAD;
        pb::replication_server::ReplicationServer::new(self)
            .max_decoding_message_size(64 << 10)
            .max_encoding_message_size(max)
    }

    /// Checks the caller's identity (same cluster and group, a slave id) and signature.
    fn admit(
        &self,
        meta: &tonic::metadata::MetadataMap,
        method: &str,
        broker: Option<&pb::BrokerIdentity>,
    ) -> Result<u64, Status> {
        let Some(b) = broker else {
            return Err(Status::invalid_argument("broker identity missing"));
        };
        if let Some(key) = &self.key {
            key.verify(
                meta,
                method,
                now_ms(),
                (&b.cluster, &b.broker_name, b.broker_id),
            )?;
        }
        if b.cluster != self.cluster || b.broker_name != self.name {
            return Err(Status::permission_denied(format!(
                "broker {}/{} is not of this group ({}/{})",
                b.cluster, b.broker_name, self.cluster, self.name
            )));
        }
        if b.broker_id == 0 {
            return Err(Status::permission_denied(
                "broker id 0 is a master, not a slave",
            ));
        }
        Ok(b.broker_id)
    }
}

fn status(e: &rocketgate_core::replication::ReplicaError) -> Status {
    match e.kind() {
        ReplicaErrorKind::SegmentSize => Status::failed_precondition(e.to_string()),
        ReplicaErrorKind::BelowRetained { .. } => Status::out_of_range(e.to_string()),
        ReplicaErrorKind::Refused => Status::invalid_argument(e.to_string()),
        _ => Status::unavailable(e.to_string()),
    }
}

/// Where a slave says it serves once promoted, with an unspecified IP replaced by the one the
/// master sees it at; `None` when it named none.
fn promotable_address(said: &str, seen: Option<std::net::SocketAddr>) -> Option<String> {
    let said: std::net::SocketAddr = match said.parse() {
        Ok(a) => a,
        // A host name (its `advertised_host`) is used as given.
        Err(_) => return (!said.is_empty()).then(|| said.to_owned()),
    };
    match (said.ip().is_unspecified(), seen) {
        (true, Some(seen)) => Some(std::net::SocketAddr::new(seen.ip(), said.port()).to_string()),
        _ => Some(said.to_string()),
    }
}

type Frames = ReceiverStream<Result<pb::FollowFrame, Status>>;

#[tonic::async_trait]
impl pb::replication_server::Replication for Master {
    async fn handshake(
        &self,
        request: Request<pb::ReplicaHandshakeRequest>,
    ) -> Result<Response<pb::ReplicaHandshakeResponse>, Status> {
        let id = self.admit(
            request.metadata(),
            "Handshake",
            request.get_ref().broker.as_ref(),
        )?;
        let seen = request.remote_addr();
        let r = request.into_inner();
        self.links
            .set_address(id, promotable_address(&r.replication_address, seen));
        let welcome = self
            .source
            .handshake(&SlaveHello {
                segment_size: r.segment_size,
                epochs: epochs_from_pb(&r.epochs),
                log_end: r.log_end,
                kv_sequence: r.kv_sequence,
            })
            .map_err(|e| status(&e))?;
        tracing::info!(
            slave = id,
            slave_end = r.log_end,
            start = welcome.start,
            kv_snapshot = welcome.kv_snapshot_needed,
            "replication handshake"
        );
        Ok(Response::new(pb::ReplicaHandshakeResponse {
            start: welcome.start,
            epochs: epochs_to_pb(&welcome.epochs),
            min_offset: welcome.min_offset,
            kv_snapshot_needed: welcome.kv_snapshot_needed,
            master_log_end: self.source.log_end(),
        }))
    }

    type FollowStream = Frames;

    async fn follow(
        &self,
        request: Request<pb::FollowRequest>,
    ) -> Result<Response<Frames>, Status> {
        let id = self.admit(
            request.metadata(),
            "Follow",
            request.get_ref().broker.as_ref(),
        )?;
        let r = request.into_inner();
        let attached = self
            .source
            .attach(id)
            .map_err(|e| Status::resource_exhausted(format!("cannot follow this master: {e}")))?;
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        let (control, link) = self.links.open(id);
        tokio::spawn(async move {
            // Counts as connected (for the in-sync set, and as a link a switchover can use)
            // while this task runs.
            let _attached = attached;
            let _link = link;
            if let Err(e) = this.stream(r, &tx, control).await {
                tracing::info!(slave = id, error = %e.message(), "replication stream ended");
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn report(
        &self,
        request: Request<pb::ReplicaReport>,
    ) -> Result<Response<pb::ReplicaReportResponse>, Status> {
        let id = self.admit(
            request.metadata(),
            "Report",
            request.get_ref().broker.as_ref(),
        )?;
        let r = request.into_inner();
        if r.offsets.len() > MAX_REPORTED_OFFSETS {
            return Err(Status::invalid_argument(format!(
                "a report carries at most {MAX_REPORTED_OFFSETS} offsets"
            )));
        }
        let end = self
            .source
            .report(id, r.written, r.flushed)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        self.links.report(id, r.kv_sequence);
        let offsets_committed = if r.offsets.is_empty() {
            0
        } else {
            let offsets: Vec<ForwardedOffset> = r
                .offsets
                .into_iter()
                .map(|o| ForwardedOffset {
                    group: o.group,
                    topic: o.topic,
                    queue_id: o.queue_id,
                    offset: o.offset,
                })
                .collect();
            let committed = self.source.commit_forwarded_offsets(&offsets);
            tracing::info!(
                slave = id,
                offsets = offsets.len(),
                committed,
                "took the consumer offsets committed on a slave"
            );
            committed as u32
        };
        Ok(Response::new(pb::ReplicaReportResponse {
            master_log_end: end,
            offsets_committed,
        }))
    }
}

type Tx = mpsc::Sender<Result<pb::FollowFrame, Status>>;

async fn send(tx: &Tx, frame: pb::follow_frame::Frame) -> Result<(), Status> {
    tx.send(Ok(pb::FollowFrame { frame: Some(frame) }))
        .await
        .map_err(|_| Status::cancelled("the slave went away"))
}

impl Master {
    /// Produces the frames of one Follow call until the slave goes away or a read fails.
    async fn stream(
        &self,
        r: pb::FollowRequest,
        tx: &Tx,
        mut control: mpsc::Receiver<Control>,
    ) -> Result<(), Status> {
        let budget = self.max_frame.saturating_sub(FRAME_OVERHEAD).max(1);
        let segment = self.source.segment_size();
        let mut kv_seq = r.kv_sequence;
        if r.kv_snapshot {
            kv_seq = self.send_snapshot(tx, budget).await?;
        }
        let mut from = r.from;
        // Whether this chunk already waited for more (see LINGER).
        let mut lingered = false;
        loop {
            if let Ok(order) = control.try_recv() {
                // A switchover's last word to this slave: the stream ends with it.
                send(tx, order.into_frame()).await?;
                return Ok(());
            }
            match self
                .source
                .kv_changes(kv_seq, budget)
                .map_err(|e| status(&e))?
            {
                KvBatch::SnapshotNeeded => kv_seq = self.send_snapshot(tx, budget).await?,
                KvBatch::Changes(changes) if !changes.is_empty() => {
                    kv_seq = changes.last().map_or(kv_seq, |c| c.seq);
                    let changes = changes
                        .into_iter()
                        .map(|c| pb::KvChangeFrame {
                            seq: c.seq,
                            namespace: c.namespace,
                            key: c.key.to_vec(),
                            value: c.value.map(|v| v.to_vec()),
                        })
                        .collect();
                    send(tx, pb::follow_frame::Frame::Kv(pb::KvFrame { changes })).await?;
                    continue;
                }
                KvBatch::Changes(_) => {}
            }
            let end = self.source.log_end();
            if from < end {
                if !lingered && end - from < BATCH_BYTES && self.lingers() {
                    lingered = true;
                    tokio::select! {
                        () = tokio::time::sleep(LINGER) => {}
                        () = self.links.woken() => {}
                        Some(order) = control.recv() => {
                            send(tx, order.into_frame()).await?;
                            return Ok(());
                        }
                    }
                    continue;
                }
                lingered = false;
                let chunk = self
                    .source
                    .next_chunk(from, budget)
                    .map_err(|e| status(&e))?;
                from = match chunk.seals_segment {
                    true => (chunk.from / segment + 1) * segment,
                    false => chunk.from + chunk.data.len() as u64,
                };
                let frame = pb::LogFrame {
                    from: chunk.from,
                    data: chunk.data,
                    seals_segment: chunk.seals_segment,
                    master_log_end: end,
                };
                send(tx, pb::follow_frame::Frame::Log(frame)).await?;
                continue;
            }
            let wait = match self.source.fenced() {
                Some(_) => FENCED_POLL,
                None => HEARTBEAT,
            };
            let more = tokio::select! {
                more = self.source.wait_for_more(from, wait) => more.map_err(|e| status(&e))?,
                () = self.links.woken() => continue,
                Some(order) = control.recv() => {
                    send(tx, order.into_frame()).await?;
                    return Ok(());
                }
            };
            if !more {
                send(tx, pb::follow_frame::Frame::HeartbeatLogEnd(end)).await?;
            }
        }
    }

    /// Whether the stream waits for more before a small chunk: under ASYNC replication, and
    /// not while writes are fenced for a switchover (the target must catch up at once).
    fn lingers(&self) -> bool {
        self.source.fenced().is_none() && self.source.policy().mode == ReplicationMode::Async
    }

    /// Sends the KV state in parts of at most `budget` bytes; returns its sequence.
    async fn send_snapshot(&self, tx: &Tx, budget: usize) -> Result<u64, Status> {
        let state = self.source.kv_snapshot();
        let mut part = Vec::new();
        let mut bytes = 0;
        for (namespace, key, value) in state.entries {
            let size = namespace.len() + key.len() + value.len() + 16;
            if bytes + size > budget && !part.is_empty() {
                let frame = pb::KvSnapshotFrame {
                    seq: state.seq,
                    entries: std::mem::take(&mut part),
                    last: false,
                };
                send(tx, pb::follow_frame::Frame::Snapshot(frame)).await?;
                bytes = 0;
            }
            bytes += size;
            part.push(pb::KvEntryFrame {
                namespace,
                key: key.to_vec(),
                value: value.to_vec(),
            });
        }
        let frame = pb::KvSnapshotFrame {
            seq: state.seq,
            entries: part,
            last: true,
        };
        send(tx, pb::follow_frame::Frame::Snapshot(frame)).await?;
        Ok(state.seq)
    }
}

/// What a node's replication listener serves: the master's service, or a slave's refusal.
pub(crate) enum Service {
    Master(Master),
    /// A slave's listener (bound for the day it is promoted): every call is refused as
    /// UNAVAILABLE, naming the master it follows, so a peer retries.
    Standby(Standby),
}

/// A slave's `Replication` service (see [`Service::Standby`]).
#[derive(Debug, Clone)]
pub(crate) struct Standby {
    pub(crate) master: String,
}

impl Standby {
    fn refuse(&self) -> Status {
        Status::unavailable(format!(
            "this broker is a slave (it follows {}), not a master",
            self.master
        ))
    }
}

#[tonic::async_trait]
impl pb::replication_server::Replication for Standby {
    async fn handshake(
        &self,
        _: Request<pb::ReplicaHandshakeRequest>,
    ) -> Result<Response<pb::ReplicaHandshakeResponse>, Status> {
        Err(self.refuse())
    }

    type FollowStream = Frames;

    async fn follow(&self, _: Request<pb::FollowRequest>) -> Result<Response<Frames>, Status> {
        Err(self.refuse())
    }

    async fn report(
        &self,
        _: Request<pb::ReplicaReport>,
    ) -> Result<Response<pb::ReplicaReportResponse>, Status> {
        Err(self.refuse())
    }
}

/// Serves `service` on `listener` (TLS when given, at most `limits` connections, idle and
/// handshake timeouts) until `shutdown`.
///
/// # Errors
/// The server failing.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    service: Service,
    limits: rocketgate_nameserver::listener::ConnectionLimits,
    tls: Option<Arc<dyn rocketgate_nameserver::listener::ServerTls>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use rocketgate_nameserver::listener::{Incoming, TrackCallsLayer};
    let refresher = match &service {
        Service::Master(master) => {
            let source = master.source.clone();
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(REFRESH);
                loop {
                    tick.tick().await;
                    source.refresh();
                }
            }))
        }
        Service::Standby(_) => None,
    };
    let incoming = Incoming::new(listener, "replication", limits.clone()).with_tls(tls);
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval()))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout()))
        .layer(TrackCallsLayer);
    let served = match service {
        Service::Master(master) => {
            builder
                .add_service(master.into_server())
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Service::Standby(standby) => {
            builder
                .add_service(pb::replication_server::ReplicationServer::new(standby))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    if let Some(r) = refresher {
        r.abort();
    }
    served?;
    Ok(())
}
