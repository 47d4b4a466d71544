//! The `bench` command line: [`BenchArgs`] (one subcommand per benchmark) and [`run`], the
//! dispatch to the benchmark's module.
//!
//! Owns only the command tree; a new benchmark adds a variant to `BenchCommand` and a module
//! beside the others. Must not measure anything itself.

use crate::error::Result;
use crate::{consume, delay, grpc, http, mqtt, replication, store};

/// Arguments of `rocketgate bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
enum BenchCommand {
    /// Store append and read throughput, with the raw disk bandwidth as the yardstick.
    Store(store::StoreArgs),
    /// Pop + ack throughput of a preloaded topic, and send -> pop latency at a fixed rate.
    Consume(consume::ConsumeArgs),
    /// Scheduling throughput of timed messages against plain sends, and delivery lateness.
    Delay(delay::DelayArgs),
    /// RocketMQ 5 gRPC: SendMessage throughput and latency with N clients, paced latency, and
    /// ReceiveMessage + AckMessage throughput.
    Grpc(grpc::GrpcArgs),
    /// MQTT 3.1.1: QoS 0 / QoS 1 publish throughput with N clients and publish -> subscriber
    /// latency, against a rocketgate listener and Mosquitto (when installed) in the same run.
    Mqtt(mqtt::MqttArgs),
    /// REST and WebSocket: REST publish throughput and latency with N keep-alive connections
    /// (single and batch), and REST publish -> WebSocket delivery latency at a fixed rate.
    Http(http::HttpArgs),
    /// Replication's cost: 1 KiB SendMessage throughput and latency with N producers against an
    /// unreplicated master, ASYNC and SYNC replication (master and slaves as child processes),
    /// and the replication lag under that load.
    Replication(replication::ReplicationArgs),
}

/// Runs the chosen benchmark.
///
/// # Errors
/// Whatever the benchmark reports: bad flags, I/O errors, store errors.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        BenchCommand::Store(a) => store::run(a),
        BenchCommand::Consume(a) => consume::run(a),
        BenchCommand::Delay(a) => delay::run(a),
        BenchCommand::Grpc(a) => grpc::run(a),
        BenchCommand::Mqtt(a) => mqtt::run(a),
        BenchCommand::Http(a) => http::run(a),
        BenchCommand::Replication(a) => replication::run(a),
    }
}
