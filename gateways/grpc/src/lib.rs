//! rocketgate-gateway-grpc: the RocketMQ 5 gRPC protocol (`apache.rocketmq.v2.MessagingService`)
//! translated to the core `Broker` API, so the official SDKs connect unchanged.
//!
//! Will own (gRPC gateway issue): the tonic service, conversions between protobuf types and
//! `rocketgate_core::api`, the Telemetry streams and transaction check-back. It depends on
//! `rocketgate-core` and `rocketgate-proto`, never on another gateway. Not implemented yet.
