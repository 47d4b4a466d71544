//! The failover controller in real `rocketgate nameserver` processes (issue 16): three
//! NameServers each running a controller member (`[controller]`) on 127.0.0.1; `rocketgate
//! admin cluster status` shows the members and the leader; after `kill -9` of the leader the
//! two others elect a new one; with two of three killed the survivor still answers, with no
//! leader. Every process is stopped by the test (or killed on drop).
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
             data_dir = \"{}\"\nheartbeat_timeout_ms = 1000\n",
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
