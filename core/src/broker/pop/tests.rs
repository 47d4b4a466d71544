use super::*;
use crate::store::consume_queue::tag_hash;

/// An in-memory queue: offset i holds message i.
struct Fake {
    msgs: Vec<StoredMessage>,
    min: u64,
}

fn msg(i: u64, tag: &str, group: Option<&str>) -> StoredMessage {
    StoredMessage {
        message_id: format!("m{i}"),
        topic: "t".into(),
        queue_id: 0,
        queue_offset: i,
        physical_offset: i * 100,
        size: 100,
        store_timestamp_ms: 0,
        born_timestamp_ms: 0,
        born_host: None,
        tag: (!tag.is_empty()).then(|| tag.to_owned()),
        keys: vec![],
        message_group: group.map(str::to_owned),
        properties: Default::default(),
        body: Default::default(),
        reconsume_times: 0,
        flags: 0,
    }
}

impl Source for Fake {
    fn range(&self, _: u32) -> (u64, u64) {
        (self.min, self.msgs.len() as u64)
    }
    fn entries(&self, _: u32, from: u64, max: usize) -> Vec<(u64, CqEntry)> {
        (from.max(self.min)..self.msgs.len() as u64)
            .take(max)
            .map(|i| {
                let m = &self.msgs[i as usize];
                (
                    i,
                    CqEntry {
                        physical_offset: m.physical_offset,
                        size: 100,
                        tag_hash: tag_hash(m.tag.as_deref().unwrap_or("")),
                    },
                )
            })
            .collect()
    }
    fn message(&self, e: &CqEntry) -> Result<Option<StoredMessage>> {
        Ok(self.msgs.get((e.physical_offset / 100) as usize).cloned())
    }
}

fn params(filter: &Filter, now: i64, fifo: bool) -> PopParams<'_> {
    PopParams {
        filter,
        now_ms: now,
        invisible_ms: 1000,
        fifo,
        revive: false,
        max_attempts: 16,
        revive_grace_ms: 30_000,
        max_bytes: usize::MAX,
    }
}

fn pop(q: &mut QueuePop, src: &Fake, n: usize, p: &PopParams<'_>, seq: &mut u64) -> Vec<Delivery> {
    let mut out = Vec::new();
    let mut next = || {
        *seq += 1;
        *seq
    };
    let mut expired = Vec::new();
    q.pop(src, 0, n, p, &mut next, &mut out, &mut expired)
        .unwrap();
    assert!(expired.is_empty());
    assert_eq!(
        q.deadlines.len(),
        q.inflight.len(),
        "deadline index out of sync"
    );
    for (o, e) in &q.inflight {
        assert!(q.deadlines.contains(&(e.deadline_ms, *o)));
    }
    out
}

#[test]
fn invisible_expiry_redelivers_with_attempt_plus_one_and_ack_is_final() {
    let src = Fake {
        msgs: (0..3).map(|i| msg(i, "a", None)).collect(),
        min: 0,
    };
    let all = Filter::All;
    let mut q = QueuePop::default();
    let mut seq = 0;
    let first = pop(&mut q, &src, 2, &params(&all, 0, false), &mut seq);
    assert_eq!(
        first
            .iter()
            .map(|d| d.message.queue_offset)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(first
        .iter()
        .all(|d| d.attempt == 1 && d.deadline_ms == 1000));
    // Before the deadline only the third message is visible.
    let more = pop(&mut q, &src, 5, &params(&all, 999, false), &mut seq);
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].message.queue_offset, 2);
    q.ack(0, first[0].seq).unwrap();
    assert_eq!(
        q.ack(0, first[0].seq),
        Err(Stale::NotInFlight),
        "double ack"
    );
    // After the deadline message 1 comes back, 0 never does.
    let again = pop(&mut q, &src, 5, &params(&all, 1000, false), &mut seq);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].message.queue_offset, again[0].attempt), (1, 2));
    assert_eq!(
        q.ack(1, first[1].seq),
        Err(Stale::NotInFlight),
        "old handle"
    );
    q.ack(1, again[0].seq).unwrap();
    q.ack(2, more[0].seq).unwrap();
    assert_eq!(q.low(), 3);
    assert!(pop(&mut q, &src, 5, &params(&all, 10_000, false), &mut seq).is_empty());
}

#[test]
fn change_invisible_supersedes_the_old_handle() {
    let src = Fake {
        msgs: vec![msg(0, "", None)],
        min: 0,
    };
    let all = Filter::All;
    let mut q = QueuePop::default();
    let mut seq = 0;
    let d = pop(&mut q, &src, 1, &params(&all, 0, false), &mut seq);
    assert_eq!(q.change_invisible(0, d[0].seq, 5000, 99), Ok(1));
    assert_eq!(
        q.change_invisible(0, d[0].seq, 5000, 100),
        Err(Stale::NotInFlight)
    );
    assert!(pop(&mut q, &src, 1, &params(&all, 2000, false), &mut seq).is_empty());
    assert_eq!(q.ack(0, d[0].seq), Err(Stale::NotInFlight));
    q.ack(0, 99).unwrap();
}

#[test]
fn filters_skip_and_count_as_consumed() {
    let src = Fake {
        msgs: vec![
            msg(0, "a", None),
            msg(1, "b", None),
            msg(2, "", None),
            msg(3, "a", None),
        ],
        min: 0,
    };
    let f = Filter::tag("a").unwrap();
    let mut q = QueuePop::default();
    let mut seq = 0;
    let d = pop(&mut q, &src, 10, &params(&f, 0, false), &mut seq);
    assert_eq!(
        d.iter().map(|d| d.message.queue_offset).collect::<Vec<_>>(),
        vec![0, 3]
    );
    q.ack(0, d[0].seq).unwrap();
    q.ack(3, d[1].seq).unwrap();
    assert_eq!(q.low(), 4);
}

