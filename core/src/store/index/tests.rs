use super::*;
use std::io::{Seek, SeekFrom, Write};

const T0: i64 = 1_700_000_000_000;
const ALL: (i64, i64) = (i64::MIN, i64::MAX);
type Model = Vec<(String, u64, i64)>;

fn open(dir: &Path, slots: u32, entries: u32, durable_phy: u64) -> IndexStore {
    let config = IndexConfig {
        slots_per_file: slots,
        entries_per_file: entries,
    };
    IndexStore::open(dir, config, durable_phy).unwrap()
}

/// Puts entry i as key `k{i % keys}`, phy `i * 100`, store time `T0 + i` seconds.
fn fill(store: &IndexStore, range: std::ops::Range<u64>, keys: u64, model: &mut Model) {
    for i in range {
        let (key, ts) = (format!("k{}", i % keys), T0 + i as i64 * 1000);
        store.put(key.as_bytes(), i * 100, ts).unwrap();
        model.push((key, i * 100, ts));
    }
}

fn expected(model: &Model, key: &str, (begin, end): (i64, i64)) -> Vec<u64> {
    let hits = model
        .iter()
        .rev()
        .filter(|(k, _, t)| k == key && (begin..=end).contains(t));
    hits.map(|(_, phy, _)| *phy).collect()
}

/// Every key `k0..k{keys}` over all time returns exactly the model's offsets, newest first.
fn check(store: &IndexStore, model: &Model, keys: u64) {
    for key in (0..keys).map(|k| format!("k{k}")) {
        let got = store.query(key.as_bytes(), ALL.0, ALL.1, usize::MAX);
        assert_eq!(got, expected(model, &key, ALL), "key {key}");
    }
}

fn poke(path: &Path, pos: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(bytes).unwrap();
}

fn entry_pos(slots: u32, n: u32) -> u64 {
    (HEADER_LEN + slots as usize * SLOT_LEN + (n as usize - 1) * ENTRY_LEN) as u64
}

fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn roundtrip_with_collisions_time_range_and_max() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 7, 10_000, u64::MAX);
    let mut model = Model::new();
    fill(&store, 0..500, 50, &mut model);
    for key in ["k3", "k4"] {
        store.put(key.as_bytes(), 50_000, T0 + 500_000).unwrap(); // two keys, one record
        model.push((key.into(), 50_000, T0 + 500_000));
    }
    assert_eq!(store.entry_count(), 502);
    check(&store, &model, 50);
    let all = store.query(b"k3", ALL.0, ALL.1, usize::MAX);
    assert_eq!((all.len(), all[0], all[10]), (11, 50_000, 300));
    assert_eq!(store.query(b"k3", ALL.0, ALL.1, 3), all[..3]);
    let (b, e) = (T0 + 100_000, T0 + 300_000);
    assert_eq!(
        store.query(b"k3", b, e, 100),
        [25_300, 20_300, 15_300, 10_300]
    );
    assert!(store.query(b"nope", ALL.0, ALL.1, 100).is_empty());
    assert!(store.query(b"k3", e, b, 100).is_empty());
    assert!(store.query(b"k3", b, e, 0).is_empty());
    assert!(store.query(b"k3", T0 + 501_000, ALL.1, 100).is_empty());
    store.put(b"late", 10, T0).unwrap(); // below the last phy: ignored
    assert!(store.query(b"late", ALL.0, ALL.1, 10).is_empty());
    store.put(b"k3", 50_000, T0 + 500_000).unwrap(); // replayed key: no duplicate candidate
    assert_eq!(store.query(b"k3", ALL.0, ALL.1, usize::MAX), all);
}

#[test]
fn rolls_across_files_and_queries_span_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 5, 16, u64::MAX);
    let mut model = Model::new();
    fill(&store, 0..100, 3, &mut model);
    assert_eq!((file_count(dir.path()), store.entry_count()), (7, 100));
    check(&store, &model, 3);
    let range = (T0 + 20_000, T0 + 70_000);
    let want = expected(&model, "k1", range);
    assert_eq!(store.query(b"k1", range.0, range.1, 1000), want);
    assert_eq!(store.query(b"k1", range.0, range.1, 4), want[..4]);
    assert_eq!(store.flush().unwrap(), 99 * 100 + 1);
}

#[test]
fn reopen_keeps_durable_entries_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let store = open(dir.path(), 5, 16, u64::MAX);
    fill(&store, 0..100, 4, &mut model);
    let durable = store.flush().unwrap();
    drop(store);
    let store = open(dir.path(), 5, 16, durable);
    assert_eq!(store.entry_count(), 100);
    check(&store, &model, 4);
    assert_eq!(store.flush().unwrap(), durable);
    drop(store);

    // Cut inside the fourth file: entries with phy >= 5_000 and files 5..=7 go.
    let store = open(dir.path(), 5, 16, 5_000);
    model.truncate(50);
    assert_eq!((store.entry_count(), file_count(dir.path())), (50, 4));
    check(&store, &model, 4);
    assert_eq!(store.flush().unwrap(), 4_901);
    fill(&store, 50..90, 4, &mut model);
    store.put(b"fresh", 9_000, T0 + 90_000).unwrap();
    check(&store, &model, 4);
    assert_eq!(store.query(b"fresh", T0, ALL.1, 5), [9_000]);
    let durable = store.flush().unwrap();
    drop(store);
    let store = open(dir.path(), 5, 16, durable);
    check(&store, &model, 4);
    assert_eq!(store.entry_count(), 91);
    drop(store);
    let store = open(dir.path(), 5, 16, 0);
    assert_eq!((store.entry_count(), file_count(dir.path())), (0, 0));
}

