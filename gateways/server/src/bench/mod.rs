//! `rocketgate bench`: measurements that print throughput and latency percentiles.
//! (Filled in by the benchmark work.)

/// Arguments of `rocketgate bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

/// Runs the chosen benchmark.
pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("no benchmark selected")
}
