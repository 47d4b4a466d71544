//! Criterion micro-benchmarks of the store's hot pure paths: the CommitLog record codec
//! (encode and verify-parse for 128 B, 1 KiB and 4 KiB bodies) and ConsumeQueue lookups (`get`
//! and `read(from, 32)`) on a queue of one million entries.
//!
//! Owns: nothing but a temporary directory for the ConsumeQueue, deleted at the end. End-to-end
//! throughput (the Broker, flushing, the disk) is measured by `rocketgate bench store`, not here.
//!
//! Invariants: inputs are built once outside the timed closures; lookups walk the queue with a
//! fixed xorshift sequence so every run measures the same access pattern. No unwrap: setup
//! errors end the run through `main`'s `Result`.
//!
//! Run: `cargo bench -p rocketgate-core --features bench-internals --bench store` (add `-- --measurement-time 2` for a
//! quicker pass). Single-threaded.

use std::collections::BTreeMap;
use std::error::Error;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use rocketgate_core::bench_internals::consume_queue::{tag_hash, ConsumeQueue, CqEntry};
use rocketgate_core::bench_internals::record::{RecordDraft, RecordView, StoreFields};

const SIZES: [usize; 3] = [128, 1024, 4096];
const QUEUE_ENTRIES: u64 = 1_000_000;
/// Entries per ConsumeQueue file: the store's default, so the queue spans four files.
const ENTRIES_PER_FILE: u64 = 300_000;

type Res<T> = Result<T, Box<dyn Error>>;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn codec(c: &mut Criterion) -> Res<()> {
    let keys = vec!["order-42".to_owned()];
    let mut properties = BTreeMap::new();
    properties.insert("trace".to_owned(), "abc123".to_owned());
    let fields = StoreFields {
        queue_id: 3,
        queue_offset: 1_000,
        physical_offset: 0,
        store_timestamp: 1_700_000_000_000,
        raft_term: 0,
        raft_index: 0,
    };
    let mut group = c.benchmark_group("record");
    for size in SIZES {
        let mut seed = 0x9E37_79B9_7F4A_7C15 ^ size as u64;
        let body: Vec<u8> = (0..size).map(|_| xorshift(&mut seed) as u8).collect();
        let draft = RecordDraft {
            topic: "bench",
            message_id: "01C0A8000100002A0000000000000001",
            tag: "TagA",
            message_group: "",
            born_host: "10.0.0.1:5000",
            keys: &keys,
            properties: &properties,
            body: &body,
            born_timestamp: 1_700_000_000_000,
            reconsume_times: 0,
            flags: 0,
            prepared_offset: 0,
        };
        let mut buf = Vec::with_capacity(size + 256);
        draft.encode(&fields, &mut buf)?;
        let encoded = buf.clone();
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(BenchmarkId::new("encode", size), |b| {
            b.iter(|| black_box(draft.encode(black_box(&fields), &mut buf).is_ok()));
        });
        RecordView::parse(&encoded, 1 << 30, Some(0))?;
        group.bench_function(BenchmarkId::new("parse", size), |b| {
            b.iter(|| {
                let v = RecordView::parse(black_box(&encoded), 1 << 30, Some(0));
                black_box(v.map(|v| v.body.len()).unwrap_or(0))
            });
        });
    }
    group.finish();
    Ok(())
}

fn consume_queue(c: &mut Criterion) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let queue = ConsumeQueue::open(dir.path(), ENTRIES_PER_FILE)?;
    let tag = tag_hash("TagA");
    for i in 0..QUEUE_ENTRIES {
        queue.put(
            i,
            CqEntry {
                physical_offset: i * 300,
                size: 300,
                tag_hash: tag,
            },
        )?;
    }
    let mut group = c.benchmark_group("consume_queue_1m");
    group.throughput(Throughput::Elements(1));
    let mut seed = 0x2545_F491_4F6C_DD1D;
    group.bench_function("get_random", |b| {
        b.iter(|| {
            let at = xorshift(&mut seed) % QUEUE_ENTRIES;
            black_box(queue.get(black_box(at)))
        });
    });
    let mut next = 0;
    group.bench_function("get_sequential", |b| {
        b.iter(|| {
            next = (next + 1) % QUEUE_ENTRIES;
            black_box(queue.get(black_box(next)))
        });
    });
    group.throughput(Throughput::Elements(32));
    group.bench_function("read_32_random", |b| {
        b.iter(|| {
            let at = xorshift(&mut seed) % (QUEUE_ENTRIES - 32);
            black_box(queue.read(black_box(at), 32).len())
        });
    });
    group.finish();
    drop(queue);
    dir.close()?;
    Ok(())
}

fn main() -> Res<()> {
    let mut c = Criterion::default().configure_from_args();
    codec(&mut c)?;
    consume_queue(&mut c)?;
    c.final_summary();
    Ok(())
}
