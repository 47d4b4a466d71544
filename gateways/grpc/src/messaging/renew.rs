//! Automatic renewal of invisibility for `ReceiveMessage{auto_renew: true}` — the push
//! consumers of the Java, Python and Node SDKs, which receive a batch, hand it to a listener
//! that may run for minutes, and only then ack. As the Java proxy does, the gateway keeps such
//! messages invisible on the consumer's behalf until it acks them, gives up on them, or goes
//! away.
//!
//! Owns: the table of renewed handles, keyed by (group, the handle the consumer received), with
//! the current core handle of each (a renewal is a core `change_invisible_duration`, which
//! issues a new handle; the consumer keeps acking with the first one), and the renewal task.
//!
//! - A message received with `auto_renew` is invisible for `default_invisible_ms` (the
//!   request's `invisible_duration` is ignored, as the Java proxy does) and tracked here.
//! - Every `auto_renew_interval_ms` the task renews each tracked message due to become visible
//!   within two intervals, by `default_invisible_ms` again.
//! - AckMessage, ChangeInvisibleDuration and ForwardMessageToDeadLetterQueue first
//!   [`Renewals::take`] the handle: the current core handle is used and renewal stops.
//! - Renewal stops too after `auto_renew_max_ms` (the message then becomes visible and is
//!   redelivered with its next attempt), when its consumer sends NotifyClientTermination, and
//!   when the consumer has shown no sign of life (heartbeat, receive, ack) for
//!   [`CLIENT_SILENCE`]; then the message is redelivered when its invisibility runs out.
//! - At most `auto_renew_max_handles` messages are tracked; beyond that a received message is
//!   simply invisible for `default_invisible_ms` (logged once per overflow).
//!
//! Time: every time here is the broker's clock (`Broker::now_ms`), the clock of the core's
//! invisibility deadlines it is compared with; callers pass it in.
//!
//! Must not touch: the core's pop state (only its public `change_invisible_duration`), other
//! RPCs' state. One mutex around the table; the core is never called under it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::Context;

/// A consumer silent this long (no heartbeat, receive or ack) is taken for gone: its messages
/// are no longer renewed. The SDKs heartbeat every 10 s.
pub(super) const CLIENT_SILENCE: Duration = Duration::from_secs(30);

/// (consumer group, the handle the consumer received).
type Key = (String, String);

#[derive(Debug)]
struct Renewal {
    client_id: String,
    /// The core's current handle of the message.
    current: String,
    invisible_until_ms: i64,
    /// Renewal stops after this (ms).
    renew_until_ms: i64,
}

/// The renewed handles and the liveness of their consumers.
#[derive(Debug, Default)]
pub(super) struct Renewals {
    table: Mutex<Table>,
    task_started: AtomicBool,
}

#[derive(Debug, Default)]
struct Table {
    handles: HashMap<Key, Renewal>,
    /// Last sign of life of each consumer with tracked handles (ms).
    seen: HashMap<String, i64>,
    overflow_logged: bool,
}

/// One renewal to do: outside the lock.
struct Due {
    key: Key,
    current: String,
}

