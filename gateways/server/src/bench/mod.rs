//! `rocketgate bench`: measurements that print throughput and latency percentiles.
//!
//! Owns: the `bench` subcommand tree and its dispatch. Each benchmark is one subcommand in its
//! own module: `bench store` ([`store`]: append and read throughput of the store, next to the
//! raw bandwidth of the disk under it), `bench consume` ([`consume`]: pop + ack throughput and
//! send -> pop latency), `bench delay` ([`delay`]: scheduling throughput and delivery lateness
//! of timed messages), `bench grpc` ([`grpc`]: the RocketMQ 5 gRPC protocol end to end). Later
//! ones add a variant to [`BenchCommand`] and a module beside these.
//!
//! Layout of `bench store`: [`store`] (flags, run order, directories), [`append`] (one append
//! case), [`read`] (the read pass), [`disk`] (the raw-disk yardstick and the machine),
//! [`load`] (how busy other processes kept the CPUs), [`goals`] (goal checks and disk ratios),
//! [`report`] (result types, table and JSON), [`units`] (flag parsing, MB). Shared by all:
//! [`dirs`] (run and case directories), [`popper`] (pop + ack consumer tasks, the exactly-once
//! check), [`load`], [`report`], [`units`], [`goals::Goal`].
//!
//! Invariants: a benchmark only ever writes below the directory it is given (or a fresh one it
//! creates and deletes); it never touches a live broker's data. Human-readable results go to
//! stdout, progress to stderr, so `--json` output can be piped as is.
//!
//! Who calls it: `main` only. It uses the core through its public API (`Broker`, `Store`) and
//! must not be depended on by anything.
//!
//! Concurrency: each benchmark builds its own tokio runtime; nothing here is shared.

mod append;
mod consume;
mod delay;
mod dirs;
mod disk;
mod goals;
mod grpc;
mod http;
mod in_process;
mod latency;
mod load;
mod memory;
mod mqtt;
mod popper;
mod read;
mod report;
mod store;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod units;

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
}

/// Runs the chosen benchmark.
///
/// # Errors
/// Whatever the benchmark reports: bad flags, I/O errors, store errors.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Store(a) => store::run(a),
        BenchCommand::Consume(a) => consume::run(a),
        BenchCommand::Delay(a) => delay::run(a),
        BenchCommand::Grpc(a) => grpc::run(a),
        BenchCommand::Mqtt(a) => mqtt::run(a),
        BenchCommand::Http(a) => http::run(a),
    }
}
