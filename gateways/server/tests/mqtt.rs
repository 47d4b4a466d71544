//! The MQTT gateway of the real `rocketgate standalone` binary, with Debian's `mosquitto_pub` /
//! `mosquitto_sub` (installed by `scripts/test`) and `rocketgate admin` on the other side:
//!
//! - a message sent with `admin message send` (the RocketMQ core path) reaches a
//!   `mosquitto_sub` of `alerts/#`, and an MQTT publish is read back by `admin message pull`
//!   with its MQTT topic as the `mqttTopic` property — with MQTT 3.1.1 and 5.0 clients;
//! - QoS 1 publishes acknowledged by the broker survive a `kill -9` of the broker process.
//!
//! Every child process is bounded by a timeout and killed by the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{admin_json, exited, poll_until, standalone, tool};

const MOSQUITTO_PUB: &str = "/usr/bin/mosquitto_pub";
const MOSQUITTO_SUB: &str = "/usr/bin/mosquitto_sub";

/// Whether Debian's mosquitto clients are installed; a test fails when they are missing
/// (with the install command), unless RG_ALLOW_SKIP=1 (then `false`: the test skips).
fn mosquitto_clients() -> bool {
    let how = "apt-get install -y mosquitto-clients";
    tool(MOSQUITTO_PUB, how).is_some() && tool(MOSQUITTO_SUB, how).is_some()
}

fn host_port(endpoint: &str) -> (String, String) {
    let (h, p) = endpoint.rsplit_once(':').unwrap();
    (h.to_owned(), p.to_owned())
}

