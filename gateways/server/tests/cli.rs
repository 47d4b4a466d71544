//! Process tests of the `rocketgate` binary's start and stop: the real executable, started on
//! 127.0.0.1 with ephemeral ports and temporary directories, stopped by every test. Bad
//! configuration of every kind is one clear line and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{admin_json, run, standalone, Node, EPHEMERAL};

/// `GET path` over plain HTTP/1.1; returns (status, body).
fn http_get(address: &str, path: &str) -> (u16, String) {
    support::http(address, "GET", path, None)
}

#[test]
fn standalone_logs_and_reports_every_bound_endpoint_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "data", &[]);
    let data = dir.path().join("data");
    assert!(node.ready["pid"].as_u64().is_some());
    assert_eq!(node.ready["recovered_after_crash"], false);
    let log = node.log_text();
    for protocol in ["nameserver", "grpc", "http"] {
        let address = node.endpoint(protocol);
        assert!(
            address.starts_with("127.0.0.1:") && !address.ends_with(":0"),
            "{address}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("listening") && l.contains(protocol) && l.contains(&address)),
            "no listening line for {protocol} {address}:\n{log}"
        );
    }
    assert!(
        data.join("abort").exists(),
        "open store carries the abort marker"
    );
    let (status, took) = node.terminate();
    assert!(status.success(), "{status}");
    // A clean stop takes well under a second: 10 s is a generous bound.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        !data.join("abort").exists(),
        "clean shutdown removes the abort marker"
    );
    assert!(data.join("checkpoint").exists());
}

/// Sends an MQTT 3.1.1 CONNECT (clean session, client id `t1`) and returns the 4-byte answer.
fn mqtt_connect(addr: &str) -> [u8; 4] {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(support::WAIT)).unwrap();
    s.write_all(&[
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b't', b'1',
    ])
    .unwrap();
    let mut answer = [0u8; 4];
    s.read_exact(&mut answer).unwrap();
    answer
}

#[test]
fn standalone_in_a_fresh_directory_with_no_config_serves_on_the_default_ports() {
    // What a new user does: no config file, no flags, data under ./data.
    for port in [9876, 8081, 8080, 1883, 8083] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken on this machine; this test needs the default ports"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let log = dir.path().join("standalone.log");
    let child = std::process::Command::new(support::BIN)
        .args(["standalone", "--ready-file", ready.to_str().unwrap()])
        .current_dir(dir.path())
        .env_remove("ROCKETGATE_CONFIG")
        .env_remove("ROCKETGATE_DATA_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let node = Node::adopt(child, &ready, log);
    assert_eq!(node.endpoint("grpc"), "127.0.0.1:8081");
    assert_eq!(node.endpoint("nameserver"), "127.0.0.1:9876");
    assert!(
        dir.path().join("data").join("abort").exists(),
        "data under ./data"
    );
    let (status, body) = http_get("127.0.0.1:8080", "/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    // MQTT on 1883 (and WebSocket on 8083): a 3.1.1 CONNECT is accepted.
    assert_eq!(node.endpoint("mqtt"), "127.0.0.1:1883");
    assert_eq!(node.endpoint("mqtt_ws"), "127.0.0.1:8083");
    assert_eq!(mqtt_connect("127.0.0.1:1883"), [0x20, 0x02, 0x00, 0x00]);
    // The admin tool's defaults reach it, and the broker registered with its own NameServer.
    let info = admin_json(&["broker", "info"]);
    assert!(info.to_string().contains("broker-a"), "{info}");
    let mut clusters = serde_json::Value::Null;
    let registered = support::poll_until(support::WAIT, "broker-a registered", || {
        clusters = admin_json(&["cluster", "list"]);
        clusters.to_string().contains("broker-a").then_some(())
    });
    assert!(registered.is_some(), "{clusters}");
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[test]
fn nameserver_serves_on_an_ephemeral_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "ns", &["nameserver", "--listen", "127.0.0.1:0"]);
    let addr = node.endpoint("nameserver");
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = rt.block_on(async {
        let client =
            rocketgate_nameserver::NameServerClient::new(&rocketgate_nameserver::ClientConfig {
                addresses: vec![addr.clone()],
                ..Default::default()
            })
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), client.cluster_info())
            .await
            .unwrap()
    });
    assert!(info.is_ok(), "{info:?}");
    let (status, _) = node.terminate();
    assert!(status.success());
}

