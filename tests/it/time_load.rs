//! Timed messages at scale: 100,000 messages due over a 10 s window are all delivered, each
//! exactly once, never early, and the broker's memory stays bounded.
//!
//! The broker runs in a child process (`rg-time-child load`), so that its peak resident set
//! (`VmHWM` from its `/proc/self/status`) is the broker's alone and not that of this test
//! binary, whose other tests run in parallel. The child sends the messages from four tasks,
//! each timed at `start + 4 s + h(seed, seq) mod 10 s` (the 4 s lead lets sending finish before the
//! first is due; one sent after its due time is delivered at once and counted as `past`), while a
//! consumer pops them with long polling (batches of 256, `ack_batch`) and prints one line per
//! delivery with when the timer stored it in its topic and when it was popped. It stops 500 ms
//! after the last seq arrived.
//!
//! Pass criteria: every seq delivered exactly once (no loss, no duplicate, nothing unexpected);
//! no delivery stored before it was due; every one popped at most [`MAX_LATENESS_MS`] after it was
//! due (printed: p50/p90/max of the lateness, stored and popped); fewer than 1% sent past their
//! due time; peak RSS below [`MAX_RSS_KB`] (1 GiB, a generous bound: the schedule keeps 32 bytes
//! per pending message, never bodies; the real figure is printed).
//!
//! Size: the whole run takes about 15 s in a debug build (sending 100,000 takes 1–2 s, peak RSS
//! ~60 MiB), so the full 100,000 run by default; `RG_TIME_LOAD_MESSAGES` changes the count (e.g. 20000 for a
//! quick look, 1000000 for a soak with a longer lead set by `RG_TIME_LOAD_LEAD_MS`).

use std::time::Duration;

use rand::Rng;
use rocketgate_tests::time::Line;

use crate::support;

/// Most a message may be popped after it was due.
const MAX_LATENESS_MS: i64 = 2000;
/// Peak resident set bound of the broker process.
const MAX_RSS_KB: u64 = 1 << 20;
/// Window the due times are spread over.
const SPREAD_MS: u64 = 10_000;

#[test]
fn time_load_100k_timed_messages_each_delivered_once_with_bounded_memory() {
    let n = support::count_from_env("RG_TIME_LOAD_MESSAGES", 100_000);
    let lead_ms = support::count_from_env("RG_TIME_LOAD_LEAD_MS", 4000);
    let seed: u64 = support::seeded_rng("time_load").gen();
    let dir = support::memory_tempdir();
    let (guard, reader) = support::spawn_child(
        env!("CARGO_BIN_EXE_rg-time-child"),
        &[
            "load".into(),
            dir.path().display().to_string(),
            n.to_string(),
            lead_ms.to_string(),
            SPREAD_MS.to_string(),
            seed.to_string(),
        ],
    );
    let mut delivered = vec![0u32; n as usize];
    let mut stored_late = Vec::with_capacity(n as usize);
    let mut popped_late = Vec::with_capacity(n as usize);
    let mut memory = Vec::new();
    let mut sent = None;
    let mut errors = Vec::new();
    let mut early = Vec::new();
    let limit = Duration::from_millis(lead_ms + SPREAD_MS) + Duration::from_secs(90);
    let started = std::time::Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        let Some((_, line)) = reader.next_within(left) else {
            panic!(
                "the load child ended or stalled without DONE (after {:?})",
                started.elapsed()
            );
        };
        match line.parse::<Line>() {
            Ok(Line::Done) => break,
            Ok(Line::Ready) => {}
            Ok(Line::Got {
                seq,
                deliver_at_ms,
                stored_ms,
                popped_ms,
            }) => {
                assert!(seq < n, "unexpected seq {seq}");
                delivered[seq as usize] += 1;
                if stored_ms < deliver_at_ms {
                    early.push((seq, deliver_at_ms - stored_ms));
                }
                stored_late.push(stored_ms - deliver_at_ms);
                popped_late.push(popped_ms - deliver_at_ms);
            }
            Ok(Line::Sent {
                n: s,
                past,
                took_ms,
            }) => sent = Some((s, past, took_ms)),
            Ok(Line::Memory { at, hwm_kb, rss_kb }) => memory.push((at, hwm_kb, rss_kb)),
            _ => errors.push(line),
        }
    }
    let took = started.elapsed();
    let mut guard = guard;
    let status = guard
        .wait_exit(Duration::from_secs(20))
        .expect("the load child did not exit after DONE");
    assert!(
        status.success(),
        "the load child exited with {status:?}; it printed {errors:?}"
    );
    assert!(errors.is_empty(), "the load child reported: {errors:?}");
    let (sent_n, past, send_ms) = sent.expect("no SENT line");
    assert_eq!(sent_n, n);

    let lost: Vec<usize> = (0..n as usize).filter(|&s| delivered[s] == 0).collect();
    let duplicated: Vec<usize> = (0..n as usize).filter(|&s| delivered[s] > 1).collect();
    let worst_popped = popped_late.iter().copied().max().unwrap_or(0);
    println!(
        "time_load: {n} timed messages over {SPREAD_MS} ms (lead {lead_ms} ms): sent in {send_ms} \
         ms ({past} already due when sent), whole run {took:?}"
    );
    println!(
        "time_load: lateness when stored in the topic (ms): {}",
        support::summary(&mut stored_late)
    );
    println!(
        "time_load: lateness when popped (ms): {}",
        support::summary(&mut popped_late)
    );
    for (at, hwm, rss) in &memory {
        println!(
            "time_load: broker process memory at {at}: VmHWM {} MiB, VmRSS {} MiB",
            hwm / 1024,
            rss / 1024
        );
    }
    assert!(
        lost.is_empty(),
        "LOST {} timed messages, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        duplicated.is_empty(),
        "{} timed messages delivered more than once, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(20)]
    );
    assert!(
        early.is_empty(),
        "{} delivered before due (seq, ms early): {:?}",
        early.len(),
        &early[..early.len().min(20)]
    );
    assert!(
        worst_popped <= MAX_LATENESS_MS,
        "a timed message was popped {worst_popped} ms after it was due"
    );
    assert!(
        past * 100 < n,
        "{past} of {n} messages were already due when sent: sending is too slow for the lead time \
         (raise RG_TIME_LOAD_LEAD_MS)"
    );
    let peak = memory.iter().map(|(_, hwm, _)| *hwm).max().unwrap_or(0);
    assert!(peak > 0, "no memory figures from the child: {memory:?}");
    assert!(
        peak < MAX_RSS_KB,
        "peak RSS of the broker process {} MiB",
        peak / 1024
    );
}