/// Runs a mosquitto client to completion within 15 s, with `input` on its stdin; returns its
/// stdout.
fn mosquitto(program: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    if exited(&mut child, Duration::from_secs(15)).is_none() {
        panic!("{program} {args:?} did not finish within 15 s");
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `mosquitto_sub -d` (line-buffered through `stdbuf`): its stdout lines, among
/// them the debug line "received SUBACK", as they come. Killed on drop.
struct Subscriber {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Subscriber {
    fn start(args: &[String]) -> Self {
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(MOSQUITTO_SUB)
            .args(args)
            .arg("-d")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stdout).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `want`, within 15 s.
    fn until(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let found = l.contains(want);
                    self.seen.push(l);
                    if found {
                        return;
                    }
                }
                Err(e) => panic!("no {want:?} from mosquitto_sub ({e}): {:?}", self.seen),
            }
        }
    }

    /// Waits (15 s at most) for the exit, which must be a success.
    fn finish(mut self) -> Vec<String> {
        let status = exited(&mut self.child, Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "mosquitto_sub: {status:?} {:?}",
            self.seen
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message of `topic` (queues `0..queues`) read with `admin message pull` by `group`.
fn pull_all(grpc: &str, group: &str, topic: &str, queues: u32) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for q in 0..queues {
        let got = admin_json(&[
            "--broker",
            grpc,
            "message",
            "pull",
            group,
            topic,
            "--queue",
            &q.to_string(),
            "--max",
            "100",
        ]);
        if let Some(messages) = got["messages"].as_array() {
            out.extend(messages.iter().cloned());
        }
    }
    out
}

fn property<'a>(m: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    m["properties"][key].as_str()
}

#[test]
fn mqtt_3_and_5_clients_and_the_rocketmq_core_see_each_others_messages() {
    if !mosquitto_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "mq", &[]);
    let grpc = node.endpoint("grpc");
    let (host, port) = host_port(&node.endpoint("mqtt"));
    admin_json(&[
        "--broker", &grpc, "topic", "create", "alerts", "--queues", "2",
    ]);

    // (Debian's mosquitto clients have no WebSocket transport; the gateway crate's tests cover
    // MQTT over WebSocket with rumqttc.)
    let p = port.as_str();
    for (transport, protocol) in [("3.1.1", "mqttv311"), ("5.0", "mqttv5")] {
        let connect = |id: &str| -> Vec<String> {
            ["-h", &host, "-p", p, "-V", protocol, "-i", id]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        // core → MQTT: a subscriber of alerts/# gets what admin sends to topic `alerts`,
        // sent once its SUBACK came back (the subscription starts at the end of the topic).
        let mut args = connect(&format!("sub-{protocol}"));
        args.extend(["-t", "alerts/#", "-q", "1", "-C", "1", "-W", "10"].map(String::from));
        let mut sub = Subscriber::start(&args);
        sub.until("received SUBACK");
        let body = format!("hello over {transport}");
        admin_json(&["--broker", &grpc, "message", "send", "alerts", &body]);
        sub.until(&body);
        let seen = sub.finish();
        assert_eq!(
            seen.last().map(String::as_str),
            Some(body.as_str()),
            "{transport}: {seen:?}"
        );

        // MQTT → core: a QoS 1 publish is stored in topic `alerts` with its MQTT topic.
        let payload = format!("fire over {transport}");
        let mut args = connect(&format!("pub-{protocol}"));
        args.extend(["-t", "alerts/fire/floor2", "-q", "1", "-m", &payload].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mosquitto(MOSQUITTO_PUB, &args, "");
        let messages = pull_all(&grpc, &format!("reader-{protocol}"), "alerts", 2);
        let m = messages
            .iter()
            .find(|m| m["body"].as_str() == Some(payload.as_str()))
            .unwrap_or_else(|| panic!("{payload:?} not in topic alerts: {messages:?}"));
        assert_eq!(property(m, "mqttTopic"), Some("alerts/fire/floor2"), "{m}");
    }
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[test]
fn acknowledged_qos1_publishes_survive_kill_9() {
    if !mosquitto_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut node = standalone(dir.path(), "durable", &["--flush-mode", "sync"]);
    let (host, port) = host_port(&node.endpoint("mqtt"));
    // mosquitto_pub -l sends one message per stdin line and exits 0 once every QoS 1 PUBACK
    // came back.
    let lines: String = (0..50).map(|i| format!("reading-{i}\n")).collect();
    let args = [
        "-h",
        &host,
        "-p",
        &port,
        "-t",
        "meters/m1",
        "-q",
        "1",
        "-l",
        "-i",
        "meter-1",
    ];
    mosquitto(MOSQUITTO_PUB, &args, &lines);
    node.kill9();
    let again = standalone(dir.path(), "durable", &[]);
    assert_eq!(
        again.ready["recovered_after_crash"], true,
        "the kill -9 left a crashed store: {}",
        again.ready
    );
    let grpc = again.endpoint("grpc");
    // The MQTT gateway created `meters` with its default 4 queues.
    let messages = pull_all(&grpc, "after-crash", "meters", 4);
    let mut bodies: Vec<&str> = messages.iter().filter_map(|m| m["body"].as_str()).collect();
    bodies.sort_unstable();
    bodies.dedup();
    let mut want: Vec<String> = (0..50).map(|i| format!("reading-{i}")).collect();
    want.sort_unstable();
    assert_eq!(bodies, want, "every acknowledged publish, once");
    for m in &messages {
        assert_eq!(property(m, "mqttTopic"), Some("meters/m1"), "{m}");
    }
    let (status, _) = again.terminate();
    assert!(status.success());
}

/// `rocketgate standalone --config` with `[auth]` on: mosquitto clients log in as the core's
/// users (created with `rocketgate admin`), anonymous and wrong ones are refused with "not
/// authorised" / "bad user name or password", and an `MqttTopic:devices/${clientid}/#` policy
/// lets a device publish to its own subtree only (v5 PUBACK 0x87 otherwise: nothing stored).
#[test]
fn mqtt_clients_log_in_as_the_core_s_users_with_auth_on() {
    if !mosquitto_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auth.toml");
    std::fs::write(
        &config,
        "[auth]\nenabled = true\nbootstrap_access_key = \"admin\"\n\
         bootstrap_secret_key = \"admin-secret-1\"\n",
    )
    .unwrap();
    let node = standalone(
        dir.path(),
        "mqauth",
        &["--config", config.to_str().unwrap()],
    );
    let grpc = node.endpoint("grpc");
    let (host, port) = host_port(&node.endpoint("mqtt"));
    let admin = |args: &[&str]| {
        let mut all = vec![
            "--broker",
            grpc.as_str(),
            "--ak",
            "admin",
            "--sk",
            "admin-secret-1",
        ];
        all.extend_from_slice(args);
        admin_json(&all)
    };
    admin(&["user", "create", "fleet", "--secret", "fleet-secret-1"]);
    let policy = dir.path().join("fleet.json");
    std::fs::write(
        &policy,
        r#"[{"resources": ["MqttTopic:devices/${clientid}/#", "Group:mqtt-*"], "actions": ["Pub", "Sub"], "decision": "Allow"}]"#,
    )
    .unwrap();
    admin(&[
        "user",
        "set-policy",
        "fleet",
        "--file",
        policy.to_str().unwrap(),
    ]);
    // One QoS 1 publish of client `id` with `login`: the exit status and stderr.
    let publish = |id: &str, login: Option<(&str, &str)>, topic: &str| {
        let mut args = vec![
            "-h", &host, "-p", &port, "-V", "mqttv5", "-i", id, "-t", topic, "-q", "1", "-m",
            "reading",
        ];
        if let Some((u, p)) = login {
            args.extend(["-u", u, "-P", p]);
        }
        let mut child = Command::new(MOSQUITTO_PUB)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exited(&mut child, Duration::from_secs(15)).expect("mosquitto_pub ends");
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (status.success(), text.to_lowercase())
    };
    let (ok, text) = publish("dev-1", None, "devices/dev-1/t");
    assert!(!ok && text.contains("not authori"), "anonymous: {text}");
    let (ok, text) = publish("dev-1", Some(("fleet", "wrong-secret")), "devices/dev-1/t");
    assert!(
        !ok && text.contains("bad user name or password"),
        "wrong secret: {text}"
    );
    let fleet = Some(("fleet", "fleet-secret-1"));
    let (ok, text) = publish("dev-1", fleet, "devices/dev-1/t");
    assert!(ok, "its own subtree: {text}");
    let (_, text) = publish("dev-1", fleet, "devices/dev-2/t");
    assert!(
        text.contains("not authori"),
        "another device's subtree: {text}"
    );
    let mut messages = Vec::new();
    for q in ["0", "1", "2", "3"] {
        let got = admin(&[
            "message",
            "pull",
            "audit-pull",
            "devices",
            "--queue",
            q,
            "--max",
            "100",
        ]);
        messages.extend(got["messages"].as_array().cloned().unwrap_or_default());
    }
    let topics: Vec<&str> = messages
        .iter()
        .filter_map(|m| property(m, "mqttTopic"))
        .collect();
    assert_eq!(
        topics,
        ["devices/dev-1/t"],
        "only the authorized publish is stored"
    );
    let (status, _) = node.terminate();
    assert!(status.success());
}

/// The device script's process group, killed with SIGKILL when dropped (also on a failed
/// assertion).
struct Device(std::process::Child);

impl Device {
    /// Drops the device off the network abruptly: the script and its mosquitto_sub.
    fn kill(&mut self) {
        // (procps `kill` needs `--` before a negative process-group id.)
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `examples/mqtt/device.sh` against the binary: 10 QoS 1 readings land in topic `devices`
/// with their MQTT topic and v5 user property, the retained status is `online`, a command
/// reaches the device's persistent session, and when the device drops off (kill -9) its will
/// turns the retained status to `offline`.
#[test]
fn the_mqtt_device_example_runs_against_the_binary() {
    if !mosquitto_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = standalone(dir.path(), "dev", &[]);
    let grpc = node.endpoint("grpc");
    let (host, port) = host_port(&node.endpoint("mqtt"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mqtt/device.sh");
    let out = dir.path().join("device.out");
    admin_json(&[
        "--broker", &grpc, "topic", "create", "devices", "--queues", "4",
    ]);
    let mut device = Device(
        Command::new("bash")
            .args([script, &host, &port, "dev-9"])
            .env("INTERVAL", "0.1")
            .process_group(0)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut readings = Vec::new();
    poll_until(Duration::from_secs(20), "10 readings stored", || {
        let got = pull_all(&grpc, "example-reader", "devices", 4);
        readings = got
            .into_iter()
            .filter(|m| property(m, "mqttTopic") == Some("devices/dev-9/telemetry"))
            .collect();
        (readings.len() >= 10).then_some(())
    });
    assert!(
        readings.len() >= 10,
        "{} of 10 readings stored",
        readings.len()
    );
    assert_eq!(
        property(&readings[0], "unit"),
        Some("celsius"),
        "{}",
        readings[0]
    );
    // The retained status, as a new subscriber sees it.
    let status = || {
        mosquitto(
            MOSQUITTO_SUB,
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-t",
                "devices/dev-9/status",
                "-C",
                "1",
                "-W",
                "10",
            ],
            "",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(status(), "online");
    mosquitto(
        MOSQUITTO_PUB,
        &[
            "-h",
            &host,
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            "devices/dev-9/cmd",
            "-m",
            "reboot",
        ],
        "",
    );
    let printed = poll_until(Duration::from_secs(10), "the command printed", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("devices/dev-9/cmd reboot")
            .then_some(())
    });
    assert!(printed.is_some(), "the device never printed the command");
    device.kill();
    let mut last = String::new();
    let offline = poll_until(Duration::from_secs(10), "the will's status", || {
        last = status();
        (last == "offline").then_some(())
    });
    assert!(
        offline.is_some(),
        "status still {last:?} after the device died"
    );
    let (status, _) = node.terminate();
    assert!(status.success());
}
