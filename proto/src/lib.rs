//! rocketgate-proto: the `.proto` files and the tonic/prost code generated from them.
//!
//! Owns the wire definitions only; no domain logic lives here. `build.rs` compiles every file in
//! its `PROTOS` list with `protox` (a pure-Rust protobuf compiler, so no system `protoc`) and
//! `tonic-prost-build` (messages, server traits and clients).
//!
//! # Layout
//!
//! - [`cluster::v1`] — package `rocketgate.cluster.v1`, rocketgate's own cluster protocol
//!   (`rocketgate/cluster/v1/nameserver.proto`): the `NameServer` service (broker register /
//!   unregister / heartbeat, topic routes, cluster info), described in `docs/nameserver.md`. The
//!   server trait is [`cluster::v1::name_server_server::NameServer`], the client
//!   [`cluster::v1::name_server_client::NameServerClient`].
//!   The same package holds the `BrokerAdmin` service (`rocketgate/cluster/v1/admin.proto`),
//!   served by every broker and used by `rocketgate admin` (docs/admin.md):
//!   [`cluster::v1::broker_admin_server::BrokerAdmin`] and
//!   [`cluster::v1::broker_admin_client::BrokerAdminClient`]. And the `AccessAdmin` service
//!   (`rocketgate/cluster/v1/access.proto`): users, policies and tokens (docs/security.md). And
//!   the `Replication` service (`rocketgate/cluster/v1/replication.proto`) a master serves its
//!   slaves (docs/replication.md). And the failover controller's `ControllerRaft` (Raft between
//!   controller members) and `Controller` (brokers' heartbeats, status) services
//!   (`rocketgate/cluster/v1/controller.proto`, docs/cluster.md).
//!
//! - [`apache::rocketmq::v2`] — package `apache.rocketmq.v2` (`apache/rocketmq/v2/*.proto`), the
//!   RocketMQ 5 `MessagingService`, written from the protocol brief with the public protocol's
//!   names, field numbers and enum values, so the official SDKs connect unchanged. Server trait
//!   [`apache::rocketmq::v2::messaging_service_server::MessagingService`].
//!
//! Users: `rocketgate-nameserver` and the gateways. `rocketgate-core` must never depend on this
//! crate. Generated code has no state and no concurrency of its own.
//!
//! # Example
//!
//! ```
//! use rocketgate_proto::cluster::v1::{BrokerIdentity, HeartbeatRequest};
//!
//! let request = HeartbeatRequest {
//!     broker: Some(BrokerIdentity {
//!         cluster: "DefaultCluster".into(),
//!         broker_name: "broker-a".into(),
//!         broker_id: 0,
//!     }),
//!     ..Default::default()
//! };
//! assert_eq!(request.broker.map(|b| b.broker_id), Some(0));
//! ```

/// The RocketMQ 5 gRPC protocol.
pub mod apache {
    /// `apache.rocketmq.*`.
    pub mod rocketmq {
        /// Package `apache.rocketmq.v2`: the `MessagingService` the official SDKs speak.
        #[allow(
            missing_docs,
            clippy::all,
            clippy::pedantic,
            clippy::unwrap_used,
            clippy::expect_used
        )]
        pub mod v2 {
            include!(concat!(env!("OUT_DIR"), "/apache.rocketmq.v2.rs"));
        }
    }
}

/// rocketgate's own cluster protocol.
pub mod cluster {
    /// Version 1 of the cluster protocol: package `rocketgate.cluster.v1`.
    #[allow(
        missing_docs,
        clippy::all,
        clippy::pedantic,
        clippy::unwrap_used,
        clippy::expect_used
    )]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/rocketgate.cluster.v1.rs"));
    }
}
