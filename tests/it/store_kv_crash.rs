//! `kill -9` of a real process writing the KV store: every acknowledged put is present,
//! byte-identical, and every acknowledged delete stays deleted.
//!
//! Each round starts `rg-kv-writer` (four concurrent writers; one `PUT <seq>` / `DEL <seq>`
//! line per acknowledged write; every seventh key is deleted after its put), lets it write for
//! a random 30–400 ms after `READY`, kills it with SIGKILL, then opens the broker in this
//! process and checks the namespace against every ack of every round so far:
//! - lost acked = 0: an acknowledged put is present with its exact value, unless it is one the
//!   child deletes (every seventh) and the kill came during that delete; an acknowledged delete
//!   is absent;
//! - unexpected = 0: every key present is one the child could have written, with exactly the
//!   value of its sequence;
//! - the KV sequence never goes backwards across rounds.
//!
//! The compaction threshold is 256 KiB, so over the rounds kills also land around the
//! snapshot, new-log and delete steps of a compaction.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use rocketgate_core::Broker;
use rocketgate_tests::kv_crash::{self, NAMESPACE};

use crate::support::ChildGuard;

/// One round's acknowledged puts and deletes, and the sequence the child started from.
fn run_child(dir: &Path, first: u64, window: Duration) -> (u64, Vec<u64>, Vec<u64>) {
    let child = Command::new(env!("CARGO_BIN_EXE_rg-kv-writer"))
        .arg(dir)
        .arg(first.to_string())
        .arg("4")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("READY from the KV writer within 60 s");
    let start_seq: u64 = ready
        .strip_prefix("READY ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a READY line: {ready}"));
    std::thread::sleep(window);
    let status = guard.kill();
    assert_eq!(
        status.signal(),
        Some(9),
        "killed by our SIGKILL: {status:?}"
    );
    reader.join().unwrap();
    let (mut puts, mut dels) = (Vec::new(), Vec::new());
    for line in rx.try_iter() {
        match line.split_once(' ') {
            Some(("PUT", n)) => puts.push(n.parse().unwrap()),
            Some(("DEL", n)) => dels.push(n.parse().unwrap()),
            _ => panic!("unexpected line from the KV writer: {line}"),
        }
    }
    (start_seq, puts, dels)
}

fn check(broker: &Broker, acked: &BTreeSet<u64>, deleted: &BTreeSet<u64>, rounds: u64) {
    let kv = broker.kv();
    for seq in acked.difference(deleted) {
        let got = kv.get(NAMESPACE, kv_crash::key(*seq).as_bytes()).unwrap();
        if seq.is_multiple_of(7) && got.is_none() {
            // Its delete may have been written when the kill came, before it was acknowledged.
            continue;
        }
        assert_eq!(
            got.as_deref(),
            Some(&kv_crash::value(*seq)[..]),
            "acknowledged put {seq} lost or damaged"
        );
    }
    for seq in deleted {
        let got = kv.get(NAMESPACE, kv_crash::key(*seq).as_bytes()).unwrap();
        assert_eq!(got, None, "acknowledged delete {seq} undone");
    }
    let mut after: Option<bytes::Bytes> = None;
    loop {
        let page = kv.scan(NAMESPACE, b"", after.as_deref(), 1000).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, v) in page {
            let seq: u64 = std::str::from_utf8(&k).unwrap().parse().unwrap();
            assert!(
                seq >> 32 >= 1 && seq >> 32 <= rounds,
                "key {seq} was never written"
            );
            assert_eq!(&v[..], &kv_crash::value(seq)[..], "value of {seq} damaged");
        }
    }
}

#[test]
fn kv_kill9_during_writes_loses_no_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = crate::support::seeded_rng("kv_kill9");
    let (mut acked, mut deleted) = (BTreeSet::new(), BTreeSet::new());
    let mut last_seq = 0;
    let rounds = 8;
    for round in 1..=rounds {
        let window = Duration::from_millis(rng.gen_range(30..400));
        let (start, puts, dels) = run_child(dir.path(), round << 32, window);
        assert!(
            start >= last_seq,
            "the KV sequence went back: {start} < {last_seq}"
        );
        eprintln!(
            "round {round}: {} puts, {} deletes acknowledged in {window:?}",
            puts.len(),
            dels.len()
        );
        acked.extend(puts);
        deleted.extend(dels);
        let broker = Broker::open(kv_crash::config(dir.path())).unwrap();
        check(&broker, &acked, &deleted, round);
        last_seq = broker.kv().last_sequence();
        broker.shutdown().unwrap();
    }
    assert!(
        acked.len() > 100,
        "the writer acknowledged only {} puts",
        acked.len()
    );
}
