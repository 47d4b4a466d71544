//! Shared helpers of the acceptance tests: store configurations, seeded randomness, bounded
//! waits, draining queues, copying and inspecting store directories, a guard that kills and
//! reaps child processes and a reader of their output lines, and the requests of the
//! consumption tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rocketgate_core::{
    Broker, Config, FlushMode, GroupPullRequest, Message, PopRequest, PoppedMessage, PullResult,
    PullStatus, SendReceipt, SendRequest, StoredMessage,
};

/// Default bound on a single broker call in these tests.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A seeded RNG for test `name`. The seed comes from `RG_TEST_SEED` when set (to replay a
/// failure), otherwise from the clock; it is printed either way (shown by the harness when the
/// test fails).
pub fn seeded_rng(name: &str) -> StdRng {
    let seed = std::env::var("RG_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("{name}: seed {seed} (replay with RG_TEST_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

/// A store configuration for tests: `segment_size` CommitLog segments, small ConsumeQueue and
/// index files (so that they roll too and copying a store is cheap).
pub fn config(dir: &Path, segment_size: u64, flush_mode: FlushMode) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = segment_size;
    c.store.flush_mode = flush_mode;
    c.store.consume_queue_entries_per_file = 1000;
    c.store.index_slots_per_file = 4096;
    c.store.index_entries_per_file = 16 * 1024;
    c
}

/// Opens a broker, retrying for up to 5 s while the directory lock is held by someone else.
///
/// Why the retry: the store's lock is an `flock` on `<data_dir>/lock`. When another test of this
/// process spawns a child process (the crash writer, `cargo tree`, `mount`) while a store is
/// closed and reopened, the forked child holds a copy of the lock's file descriptor until it
/// calls `exec`, and the reopen sees "in use by another process". That is a property of `flock`
/// with `fork`, not what these tests are about.
///
/// # Errors
/// The error of the last attempt.
pub fn try_open(config: &Config) -> rocketgate_core::Result<Broker> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Broker::open(config.clone()) {
            Err(rocketgate_core::Error::Store(rocketgate_core::StoreError::Io {
                ref source,
                ..
            })) if source.kind() == std::io::ErrorKind::WouldBlock
                && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Opens a broker (see [`try_open`]), failing the test with the error.
pub fn open(config: &Config) -> Broker {
    match try_open(config) {
        Ok(b) => b,
        Err(e) => panic!(
            "Broker::open({}) failed: {e}",
            config.store.data_dir.display()
        ),
    }
}

/// Awaits `fut` for at most `limit`, failing the test on timeout.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Sends, failing the test if the call takes longer than [`CALL_TIMEOUT`].
pub async fn send(
    broker: &Broker,
    req: impl Into<SendRequest>,
) -> rocketgate_core::Result<SendReceipt> {
    within(CALL_TIMEOUT, "send", broker.producer().send(req.into())).await
}

/// Sends and returns the receipt, failing the test on error or timeout.
pub async fn send_ok(broker: &Broker, req: impl Into<SendRequest>) -> SendReceipt {
    let req = req.into();
    match within(CALL_TIMEOUT, "send", broker.producer().send(req.clone())).await {
        Ok(r) => r,
        Err(e) => panic!("send to {} failed: {e}", req.message.topic),
    }
}

/// Every message of a queue, pulled in batches from offset 0. Checks that the queue starts at 0
/// and that offsets are contiguous (no silently skipped entry).
pub async fn drain(broker: &Broker, topic: &str, queue_id: u32) -> Vec<StoredMessage> {
    let mut out: Vec<StoredMessage> = Vec::new();
    let mut from = 0u64;
    loop {
        let r = within(
            CALL_TIMEOUT,
            "pull",
            broker.consumer().pull(topic, queue_id, from, 1024),
        )
        .await
        .unwrap_or_else(|e| panic!("pull {topic}/{queue_id}@{from} failed: {e}"));
        assert_eq!(r.min_offset, 0, "{topic}/{queue_id}: min offset moved");
        match r.status {
            PullStatus::Found => {
                for m in r.messages {
                    assert_eq!(
                        m.queue_offset,
                        out.len() as u64,
                        "{topic}/{queue_id}: offsets not contiguous"
                    );
                    assert_eq!((m.topic.as_str(), m.queue_id), (topic, queue_id));
                    out.push(m);
                }
                assert_eq!(r.next_offset, out.len() as u64);
            }
            PullStatus::NoNewMessage => {
                assert_eq!(
                    r.max_offset,
                    out.len() as u64,
                    "{topic}/{queue_id}: pull at {from} found nothing below max {}",
                    r.max_offset
                );
                return out;
            }
            s => panic!("{topic}/{queue_id}: unexpected pull status {s:?} at {from}"),
        }
        from = out.len() as u64;
    }
}

/// What a test sent and what the broker answered.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message as sent.
    pub message: Message,
    /// The receipt.
    pub receipt: SendReceipt,
}

/// Asserts that a stored message is exactly what was sent, where it was acknowledged.
pub fn assert_same(stored: &StoredMessage, sent: &Sent) {
    let (m, r) = (&sent.message, &sent.receipt);
    let ctx = format!(
        "message {} ({}/{}@{})",
        r.message_id,
        m.topic,
        r.queue_id,
        r.queue_offset.unwrap_or(u64::MAX)
    );
    assert_eq!(stored.message_id, r.message_id, "{ctx}: id");
    assert_eq!(stored.topic, m.topic, "{ctx}: topic");
    assert_eq!(stored.queue_id, r.queue_id, "{ctx}: queue");
    assert_eq!(
        Some(stored.queue_offset),
        r.queue_offset,
        "{ctx}: queue offset"
    );
    assert_eq!(
        stored.physical_offset, r.physical_offset,
        "{ctx}: physical offset"
    );
    assert_eq!(
        stored.store_timestamp_ms, r.store_timestamp_ms,
        "{ctx}: store time"
    );
    assert!(stored.body == m.body, "{ctx}: body differs");
    assert_eq!(stored.tag, m.tag, "{ctx}: tag");
    assert_eq!(stored.keys, m.keys, "{ctx}: keys");
    assert_eq!(stored.message_group, m.message_group, "{ctx}: group");
    assert_eq!(stored.properties, m.properties, "{ctx}: properties");
    assert_eq!(stored.born_host, m.born_host, "{ctx}: born host");
    if let Some(t) = m.born_timestamp_ms {
        assert_eq!(stored.born_timestamp_ms, t, "{ctx}: born time");
    }
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The CommitLog segment files of a store, by start offset.
pub fn segments(data_dir: &Path) -> BTreeMap<u64, PathBuf> {
    let dir = data_dir.join("commitlog");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 20 {
            if let Ok(base) = name.parse::<u64>() {
                out.insert(base, entry.path());
            }
        }
    }
    out
}

/// The bytes of every CommitLog segment file, by start offset.
pub fn commitlog_bytes(data_dir: &Path) -> BTreeMap<u64, Vec<u8>> {
    segments(data_dir)
        .into_iter()
        .map(|(base, p)| (base, std::fs::read(p).unwrap()))
        .collect()
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in rd {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

/// Creates the abort marker, as a crashed run leaves it.
pub fn leave_abort_marker(data_dir: &Path) {
    std::fs::write(data_dir.join("abort"), b"").unwrap();
}

/// A child process that is killed (SIGKILL) and reaped when the guard drops, whatever happens to
/// the test.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    /// Mutable access to the child (to take its pipes).
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// Waits up to `limit` for the child to exit on its own and reaps it; `None` (still
    /// guarded, killed on drop) if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGKILL and reaps the child; returns its exit status.
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // An error here means it already exited; `wait` reaps it either way.
        let _ = child.kill();
        child.wait().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The bound of "promptly" where the alternative is "only when a wait of 5 s or more ends" (a
/// wake-up that works takes milliseconds): generous on purpose — a debug build on a loaded
/// 2-core machine — and still well below the waits it tells apart.
pub const PROMPTLY: Duration = Duration::from_millis(2500);

/// The opt-out of tests that need a tool or a privilege: with `RG_ALLOW_SKIP=1` such a test
/// passes with a note where the need is not met; without it the test fails and says how to meet
/// it (`scripts/test` installs every tool; CI runs as root).
pub const ALLOW_SKIP: &str = "RG_ALLOW_SKIP";

/// What a test does when `what` is missing: returns (the caller skips, with a note on stdout)
/// only under [`ALLOW_SKIP`]; otherwise the test fails with `how` to provide it.
pub fn skip_missing(what: &str, how: &str) {
    if std::env::var(ALLOW_SKIP).is_ok_and(|v| v == "1") {
        println!("NOTE: skipped under {ALLOW_SKIP}=1: {what}");
        return;
    }
    panic!("{what}: {how} (or set {ALLOW_SKIP}=1 to skip such tests on purpose)");
}

/// A small tmpfs mounted on a directory for the life of the guard (unmounted on drop).
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`) on `path`; `None` (with the reason) where mounting
    /// is not permitted.
    pub fn mount(path: &Path, size: &str) -> Result<Self, String> {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Changes the size of the mounted tmpfs.
    pub fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "remount {}: {status:?}",
            self.path.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

/// A temporary directory on a memory filesystem (`/dev/shm`) when there is one, for tests of
/// recovery logic that open and close many stores: there `fsync` costs nothing, so their time
/// does not depend on how busy the disk is. Falls back to the default temporary directory.
pub fn memory_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("rg-test-").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A repetition count: the environment variable `var` when set (for longer nightly runs),
/// `default` otherwise.
pub fn count_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Lines of a child process's output, each stamped with the instant this process read it (so
/// no later than the child wrote it), read by a thread until the pipe closes.
pub struct LineReader {
    rx: std::sync::mpsc::Receiver<(std::time::Instant, String)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LineReader {
    /// Starts reading `pipe`.
    pub fn new(pipe: impl std::io::Read + Send + 'static) -> Self {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send((std::time::Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            thread: Some(thread),
        }
    }

    /// The next line, waiting at most `limit`; `None` on timeout or end of output.
    pub fn next_within(&self, limit: Duration) -> Option<(std::time::Instant, String)> {
        self.rx.recv_timeout(limit).ok()
    }

    /// Every remaining line, once the writer is gone (after the child was killed and reaped).
    pub fn finish(mut self) -> Vec<(std::time::Instant, String)> {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.rx.try_iter().collect()
    }
}

/// The wall clock in ms since the epoch, as the broker stamps messages and deadlines.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A broker configuration for the consumption tests: [`config`] with 1 MiB segments under
/// ASYNC_FLUSH, a minimum invisible time of 100 ms and no retry backoff (so an expired message
/// is visible again as soon as its invisible time passes and redelivery tests take little
/// time), everything else at its default.
pub fn consume_config(dir: &Path) -> Config {
    let mut c = config(dir, 1 << 20, FlushMode::Async);
    c.consumer.min_invisible_ms = 100;
    c.consumer.retry_backoff = "0s".into();
    c
}

/// A pop request without a filter of its own.
pub fn pop_req(
    group: &str,
    topic: &str,
    max: usize,
    invisible: Duration,
    wait: Duration,
) -> PopRequest {
    PopRequest {
        group: group.into(),
        topic: topic.into(),
        filter: None,
        max,
        invisible,
        wait,
    }
}

/// A group pull request without a filter of its own.
pub fn pull_req(
    group: &str,
    topic: &str,
    queue_id: u32,
    offset: u64,
    max: usize,
    wait: Duration,
) -> GroupPullRequest {
    GroupPullRequest {
        group: group.into(),
        topic: topic.into(),
        queue_id,
        offset,
        max,
        filter: None,
        wait,
    }
}

/// Pops, failing the test on error or if the call outlives its wait by [`CALL_TIMEOUT`].
pub async fn pop(broker: &Broker, req: PopRequest) -> Vec<PoppedMessage> {
    let what = format!("pop {}/{}", req.group, req.topic);
    match within(
        req.wait + CALL_TIMEOUT,
        &what,
        broker.consumer().pop(req.clone()),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// Pulls for a group, failing the test on error or if the call outlives its wait by
/// [`CALL_TIMEOUT`].
pub async fn pull_group(broker: &Broker, req: GroupPullRequest) -> PullResult {
    let what = format!(
        "pull_group {}/{}/{}@{}",
        req.group, req.topic, req.queue_id, req.offset
    );
    match within(
        req.wait + CALL_TIMEOUT,
        &what,
        broker.consumer().pull_group(req.clone()),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// Acknowledges, failing the test on error or timeout.
pub async fn ack(broker: &Broker, group: &str, handle: &str) {
    match within(CALL_TIMEOUT, "ack", broker.consumer().ack(group, handle)).await {
        Ok(()) => {}
        Err(e) => panic!("ack by {group} failed: {e}"),
    }
}

/// Every message of every queue `0..queues` of a topic (see [`drain`]), queue by queue.
pub async fn drain_topic(broker: &Broker, topic: &str, queues: u32) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    for q in 0..queues {
        out.extend(drain(broker, topic, q).await);
    }
    out
}

/// Polls `cond` every `every` until it holds, failing the test after `limit`. Returns how long
/// it took.
pub async fn eventually(
    limit: Duration,
    every: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(every).await;
    }
}

/// `min / p50 / p90 / max` of some measured figures (sorted in place), for the test output.
pub fn summary(values: &mut [i64]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        "min {} / p50 {} / p90 {} / max {} (n = {})",
        values[0],
        at(0.5),
        at(0.9),
        values[values.len() - 1],
        values.len()
    )
}

/// Starts a child process of this crate with `args`, stdout piped into a [`LineReader`],
/// stderr inherited; killed and reaped when the guard drops.
pub fn spawn_child(program: &str, args: &[String]) -> (ChildGuard, LineReader) {
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut guard = ChildGuard::new(child);
    let reader = LineReader::new(guard.child().stdout.take().unwrap());
    (guard, reader)
}
