//! What `bench http` reports: the settings line, one run's tables, the figures the summary
//! keeps, and the goals.
//!
//! Owns the goals of the REST and WebSocket gateway:
//! - issue 7: REST publish of 1 KiB bodies over 64 keep-alive connections >= 50,000 msgs/s,
//!   batch publish >= 200,000 msgs/s, WebSocket delivery p99 <= 5 ms at 10,000 msgs/s;
//! - issue 17: REST single publish <= 10 µs of server CPU per message.
//!
//! Pure formatting and functions over the results; called by [`super::run`].

use super::{HttpArgs, HttpRun, HttpSettings};
use crate::cpu::ServerCpu;
use crate::goal::Spec;
use crate::summary::{Metric, Summary};

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

impl HttpSettings {
    /// The settings as printed under the header.
    pub(super) fn lines(&self) -> Vec<String> {
        vec![format!(
            "settings: server {}, {} B bodies, {:.1} s per case; server CPU: {}",
            self.server, self.body_bytes, self.duration_secs, self.server_cpu
        )]
    }
}

/// Prints one run's tables.
pub(super) fn print_run(r: &HttpRun) {
    println!(
        "{:<8} {:>5} {:>6} {:>10} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11}",
        "case",
        "conns",
        "per rq",
        "msgs/s",
        "MB/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "max ms",
        "srv µs/msg"
    );
    for p in &r.publish {
        println!(
            "{:<8} {:>5} {:>6} {:>10.0} {:>7.1} {:>7} {:>8} {:>8} {:>8} {:>8} {:>11}",
            p.case,
            p.connections,
            p.per_request,
            p.msgs_per_sec,
            p.mb_per_sec,
            p.errors,
            ms(p.latency.p50_us),
            ms(p.latency.p99_us),
            ms(p.latency.p999_us),
            ms(p.latency.max_us),
            p.server_cpu_us_per_msg
                .map_or("-".into(), |c| format!("{c:.1}")),
        );
    }
    if let Some(d) = &r.delivery {
        println!(
            "WebSocket delivery at {:.0} msgs/s: {} published, {} delivered, {} lost, {} errors; \
             publish → frame p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
            d.target_msgs_per_sec,
            d.published,
            d.delivered,
            d.lost,
            d.errors,
            ms(d.latency.p50_us),
            ms(d.latency.p99_us),
            ms(d.latency.p999_us),
            ms(d.latency.max_us),
        );
    }
}

/// The name of a publish case's figures.
fn case_name(case: &str) -> String {
    match case {
        "publish" => "REST publish".into(),
        other => format!("REST {other} publish"),
    }
}

/// The figures of one run that the summary keeps.
pub(super) fn metrics(r: &HttpRun) -> Vec<Metric> {
    let mut out = Vec::new();
    for p in &r.publish {
        let name = case_name(&p.case);
        out.push(Metric::new(name.clone(), "msgs/s", p.msgs_per_sec));
        out.push(Metric::new(
            format!("{name} p99"),
            "ms",
            p.latency.p99_us / 1e3,
        ));
        if let Some(c) = p.server_cpu_us_per_msg {
            out.push(Metric::new(format!("{name} server CPU"), "µs/msg", c));
        }
    }
    if let Some(d) = &r.delivery {
        out.push(Metric::new(
            "WebSocket delivery p50",
            "ms",
            d.latency.p50_us / 1e3,
        ));
        out.push(Metric::new(
            "WebSocket delivery p99",
            "ms",
            d.latency.p99_us / 1e3,
        ));
    }
    out
}

/// The goals of issues 7 and 17, on the figures of [`metrics`].
pub(super) fn specs(_summary: &[Summary], a: &HttpArgs, cpu: ServerCpu) -> Vec<Spec> {
    let size = (a.size != 1024).then(|| format!("--size {} (the goal is for 1 KiB)", a.size));
    let conns = (a.connections != 64)
        .then(|| format!("--connections {} (the goal is for 64)", a.connections));
    let batch = (a.batch == 0).then(|| "no batch case ran (--batch 0)".to_owned());
    let rate = if a.rate <= 0.0 {
        Some("no delivery case ran (--rate 0)".to_owned())
    } else {
        ((a.rate - 10_000.0).abs() >= 0.5)
            .then(|| format!("the goal is at 10000 msgs/s; --rate {}", a.rate))
    };
    let unmeasured = (cpu == ServerCpu::Unknown).then(|| cpu.describe());
    vec![
        Spec::at_least("REST publish", 50_000.0, "issue 7").unless(size.clone().or(conns)),
        Spec::at_least("REST batch publish", 200_000.0, "issue 7").unless(batch.or(size.clone())),
        Spec::at_most("WebSocket delivery p99", 5.0, "issue 7").unless(rate),
        Spec::at_most("REST publish server CPU", 10.0, "issue 17").unless(unmeasured.or(size)),
    ]
}
