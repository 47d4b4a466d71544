//! rocketgate-nameserver: the route registry, independent of the core.
//!
//! Will own (NameServer issue): typed route tables (topic → queue data per broker; broker →
//! cluster, name and addresses; live brokers), broker register / unregister / heartbeat with
//! expiry, topic route queries and cluster info, served over the gRPC protocol defined in
//! `rocketgate-proto`. It may depend on `rocketgate-proto`, never on `rocketgate-core` or a
//! gateway.
//!
//! Not implemented yet: `rocketgate standalone` currently runs a single broker that needs no
//! routes.