impl Renewals {
    /// Tracks a message received with `auto_renew`, at `now` (the broker's clock).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn track(
        &self,
        max_handles: usize,
        max_renew: Duration,
        group: &str,
        client_id: &str,
        handle: &str,
        invisible_until_ms: i64,
        now: i64,
    ) {
        let mut t = self.table.lock();
        if t.handles.len() >= max_handles {
            if !t.overflow_logged {
                t.overflow_logged = true;
                tracing::warn!(
                    max_handles,
                    group,
                    "auto-renew table full: further messages are not renewed"
                );
            }
            return;
        }
        t.overflow_logged = false;
        let renew_until_ms =
            now.saturating_add(i64::try_from(max_renew.as_millis()).unwrap_or(i64::MAX));
        t.handles.insert(
            (group.to_owned(), handle.to_owned()),
            Renewal {
                client_id: client_id.to_owned(),
                current: handle.to_owned(),
                invisible_until_ms,
                renew_until_ms,
            },
        );
        t.seen.insert(client_id.to_owned(), now);
    }

    /// Records a sign of life of `client_id` at `now` (only consumers with tracked handles are
    /// kept).
    pub(super) fn seen(&self, client_id: &str, now: i64) {
        let mut t = self.table.lock();
        if let Some(s) = t.seen.get_mut(client_id) {
            *s = now;
        }
    }

    /// The core handle to use for `handle` of `group` — the current one of a renewed message,
    /// else `handle` itself — and stops renewing it.
    pub(super) fn take(&self, group: &str, handle: &str) -> String {
        let mut t = self.table.lock();
        match t.handles.remove(&(group.to_owned(), handle.to_owned())) {
            Some(r) => r.current,
            None => handle.to_owned(),
        }
    }

    /// Stops renewing the messages of a consumer that went away.
    pub(super) fn forget_client(&self, client_id: &str) {
        let mut t = self.table.lock();
        t.handles.retain(|_, r| r.client_id != client_id);
        t.seen.remove(client_id);
    }

    /// How many messages are renewed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.lock().handles.len()
    }

    /// Drops what must no longer be renewed and returns what is due, as of `now`.
    fn due(&self, now: i64, ahead_ms: i64) -> Vec<Due> {
        let mut t = self.table.lock();
        let silence = i64::try_from(CLIENT_SILENCE.as_millis()).unwrap_or(i64::MAX);
        let Table { handles, seen, .. } = &mut *t;
        seen.retain(|_, last| now - *last <= silence);
        handles.retain(|_, r| seen.contains_key(&r.client_id) && now < r.renew_until_ms);
        let clients: std::collections::HashSet<&String> =
            handles.values().map(|r| &r.client_id).collect();
        seen.retain(|c, _| clients.contains(c));
        handles
            .iter()
            .filter(|(_, r)| r.invisible_until_ms - now <= ahead_ms)
            .map(|(k, r)| Due {
                key: k.clone(),
                current: r.current.clone(),
            })
            .collect()
    }

    /// Records a renewal (unless the message was acked or dropped meanwhile).
    fn renewed(&self, key: &Key, old: &str, new: String, invisible_until_ms: i64) {
        let mut t = self.table.lock();
        if let Some(r) = t.handles.get_mut(key) {
            if r.current == old {
                r.current = new;
                r.invisible_until_ms = invisible_until_ms;
            }
        }
    }

    fn remove_if_current(&self, key: &Key, current: &str) {
        let mut t = self.table.lock();
        if t.handles.get(key).is_some_and(|r| r.current == current) {
            t.handles.remove(key);
        }
    }

    /// Starts the renewal task of `ctx` once (on the first `auto_renew` receive).
    pub(super) fn ensure_task(ctx: &Arc<Context>) {
        if ctx.renewals.task_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(ctx);
        let interval = Duration::from_millis(ctx.config.auto_renew_interval_ms.max(10));
        tokio::spawn(run(weak, interval));
    }
}

/// The renewal task: ends when the service is dropped or stops.
async fn run(ctx: Weak<Context>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else {
            return;
        };
        if *ctx.stopping.borrow() {
            return;
        }
        renew_due(&ctx, interval).await;
    }
}

/// One round: renews every message due within two intervals.
async fn renew_due(ctx: &Context, interval: Duration) {
    let ahead = i64::try_from(interval.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
    let invisible = Duration::from_millis(ctx.config.default_invisible_ms);
    for due in ctx.renewals.due(ctx.broker.now_ms(), ahead) {
        let (group, _) = &due.key;
        let until = ctx.broker.now_ms() + i64::try_from(invisible.as_millis()).unwrap_or(i64::MAX);
        match ctx
            .broker
            .consumer()
            .change_invisible_duration(group, &due.current, invisible)
        {
            Ok(new) => ctx.renewals.renewed(&due.key, &due.current, new, until),
            Err(e) => {
                // Acked through another path, redelivered, or the group is gone.
                tracing::debug!(group = %group, error = %e, "auto-renew stopped for a message");
                ctx.renewals.remove_if_current(&due.key, &due.current);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rocketgate_core::now_ms;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn take_answers_the_current_handle_and_stops_renewal() {
        let r = Renewals::default();
        r.track(10, HOUR, "g", "c1", "h1", now_ms() + 1000, now_ms());
        r.renewed(
            &("g".into(), "h1".into()),
            "h1",
            "h1b".into(),
            now_ms() + 2000,
        );
        assert_eq!(r.take("g", "h1"), "h1b");
        assert_eq!(r.take("g", "h1"), "h1", "untracked handles pass through");
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn due_skips_far_deadlines_and_drops_gone_clients_and_old_messages() {
        let r = Renewals::default();
        let now = now_ms();
        r.track(10, HOUR, "g", "c1", "soon", now + 100, now);
        r.track(10, HOUR, "g", "c1", "later", now + 100_000, now);
        r.track(10, Duration::ZERO, "g", "c1", "expired", now + 100, now);
        let due: Vec<String> = r
            .due(now + 1, 1000)
            .into_iter()
            .map(|d| d.current)
            .collect();
        assert_eq!(due, vec!["soon".to_owned()]);
        assert_eq!(r.len(), 2, "past its renew limit: dropped");
        r.forget_client("c1");
        assert_eq!(r.len(), 0);
        r.track(10, HOUR, "g", "c2", "x", now + 100, now);
        let silent = now + i64::try_from(CLIENT_SILENCE.as_millis()).unwrap() + 1;
        assert!(
            r.due(silent, 1000).is_empty(),
            "a silent client's messages are dropped"
        );
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let r = Renewals::default();
        for i in 0..5 {
            r.track(
                3,
                HOUR,
                "g",
                "c",
                &format!("h{i}"),
                now_ms() + 1000,
                now_ms(),
            );
        }
        assert_eq!(r.len(), 3);
    }
}