#[test]
fn fifo_releases_a_group_only_after_its_previous_message() {
    // Groups: x x y x y
    let groups = ["x", "x", "y", "x", "y"];
    let src = Fake {
        msgs: groups
            .iter()
            .enumerate()
            .map(|(i, g)| msg(i as u64, "", Some(g)))
            .collect(),
        min: 0,
    };
    let all = Filter::All;
    let mut q = QueuePop::default();
    let mut seq = 0;
    let d = pop(&mut q, &src, 10, &params(&all, 0, true), &mut seq);
    assert_eq!(
        d.iter().map(|d| d.message.queue_offset).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert!(pop(&mut q, &src, 10, &params(&all, 10, true), &mut seq).is_empty());
    q.ack(2, d[1].seq).unwrap();
    let d2 = pop(&mut q, &src, 10, &params(&all, 10, true), &mut seq);
    assert_eq!(
        d2.iter()
            .map(|d| d.message.queue_offset)
            .collect::<Vec<_>>(),
        vec![4]
    );
    q.ack(0, d[0].seq).unwrap();
    let d3 = pop(&mut q, &src, 10, &params(&all, 10, true), &mut seq);
    assert_eq!(
        d3.iter()
            .map(|d| d.message.queue_offset)
            .collect::<Vec<_>>(),
        vec![1]
    );
    // An expired FIFO message comes back before its group's next one.
    let d4 = pop(&mut q, &src, 10, &params(&all, 5000, true), &mut seq);
    assert_eq!(
        d4.iter()
            .map(|d| (d.message.queue_offset, d.attempt))
            .collect::<Vec<_>>(),
        vec![(1, 2), (4, 2)]
    );
}

#[test]
fn snapshot_restore_redelivers_only_unacked() {
    let src = Fake {
        msgs: (0..5).map(|i| msg(i, "", None)).collect(),
        min: 0,
    };
    let all = Filter::All;
    let mut q = QueuePop::default();
    let mut seq = 0;
    let d = pop(&mut q, &src, 5, &params(&all, 0, false), &mut seq);
    q.ack(1, d[1].seq).unwrap();
    q.ack(3, d[3].seq).unwrap();
    let snap = q.snapshot();
    let mut r = QueuePop::restore(&snap);
    // An ack journaled after the snapshot.
    r.replay_ack(0);
    r.replay_ack(0);
    let again = pop(&mut r, &src, 10, &params(&all, 0, false), &mut seq);
    assert_eq!(
        again
            .iter()
            .map(|d| (d.message.queue_offset, d.attempt))
            .collect::<Vec<_>>(),
        vec![(2, 2), (4, 2)]
    );
}

#[test]
fn retention_moves_the_start() {
    let mut src = Fake {
        msgs: (0..5).map(|i| msg(i, "", None)).collect(),
        min: 0,
    };
    let all = Filter::All;
    let mut q = QueuePop::default();
    let mut seq = 0;
    let d = pop(&mut q, &src, 1, &params(&all, 0, false), &mut seq);
    assert_eq!(d[0].message.queue_offset, 0);
    src.min = 3;
    let d = pop(&mut q, &src, 10, &params(&all, 0, false), &mut seq);
    assert_eq!(
        d.iter().map(|d| d.message.queue_offset).collect::<Vec<_>>(),
        vec![3, 4]
    );
}

#[test]
fn expired_messages_are_handed_back_for_retry_or_dead_letter() {
    let src = Fake {
        msgs: (0..2).map(|i| msg(i, "", None)).collect(),
        min: 0,
    };
    let all = Filter::All;
    let mut q = QueuePop::default();
    let mut n = 0u64;
    let mut seq = || {
        n += 1;
        n
    };
    let mut p = params(&all, 0, false);
    p.revive = true;
    p.max_attempts = 2;
    let (mut out, mut expired) = (Vec::new(), Vec::new());
    q.pop(&src, 0, 10, &p, &mut seq, &mut out, &mut expired)
        .unwrap();
    assert_eq!(out.len(), 2);
    p.now_ms = 5000;
    out.clear();
    q.pop(&src, 0, 10, &p, &mut seq, &mut out, &mut expired)
        .unwrap();
    assert!(out.is_empty(), "revived, not redelivered in place");
    assert_eq!(expired.len(), 2);
    assert!(expired.iter().all(|e| e.attempts == 1 && !e.dead));
    // Still invisible during the grace period; acknowledged once revived.
    let first = expired[0].clone();
    expired.clear();
    q.pop(&src, 0, 10, &p, &mut seq, &mut out, &mut expired)
        .unwrap();
    assert!(out.is_empty() && expired.is_empty());
    q.ack(first.offset, first.seq).unwrap();
    // FIFO redelivers in place until the maximum, then hands the message back as dead.
    let mut f = QueuePop::default();
    let mut p = params(&all, 0, true);
    p.max_attempts = 2;
    let (mut out, mut expired) = (Vec::new(), Vec::new());
    f.pop(&src, 0, 1, &p, &mut seq, &mut out, &mut expired)
        .unwrap();
    p.now_ms = 2000;
    out.clear();
    f.pop(&src, 0, 1, &p, &mut seq, &mut out, &mut expired)
        .unwrap();
    assert_eq!((out.len(), out[0].attempt), (1, 2));
    p.now_ms = 4000;
    out.clear();
    f.pop(&src, 0, 1, &p, &mut seq, &mut out, &mut expired)
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert!(expired[0].dead && expired[0].attempts == 2);
}
