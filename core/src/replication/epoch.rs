//! Epoch arithmetic: where a follower's log stops agreeing with its master's, and the epoch a
//! new master opens.
//!
//! Owns: the pure [`last_common`] and [`begin_epoch`]'s rule; the file is `store::epochs`.

use crate::store::epochs::EpochEntry;

/// The offset up to which a follower's log (`local`, ending at `local_end`) agrees with its
/// master's (`leader`, ending at `leader_end`): the follower truncates to it, then follows.
///
/// Kafka's rule: take the follower's newest epoch that holds records; if the master had that
/// epoch, the logs agree up to where the master's epoch ended (its next epoch's start, or its
/// end) and no further than the follower's end; if the master never had it, the follower's
/// records of that epoch diverge: drop them and ask again with the epoch before. A follower
/// without epochs (or whose every epoch is unknown to the master) agrees up to 0.
pub(crate) fn last_common(
    leader: &[EpochEntry],
    leader_end: u64,
    local: &[EpochEntry],
    local_end: u64,
) -> u64 {
    let mut bound = local_end;
    for e in local.iter().rev() {
        if e.start >= bound {
            continue; // holds no local record
        }
        match leader.iter().position(|l| l.epoch == e.epoch) {
            Some(i) => {
                let end = leader.get(i + 1).map_or(leader_end, |n| n.start);
                return end.min(bound);
            }
            None => bound = e.start,
        }
    }
    0
}

/// The epoch list after opening `epoch` at the log end `end`: entries that start at or after
/// `end` hold no record and are dropped. `None` if `epoch` is not newer than every kept one.
pub(crate) fn begin_epoch(list: &[EpochEntry], epoch: u64, end: u64) -> Option<Vec<EpochEntry>> {
    let mut out: Vec<EpochEntry> = list.iter().copied().filter(|e| e.start < end).collect();
    if out.last().is_some_and(|l| l.epoch >= epoch) {
        return None;
    }
    out.push(EpochEntry { epoch, start: end });
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn list(v: &[(u64, u64)]) -> Vec<EpochEntry> {
        v.iter()
            .map(|&(epoch, start)| EpochEntry { epoch, start })
            .collect()
    }

    #[test]
    fn identical_logs_agree_to_the_end() {
        let l = list(&[(1, 0), (2, 100)]);
        assert_eq!(last_common(&l, 300, &l, 300), 300);
    }

    #[test]
    fn follower_behind_agrees_to_its_end() {
        let l = list(&[(1, 0), (2, 100)]);
        assert_eq!(last_common(&l, 300, &l, 150), 150);
        assert_eq!(last_common(&l, 300, &list(&[(1, 0)]), 80), 80);
    }

    #[test]
    fn follower_diverged_in_its_last_epoch() {
        // The follower wrote on in epoch 2 after the master had moved to epoch 3 at 200.
        let leader = list(&[(1, 0), (2, 100), (3, 200)]);
        let local = list(&[(1, 0), (2, 100)]);
        assert_eq!(last_common(&leader, 400, &local, 260), 200);
    }

    #[test]
    fn follower_epoch_the_master_never_had() {
        // An old master wrote epoch 2 from 100 that nobody copied; the new master took
        // epoch 3 at 150 (its end of epoch 1).
        let leader = list(&[(1, 0), (3, 150)]);
        let local = list(&[(1, 0), (2, 100)]);
        assert_eq!(last_common(&leader, 300, &local, 180), 100);
        // Its epoch 2 unknown and epoch 1 longer on the master: it keeps all of epoch 1.
        let leader = list(&[(1, 0), (3, 150)]);
        assert_eq!(
            last_common(&leader, 300, &list(&[(1, 0), (2, 120)]), 180),
            120
        );
    }

    #[test]
    fn empty_or_unknown_history_agrees_to_zero() {
        let leader = list(&[(1, 0)]);
        assert_eq!(last_common(&leader, 300, &[], 0), 0);
        assert_eq!(last_common(&leader, 300, &[], 50), 0);
        assert_eq!(last_common(&[], 0, &[], 0), 0);
        assert_eq!(last_common(&list(&[(5, 0)]), 300, &list(&[(4, 0)]), 50), 0);
    }

    #[test]
    fn follower_ahead_of_the_master_in_a_shared_epoch_is_cut_to_the_master_end() {
        let l = list(&[(1, 0)]);
        assert_eq!(last_common(&l, 100, &l, 180), 100);
    }

    #[test]
    fn begin_epoch_drops_empty_terms() {
        let l = list(&[(1, 0), (2, 100)]);
        assert_eq!(begin_epoch(&l, 3, 100).unwrap(), list(&[(1, 0), (3, 100)]));
        assert_eq!(
            begin_epoch(&l, 3, 150).unwrap(),
            list(&[(1, 0), (2, 100), (3, 150)])
        );
        assert!(begin_epoch(&l, 2, 150).is_none());
        assert_eq!(begin_epoch(&[], 1, 0).unwrap(), list(&[(1, 0)]));
    }
}
