//! Replication over real files, without a network: a master Broker copied chunk by chunk into
//! a follower's Store and KvStore.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::api::SendRequest;
use crate::broker::Broker;
use crate::config::Config;
use crate::kv::Limits;
use crate::message::Message;
use crate::store::commit_log::ReplError as LogError;
use crate::TopicConfig;

const SEGMENT: u64 = 64 << 10;

fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = SEGMENT;
    c
}

fn kv_limits(c: &Config) -> Limits {
    Limits {
        max_value: c.limits.max_body_bytes.saturating_add(64 << 10),
        max_total: c.kv.max_total_bytes,
        compact_log_bytes: c.kv.compact_log_bytes,
    }
}

/// A follower's raw stores on `dir`.
struct Replica {
    config: Config,
    store: Store,
    kv: KvStore,
}

impl Replica {
    fn open(dir: &Path) -> Self {
        let config = config(dir);
        let store = Store::open(config.store.clone()).unwrap();
        let kv = KvStore::open(&dir.join("kv"), kv_limits(&config)).unwrap();
        Self { config, store, kv }
    }

    fn close(self) -> Config {
        self.store.shutdown().unwrap();
        self.config
    }
}

/// Handshake, then copy until the follower has everything the master wrote.
async fn follow(master: &Broker, r: &Replica, chunk_bytes: usize) -> HandshakeReply {
    let (ms, mkv) = master.replication_parts();
    let leader = Leader::new(ms, mkv, ReadBound::Written);
    let reply = leader
        .handshake(&handshake_of(&r.store, &r.kv).unwrap())
        .unwrap();
    assert_eq!(
        reply.start,
        r.store.log_bound(ReadBound::Written),
        "truncate first"
    );
    let snap = reply.kv_snapshot_needed.then(|| leader.kv_snapshot());
    let f = Follower::start(&r.store, &r.kv, &reply, snap).unwrap();
    catch_up(&leader, &f, chunk_bytes).await;
    reply
}

async fn catch_up(leader: &Leader<'_>, f: &Follower<'_>, chunk_bytes: usize) {
    let target = leader.store.log_bound(ReadBound::Written);
    while f.log_end() < target {
        let chunk = leader.next_chunk(f.log_end(), chunk_bytes).unwrap();
        let got = f.apply(&chunk).await.unwrap();
        assert!(got.end > chunk.from, "no progress at {}", chunk.from);
    }
    loop {
        match leader.kv_changes(f.kv_sequence(), 512).unwrap() {
            KvChanges::Records(r) if r.is_empty() => break,
            KvChanges::Records(r) => {
                f.apply_kv(&r).unwrap();
            }
            KvChanges::SnapshotNeeded => f.install_kv_snapshot(leader.kv_snapshot()).unwrap(),
        }
    }
}

