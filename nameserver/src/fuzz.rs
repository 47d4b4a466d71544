//! Fuzz entry point of the NameServer (issue 14): [`NameServerFuzz::run`] reads arbitrary bytes
//! as a sequence of requests, decodes each as the protobuf message of its RPC and applies it to
//! a fresh in-memory [`NameServerService`] (the real `convert.rs` checks, then the route
//! tables), and decodes replies the way the broker-side client does.
//!
//! Input: records of `[kind: u8][length: u16 LE][payload]` (a length past the end takes the
//! rest). Kinds (modulo 8): 0 RegisterBroker, 1 UnregisterBroker, 2 Heartbeat, 3 QueryRoute,
//! 4 ClusterInfo, 5 an expiry scan `payload as u32` ms from now, 6 a QueryRoute reply and 7 a
//! ClusterInfo reply decoded by the client side (`route_from_proto`,
//! `cluster_info_from_proto`).
//!
//! Checked beyond "never panics": a refused registration changes nothing (the cluster view is
//! the same before and after), and every route and cluster view the service answers decodes on
//! the client side (what the server sends, its own client accepts).
//!
//! Used only by the cargo-fuzz target `nameserver` (`fuzz/`) and the short run in the `tests`
//! crate. Concurrency: one current-thread runtime owned by the harness drives the (never
//! really waiting) service futures; one service per input.
#![doc(hidden)]

use std::time::Duration;

use prost::Message as _;
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::name_server_server::NameServer as _;
use tonic::Request;

use crate::route::Timestamp;
use crate::{convert, Config, NameServerService};

/// Most records of one input.
const MAX_RECORDS: usize = 64;

/// The harness: a runtime and the configuration of the services it builds.
#[derive(Debug)]
pub struct NameServerFuzz {
    runtime: tokio::runtime::Runtime,
    config: Config,
}

impl NameServerFuzz {
    /// A harness with the default configuration, but at most 16 brokers (so inputs reach the
    /// limit).
    ///
    /// # Errors
    /// When the runtime cannot start.
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let mut config = Config::default();
        config.limits.max_brokers = 16;
        Ok(Self { runtime, config })
    }

    /// Applies the records of `data` to a fresh service.
    ///
    /// # Panics
    /// When a check above fails: a finding.
    pub fn run(&mut self, data: &[u8]) {
        let Ok(service) = NameServerService::new(self.config.clone()) else {
            return;
        };
        self.runtime.block_on(apply(&service, data));
    }
}

async fn apply(service: &NameServerService, mut data: &[u8]) {
    for _ in 0..MAX_RECORDS {
        let [kind, lo, hi, rest @ ..] = data else {
            return;
        };
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (payload, next) = rest.split_at(len);
        data = next;
        match kind % 8 {
            0 => {
                let Ok(req) = pb::RegisterBrokerRequest::decode(payload) else {
                    continue;
                };
                let before = service.with_tables(|t| t.cluster_info());
                if service.register_broker(Request::new(req)).await.is_err() {
                    let after = service.with_tables(|t| t.cluster_info());
                    assert_eq!(before, after, "a refused registration changed the tables");
                }
            }
            1 => {
                if let Ok(req) = pb::UnregisterBrokerRequest::decode(payload) {
                    let _ = service.unregister_broker(Request::new(req)).await;
                }
            }
            2 => {
                if let Ok(req) = pb::HeartbeatRequest::decode(payload) {
                    let _ = service.heartbeat(Request::new(req)).await;
                }
            }
            3 => {
                let Ok(req) = pb::QueryRouteRequest::decode(payload) else {
                    continue;
                };
                if let Ok(route) = service.query_route(Request::new(req)).await {
                    if let Err(e) = convert::route_from_proto(route.into_inner()) {
                        panic!("the client refuses a route the NameServer answered: {e}");
                    }
                }
            }
            4 => {
                let Ok(req) = pb::ClusterInfoRequest::decode(payload) else {
                    continue;
                };
                if let Ok(info) = service.cluster_info(Request::new(req)).await {
                    if let Err(e) = convert::cluster_info_from_proto(info.into_inner()) {
                        panic!("the client refuses the cluster view the NameServer answered: {e}");
                    }
                }
            }
            5 => {
                let mut ms = [0u8; 4];
                for (slot, b) in ms.iter_mut().zip(payload) {
                    *slot = *b;
                }
                let later = Duration::from_millis(u64::from(u32::from_le_bytes(ms)));
                service.expire(Timestamp::now().after(later));
            }
            6 => {
                if let Ok(reply) = pb::QueryRouteResponse::decode(payload) {
                    let _ = convert::route_from_proto(reply);
                }
            }
            _ => {
                if let Ok(reply) = pb::ClusterInfoResponse::decode(payload) {
                    let _ = convert::cluster_info_from_proto(reply);
                }
            }
        }
    }
}

fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = vec![kind];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload[..usize::from(len)]);
    out
}

fn registration(cluster: &str, name: &str, id: u64, topics: &[(&str, u32)]) -> Vec<u8> {
    pb::RegisterBrokerRequest {
        broker: Some(identity(cluster, name, id)),
        endpoints: vec![pb::Endpoint {
            protocol: "grpc".into(),
            address: "127.0.0.1:8081".into(),
        }],
        topics: topics
            .iter()
            .map(|(t, queues)| pb::TopicConfig {
                name: (*t).into(),
                read_queue_nums: *queues,
                write_queue_nums: *queues,
                permission: pb::Permission::ReadWrite as i32,
                message_type: pb::MessageType::Normal as i32,
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn identity(cluster: &str, name: &str, id: u64) -> pb::BrokerIdentity {
    pb::BrokerIdentity {
        cluster: cluster.into(),
        broker_name: name.into(),
        broker_id: id,
    }
}

/// Valid request sequences and a few edge cases: the seed corpus of the target, with the name
/// of each (written to `fuzz/corpus/nameserver/` by the `tests` crate).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let route = |t: &str| pb::QueryRouteRequest { topic: t.into() }.encode_to_vec();
    let who = |c: &str, n: &str, id| pb::HeartbeatRequest {
        broker: Some(identity(c, n, id)),
        ..Default::default()
    };
    let a = registration("c1", "broker-a", 0, &[("orders", 8), ("audit", 1)]);
    let b = registration("c1", "broker-a", 1, &[("orders", 8)]);
    let mut lifecycle = record(0, &a);
    lifecycle.extend(record(0, &b));
    lifecycle.extend(record(2, &who("c1", "broker-a", 0).encode_to_vec()));
    lifecycle.extend(record(3, &route("orders")));
    lifecycle.extend(record(4, &[]));
    lifecycle.extend(record(5, &60_000u32.to_le_bytes()));
    lifecycle.extend(record(3, &route("orders")));
    let unregister = pb::UnregisterBrokerRequest {
        broker: Some(identity("c1", "broker-a", 0)),
        ..Default::default()
    };
    let mut leave = record(0, &a);
    leave.extend(record(1, &unregister.encode_to_vec()));
    leave.extend(record(3, &route("orders")));
    let mut conflict = record(0, &a);
    conflict.extend(record(0, &registration("c2", "broker-a", 0, &[("x", 1)])));
    conflict.extend(record(4, &[]));
    let mut many = Vec::new();
    for i in 0..20 {
        many.extend(record(
            0,
            &registration("c1", &format!("b{i}"), 0, &[("t", 1)]),
        ));
    }
    let huge_queues = registration("c1", "big", 0, &[("t", u32::MAX)]);
    let bad_names = registration("", "a b", u64::MAX, &[("", 0), ("%RETRY%x", 1)]);
    let reply = pb::QueryRouteResponse {
        topic: "orders".into(),
        queues: vec![pb::QueueData {
            broker_name: "broker-a".into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            permission: pb::Permission::ReadWrite as i32,
            message_type: pb::MessageType::Fifo as i32,
        }],
        brokers: vec![pb::BrokerData {
            cluster: "c1".into(),
            broker_name: "broker-a".into(),
            addresses: vec![pb::BrokerAddress {
                broker_id: 0,
                endpoints: vec![pb::Endpoint {
                    protocol: "grpc".into(),
                    address: "[::1]:8081".into(),
                }],
            }],
        }],
    };
    let mut bad_reply = reply.clone();
    bad_reply.queues[0].permission = 99;
    bad_reply.brokers[0].addresses[0].endpoints[0].address = "no-port".into();
    vec![
        ("lifecycle", lifecycle),
        ("unregister", leave),
        ("cluster_conflict", conflict),
        ("too_many_brokers", many),
        ("huge_queue_count", record(0, &huge_queues)),
        ("bad_names", record(0, &bad_names)),
        ("route_unknown", record(3, &route("nope"))),
        ("route_bad_name", record(3, &route("a/b"))),
        (
            "heartbeat_unknown",
            record(2, &who("c9", "x", 7).encode_to_vec()),
        ),
        ("route_reply", record(6, &reply.encode_to_vec())),
        ("route_reply_bad", record(6, &bad_reply.encode_to_vec())),
        ("cluster_reply_empty", record(7, &[])),
        ("truncated", record(0, &a[..a.len() / 2])),
        ("length_past_end", vec![0, 0xff, 0xff, 0x0a, 0x02]),
    ]
    .into_iter()
    .map(|(n, b)| (n.to_owned(), b))
    .collect()
}