/// Runs `rocketgate ARGS` expecting a failure with exactly one error line containing `needle`.
fn assert_one_clear_error(args: &[&str], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    assert!(errors[0].contains(needle), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_is_one_clear_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let data = dir.path().join("data").display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config".into(), write("a.toml", "[store]\nbogus = 1\n")],
            "bogus",
        ),
        (
            vec!["--config".into(), write("b.toml", "[nope]\nx = 1\n")],
            "nope",
        ),
        (
            vec![
                "--config".into(),
                write("c.toml", "[store]\ndisk_max_used_ratio = 7.0\n"),
            ],
            "disk_max_used_ratio",
        ),
        (
            vec![
                "--config".into(),
                dir.path().join("missing.toml").display().to_string(),
            ],
            "missing.toml",
        ),
        (
            vec![
                "--config".into(),
                write("d.toml", "[grpc]\nlisten = \"127.0.0.1\"\n"),
            ],
            "listen = \"127.0.0.1\"",
        ),
        (
            vec![
                "--config".into(),
                write("e.toml", "[broker]\nname = \"bad name\"\n"),
            ],
            "broker.name",
        ),
        (vec!["--flush-mode".into(), "SOMETIMES".into()], "SOMETIMES"),
        (
            vec!["--grpc-addr".into(), "localhost:99999".into()],
            "--grpc-addr",
        ),
        (vec!["--http-addr".into(), "nonsense".into()], "nonsense"),
        (vec!["--namesrv".into(), "no-port".into()], "no-port"),
        (
            vec![
                "--data-dir".into(),
                "/proc/rocketgate-cannot-write-here".into(),
            ],
            "/proc",
        ),
    ];
    for (args, needle) in cases {
        let mut all: Vec<&str> = vec!["standalone"];
        for pair in EPHEMERAL.chunks(2) {
            if !args.iter().any(|a| a == pair[0]) {
                all.extend(pair);
            }
        }
        if !args.iter().any(|a| a == "--data-dir") {
            all.extend(["--data-dir", data.as_str()]);
        }
        all.extend(args.iter().map(String::as_str));
        assert_one_clear_error(&all, needle);
    }
    // An unwritable data directory that exists (a read-only directory; root ignores modes, so
    // a path under a regular file stands in for it).
    let file = write("plain-file", "x");
    let under_file = format!("{file}/data");
    let mut all: Vec<&str> = vec!["broker", "--data-dir", &under_file];
    all.extend(EPHEMERAL);
    assert_one_clear_error(&all, &under_file);

    // Environment overrides are checked like flags and named in the error.
    let out = std::process::Command::new(support::BIN)
        .args(["standalone", "--data-dir", &data])
        .env("ROCKETGATE_HTTP_ADDR", "not-an-address")
        .env("ROCKETGATE_GRPC_ADDR", "127.0.0.1:0")
        .env("ROCKETGATE_NAMESERVER_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ROCKETGATE_HTTP_ADDR") && stderr.contains("not-an-address"),
        "{stderr}"
    );

    // A port in use, for each kind of endpoint.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_one_clear_error(&["nameserver", "--listen", &addr], &addr);
    for flag in ["--grpc-addr", "--http-addr", "--nameserver-addr"] {
        let mut all: Vec<&str> = vec!["standalone", "--data-dir", &data];
        for pair in EPHEMERAL.chunks(2).filter(|p| p[0] != flag) {
            all.extend(pair);
        }
        all.extend([flag, addr.as_str()]);
        assert_one_clear_error(&all, &addr);
    }
}

#[test]
fn deprecated_listen_and_gateways_sections_still_work_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.toml");
    std::fs::write(
        &file,
        "[listen]\nnameserver = \"127.0.0.1:0\"\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [gateways]\nmqtt = false\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let node = Node::start(
        dir.path(),
        "old",
        &[
            "standalone",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    for protocol in ["nameserver", "grpc", "http"] {
        let address = node.endpoint(protocol);
        assert!(
            address.starts_with("127.0.0.1:") && !address.ends_with(":0"),
            "{address}"
        );
    }
    assert!(
        node.ready["endpoints"].get("mqtt").is_none(),
        "{}",
        node.ready
    );
    let log = node.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("deprecated configuration keys"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    for renamed in [
        "`listen.grpc` is now `grpc.listen`",
        "`gateways.mqtt` is now `mqtt.enabled`",
    ] {
        assert!(warnings[0].contains(renamed), "{}", warnings[0]);
    }
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[test]
fn generate_config_prints_a_file_that_loads() {
    let out = run(&["generate-config"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rocketgate.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let node = standalone(dir.path(), "data", &["--config", file.to_str().unwrap()]);
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[test]
fn http_health_answers_and_unknown_paths_are_problem_json() {
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "data", &[]);
    let http = node.endpoint("http");
    let (status, body) = http_get(&http, "/health");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    let (status, body) = http_get(&http, "/nope");
    assert_eq!(status, 404);
    assert!(body.contains("/nope"), "{body}");
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[test]
fn nameserver_help_lists_only_the_nameserver_s_flags() {
    let help = |cmd: &str| {
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        String::from_utf8(out.stdout).unwrap()
    };
    let ns = help("nameserver");
    for flag in [
        "--config",
        "--nameserver-addr",
        "--listen",
        "--tls-cert",
        "--log",
    ] {
        assert!(ns.contains(flag), "nameserver --help lacks {flag}:\n{ns}");
    }
    for flag in [
        "--data-dir",
        "--flush-mode",
        "--mqtt-addr",
        "--grpc-addr",
        "--http-addr",
        "--namesrv",
        "--auth",
        "--broker-id",
        "--master-addr",
    ] {
        assert!(!ns.contains(flag), "nameserver --help lists {flag}:\n{ns}");
    }
    let broker = help("broker");
    for flag in ["--data-dir", "--flush-mode", "--mqtt-addr"] {
        assert!(broker.contains(flag), "broker --help lacks {flag}");
    }
    // A broker flag is a usage error for the NameServer, not silently ignored.
    let out = run(&["nameserver", "--data-dir", "/tmp/x"]);
    assert!(!out.status.success());
}
