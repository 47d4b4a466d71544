//! Harness and scenarios of the interop tests with the official RocketMQ 5 SDKs that are not
//! Rust: the Python SDK (PyPI `rocketmq-python-client` 5.1.2, `tests/sdk/python/`) and the
//! Node.js SDK (npm `rocketmq-client-nodejs` 1.0.8, `tests/sdk/node/`), both installed by
//! `scripts/test`. The tests themselves are in `grpc_sdk_python` and `grpc_sdk_node`.
//!
//! Each language has one script (`scenarios.py`, `scenarios.js`) that runs one scenario per
//! invocation against the harness's gRPC server ([`GrpcServer`]) and prints one JSON object
//! of what it saw; the scenario functions here start the server, run the script as a child
//! process with a deadline, judge the JSON the same way for both languages, and check the
//! broker's own view (acknowledged, nothing pending). The SDK must be installed at exactly
//! the version the docs name: a missing or different one fails the test with the install
//! command (no silent skip).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::grpc_sdk::{GrpcServer, DELAY_TOPIC, FIFO_TOPIC, NORMAL_TOPIC, TRANSACTION_TOPIC};

/// Longest a script may run (its own `--timeout` for awaited messages is 30 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);
/// Longest the version probe may take.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// An official SDK driven by a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// `rocketmq-python-client`, `tests/sdk/python/scenarios.py`.
    Python,
    /// `rocketmq-client-nodejs`, `tests/sdk/node/scenarios.js`.
    Node,
}

impl Sdk {
    /// Package name and the exact version the tests (and docs/grpc.md) are about.
    fn package(self) -> (&'static str, &'static str) {
        match self {
            Sdk::Python => ("rocketmq-python-client", "5.1.2"),
            Sdk::Node => ("rocketmq-client-nodejs", "1.0.8"),
        }
    }

    fn program(self) -> &'static str {
        match self {
            Sdk::Python => "python3",
            Sdk::Node => "node",
        }
    }

    fn dir(self) -> PathBuf {
        let sub = match self {
            Sdk::Python => "python",
            Sdk::Node => "node",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("sdk")
            .join(sub)
    }

    fn script(self) -> PathBuf {
        self.dir().join(match self {
            Sdk::Python => "scenarios.py",
            Sdk::Node => "scenarios.js",
        })
    }

    /// What installs the SDK (run from the repository root; `scripts/test` does it), and
    /// what that needs.
    fn install(self) -> (&'static str, &'static str) {
        match self {
            Sdk::Python => (
                "python3 -m pip install -r tests/sdk/python/requirements.txt",
                "Python 3 and pip",
            ),
            Sdk::Node => ("npm ci --prefix tests/sdk/node", "Node.js >= 16.19 and npm"),
        }
    }

    /// Arguments that print the installed SDK's version.
    fn probe(self) -> [&'static str; 2] {
        match self {
            Sdk::Python => [
                "-c",
                "import rocketmq, importlib.metadata as m; \
                 print(m.version('rocketmq-python-client'))",
            ],
            Sdk::Node => [
                "-e",
                "console.log(require('rocketmq-client-nodejs/package.json').version)",
            ],
        }
    }

    fn command(self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.program());
        // Node resolves `require` from the script's directory, where node_modules is.
        cmd.current_dir(self.dir()).kill_on_drop(true);
        cmd
    }

    /// Fails the test, with the install command, unless the SDK is installed at exactly the
    /// version of [`Sdk::package`].
    pub async fn require(self) {
        let (package, version) = self.package();
        let (install, needs) = self.install();
        let out = tokio::time::timeout(PROBE_LIMIT, self.command().args(self.probe()).output())
            .await
            .unwrap_or_else(|_| panic!("{self:?} SDK version probe did not end in {PROBE_LIMIT:?}"))
            .unwrap_or_else(|e| {
                panic!(
                    "`{}` does not run ({e}): install {needs}, then the official RocketMQ \
                     {self:?} SDK {package} {version} with `{install}` (scripts/test does)",
                    self.program()
                )
            });
        let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && found == version,
            "the official RocketMQ {self:?} SDK {package} {version} is missing (found `{found}`): \
             run `{install}` (scripts/test does; needs {needs}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `mode` of the SDK's script against `server` on `topic` for consumer `group`; returns
/// its JSON answer. Fails the test if the SDK is missing, the script fails, or it runs past
/// [`SCRIPT_LIMIT`].
pub async fn run(
    server: &GrpcServer,
    sdk: Sdk,
    mode: &str,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> Value {
    sdk.require().await;
    let endpoint = server.access_url();
    let mut cmd = sdk.command();
    cmd.arg(sdk.script())
        .arg(mode)
        .args([
            "--endpoint",
            &endpoint,
            "--topic",
            topic,
            "--group",
            group,
            "--timeout",
            "30",
        ])
        .args(extra);
    let started = Instant::now();
    let out = tokio::time::timeout(SCRIPT_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{sdk:?} {mode} did not end within {SCRIPT_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("{} runs: {e}", sdk.program()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{sdk:?} scenario {mode} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{sdk:?} {mode} printed `{stdout}`: {e}"));
    println!(
        "{sdk:?} sdk {mode} ({:.1} s): {v}",
        started.elapsed().as_secs_f64()
    );
    v
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("string `{key}` in {v}"))
}

fn i64_of(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("integer `{key}` in {v}"))
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("number `{key}` in {v}"))
}

fn array_of<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("array `{key}` in {v}"))
}

