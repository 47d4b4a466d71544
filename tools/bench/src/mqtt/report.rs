//! What `bench mqtt` reports: the settings line, one run's table, the figures the summary keeps
//! (with rocketgate / Mosquitto ratios taken within each run), and the goals.
//!
//! Owns the goals of the MQTT gateway:
//! - issue 8: QoS 0 >= 200,000 msgs/s (stored), QoS 1 throughput >= Mosquitto's in the same run
//!   (every rocketgate message in the CommitLog), publish → subscriber p99 <= 5 ms at 10,000
//!   msgs/s;
//! - issue 17: QoS 1 on one connection >= 1.0x Mosquitto's throughput, with server CPU per
//!   message <= Mosquitto's.
//!
//! Pure formatting and functions over the results; called by [`super::run`].

use super::{CaseResult, MqttArgs, MqttRun, MqttSettings};
use crate::cpu::ServerCpu;
use crate::goal::Spec;
use crate::summary::Metric;

impl MqttSettings {
    /// The settings as printed under the header.
    pub(super) fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "settings: server {}, {} publisher connections, {} B payloads, {:.1} s per \
                 throughput case, QoS 1 with {} in flight per connection ({} on the \
                 one-connection case), latency at {:.0} msgs/s",
                self.server,
                self.clients,
                self.payload_bytes,
                self.duration_secs,
                self.inflight,
                self.single_inflight,
                self.rate
            ),
            format!("comparison: {}", self.comparison),
            format!("server CPU (rocketgate): {}", self.server_cpu),
        ]
    }
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1e3)
}

/// Prints one run's table, and the errors of its cases.
pub(super) fn print_run(r: &MqttRun) {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    t.set_header(vec![
        "broker",
        "case",
        "written",
        "stored",
        "counted",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "srv µs/msg",
        "errors",
    ]);
    for c in &r.cases {
        let (p50, p99, max) = c
            .latency
            .map_or((String::new(), String::new(), String::new()), |l| {
                (ms(l.p50_us), ms(l.p99_us), ms(l.max_us))
            });
        t.add_row(vec![
            c.broker.to_owned(),
            c.case.clone(),
            c.written.to_string(),
            c.stored.map_or("-".into(), |s| s.to_string()),
            c.counted.to_owned(),
            format!("{:.0}", c.msgs_per_sec),
            p50,
            p99,
            max,
            c.server_cpu_us_per_msg
                .map_or("-".into(), |v| format!("{v:.1}")),
            c.errors.to_string(),
        ]);
    }
    println!("{t}");
    for c in r.cases.iter().filter(|c| !c.error_notes.is_empty()) {
        println!(
            "ERRORS {} {}: {}",
            c.broker,
            c.case,
            c.error_notes.join("; ")
        );
    }
}

fn find<'a>(r: &'a MqttRun, broker: &str, case: &str) -> Option<&'a CaseResult> {
    r.cases
        .iter()
        .find(|c| c.broker == broker && c.case == case)
}

/// The figures of one run that the summary keeps.
pub(super) fn metrics(r: &MqttRun) -> Vec<Metric> {
    let mut out = Vec::new();
    for c in &r.cases {
        let name = format!("{} {}", c.broker, c.case);
        match c.latency {
            Some(l) => {
                out.push(Metric::new(format!("{name} p50"), "ms", l.p50_us / 1e3));
                out.push(Metric::new(format!("{name} p99"), "ms", l.p99_us / 1e3));
            }
            None => out.push(Metric::new(name.clone(), "msgs/s", c.msgs_per_sec)),
        }
        if let Some(cpu) = c.server_cpu_us_per_msg {
            out.push(Metric::new(format!("{name} server CPU"), "µs/msg", cpu));
        }
    }
    let cases: Vec<String> = r
        .cases
        .iter()
        .filter(|c| c.broker == "rocketgate" && c.qos == 1 && c.latency.is_none())
        .map(|c| c.case.clone())
        .collect();
    for case in cases {
        let (Some(rg), Some(mq)) = (find(r, "rocketgate", &case), find(r, "mosquitto", &case))
        else {
            continue;
        };
        if mq.msgs_per_sec > 0.0 {
            let ratio = rg.msgs_per_sec / mq.msgs_per_sec;
            out.push(Metric::new(
                format!("{case} rocketgate / Mosquitto"),
                "x",
                ratio,
            ));
        }
        if let (Some(a), Some(b)) = (rg.server_cpu_us_per_msg, mq.server_cpu_us_per_msg) {
            if b > 0.0 {
                let name = format!("{case} server CPU rocketgate / Mosquitto");
                out.push(Metric::new(name, "x", a / b));
            }
        }
    }
    out
}

/// The goals of issues 8 and 17, on the figures of [`metrics`].
pub(super) fn specs(a: &MqttArgs, cpu: ServerCpu, compare: bool) -> Vec<Spec> {
    let n = a.clients;
    let conns = if n == 1 { "conn" } else { "conns" };
    let no_compare = (!compare).then(|| "no Mosquitto in this run (see the header)".to_owned());
    let unmeasured = (cpu == ServerCpu::Unknown).then(|| cpu.describe());
    let rate = ((a.rate - 10_000.0).abs() >= 0.5)
        .then(|| format!("the goal is at 10000 msgs/s; --rate {}", a.rate));
    let latency = format!(
        "rocketgate latency QoS {} @ {:.0}/s p99",
        a.latency_qos, a.rate
    );
    vec![
        Spec::at_least(
            format!("rocketgate QoS 0, {n} {conns}"),
            200_000.0,
            "issue 8",
        ),
        Spec::at_least(
            format!("QoS 1, {n} {conns} rocketgate / Mosquitto"),
            1.0,
            "issue 8",
        )
        .unless(no_compare.clone()),
        Spec::at_most(latency, 5.0, "issue 8").unless(rate),
        Spec::at_least("QoS 1, 1 conn rocketgate / Mosquitto", 1.0, "issue 17")
            .unless(no_compare.clone()),
        Spec::at_most(
            "QoS 1, 1 conn server CPU rocketgate / Mosquitto",
            1.0,
            "issue 17",
        )
        .unless(no_compare.or(unmeasured)),
    ]
}
