//! Changing a consumer group's retry policy (how many deliveries before a message goes to the
//! dead-letter queue) without recreating the group, which would drop its offsets.
//!
//! Owns: [`Broker::set_max_delivery_attempts`]. Protocol-neutral; the change is persisted with
//! the group table before it is reported, and applies to the next delivery decision (a nack or
//! an expired invisibility) of any message of the group.

use super::Broker;
use crate::broker::consumer_group::GroupConfig;
use crate::error::{Error, Result};

/// Largest accepted number of deliveries.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 1024;

impl Broker {
    /// Sets how many deliveries (the first included) a message of `group` gets before it is
    /// dead-lettered. Returns the group's new configuration.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`], [`Error::InvalidArgument`] for `attempts` outside
    /// `1..=1024`, [`Error::Metadata`].
    pub fn set_max_delivery_attempts(&self, group: &str, attempts: u32) -> Result<GroupConfig> {
        if attempts == 0 || attempts > MAX_DELIVERY_ATTEMPTS {
            return Err(Error::InvalidArgument(format!(
                "max_delivery_attempts must be between 1 and {MAX_DELIVERY_ATTEMPTS}"
            )));
        }
        let g = self.existing_group(group)?;
        if g.config.max_delivery_attempts == attempts {
            return Ok(g.config.clone());
        }
        let mut config = g.config.clone();
        config.max_delivery_attempts = attempts;
        Ok(self.inner.groups.upsert(config, true)?.config.clone())
    }
}

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
            b.create_group(GroupConfig::new("g")).unwrap();
            assert_eq!(
                b.set_max_delivery_attempts("g", 3)
                    .unwrap()
                    .max_delivery_attempts,
                3
            );
            assert!(b.set_max_delivery_attempts("g", 0).is_err());
            assert!(b.set_max_delivery_attempts("g", 5000).is_err());
            assert!(b.set_max_delivery_attempts("nobody", 3).is_err());
            b.shutdown().unwrap();
        }
        let b = Broker::open(c).unwrap();
        assert_eq!(b.group("g").unwrap().max_delivery_attempts, 3);
    }
}
