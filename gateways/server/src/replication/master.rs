//! The master's `Replication` service: refuses brokers of another cluster or group and
//! unsigned calls (when the cluster has a secret), answers handshakes, streams bounded frames
//! (KV snapshot parts, KV change batches, CommitLog chunks, heartbeats), and hands what each
//! slave reports, and when its stream opens and closes, to core's in-sync set (which SYNC
//! sends wait on). Reads only through `ReplicationSource`; writes nothing.

use std::sync::Arc;
use std::time::Duration;

use rocketgate_core::replication::{KvBatch, ReplicaErrorKind, ReplicationSource, SlaveHello};
use rocketgate_proto::cluster::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::{now_ms, Key};
use super::{epochs_from_pb, epochs_to_pb};

/// Room left in a frame for its envelope (offsets, flags, field tags).
const FRAME_OVERHEAD: usize = 4 << 10;
/// A heartbeat is sent after this long without anything new.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often the in-sync set is judged against the clock (a slave that went silent leaves it).
const REFRESH: Duration = Duration::from_millis(500);

/// The service state.
#[derive(Debug, Clone)]
pub(crate) struct Master {
    source: ReplicationSource,
    cluster: String,
    name: String,
    key: Option<Key>,
    max_frame: usize,
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
        }
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
        let r = request.into_inner();
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
        tokio::spawn(async move {
            // Counts as connected (for the in-sync set) while this task runs.
            let _attached = attached;
            if let Err(e) = this.stream(r, &tx).await {
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
        let end = self
            .source
            .report(id, r.written, r.flushed)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        Ok(Response::new(pb::ReplicaReportResponse {
            master_log_end: end,
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
    async fn stream(&self, r: pb::FollowRequest, tx: &Tx) -> Result<(), Status> {
        let budget = self.max_frame.saturating_sub(FRAME_OVERHEAD).max(1);
        let segment = self.source.segment_size();
        let mut kv_seq = r.kv_sequence;
        if r.kv_snapshot {
            kv_seq = self.send_snapshot(tx, budget).await?;
        }
        let mut from = r.from;
        loop {
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
            let more = self
                .source
                .wait_for_more(from, HEARTBEAT)
                .await
                .map_err(|e| status(&e))?;
            if !more {
                send(tx, pb::follow_frame::Frame::HeartbeatLogEnd(end)).await?;
            }
        }
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

/// Serves `master` on `listener` (TLS when given, at most `limits` connections, idle and
/// handshake timeouts) until `shutdown`.
///
/// # Errors
/// The server failing.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    master: Master,
    limits: rocketgate_nameserver::listener::ConnectionLimits,
    tls: Option<Arc<dyn rocketgate_nameserver::listener::ServerTls>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use rocketgate_nameserver::listener::{Incoming, TrackCallsLayer};
    let source = master.source.clone();
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tick.tick().await;
            source.refresh();
        }
    });
    let incoming = Incoming::new(listener, "replication", limits.clone()).with_tls(tls);
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval()))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout()))
        .layer(TrackCallsLayer)
        .add_service(master.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    refresher.abort();
    served?;
    Ok(())
}
