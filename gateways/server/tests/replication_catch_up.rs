//! A slave that fell far behind catches up (issue 15's acceptance: "one that fell 1 GiB
//! behind"): the slave is stopped, the master takes `RG_BEHIND_MIB` MiB (default 1024) of
//! acknowledged sends, the slave is started again on its data directory and must reach the
//! master's end — every byte through the stream's record and CRC checks — and rejoin the
//! in-sync set. How long that took is printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::replication::{config, master, metric, slave, try_http, wait_in_sync};
use support::{http, poll_until};

fn behind_mib() -> usize {
    std::env::var("RG_BEHIND_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

#[test]
fn a_slave_that_fell_a_gib_behind_catches_up_and_rejoins_the_in_sync_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = config(d, 1);
    let m = master(d, "m", &d.join("m"), "ASYNC", &conf);
    let web = m.endpoint("http");
    let (status, body) = http(&web, "POST", "/v1/topics", Some(r#"{"name":"orders"}"#));
    assert_eq!(status, 201, "{body}");
    let repl = m.endpoint("replication");
    let s = slave(d, "s", &d.join("s"), "1", &repl);
    wait_in_sync(&web, 2);
    let (status, _) = s.terminate();
    assert!(status.success());

    // 1 MiB bodies from four senders, each acknowledged.
    let mib = behind_mib();
    let body = format!(r#"{{"body":"{}"}}"#, "x".repeat((1 << 20) - 64));
    let sent = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (web, body) = (&web, &body);
            scope.spawn(move || {
                for _ in (t..mib).step_by(4) {
                    let r = try_http(web, "POST", "/v1/topics/orders/messages", body);
                    assert!(
                        matches!(r, Some((s, _)) if (200..300).contains(&s)),
                        "{r:?}"
                    );
                }
            });
        }
    });
    let sent = sent.elapsed();
    let lag = || metric(&web, "rocketgate_replication_lag_bytes{slave=\"1\"}");
    let behind = lag().unwrap_or(0.0);
    assert!(
        behind >= (mib as f64) * 1_000_000.0,
        "the slave is only {behind} bytes behind"
    );

    let started = Instant::now();
    let s = slave(d, "s", &d.join("s"), "1", &repl);
    let caught_up = poll_until(Duration::from_secs(600), "the slave to catch up", || {
        (lag()? == 0.0).then_some(())
    });
    assert!(caught_up.is_some(), "{}", s.log_text());
    let took = started.elapsed();
    wait_in_sync(&web, 2);
    println!(
        "catch-up: {mib} MiB sent in {:.1} s; the restarted slave was {:.0} MiB behind and \
         caught up in {:.1} s ({:.0} MiB/s, debug build)",
        sent.as_secs_f64(),
        behind / f64::from(1 << 20),
        took.as_secs_f64(),
        behind / f64::from(1 << 20) / took.as_secs_f64()
    );
    drop(s);
    drop(m);
}