async fn write_mix(b: &Broker, round: usize) {
    if round == 0 {
        b.topics()
            .create(TopicConfig::new("orders", 4).with_type(crate::MessageType::Mixed))
            .unwrap();
        b.topics().create(TopicConfig::new("audit", 2)).unwrap();
    } else {
        b.topics()
            .create(TopicConfig::new(format!("later{round}"), 1))
            .unwrap();
    }
    for i in 0..120 {
        let topic = if i % 3 == 0 { "audit" } else { "orders" };
        let body = vec![b'x' + (i % 7) as u8; 200 + (i * 37) % 900];
        let msg = Message::new(topic, body)
            .with_key(format!("k{round}-{i}"))
            .with_tag(if i % 2 == 0 { "even" } else { "odd" });
        b.producer().send(SendRequest::from(msg)).await.unwrap();
    }
    // A delayed message (timer journal), and committed offsets.
    let delayed = Message::new("orders", "later").with_deliver_at(crate::now_ms() + 3_600_000);
    b.producer().send(SendRequest::from(delayed)).await.unwrap();
    b.consumer()
        .commit_offset("g1", "orders", 1, 5 + round as u64)
        .unwrap();
    b.consumer().persist_state().unwrap();
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p: PathBuf| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

async fn assert_same_reads(master: &Store, follower: &Store) {
    let (m, f) = (
        master.visible().await.unwrap(),
        follower.visible().await.unwrap(),
    );
    let mut ids = Vec::new();
    for (topic, queues) in [("orders", 4), ("audit", 2)] {
        for q in 0..queues {
            assert_eq!(
                m.queue_range(topic, q),
                f.queue_range(topic, q),
                "{topic}/{q}"
            );
            let a = m.read_queue(topic, q, 0, 1000).unwrap();
            let b = f.read_queue(topic, q, 0, 1000).unwrap();
            assert_eq!(a, b, "{topic}/{q}");
            ids.extend(a.into_iter().map(|m| m.message_id));
            assert_eq!(
                master.queue_end(topic, q),
                follower.queue_end(topic, q),
                "next queue offset of {topic}/{q}"
            );
        }
    }
    assert!(!ids.is_empty());
    for id in ids.iter().step_by(7) {
        assert_eq!(m.find_by_id(id).unwrap(), f.find_by_id(id).unwrap());
    }
}

#[tokio::test]
async fn follower_copies_log_queues_index_and_kv() {
    let (md, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = Broker::open(config(md.path())).unwrap();
    become_master(md.path(), 1, 0).unwrap();
    write_mix(&master, 0).await;
    let r = Replica::open(fd.path());
    let reply = follow(&master, &r, 5000).await;
    assert!(reply.kv_snapshot_needed, "a new follower has other epochs");
    // More writes after it caught up: followed incrementally (no snapshot).
    write_mix(&master, 1).await;
    let again = follow(&master, &r, 3000).await;
    assert!(
        !again.kv_snapshot_needed,
        "same epochs: the KV follows by sequence"
    );
    assert_eq!(again.epochs, reply.epochs);
    let (ms, mkv) = master.replication_parts();

    assert!(ms.log_offsets().2 > 2 * SEGMENT, "the test rolls segments");
    assert_same_reads(ms, &r.store).await;
    assert_eq!(mkv.snapshot(), r.kv.snapshot());
    let (mlog, flog) = (md.path().join("commitlog"), fd.path().join("commitlog"));
    master.shutdown().unwrap();
    let config = r.close();
    assert_eq!(files(&mlog), files(&flog), "byte-identical CommitLog");
    drop(master);

    // Promoted: a Broker on the follower's directory has the topics and offsets.
    let end = {
        let s = Store::open(config.store.clone()).unwrap();
        s.log_bound(ReadBound::Written)
    };
    assert!(
        become_master(&config.store.data_dir, 1, end).is_err(),
        "epochs only grow"
    );
    become_master(&config.store.data_dir, 2, end).unwrap();
    let promoted = Broker::open(config).unwrap();
    let names: Vec<String> = promoted
        .topics()
        .list_user()
        .into_iter()
        .map(|t| t.name)
        .collect();
    for t in ["orders", "audit", "later1"] {
        assert!(names.iter().any(|n| n == t), "{t} missing in {names:?}");
    }
    assert_eq!(
        promoted
            .consumer()
            .committed_offset("g1", "orders", 1)
            .unwrap(),
        Some(6)
    );
    let sent = promoted
        .producer()
        .send(SendRequest::from(Message::new("audit", "after")))
        .await
        .unwrap();
    assert_eq!(
        sent.queue_offset.unwrap(),
        promoted
            .topics()
            .queue_offsets("audit", sent.queue_id)
            .await
            .unwrap()
            .max
            - 1
    );
}

#[tokio::test]
async fn corrupt_byte_gap_and_overlap_refused_with_nothing_written() {
    let (md, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = Broker::open(config(md.path())).unwrap();
    write_mix(&master, 0).await;
    let (ms, mkv) = master.replication_parts();
    let leader = Leader::new(ms, mkv, ReadBound::Written);
    let r = Replica::open(fd.path());
    let first = leader.next_chunk(0, 4000).unwrap();
    let second = leader
        .next_chunk(first.from + first.data.len() as u64, 4000)
        .unwrap();

    let mut bad = first.clone();
    let mid = bad.data.len() / 2;
    bad.data[mid] ^= 0x40;
    let err = r.store.append_replicated(&bad).await.unwrap_err();
    assert!(matches!(err, LogError::BadChunk { .. }), "{err}");
    assert_eq!(r.store.log_bound(ReadBound::Written), 0);
    assert_eq!(r.store.log_offsets().2, 0);

    let err = r.store.append_replicated(&second).await.unwrap_err();
    assert!(matches!(err, LogError::Gap { end: 0, .. }), "{err}");
    r.store.append_replicated(&first).await.unwrap();
    let err = r.store.append_replicated(&first).await.unwrap_err();
    assert!(matches!(err, LogError::Overlap { .. }), "{err}");
    r.store.append_replicated(&second).await.unwrap();
    // A read that does not start at a record.
    let err = leader.next_chunk(first.from + 3, 4000).unwrap_err();
    assert!(
        matches!(err, ReplicationError::Log(LogError::NotRecordStart(_))),
        "{err}"
    );
    // Segment sizes must match.
    let mut h = handshake_of(&r.store, &r.kv).unwrap();
    h.segment_size *= 2;
    assert!(matches!(
        leader.handshake(&h),
        Err(ReplicationError::SegmentSize { .. })
    ));
}

#[tokio::test]
async fn restarted_follower_resumes_from_its_end() {
    let (md, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = Broker::open(config(md.path())).unwrap();
    become_master(md.path(), 1, 0).unwrap();
    write_mix(&master, 0).await;
    let (ms, mkv) = master.replication_parts();
    let leader = Leader::new(ms, mkv, ReadBound::Written);
    {
        let r = Replica::open(fd.path());
        let reply = leader
            .handshake(&handshake_of(&r.store, &r.kv).unwrap())
            .unwrap();
        let f = Follower::start(&r.store, &r.kv, &reply, Some(leader.kv_snapshot())).unwrap();
        for _ in 0..5 {
            let c = leader.next_chunk(f.log_end(), 3000).unwrap();
            f.apply(&c).await.unwrap();
        }
        r.close();
    }
    let r = Replica::open(fd.path());
    let mid = r.store.log_bound(ReadBound::Written);
    assert!(mid > 0);
    let reply = leader
        .handshake(&handshake_of(&r.store, &r.kv).unwrap())
        .unwrap();
    assert_eq!(reply.start, mid, "resumes from its end");
    assert!(!reply.kv_snapshot_needed);
    let f = Follower::start(&r.store, &r.kv, &reply, None).unwrap();
    catch_up(&leader, &f, 3000).await;
    assert_same_reads(ms, &r.store).await;
}

#[tokio::test]
async fn divergent_tail_of_an_old_master_is_truncated_on_handshake() {
    let (ad, bd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A is master in epoch 1; B follows it.
    let a = Broker::open(config(ad.path())).unwrap();
    become_master(ad.path(), 1, 0).unwrap();
    write_mix(&a, 0).await;
    let r = Replica::open(bd.path());
    follow(&a, &r, 8000).await;
    // A writes records nobody copies (ASYNC replication), then its machine stops.
    for i in 0..40 {
        let m = Message::new("orders", format!("lost-{i}"));
        a.producer().send(SendRequest::from(m)).await.unwrap();
    }
    a.shutdown().unwrap();
    drop(a);
    // B is promoted with epoch 2 and writes on.
    let b_config = r.close();
    let b_end = Store::open(b_config.store.clone())
        .unwrap()
        .log_bound(ReadBound::Written);
    become_master(bd.path(), 2, b_end).unwrap();
    let b = Broker::open(b_config).unwrap();
    write_mix(&b, 1).await;

    // A rejoins as B's follower: the handshake cuts its divergent tail.
    let ra = Replica::open(ad.path());
    let a_end = ra.store.log_bound(ReadBound::Written);
    let (bs, bkv) = b.replication_parts();
    let leader = Leader::new(bs, bkv, ReadBound::Written);
    let reply = leader
        .handshake(&handshake_of(&ra.store, &ra.kv).unwrap())
        .unwrap();
    assert_eq!(reply.start, b_end);
    assert!(a_end > b_end && reply.kv_snapshot_needed);
    assert!(matches!(
        Follower::start(&ra.store, &ra.kv, &reply, Some(leader.kv_snapshot())),
        Err(ReplicationError::NotTruncated { .. })
    ));
    let a_config = ra.close();
    assert!(truncate_divergent(&a_config.store, &reply).unwrap());
    let ra = Replica::open(ad.path());
    assert_eq!(ra.store.log_bound(ReadBound::Written), b_end);
    {
        // As if the lost records never existed: no queue entry, no id points past the cut.
        let v = ra.store.visible().await.unwrap();
        for q in 0..4 {
            let msgs = v.read_queue("orders", q, 0, 10_000).unwrap();
            assert!(msgs.iter().all(|m| m.physical_offset < b_end));
            assert!(msgs.iter().all(|m| !m.body.starts_with(b"lost-")));
        }
    }
    let f = Follower::start(&ra.store, &ra.kv, &reply, Some(leader.kv_snapshot())).unwrap();
    catch_up(&leader, &f, 6000).await;
    assert_same_reads(bs, &ra.store).await;
    assert_eq!(bkv.snapshot(), ra.kv.snapshot());
    b.shutdown().unwrap();
    ra.close();
    assert_eq!(
        files(&ad.path().join("commitlog")),
        files(&bd.path().join("commitlog"))
    );
}

#[tokio::test]
async fn follower_behind_retention_gets_a_typed_error_and_waits_for_more() {
    let md = tempfile::tempdir().unwrap();
    let mut c = config(md.path());
    c.store.retention_hours = 0;
    let ms = Store::open(c.store.clone()).unwrap();
    let mkv = KvStore::open(&md.path().join("kv"), kv_limits(&c)).unwrap();
    let props = std::collections::BTreeMap::new();
    let body = vec![b'r'; 1000];
    let append = |i: usize| {
        let id = format!("id-{i}");
        let draft = crate::store::record::RecordDraft {
            topic: "orders",
            message_id: &id,
            tag: "",
            message_group: "",
            born_host: "",
            keys: &[],
            properties: &props,
            body: &body,
            born_timestamp: 1,
            reconsume_times: 0,
            flags: 0,
            prepared_offset: 0,
        };
        ms.append_nowait(&draft, (i % 2) as u32).unwrap()
    };
    for i in 0..200 {
        append(i);
    }
    ms.visible().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // segment mtimes strictly older
    ms.run_cleaner_now();
    let min = ms.log_offsets().0;
    assert!(
        min > 0,
        "retention deleted a segment: {:?}",
        ms.log_offsets()
    );
    let leader = Leader::new(&ms, &mkv, ReadBound::Written);
    match leader.next_chunk(0, 4096) {
        Err(ReplicationError::Log(LogError::BelowRetained { from: 0, min: m })) => {
            assert_eq!(m, min);
        }
        other => panic!("{other:?}"),
    }
    // An empty follower may start at the master's oldest segment.
    let fd = tempfile::tempdir().unwrap();
    let r = Replica::open(fd.path());
    let chunk = leader.next_chunk(min, 4096).unwrap();
    r.store.append_replicated(&chunk).await.unwrap();
    assert!(r.store.log_bound(ReadBound::Written) > min);

    // Waiting for more: nothing new times out, a new append wakes it.
    let end = ms.log_bound(ReadBound::Written);
    assert!(!leader
        .wait_for_more(end, Duration::from_millis(50))
        .await
        .unwrap());
    let waiter = leader.wait_for_more(end, Duration::from_secs(10));
    // `join!` polls the waiter first (it registers on the write end), then the writer.
    let writer = async {
        tokio::task::yield_now().await;
        append(1000);
    };
    let (woke, ()) = tokio::join!(waiter, writer);
    assert!(woke.unwrap());
    assert!(ms.log_bound(ReadBound::Flushed) <= ms.log_bound(ReadBound::Written));
}

mod topic_reset;
