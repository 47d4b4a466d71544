//! Simulated power loss for the store's tests (T1c and T2b of RELIABILITY.md, and the machinery
//! for T3c): a recorder of every durability event of a store directory, and crash images — the
//! directory as a power cut at a chosen moment could leave it.
//!
//! Owns: the registry of recorded directories and, per directory, the filesystem model
//! (`model.rs`, whose module doc states the durability rules), the event count and the crash
//! plan. Compiled only in core's unit tests; the store reports to it through
//! [`super::disk::recorded`], which is a bare call in every other build.
//!
//! How a crash is taken: every filesystem call of the store under a recorded directory runs
//! under the recorder's lock (`around`), so no sync, create, rename or unlink is half-recorded.
//! Before each call the plan may decide (seeded RNG) to crash *there*: the model is checked
//! against the real tree (a file the store wrote behind the recorder's back is reported), the
//! witness (what the test had acknowledged so far) is read, and an image is written: every
//! name and byte that was made durable, and random choices for everything else. Pages being
//! written concurrently by other threads are in doubt anyway, so reading them mid-write is
//! one more possible power cut. [`Recording::crash_now`] takes a crash point from the test
//! itself.
//!
//! Must not touch: the store's files (it only reads them) and any directory not registered.
//!
//! Concurrency: one `Mutex` per recorded directory, held around the recorded call; the registry
//! is a global `RwLock` read on every call of `disk` (tests only).

mod model;
pub(super) mod t1c;
mod t2b;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{const_rwlock, Mutex, RwLock};
use rand::rngs::StdRng;
use rand::Rng;

pub(crate) use self::model::ImageStats;
use self::model::Model;

