//! Tests of the KV store on real files in temp dirs: the API, bounds, restarts, torn and
//! corrupt tails, compaction and crashes between its steps, group commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{KvStore, Limits};
use crate::error::{Error, Reason};

fn limits() -> Limits {
    Limits {
        max_value: 4096,
        max_total: 64 << 10,
        compact_log_bytes: 1 << 20,
    }
}

fn open(dir: &Path) -> KvStore {
    KvStore::open(dir, limits()).unwrap()
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn put_get_delete_scan_and_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    assert_eq!(kv.last_sequence(), 0);
    assert_eq!(kv.put("ns.a", b"k1", b("v1")).unwrap(), 1);
    assert_eq!(kv.put("ns.a", b"k2", b("v2")).unwrap(), 2);
    assert_eq!(kv.put("ns.a", b"x1", b("x")).unwrap(), 3);
    assert_eq!(kv.put("ns.b", b"k1", b("other")).unwrap(), 4);
    assert_eq!(kv.put("ns.a", b"k1", b("v1bis")).unwrap(), 5);
    assert_eq!(kv.get("ns.a", b"k1").unwrap(), b("v1bis"));
    assert_eq!(kv.get("ns.b", b"k1").unwrap(), b("other"));
    assert_eq!(kv.get("ns.c", b"k1"), None);
    assert_eq!((kv.len("ns.a"), kv.len("ns.b"), kv.len("ns.c")), (3, 1, 0));
    let keys = |v: Vec<(Bytes, Bytes)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(kv.scan("ns.a", b"k", None, 10)), [b("k1"), b("k2")]);
    assert_eq!(keys(kv.scan("ns.a", b"", None, 2)), [b("k1"), b("k2")]);
    assert_eq!(keys(kv.scan("ns.a", b"", Some(b"k2"), 10)), [b("x1")]);
    assert_eq!(keys(kv.scan("ns.a", b"k", Some(b"k1"), 10)), [b("k2")]);
    assert!(
        kv.scan("ns", b"", None, 10).is_empty(),
        "namespaces do not prefix-match"
    );
    assert_eq!(kv.delete("ns.a", b"k1").unwrap(), 6);
    assert_eq!(kv.delete("ns.a", b"missing").unwrap(), 7);
    assert_eq!(kv.get("ns.a", b"k1"), None);
    assert_eq!(kv.len("ns.a"), 2);
    assert_eq!(kv.last_sequence(), 7);
    let total = ["ns.ak2v2", "ns.ax1x", "ns.bk1other"]
        .iter()
        .map(|s| s.len() as u64)
        .sum::<u64>();
    assert_eq!(kv.total_bytes(), total);
}

#[test]
fn bounds_and_the_quota_are_refused_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    let reason = |r: crate::Result<u64>| r.unwrap_err().reason();
    for ns in ["", "Upper", "a b", "ns/x", &"n".repeat(65)] {
        assert_eq!(
            reason(kv.put(ns, b"k", b("v"))),
            Reason::InvalidArgument,
            "{ns:?}"
        );
    }
    assert_eq!(reason(kv.put("ns", b"", b("v"))), Reason::InvalidArgument);
    assert_eq!(
        reason(kv.put("ns", &[7; 1025], b("v"))),
        Reason::InvalidArgument
    );
    assert_eq!(
        reason(kv.put("ns", b"k", Bytes::from(vec![0; 4097]))),
        Reason::InvalidArgument
    );
    kv.put(&"n".repeat(64), &[7; 1024], Bytes::from(vec![0; 4096]))
        .unwrap();
    // Fill up to the 64 KiB quota, then one more is refused; a replacement of the same size
    // and a delete still work, and the freed room can be used again.
    let mut i = 0;
    let err = loop {
        match kv.put(
            "fill",
            format!("k{i:04}").as_bytes(),
            Bytes::from(vec![1; 4000]),
        ) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::QuotaExceeded { .. }), "{err}");
    assert_eq!(err.reason(), Reason::QuotaExceeded);
    assert_eq!(err.kind(), crate::ErrorKind::Throttled);
    assert!(kv.total_bytes() <= 64 << 10);
    kv.put("fill", b"k0000", Bytes::from(vec![2; 4000]))
        .unwrap();
    kv.delete("fill", b"k0001").unwrap();
    kv.put("fill", b"again", Bytes::from(vec![3; 4000]))
        .unwrap();
    assert_eq!(kv.len("fill"), i);
}