#[test]
fn torn_slots_and_entries_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let store = open(dir.path(), 64, 1000, u64::MAX);
    fill(&store, 0..200, 9, &mut model);
    store.flush().unwrap();
    drop(store);
    let path = file_path(dir.path(), 1);
    let garbage: Vec<u8> = (0..256u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    poke(&path, HEADER_LEN as u64, &garbage);
    poke(&path, entry_pos(64, 150), &[0; ENTRY_LEN * 10]);
    poke(&path, entry_pos(64, 170), &[0xAB; ENTRY_LEN * 5]);
    let store = open(dir.path(), 64, 1000, 120 * 100);
    model.truncate(120);
    assert_eq!(store.entry_count(), 120);
    check(&store, &model, 9);
    fill(&store, 120..130, 9, &mut model);
    check(&store, &model, 9);
    drop(store);

    // A zeroed entry before the durable offset ends the valid prefix.
    poke(&path, entry_pos(64, 100), &[0; ENTRY_LEN]);
    poke(&path, HEADER_LEN as u64, &garbage);
    let store = open(dir.path(), 64, 1000, u64::MAX);
    model.truncate(99);
    assert_eq!(store.entry_count(), 99);
    check(&store, &model, 9);
}

#[test]
fn corrupt_sealed_files_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let store = open(dir.path(), 4, 16, u64::MAX);
    fill(&store, 0..40, 3, &mut model);
    store.flush().unwrap();
    drop(store);
    // File 1: every slot points past the capacity. File 2: every prev points at itself.
    poke(&file_path(dir.path(), 1), HEADER_LEN as u64, &[0xFF; 16]);
    for n in 1..=16u32 {
        poke(
            &file_path(dir.path(), 2),
            entry_pos(4, n) + 16,
            &n.to_le_bytes(),
        );
    }
    let store = open(dir.path(), 4, 16, u64::MAX);
    for key in ["k0", "k1", "k2"] {
        let got = store.query(key.as_bytes(), ALL.0, ALL.1, usize::MAX);
        let all = expected(&model, key, ALL);
        assert!(got.iter().all(|p| all.contains(p) && *p >= 1600), "{got:?}");
        let newest = (T0 + 32_000, ALL.1);
        let got = store.query(key.as_bytes(), newest.0, newest.1, 100);
        assert_eq!(got, expected(&model, key, newest));
    }
    // A file with a foreign magic is refused, not trusted.
    poke(&file_path(dir.path(), 1), 0, b"JUNK");
    let config = IndexConfig {
        slots_per_file: 4,
        entries_per_file: 16,
    };
    let err = IndexStore::open(dir.path(), config, u64::MAX).unwrap_err();
    assert!(matches!(err, Error::Corrupted { offset: 0, .. }), "{err}");
}

#[test]
fn delete_below_removes_old_sealed_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 5, 16, u64::MAX);
    let mut model = Model::new();
    fill(&store, 0..64, 2, &mut model);
    assert_eq!(file_count(dir.path()), 4);
    assert_eq!(store.delete_below(1_500).unwrap(), 0); // file 1 ends at 1_500
    assert_eq!(store.delete_below(1_501).unwrap(), 1);
    assert_eq!(store.entry_count(), 48);
    assert_eq!(store.delete_below(u64::MAX).unwrap(), 2); // never the active file
    assert_eq!((store.entry_count(), file_count(dir.path())), (16, 1));
    model.drain(..48);
    check(&store, &model, 2);
    let durable = store.flush().unwrap();
    drop(store);
    let store = open(dir.path(), 5, 16, durable);
    check(&store, &model, 2);
    fill(&store, 64..70, 2, &mut model);
    check(&store, &model, 2);
    assert!(file_path(dir.path(), 5).exists());
}

#[test]
fn concurrent_readers_see_consistent_candidates() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<IndexStore>();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), 3, 64, u64::MAX));
    let reader = |store: Arc<IndexStore>| {
        std::thread::spawn(move || {
            for round in 0..300u64 {
                let key = format!("k{}", round % 5);
                let got = store.query(key.as_bytes(), ALL.0, ALL.1, usize::MAX);
                assert!(got.windows(2).all(|w| w[0] > w[1]));
                assert!(got.iter().all(|p| (p / 100) % 5 == round % 5));
            }
        })
    };
    let readers = [reader(Arc::clone(&store)), reader(Arc::clone(&store))];
    let mut model = Model::new();
    fill(&store, 0..2000, 5, &mut model);
    readers.into_iter().for_each(|r| r.join().unwrap());
    check(&store, &model, 5);
}