/// A filesystem call that changes what survives a power cut.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event<'a> {
    /// A file opened with create: a new name if it did not exist.
    Create(&'a Path),
    /// A directory created.
    Mkdir(&'a Path),
    /// A rename within one directory, replacing the target.
    Rename(&'a Path, &'a Path),
    /// A file unlinked.
    Remove(&'a Path),
    /// A directory removed with its contents.
    RemoveDirAll(&'a Path),
    /// An msync of `[pos, pos + len)` of a mapped file.
    SyncRange(&'a Path, u64, u64),
    /// An fsync of a file.
    SyncFile(&'a Path),
    /// An fsync of a directory.
    SyncDir(&'a Path),
}

impl Event<'_> {
    fn path(&self) -> &Path {
        match *self {
            Self::Create(p)
            | Self::Mkdir(p)
            | Self::Rename(p, _)
            | Self::Remove(p)
            | Self::RemoveDirAll(p)
            | Self::SyncRange(p, _, _)
            | Self::SyncFile(p)
            | Self::SyncDir(p) => p,
        }
    }

    fn describe(&self, root: &Path) -> String {
        let rel = |p: &Path| match p.strip_prefix(root) {
            Ok(r) if r.as_os_str().is_empty() => ".".to_owned(),
            Ok(r) => r.display().to_string(),
            Err(_) => p.display().to_string(),
        };
        match *self {
            Self::Create(p) => format!("create {}", rel(p)),
            Self::Mkdir(p) => format!("mkdir {}", rel(p)),
            Self::Rename(a, b) => format!("rename {} -> {}", rel(a), rel(b)),
            Self::Remove(p) => format!("unlink {}", rel(p)),
            Self::RemoveDirAll(p) => format!("rm -r {}", rel(p)),
            Self::SyncRange(p, a, n) => format!("msync {} [{a}, {})", rel(p), a + n),
            Self::SyncFile(p) => format!("fsync {}", rel(p)),
            Self::SyncDir(p) => format!("fsync dir {}", rel(p)),
        }
    }
}

static RECORDERS: RwLock<Vec<Arc<Recorder>>> = const_rwlock(Vec::new());

/// Runs `op`, the filesystem call described by `event`; if its path is in a recorded directory,
/// under that recorder's lock, with a possible crash point before it and the model updated
/// after it succeeded.
pub(crate) fn around<T>(event: Event<'_>, op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let recorder = RECORDERS
        .read()
        .iter()
        .find(|r| event.path().starts_with(&r.root))
        .cloned();
    let Some(recorder) = recorder else {
        return op();
    };
    let mut state = recorder.state.lock();
    state.events += 1;
    state.maybe_crash(&recorder.root, || event.describe(&recorder.root));
    state.model.prepare(&event);
    let result = op();
    if result.is_ok() {
        if let Err(problem) = state.model.apply(&event) {
            state.problems.push(problem);
        }
    }
    result
}

struct Recorder {
    root: PathBuf,
    state: Mutex<State>,
}

struct State {
    model: Model,
    events: u64,
    plan: Option<CrashPlan>,
    taken: Vec<CrashPoint>,
    problems: Vec<String>,
}

/// When and where to take crash images.
pub(crate) struct CrashPlan {
    /// Draws the crash points and every choice inside an image.
    pub rng: StdRng,
    /// Chance that a given event is a crash point.
    pub probability: f64,
    /// Most crash points to take.
    pub max: usize,
    /// Read at each crash point, e.g. how many appends were acknowledged.
    pub witness: Box<dyn Fn() -> usize + Send>,
    /// Images are written to `<out>/<n>`.
    pub out: PathBuf,
    /// How images make the doubtful choices.
    pub kind: ImageKind,
}

/// How a crash image makes its doubtful choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageKind {
    /// Each drawn from the plan's RNG (see `model.rs`).
    Random,
    /// Nothing unsynced survives: no name operation since its directory's last fsync, no
    /// unsynced size or byte. Deterministic.
    Pessimistic,
    /// Every name operation and size change survives (as if the filesystem's journal had just
    /// committed), no unsynced byte does: unsynced bytes read as they were at the last sync, or
    /// zero. Deterministic.
    MetadataOnly,
}

/// One crash image and what was known when it was taken.
#[derive(Debug)]
pub(crate) struct CrashPoint {
    /// The image directory.
    pub image: PathBuf,
    /// The witness read at the crash.
    pub witness: usize,
    /// Number of the event the crash came before (1-based; events after the last for
    /// [`Recording::crash_now`]).
    pub event: u64,
    /// The event the crash came before.
    pub before: String,
    /// When the crash was taken.
    pub at: Instant,
    /// The durable content of each CommitLog segment file (by name) at the crash: what every
    /// image of this moment keeps for sure.
    pub durable_segments: BTreeMap<String, Vec<u8>>,
    /// What the image left in doubt.
    pub stats: ImageStats,
}

impl State {
    fn maybe_crash(&mut self, root: &Path, before: impl FnOnce() -> String) {
        let Some(plan) = &mut self.plan else { return };
        if self.taken.len() >= plan.max || !plan.rng.gen_bool(plan.probability) {
            return;
        }
        self.crash(root, before());
    }

    fn crash(&mut self, root: &Path, before: String) {
        let Some(plan) = &mut self.plan else { return };
        if self.taken.len() >= plan.max {
            return;
        }
        for m in self.model.mismatches() {
            self.problems.push(format!("before {before}: {m}"));
        }
        let witness = (plan.witness)();
        let at = Instant::now();
        let image = plan.out.join(format!("{:04}", self.taken.len()));
        let result = std::fs::create_dir_all(&image)
            .and_then(|()| self.model.materialize(&image, &mut plan.rng, plan.kind));
        match result {
            Ok(stats) => self.taken.push(CrashPoint {
                image,
                witness,
                event: self.events,
                before,
                at,
                durable_segments: self.model.durable_in("commitlog"),
                stats,
            }),
            Err(e) => self.problems.push(format!(
                "crash image of {} into {}: {e}",
                root.display(),
                image.display()
            )),
        }
    }
}

/// A recorded directory; recording stops when this is dropped.
pub(crate) struct Recording {
    recorder: Arc<Recorder>,
}

impl Recording {
    /// Starts recording `root` (an existing directory, taken as durable as it is now).
    ///
    /// # Errors
    /// The errors of reading the tree.
    pub(crate) fn start(root: &Path) -> io::Result<Self> {
        let recorder = Arc::new(Recorder {
            root: root.to_path_buf(),
            state: Mutex::new(State {
                model: Model::adopt(root)?,
                events: 0,
                plan: None,
                taken: Vec::new(),
                problems: Vec::new(),
            }),
        });
        let mut all = RECORDERS.write();
        assert!(
            !all.iter()
                .any(|r| r.root.starts_with(root) || root.starts_with(&r.root)),
            "{} is already recorded",
            root.display()
        );
        all.push(recorder.clone());
        Ok(Self { recorder })
    }

    /// Takes crash points from now on as `plan` says.
    pub(crate) fn plan(&self, plan: CrashPlan) {
        self.recorder.state.lock().plan = Some(plan);
    }

    /// Takes a crash point now (if the plan has room left).
    pub(crate) fn crash_now(&self, label: &str) {
        let mut state = self.recorder.state.lock();
        state.crash(&self.recorder.root, label.to_owned());
    }

    /// Events recorded so far.
    pub(crate) fn events(&self) -> u64 {
        self.recorder.state.lock().events
    }

    /// Ends the plan; returns the crash points taken and the problems found (calls the
    /// recorder could not model, files written behind its back).
    pub(crate) fn finish(&self) -> (Vec<CrashPoint>, Vec<String>) {
        let mut state = self.recorder.state.lock();
        state.plan = None;
        (
            std::mem::take(&mut state.taken),
            std::mem::take(&mut state.problems),
        )
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDERS
            .write()
            .retain(|r| !Arc::ptr_eq(r, &self.recorder));
    }
}

/// The recorder's own rules, checked on single files and names.
mod tests {
    use std::io::Write;

    use rand::SeedableRng;

    use super::*;
    use crate::store::disk;

    fn plan(out: &Path, kind: ImageKind, seed: u64) -> CrashPlan {
        CrashPlan {
            rng: StdRng::seed_from_u64(seed),
            probability: 0.0,
            max: usize::MAX,
            witness: Box::new(|| 0),
            out: out.to_path_buf(),
            kind,
        }
    }

    /// Takes one image of `kind` now and returns its directory.
    fn image(recording: &Recording, out: &Path, kind: ImageKind, seed: u64) -> PathBuf {
        recording.plan(plan(out, kind, seed));
        recording.crash_now("now");
        let (mut points, problems) = recording.finish();
        assert!(problems.is_empty(), "{problems:?}");
        points.pop().unwrap().image
    }

    #[test]
    fn synced_bytes_survive_every_image_and_unsynced_ones_may_not() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let recording = Recording::start(&root).unwrap();
        let path = root.join("f");
        let mut f = disk::create_truncated(&path).unwrap();
        f.write_all(b"hello").unwrap();
        disk::sync_file(&f, &path).unwrap();
        disk::sync_dir(&root).unwrap();
        f.write_all(&[b'!'; 9000]).unwrap();
        let pessimistic = image(&recording, &tmp.path().join("p"), ImageKind::Pessimistic, 0);
        assert_eq!(std::fs::read(pessimistic.join("f")).unwrap(), b"hello");
        let metadata = image(
            &recording,
            &tmp.path().join("m"),
            ImageKind::MetadataOnly,
            0,
        );
        let mut expected = b"hello".to_vec();
        expected.resize(9005, 0);
        assert_eq!(std::fs::read(metadata.join("f")).unwrap(), expected);
        let (mut kept, mut lost) = (0, 0);
        for seed in 0..40 {
            let out = tmp.path().join(format!("r{seed}"));
            let bytes = std::fs::read(image(&recording, &out, ImageKind::Random, seed).join("f"));
            let bytes = bytes.unwrap();
            assert!(bytes.starts_with(b"hello"), "synced bytes lost");
            // Unsynced bytes come back in some images, not all of them in any.
            kept += bytes[5..].iter().filter(|b| **b == b'!').count();
            lost += usize::from(bytes.len() < 9005 || bytes[5..].contains(&0));
        }
        assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
    }

    #[test]
    fn a_rename_is_durable_only_with_its_directory_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let recording = Recording::start(&root).unwrap();
        let (a, b) = (root.join("a"), root.join("b"));
        let f = disk::create_truncated(&a).unwrap();
        disk::sync_file(&f, &a).unwrap();
        disk::sync_dir(&root).unwrap();
        disk::rename(&a, &b).unwrap();
        let names = |dir: PathBuf| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let out = tmp.path().join("1");
        assert_eq!(
            names(image(&recording, &out, ImageKind::Pessimistic, 0)),
            ["a"]
        );
        let out = tmp.path().join("2");
        assert_eq!(
            names(image(&recording, &out, ImageKind::MetadataOnly, 0)),
            ["b"]
        );
        disk::sync_dir(&root).unwrap();
        let out = tmp.path().join("3");
        assert_eq!(
            names(image(&recording, &out, ImageKind::Pessimistic, 0)),
            ["b"]
        );
    }

    #[test]
    fn a_file_written_behind_the_recorders_back_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let recording = Recording::start(&root).unwrap();
        std::fs::write(root.join("sneaky"), b"x").unwrap();
        recording.plan(plan(&tmp.path().join("i"), ImageKind::Random, 0));
        recording.crash_now("now");
        let (_, problems) = recording.finish();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("unrecorded") && p.contains("sneaky")),
            "{problems:?}"
        );
    }
}