#[test]
fn a_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        for i in 0..100 {
            kv.put("ns", format!("k{i}").as_bytes(), b(&format!("v{i}")))
                .unwrap();
        }
        kv.delete("ns", b"k7").unwrap();
        kv.put("other", b"a", b("")).unwrap();
    }
    let kv = open(dir.path());
    assert_eq!(kv.last_sequence(), 102);
    assert_eq!(kv.len("ns"), 99);
    assert_eq!(kv.get("ns", b"k42").unwrap(), b("v42"));
    assert_eq!(kv.get("ns", b"k7"), None);
    assert_eq!(
        kv.get("other", b"a").unwrap(),
        b(""),
        "an empty value is a value"
    );
    assert_eq!(kv.put("ns", b"k7", b("back")).unwrap(), 103);
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::File::options().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_torn_tail_and_a_corrupt_record_are_cut_and_acknowledged_writes_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        for i in 0..10 {
            kv.put("ns", format!("k{i}").as_bytes(), b("value"))
                .unwrap();
        }
    }
    let log = files(dir.path(), "log-").pop().unwrap();
    let good_len = std::fs::metadata(&log).unwrap().len();
    // A torn append: garbage, then the first bytes of a valid-looking header.
    append(&log, &[0x56, 0x4B, 0x47, 0x52, 200, 0, 0, 0, 1, 2]);
    {
        let kv = open(dir.path());
        assert_eq!(kv.last_sequence(), 10);
        assert_eq!(kv.len("ns"), 10);
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
            good_len,
            "the tail is cut"
        );
        kv.put("ns", b"k10", b("after-cut")).unwrap();
    }
    // Flip a byte in the value of the last record: that record is cut, the others survive.
    let len = std::fs::metadata(&log).unwrap().len();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[len as usize - 2] ^= 0xFF;
    std::fs::write(&log, &bytes).unwrap();
    let kv = open(dir.path());
    assert_eq!(kv.last_sequence(), 10);
    assert_eq!(kv.get("ns", b"k10"), None);
    assert_eq!(kv.get("ns", b"k9").unwrap(), b("value"));
    assert_eq!(kv.put("ns", b"k10", b("again")).unwrap(), 11);
    drop(kv);
    assert_eq!(open(dir.path()).get("ns", b"k10").unwrap(), b("again"));
}

#[test]
fn a_sequence_gap_refuses_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path());
        kv.put("ns", b"a", b("1")).unwrap();
        kv.maybe_compact(true).unwrap();
        kv.put("ns", b"b", b("2")).unwrap();
    }
    // Losing the snapshot leaves the new log starting after a hole.
    for s in files(dir.path(), "snap-") {
        std::fs::remove_file(s).unwrap();
    }
    let err = KvStore::open(dir.path(), limits()).unwrap_err();
    assert!(matches!(err, super::Error::Corrupted { .. }), "{err}");
}

fn fill(kv: &KvStore, n: usize) {
    for i in 0..n {
        kv.put(
            "ns",
            format!("k{:03}", i % 50).as_bytes(),
            b(&format!("v{i}")),
        )
        .unwrap();
    }
}

fn expect_filled(kv: &KvStore, n: usize) {
    assert_eq!(kv.len("ns"), 50.min(n));
    for i in n.saturating_sub(50)..n {
        assert_eq!(
            kv.get("ns", format!("k{:03}", i % 50).as_bytes()).unwrap(),
            b(&format!("v{i}"))
        );
    }
}

#[test]
fn compaction_keeps_the_state_and_starts_a_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let small = Limits {
        compact_log_bytes: 8 << 10,
        ..limits()
    };
    {
        let kv = KvStore::open(dir.path(), small).unwrap();
        fill(&kv, 2000);
        expect_filled(&kv, 2000);
        // The log was compacted many times; only one snapshot and one log are left.
        assert_eq!(files(dir.path(), "snap-").len(), 1);
        assert_eq!(files(dir.path(), "log-").len(), 1);
        let log = &files(dir.path(), "log-")[0];
        assert!(std::fs::metadata(log).unwrap().len() < 20 << 10);
    }
    let kv = KvStore::open(dir.path(), small).unwrap();
    assert_eq!(kv.last_sequence(), 2000);
    expect_filled(&kv, 2000);
}

/// Runs a compaction after `before` writes, lets `crash` undo part of it (as a crash between
/// its steps would leave the files), reopens and checks every write.
fn crash_during_compaction(crash: impl FnOnce(&Path, &[u8], &Path)) {
    let dir = tempfile::tempdir().unwrap();
    let old_log;
    let old_bytes;
    {
        let kv = open(dir.path());
        fill(&kv, 120);
        old_log = files(dir.path(), "log-").pop().unwrap();
        old_bytes = std::fs::read(&old_log).unwrap();
        assert!(kv.maybe_compact(true).unwrap());
        assert!(!old_log.exists());
    }
    crash(dir.path(), &old_bytes, &old_log);
    {
        let kv = open(dir.path());
        assert_eq!(kv.last_sequence(), 120);
        expect_filled(&kv, 120);
        fill(&kv, 130);
    }
    let kv = open(dir.path());
    assert_eq!(kv.last_sequence(), 250);
    expect_filled(&kv, 130);
    assert!(files(dir.path(), "")
        .iter()
        .all(|p| !p.to_string_lossy().ends_with(".tmp")));
}

