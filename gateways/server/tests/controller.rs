//! The failover controller in real `rocketgate nameserver` processes (issue 16): three
//! NameServers each running a controller member (`[controller]`) on 127.0.0.1; `rocketgate
//! admin cluster status` shows the members and the leader; after `kill -9` of the leader the
//! two others elect a new one; with two of three killed the survivor still answers, with no
//! leader. Over TLS with a cluster secret, the members elect a leader and a signed TLS client
//! reads the status while a plain one cannot. Every process is stopped by the test (or killed
//! on drop).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{admin_json, poll_until, Node, WAIT};

/// A free port on 127.0.0.1 (bound, then released for the member to take).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn member_config(dir: &Path, id: u64, members: &[String]) -> String {
    member_config_with(dir, id, members, "")
}

/// [`member_config`] with `extra` TOML appended.
fn member_config_with(dir: &Path, id: u64, members: &[String], extra: &str) -> String {
    let table = members
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{} = \"{a}\"", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let path = dir.join(format!("controller-{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "[nameserver]\nlisten = \"127.0.0.1:0\"\n\
             [controller]\nenabled = true\nid = {id}\nmembers = {{ {table} }}\n\
             data_dir = \"{}\"\nheartbeat_timeout_ms = 1000\n{extra}",
            dir.join(format!("controller-{id}")).display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn status(controllers: &str) -> serde_json::Value {
    admin_json(&["cluster", "status", "--controller", controllers])
}

fn leader_of(controllers: &str) -> Option<u64> {
    status(controllers)["leader_id"].as_u64()
}

#[test]
fn three_nameservers_run_a_controller_that_survives_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let all = members.join(",");
    let mut nodes: Vec<Option<Node>> = (1..=3)
        .map(|id| {
            let config = member_config(dir.path(), id, &members);
            Some(Node::start(
                dir.path(),
                &format!("ns{id}"),
                &["nameserver", "--config", &config],
            ))
        })
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let ready = &node.as_ref().unwrap().ready;
        assert_eq!(ready["endpoints"]["controller"], members[i].as_str());
    }

    let first = poll_until(WAIT, "a controller leader", || leader_of(&all)).unwrap();
    let s = status(&all);
    assert_eq!(s["members"].as_array().unwrap().len(), 3);
    assert_eq!(s["groups"].as_array().unwrap().len(), 0);
    let index = usize::try_from(first - 1).unwrap();

    // Kill the leader: the two others elect another.
    nodes[index].as_mut().unwrap().kill9();
    nodes[index] = None;
    let second = poll_until(WAIT, "a new controller leader", || {
        leader_of(&all).filter(|l| *l != first)
    })
    .unwrap();
    assert_ne!(second, first);

    // Kill the new leader too: the survivor answers, knowing no leader.
    let index = usize::try_from(second - 1).unwrap();
    nodes[index].as_mut().unwrap().kill9();
    nodes[index] = None;
    let survivor = nodes.iter().position(Option::is_some).unwrap();
    let stale = poll_until(
        Duration::from_secs(10),
        "the survivor without a leader",
        || {
            let s = status(&members[survivor]);
            s["leader_id"].is_null().then_some(s)
        },
    )
    .unwrap();
    assert_eq!(stale["answered_by"], (survivor + 1) as u64);

    for node in nodes.into_iter().flatten() {
        let (code, _) = node.terminate();
        assert!(code.success(), "nameserver exit: {code:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_members_speak_tls_and_sign_with_the_cluster_secret() {
    use rocketgate_nameserver::controller::{ControllerClient, Key};
    use rocketgate_nameserver::ClientTls;

    const SECRET: &str = "the-secret-of-the-controller-test";
    let dir = tempfile::tempdir().unwrap();
    let ca = rocketgate_gateway_kit::test_ca::TestCa::new(dir.path(), "root").unwrap();
    let cert = ca.server("node").unwrap();
    let tls = format!(
        "[tls]\nenabled = true\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        cert.cert.display(),
        cert.key.display(),
        ca.ca_pem.display()
    );
    let members: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let nodes: Vec<Node> = (1..=3)
        .map(|id| {
            let config = member_config_with(dir.path(), id, &members, &tls);
            let ready = dir.path().join(format!("tls{id}.ready"));
            let log = dir.path().join(format!("tls{id}.log"));
            let child = std::process::Command::new(support::BIN)
                .args(["nameserver", "--config", &config, "--ready-file"])
                .arg(&ready)
                .env("ROCKETGATE_CLUSTER_SECRET", SECRET)
                .env("RUST_LOG", "info")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            Node::adopt(child, &ready, log)
        })
        .collect();

    let ca_pem = std::fs::read(&ca.ca_pem).unwrap();
    let client_tls = ClientTls {
        ca_pem,
        identity: None,
    };
    let key = Some(Key::derive(SECRET).unwrap());
    let client = ControllerClient::new(
        &members,
        key.clone(),
        Some(&client_tls),
        Duration::from_secs(2),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        match client.status().await {
            Ok(s) if s.has_leader => break s,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "no leader over TLS: {other:?}\n{}",
                nodes[0].log_text()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.members.len(), 3);
    // Plain gRPC to a TLS listener, or TLS without the secret: refused.
    let plain = ControllerClient::new(&members, key, None, Duration::from_secs(2)).unwrap();
    assert!(plain.status().await.is_err());
    let unsigned =
        ControllerClient::new(&members, None, Some(&client_tls), Duration::from_secs(2)).unwrap();
    let err = unsigned.status().await.unwrap_err();
    assert!(err.to_string().contains("must be signed"), "{err}");
    for node in nodes {
        let (code, _) = node.terminate();
        assert!(code.success(), "nameserver exit: {code:?}");
    }
}
