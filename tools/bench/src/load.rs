//! How busy the rest of the machine was while a case ran: the share of all CPU time that other
//! processes used, from `/proc/stat` (whole machine) minus `/proc/self/stat` (this process).
//!
//! Owns: nothing but two snapshots. Invariants: the figure is in percent of all CPUs over the
//! interval (0 = nobody else ran, 100 = every CPU was busy with someone else); it is `None`
//! where `/proc` cannot be read, never a guess. Kernel threads doing this process's I/O count as
//! "other", so a few percent are normal.
//!
//! Who calls it: [`super::store`], around each case. Concurrency: none; plain file reads.
//!
//! Must not change anything: it only reads `/proc`.

/// A snapshot of CPU time, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Non-idle ticks of all CPUs.
    busy: u64,
    /// All ticks of all CPUs.
    total: u64,
    /// This process's user + system ticks.
    own: u64,
}

impl Probe {
    /// Takes a snapshot, or `None` without `/proc`.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = own_stat.rsplit_once(')')?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(Self {
            busy: total.saturating_sub(idle),
            total,
            own,
        })
    }

    /// CPU seconds this process used between `self` and `later` (user + system; `/proc` counts
    /// in USER_HZ = 100 ticks per second, so the resolution is 10 ms).
    pub fn own_secs(&self, later: &Self) -> f64 {
        later.own.saturating_sub(self.own) as f64 / 100.0
    }

    /// Percent of all CPU time between `self` and `later` used by other processes.
    pub fn others_percent(&self, later: &Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        if total == 0 {
            return None;
        }
        let busy = later.busy.saturating_sub(self.busy);
        let own = later.own.saturating_sub(self.own);
        Some(busy.saturating_sub(own) as f64 * 100.0 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc() {
        let (Some(a), Some(b)) = (Probe::now(), Probe::now()) else {
            return; // no /proc here
        };
        if let Some(p) = a.others_percent(&b) {
            assert!((0.0..=100.0).contains(&p));
        }
    }
}