#[test]
fn a_crash_while_writing_the_snapshot_leaves_only_a_temp_file() {
    crash_during_compaction(|dir, old, old_log| {
        // Crash before the rename: the temp snapshot is garbage, the old log is whole.
        for p in files(dir, "") {
            std::fs::remove_file(p).unwrap();
        }
        std::fs::write(old_log, old).unwrap();
        std::fs::write(
            dir.join("snap-00000000000000000120.kv.tmp"),
            b"half a snapsh",
        )
        .unwrap();
    });
}

#[test]
fn a_crash_after_the_snapshot_before_the_new_log() {
    crash_during_compaction(|dir, old, old_log| {
        for p in files(dir, "log-") {
            std::fs::remove_file(p).unwrap();
        }
        std::fs::write(old_log, old).unwrap();
    });
}

#[test]
fn a_crash_before_the_old_files_are_deleted() {
    crash_during_compaction(|_dir, old, old_log| {
        std::fs::write(old_log, old).unwrap();
    });
}

#[test]
fn a_corrupt_snapshot_with_the_old_log_still_there_falls_back_to_the_log() {
    crash_during_compaction(|dir, old, old_log| {
        std::fs::write(old_log, old).unwrap();
        let snap = files(dir, "snap-").pop().unwrap();
        let mut bytes = std::fs::read(&snap).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&snap, bytes).unwrap();
    });
}

#[test]
fn concurrent_writers_share_fsyncs_and_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(
        KvStore::open(
            dir.path(),
            Limits {
                max_total: 16 << 20,
                ..limits()
            },
        )
        .unwrap(),
    );
    let threads = 8;
    let per = 100;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..per {
                    let key = format!("t{t}-{i}");
                    seqs.push(kv.put("ns", key.as_bytes(), b(&key)).unwrap());
                    assert_eq!(
                        kv.get("ns", key.as_bytes()).unwrap(),
                        b(&key),
                        "read your write"
                    );
                }
                seqs
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=(threads * per) as u64).collect::<Vec<_>>());
    let fsyncs = kv.fsyncs();
    assert!(
        fsyncs < (threads * per) as u64,
        "{fsyncs} fsyncs for {} writes",
        threads * per
    );
    drop(kv);
    let kv = open_big(dir.path());
    assert_eq!(kv.len("ns"), threads * per);
    assert_eq!(kv.last_sequence(), (threads * per) as u64);
}

fn open_big(dir: &Path) -> KvStore {
    KvStore::open(
        dir,
        Limits {
            max_total: 16 << 20,
            ..limits()
        },
    )
    .unwrap()
}

#[test]
fn a_batch_is_written_with_one_fsync_in_order_and_survives_a_restart() {
    use super::Change;
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path());
    kv.put("ns.a", b"gone", b("x")).unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("k{i:02}")).collect();
    let mut changes: Vec<Change<'_>> = keys
        .iter()
        .map(|k| Change {
            ns: "ns.a",
            key: k.as_bytes(),
            value: Some(b(k)),
        })
        .collect();
    changes.push(Change {
        ns: "ns.a",
        key: b"gone",
        value: None,
    });
    changes.push(Change {
        ns: "ns.b",
        key: b"last",
        value: Some(b("written last")),
    });
    let before = kv.fsyncs();
    assert_eq!(kv.write_batch(&changes).unwrap(), 1 + 52);
    assert_eq!(kv.fsyncs() - before, 1, "one fsync for the whole batch");
    assert_eq!(
        kv.write_batch(&[]).unwrap(),
        53,
        "an empty batch writes nothing"
    );
    drop(kv);
    let kv = open(dir.path());
    assert_eq!(kv.len("ns.a"), 50);
    assert_eq!(kv.get("ns.a", b"gone"), None);
    assert_eq!(kv.get("ns.a", b"k07").unwrap(), b("k07"));
    assert_eq!(kv.get("ns.b", b"last").unwrap(), b("written last"));

    // Over the quota: nothing of the batch is written.
    let big = Bytes::from(vec![0u8; 4000]);
    let many: Vec<String> = (0..40).map(|i| format!("big{i}")).collect();
    let changes: Vec<Change<'_>> = many
        .iter()
        .map(|k| Change {
            ns: "ns.c",
            key: k.as_bytes(),
            value: Some(big.clone()),
        })
        .collect();
    let err = kv.write_batch(&changes).unwrap_err();
    assert_eq!(err.reason(), Reason::QuotaExceeded);
    assert_eq!(kv.len("ns.c"), 0);
    assert_eq!(kv.last_sequence(), 53);
}
