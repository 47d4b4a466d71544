//! rocketgate-proto: the `.proto` files and the tonic/prost code generated from them.
//!
//! Will own (gRPC gateway and NameServer issues): `apache.rocketmq.v2` (the RocketMQ 5
//! `MessagingService`, field-for-field compatible with the public protocol) and rocketgate's own
//! cluster protocol (broker registration, route queries), compiled in `build.rs` with a pure-Rust
//! protobuf compiler so no system `protoc` is needed. No domain logic lives here.
//!
//! Nothing is generated yet: the first service lands with the NameServer and gRPC issues.
