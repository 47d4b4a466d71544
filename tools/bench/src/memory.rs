//! Memory of the bench process itself, from `/proc/self/status`: the peak resident set
//! (`VmHWM`) and a sampler of the anonymous resident set (`RssAnon`, the heap) and of the
//! broker's pending schedule while a case runs.
//!
//! Invariants: figures are in KiB as the kernel prints them, 0 where `/proc` cannot be read.
//! `VmHWM` counts the file-backed pages of the mapped CommitLog too (a prefaulted 1 GiB
//! segment is 1 GiB of it), which is why the sampler tracks `RssAnon` separately.
//!
//! Who calls it: [`super::delay`]. Concurrency: the sampler is one task on the caller's runtime.
//!
//! Must not change anything: it only reads `/proc/self/status`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use rocketgate_core::Broker;
use serde::Serialize;
use tokio::task::JoinHandle;

/// Memory of this process around a case, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// `VmHWM` before the case.
    pub hwm_before_kib: u64,
    /// `VmHWM` after the case.
    pub hwm_after_kib: u64,
    /// `RssAnon` before the case.
    pub anon_before_kib: u64,
    /// Largest `RssAnon` sampled during the case.
    pub anon_peak_kib: u64,
    /// Largest number of pending scheduled messages sampled.
    pub pending_peak: u64,
}

/// `(VmHWM, RssAnon)` of this process in KiB.
pub fn status() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("RssAnon:"))
}

/// Samples `RssAnon` and the broker's pending schedule every 100 ms.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(u64, u64)>,
    before: (u64, u64),
}

impl Sampler {
    /// Starts sampling; `before` is [`status`] from before the case.
    pub fn start(rt: &tokio::runtime::Runtime, broker: Broker, before: (u64, u64)) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = rt.spawn(async move {
            let (mut anon, mut pending) = (0, 0);
            while !flag.load(Ordering::Acquire) {
                anon = status().1.max(anon);
                pending = (broker.scheduler().pending() as u64).max(pending);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (anon, pending)
        });
        Self { stop, task, before }
    }

    /// Stops sampling and takes the "after" figures.
    ///
    /// # Errors
    /// The sampling task panicked.
    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Result<Memory> {
        self.stop.store(true, Ordering::Release);
        let (anon_peak, pending_peak) = rt.block_on(self.task)?;
        Ok(Memory {
            hwm_before_kib: self.before.0,
            hwm_after_kib: status().0,
            anon_before_kib: self.before.1,
            anon_peak_kib: anon_peak,
            pending_peak,
        })
    }
}

impl Memory {
    /// Prints one line (after an empty one).
    pub fn print(&self) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!();
        println!(
            "memory: VmHWM {:.0} MiB before, {:.0} MiB after (mapped CommitLog pages included); \
             RssAnon {:.1} MiB before, peak {:.1} MiB; at most {} messages pending",
            mib(self.hwm_before_kib),
            mib(self.hwm_after_kib),
            mib(self.anon_before_kib),
            mib(self.anon_peak_kib),
            self.pending_peak
        );
    }
}