/// The broker's count of messages of `group` on `topic` not yet acknowledged (in flight or
/// waiting), summed over the queues.
fn unacked(server: &GrpcServer, group: &str, topic: &str) -> u64 {
    server
        .broker
        .consumer()
        .lag(group, topic)
        .unwrap_or_else(|e| panic!("lag of {group} on {topic}: {e}"))
        .iter()
        .map(|q| q.pop_unacked)
        .sum()
}

/// Waits (at most 10 s) until the broker counts no unacknowledged message of `group` on
/// `topic`. The SDKs acknowledge after their calls return or asynchronously after a push
/// listener returns, so the broker's view is awaited, not sampled once.
async fn assert_all_acked(server: &GrpcServer, group: &str, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = unacked(server, group, topic);
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the broker still counts {n} unacknowledged messages of {group} on {topic} 10 s \
             after the SDK finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (1) A producer sends a NORMAL message with a tag, two keys and two user properties; a
/// SimpleConsumer with that tag as filter receives it with the same id, body, tag, keys and
/// properties (attempt 1), acknowledges it, and does not receive it again although it keeps
/// receiving past the end of the 3 s invisible duration it asked for. The broker counts it
/// acknowledged.
pub async fn simple_round_trip(sdk: Sdk) {
    const GROUP: &str = "sdk-simple";
    let server = GrpcServer::start().await;
    let v = run(
        &server,
        sdk,
        "simple",
        NORMAL_TOPIC,
        GROUP,
        &["--invisible", "3"],
    )
    .await;
    let (sent, received) = (&v["sent"], &v["received"]);
    for key in ["message_id", "topic", "body", "tag", "keys", "properties"] {
        assert_eq!(received[key], sent[key], "`{key}` sent vs received: {v}");
    }
    assert_eq!(array_of(sent, "keys").len(), 2, "{v}");
    assert_eq!(sent["properties"].as_object().map(|o| o.len()), Some(2));
    assert_eq!(i64_of(received, "delivery_attempt"), 1, "{v}");
    assert!(
        array_of(&v, "others").is_empty(),
        "other messages received: {v}"
    );
    let watched = f64_of(&v, "watched_after_ack_s");
    let invisible = f64_of(&v, "invisible_s");
    assert!(
        watched >= invisible + 2.0,
        "watched only {watched:.1} s after the ack (invisible {invisible} s): {v}"
    );
    assert!(
        array_of(&v, "again").is_empty(),
        "received again after its ack: {v}"
    );
    assert_all_acked(&server, GROUP, NORMAL_TOPIC).await;
    server.stop().await;
}

/// (2) A producer sends 10 messages; a PushConsumer started afterwards gets each exactly
/// once (attempt 1, no extra delivery in the 3 s after the last) and its listener's SUCCESS
/// acknowledges them: the broker counts none unacknowledged after the consumer's shutdown
/// (an unacknowledged one would be waiting for redelivery).
pub async fn push_consumer(sdk: Sdk) {
    const GROUP: &str = "sdk-push";
    const COUNT: usize = 10;
    let server = GrpcServer::start().await;
    let v = run(
        &server,
        sdk,
        "push",
        NORMAL_TOPIC,
        GROUP,
        &["--count", &COUNT.to_string()],
    )
    .await;
    let mut sent: Vec<&str> = array_of(&v, "sent")
        .iter()
        .map(|s| s.as_str().expect("sent id"))
        .collect();
    let deliveries = array_of(&v, "deliveries");
    let mut got: Vec<&str> = deliveries.iter().map(|d| str_of(d, "message_id")).collect();
    sent.sort_unstable();
    got.sort_unstable();
    assert_eq!(sent.len(), COUNT);
    assert_eq!(got, sent, "each message delivered exactly once: {v}");
    for d in deliveries {
        assert_eq!(i64_of(d, "delivery_attempt"), 1, "{d}");
        assert_eq!(str_of(d, "tag"), "push", "{d}");
    }
    assert_all_acked(&server, GROUP, NORMAL_TOPIC).await;
    server.stop().await;
}

/// (3) FIFO: 5 messages to each of two message groups, sent interleaved on `fifo_test`; a
/// SimpleConsumer receives one message per receive and acknowledges all but the first
/// delivery of `group-a-0`. Each group arrives in send order; `group-b` is not held up;
/// nothing later of `group-a` is delivered while `group-a-0` is in flight: it comes back
/// (attempt 2, not before its 2 s invisible duration ended) before `group-a-1`.
pub async fn fifo_order(sdk: Sdk) {
    const GROUP: &str = "sdk-fifo";
    let server = GrpcServer::start().await;
    let v = run(
        &server,
        sdk,
        "fifo",
        FIFO_TOPIC,
        GROUP,
        &["--count", "5", "--invisible", "2"],
    )
    .await;
    let sent = array_of(&v, "sent");
    let ids: BTreeMap<&str, &str> = sent
        .iter()
        .map(|s| (str_of(s, "body"), str_of(s, "message_id")))
        .collect();
    let mut per_group: BTreeMap<&str, Vec<(String, i64)>> = BTreeMap::new();
    for r in array_of(&v, "received") {
        let body = str_of(r, "body");
        assert_eq!(Some(&str_of(r, "message_id")), ids.get(body), "{r}");
        let group = str_of(r, "message_group");
        assert!(body.starts_with(group), "{body} in group {group}");
        per_group
            .entry(group)
            .or_default()
            .push((body.to_owned(), i64_of(r, "delivery_attempt")));
    }
    let order = |g: &str, first_again: bool| {
        let mut want: Vec<(String, i64)> = (0..5).map(|i| (format!("{g}-{i}"), 1)).collect();
        if first_again {
            want.insert(1, (format!("{g}-0"), 2));
        }
        want
    };
    assert_eq!(
        per_group.get("group-a"),
        Some(&order("group-a", true)),
        "group-a in send order, its first message redelivered before the second: {v}"
    );
    assert_eq!(
        per_group.get("group-b"),
        Some(&order("group-b", false)),
        "group-b in send order: {v}"
    );
    assert_eq!(per_group.len(), 2, "{v}");
    // Not redelivered while invisible (100 ms for the clocks' reading).
    let a0: Vec<i64> = array_of(&v, "received")
        .iter()
        .filter(|r| str_of(r, "body") == "group-a-0")
        .map(|r| i64_of(r, "received_at_ms"))
        .collect();
    let invisible_ms = i64_of(&v, "invisible_s") * 1000;
    assert!(
        a0[1] - a0[0] >= invisible_ms - 100,
        "group-a-0 back after {} ms, its invisible duration is {invisible_ms} ms",
        a0[1] - a0[0]
    );
    assert_all_acked(&server, GROUP, FIFO_TOPIC).await;
    server.stop().await;
}

/// (4) Delay: a SimpleConsumer polls `delay_test` while a message is sent with a delivery
/// timestamp 3-4 s ahead. No receive that returned before the delivery time has it; it
/// comes after the delivery time (no slack) and at most 10 s after it (a generous bound:
/// the gateway's poll cap is 5 s), once, with the delivery timestamp that was sent.
pub async fn delay_on_time(sdk: Sdk) {
    const GROUP: &str = "sdk-delay";
    let server = GrpcServer::start().await;
    let v = run(&server, sdk, "delay", DELAY_TOPIC, GROUP, &[]).await;
    let id = str_of(&v, "message_id");
    let (sent_at, due, at) = (
        i64_of(&v, "sent_at_ms"),
        i64_of(&v, "deliver_at_ms"),
        i64_of(&v, "received_at_ms"),
    );
    println!(
        "{sdk:?} delay: due {} ms after the send, received {:+} ms from due",
        due - sent_at,
        at - due
    );
    assert!(
        due - sent_at >= 3000,
        "the script aimed less than 3 s ahead: {v}"
    );
    let polls = array_of(&v, "polls");
    assert!(
        i64_of(&polls[0], "start_ms") <= due - 2000,
        "the consumer was not polling during the delay: {v}"
    );
    let with_it: Vec<i64> = polls
        .iter()
        .filter(|p| array_of(p, "ids").iter().any(|i| i.as_str() == Some(id)))
        .map(|p| i64_of(p, "end_ms"))
        .collect();
    assert_eq!(with_it.len(), 1, "received once: {v}");
    assert!(
        with_it[0] >= due,
        "a receive that returned {} ms before the delivery time had it: {v}",
        due - with_it[0]
    );
    assert!(
        at <= due + 10_000,
        "received {} ms after its delivery time: {v}",
        at - due
    );
    let m = &v["received"];
    assert_eq!(str_of(m, "message_id"), id);
    assert_eq!(str_of(m, "body"), "later");
    assert_eq!(i64_of(m, "delivery_timestamp_ms"), due, "{v}");
    assert_eq!(i64_of(m, "delivery_attempt"), 1, "{v}");
    assert_eq!(server.broker.scheduler().pending(), 0, "still scheduled");
    assert_all_acked(&server, GROUP, DELAY_TOPIC).await;
    server.stop().await;
}

/// (5) Transactions, the broker checking back after 1 s and every 1 s: of three half
/// messages, the committed one is delivered, the rolled-back one never is (nor checked
/// back), and the one left unresolved is checked back over the producer's Telemetry stream
/// (the SDK's checker sees its topic and body), the checker's COMMIT delivers it (not
/// before the check), and it is not checked again. Each delivered message comes once; the
/// broker has no half message pending afterwards.
pub async fn transactions(sdk: Sdk) {
    const GROUP: &str = "sdk-tx";
    let server = GrpcServer::start_with(|c| {
        c.transaction.check_first_ms = 1000;
        c.transaction.check_interval_ms = 1000;
    })
    .await;
    let v = run(&server, sdk, "transaction", TRANSACTION_TOPIC, GROUP, &[]).await;
    let sent = &v["sent"];
    let id = |body: &str| str_of(&sent[body], "message_id").to_owned();
    let (commit, rollback, checked) = (id("commit"), id("rollback"), id("unknown-then-commit"));
    for body in ["commit", "rollback", "unknown-then-commit"] {
        assert!(
            !str_of(&sent[body], "transaction_id").is_empty(),
            "no transaction id for {body}: {v}"
        );
    }
    let received = array_of(&v, "received");
    let got: Vec<&str> = received.iter().map(|r| str_of(r, "message_id")).collect();
    let got_set: BTreeSet<&str> = got.iter().copied().collect();
    assert_eq!(got.len(), got_set.len(), "a message delivered twice: {v}");
    assert_eq!(
        got_set,
        BTreeSet::from([commit.as_str(), checked.as_str()]),
        "committed and checked-back delivered, rolled back ({rollback}) not: {v}"
    );
    let checks = array_of(&v, "checks");
    assert_eq!(
        checks.len(),
        1,
        "exactly one check-back, of the unresolved half message: {v}"
    );
    let check = &checks[0];
    assert_eq!(str_of(check, "message_id"), checked, "{v}");
    assert_eq!(str_of(check, "topic"), TRANSACTION_TOPIC, "{v}");
    assert_eq!(str_of(check, "body"), "unknown-then-commit", "{v}");
    let checked_at = i64_of(check, "at_ms");
    let after_send = checked_at - i64_of(&sent["unknown-then-commit"], "at_ms");
    assert!(
        after_send <= 15_000,
        "checked back {after_send} ms after the send (first check due after 1 s): {v}"
    );
    let delivered_at = received
        .iter()
        .find(|r| str_of(r, "message_id") == checked)
        .map(|r| i64_of(r, "received_at_ms"))
        .expect("checked-back message received");
    assert!(
        delivered_at >= checked_at,
        "the unresolved message was delivered before its check-back: {v}"
    );
    assert_eq!(
        server.broker.transactions().pending(),
        0,
        "half messages still pending"
    );
    assert_all_acked(&server, GROUP, TRANSACTION_TOPIC).await;
    server.stop().await;
}
