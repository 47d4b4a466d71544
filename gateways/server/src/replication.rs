//! Replication's transport (phase 2a, ASYNC): the `Replication` gRPC service a master serves
//! its slaves on its own listener (`master.rs`), the slave's follow loop (`slave.rs`), and the
//! signature both put on every call (`auth.rs`); roles and the switchover (`role.rs`,
//! `links.rs`, `switch.rs`). See docs/replication.md.
//!
//! Owns the wire side only: what is appended, cut or installed, and every check of the bytes,
//! is `rocketgate_core::replication`'s. Must not open a `Broker` on a slave's data directory.

pub(crate) mod auth;
pub(crate) mod links;
pub(crate) mod master;
pub(crate) mod role;
pub(crate) mod slave;
pub(crate) mod switch;

use rocketgate_proto::cluster::v1 as pb;

fn epochs_to_pb(list: &[(u64, u64)]) -> Vec<pb::ReplicaEpoch> {
    list.iter()
        .map(|&(epoch, start)| pb::ReplicaEpoch { epoch, start })
        .collect()
}

fn epochs_from_pb(list: &[pb::ReplicaEpoch]) -> Vec<(u64, u64)> {
    list.iter().map(|e| (e.epoch, e.start)).collect()
}
