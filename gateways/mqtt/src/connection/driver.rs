//! The I/O driver of one MQTT connection: owns the socket, the read and write buffers, the
//! timers, the delivery feeds (core subscriptions and their forwarding tasks) and every call into the core and the gateway's shared state; feeds
//! the session state machine (`machine.rs`) and executes its actions.
//!
//! Invariants:
//! - It makes no protocol decision: every packet, completion and timer goes through the
//!   machine, and what is written is what the machine queued, in its order.
//! - "Ack after durable store": a client PUBLISH becomes a future of `Shared::publish` in one
//!   `FuturesOrdered`; its completion is fed back to the machine (which only then queues the
//!   PUBACK/PUBREC), in PUBLISH order, several per turn when several are ready. A publish the
//!   machine answers without a store (`Action::Answer`) is a ready future in the same queue.
//! - Every client PUBLISH decoded before the end is stored, whatever the end (a DISCONNECT
//!   right after a burst of QoS 0 publishes, an abrupt close, a takeover): `finish` awaits the
//!   stores in flight before it shuts the socket down and publishes the will.
//! - Actions with a completion (starting a subscription, looking up retained messages) are
//!   executed and their completion fed back at once, before the next packet is decoded.
//! - Authorization is the core's (`access.rs`), asked here before the I/O it guards: a client
//!   PUBLISH the core does not authorize becomes a ready "not authorized" completion (never a
//!   store), a SUBSCRIBE filter a "not authorized" code, a delivery feed no subscription may
//!   read is not started, a retained message the client may not read is not sent.
//! - Writes are batched: one socket write per loop turn (plus the final DISCONNECT).
//! - Core acknowledgements of deliveries are batched per turn and sent by a spawned task.
//! - Memory is bounded: the read buffer by `max_packet_size` (the socket is not read while
//!   the machine refuses more publishes), deliveries by the inbox (`max_queued_messages`,
//!   one credit pool for all the connection's core subscriptions: see `delivery.rs`) and the
//!   machine's window.
//!
//! - Revocation: the connection's credentials are watched (`Access::invalidated`, the core's
//!   `Auth::invalidated`); when they stop being valid the machine is fed `Input::Revoked` and
//!   closes (v5: DISCONNECT 0x87). The session's fate is the usual one: a persistent session
//!   stays for a reconnect with valid credentials.
//!
//! Called by `connection` once a CONNECT was admitted and its session taken over.
//! Concurrency: the connection's task runs a `select!` over socket reads, completed core
//! publishes, deliveries from the inbox (one core subscription and forwarding task per
//! (group, topic), aborted here), topic changes, keep-alive, takeover, shutdown and the
//! invalidation of its credentials. It holds the session's guard
//! (inside the machine) for its whole life and releases it last, after the session's fate
//! is stored and a delayed will is registered in the slot.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use rumqttc::v5::mqttbytes::v5::{LastWill, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connect;
use super::io::{Action, End, Input, Stored};
use super::machine::Machine;
use super::subscribe::{self, PollerKey, RetainedRequest, SubscriptionStart, Target};
use crate::access::Access;
use crate::codec;
use crate::delivery::{ensure_group, Feed, Inbox};
use crate::session::{self, Delivery, SessionSlot};
use crate::shared::{Refused, Shared};
use crate::topic;

type PubFut = Pin<Box<dyn Future<Output = (u16, QoS, Result<(), Refused>)> + Send>>;

/// Deliveries taken from the channel in one turn stop once this much is buffered.
const WRITE_BATCH: usize = 64 * 1024;

/// Writes and flushes.
pub(super) async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> std::io::Result<()> {
    s.write_all(b).await?;
    s.flush().await
}

/// Serves an admitted connection with its state machine until it ends, then closes it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve<S>(
    shared: Arc<Shared>,
    access: Access,
    stream: S,
    rbuf: BytesMut,
    machine: Machine,
    slot: Arc<SessionSlot>,
    keep_alive: u16,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let inbox = Inbox::new(shared.config.max_queued_messages.max(32));
    let mut driver = Driver {
        shared,
        access,
        stream,
        rbuf,
        wbuf: BytesMut::with_capacity(8192),
        machine,
        slot,
        publishes: FuturesOrdered::new(),
        inbox,
        pollers: HashMap::new(),
        acks: Vec::new(),
    };
    // CONNACK, retransmissions and delivery feeds: never a close.
    let end = match driver.execute().await {
        Some(end) => end,
        None => driver.run(keep_alive, &mut shutdown).await,
    };
    driver.finish(end).await;
}

/// The I/O side of a connection.
struct Driver<S> {
    shared: Arc<Shared>,
    /// What the client may do (the core decides).
    access: Access,
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    machine: Machine,
    slot: Arc<SessionSlot>,
    publishes: FuturesOrdered<PubFut>,
    inbox: Inbox,
    pollers: HashMap<PollerKey, JoinHandle<()>>,
    acks: Vec<(Arc<str>, String)>,
}

/// The RocketMQ topics a wildcard filter reads.
fn visible_topics(shared: &Shared) -> Vec<String> {
    shared
        .broker
        .topics()
        .list_user()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| topic::wildcard_visible(n))
        .collect()
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn run(&mut self, keep_alive: u16, shutdown: &mut watch::Receiver<bool>) -> End {
        let ka = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let mut deadline = ka.map(|d| Instant::now() + d);
        let mut kick = self.slot.kick.subscribe();
        let mut topics = self.shared.broker.topics().changed();
        let invalidated = self.access.invalidated();
        tokio::pin!(invalidated);
        // Bytes that arrived together with CONNECT.
        if let Some(end) = self.process().await {
            return end;
        }
        loop {
            if let Some(end) = self
                .feed(Input::Backlog {
                    now_ms: self.shared.broker.now_ms(),
                })
                .await
            {
                return end;
            }
            self.flush_acks();
            if !self.wbuf.is_empty() {
                if write_flush(&mut self.stream, &self.wbuf).await.is_err() {
                    return End::Abnormal;
                }
                self.wbuf.clear();
            }
            if let Some(record) = self.machine.take_dirty_record() {
                if let Err(e) =
                    session::persist(&self.shared.broker, &self.shared.sessions, record).await
                {
                    tracing::error!(error = %e, "could not persist an MQTT session");
                }
            }
            let can_read = self.machine.can_read();
            let can_deliver = self.machine.can_deliver();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let closed = tokio::select! {
                _ = shutdown.changed() => Some(self.feed_to_end(Input::Shutdown).await),
                _ = kick.changed() => Some(self.feed_to_end(Input::TakenOver).await),
                why = &mut invalidated => Some(self.feed_to_end(Input::Revoked(why)).await),
                Some(first) = self.publishes.next(), if !self.publishes.is_empty() => {
                    let mut done = vec![stored(first)];
                    // Take every other completed store in the same turn (one socket write).
                    while let Some(Some(next)) = self.publishes.next().now_or_never() {
                        done.push(stored(next));
                    }
                    self.feed(Input::Stored(done)).await
                }
                r = self.stream.read_buf(&mut self.rbuf), if can_read => match r {
                    Ok(0) | Err(_) => Some(End::Abnormal),
                    Ok(_) => {
                        deadline = ka.map(|d| Instant::now() + d);
                        self.process().await
                    }
                },
                Some(d) = self.inbox.recv(), if can_deliver => self.deliveries(d).await,
                r = topics.changed() => {
                    if r.is_ok() {
                        self.refresh_pollers();
                    }
                    None
                }
                () = sleep => Some(self.feed_to_end(Input::KeepAliveExpired).await),
            };
            if let Some(end) = closed {
                return end;
            }
        }
    }

    /// Feeds a delivery, then what else is queued while the window and the write batch
    /// allow (one socket write for a batch).
    async fn deliveries(&mut self, first: Delivery) -> Option<End> {
        let mut next = Some(first);
        while let Some(d) = next.take() {
            let input = Input::Delivery {
                delivery: d,
                now_ms: self.shared.broker.now_ms(),
            };
            if let Some(end) = self.feed(input).await {
                return Some(end);
            }
            if self.machine.window_open() && self.wbuf.len() < WRITE_BATCH {
                next = self.inbox.try_recv();
            }
        }
        None
    }

    /// Decodes and feeds every complete packet in the read buffer.
    async fn process(&mut self) -> Option<End> {
        let max = self.shared.config.max_packet_size;
        loop {
            match codec::decode(&mut self.rbuf, Some(self.machine.version()), max) {
                Ok(Some((p, _))) => {
                    if let Some(end) = self.feed(Input::Packet(p)).await {
                        return Some(end);
                    }
                }
                Ok(None) => return None,
                // The bytes stay undecodable: the machine always closes.
                Err(e) => return Some(self.feed_to_end(Input::Undecodable(e)).await),
            }
        }
    }

    /// Feeds an input the machine answers with a close.
    async fn feed_to_end(&mut self, input: Input) -> End {
        self.feed(input).await.unwrap_or(End::Abnormal)
    }

    async fn feed(&mut self, input: Input) -> Option<End> {
        self.machine.handle(input);
        self.execute().await
    }

    /// Executes the machine's queued actions; `Some` when the connection ends.
    async fn execute(&mut self) -> Option<End> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Send(p) => {
                    if let Err(e) = codec::encode(&p, self.machine.version(), &mut self.wbuf) {
                        tracing::warn!(error = %e, "could not encode an MQTT packet");
                    }
                }
                Action::Flush => {
                    let _ = write_flush(&mut self.stream, &self.wbuf).await;
                    self.wbuf.clear();
                }
                Action::Close(end) => return Some(end),
                Action::Store { publish, topic } if !self.access.may_publish(&topic) => {
                    tracing::debug!(client = %self.machine.client_id(), "MQTT publish not authorized");
                    let done = (
                        publish.pkid,
                        publish.qos,
                        Err(Refused(PubAckReason::NotAuthorized)),
                    );
                    self.publishes.push_back(Box::pin(std::future::ready(done)));
                }
                Action::Store { publish, topic } => {
                    let shared = self.shared.clone();
                    let client = self.machine.client_id().to_owned();
                    self.publishes.push_back(Box::pin(async move {
                        let r = shared.publish(&client, &publish, &topic).await;
                        (publish.pkid, publish.qos, r)
                    }));
                }
                Action::Answer { pkid, qos, result } => {
                    let done = (pkid, qos, result.map_err(Refused));
                    self.publishes.push_back(Box::pin(std::future::ready(done)));
                }
                Action::AckCore { group, receipt } => self.acks.push((group, receipt)),
                Action::StartSubscription(start) => {
                    let result = self.start_subscription(start).await;
                    self.machine.handle(Input::SubscriptionStarted(result));
                }
                Action::RefreshPollers => self.refresh_pollers(),
                Action::SendRetained(requests) => {
                    let found = self.retained(requests);
                    let now_ms = self.shared.broker.now_ms();
                    self.machine.handle(Input::Retained { found, now_ms });
                }
            }
        }
        None
    }

    /// Puts a subscription in place in the core, if the core authorizes it: its topic exists,
    /// its group exists and is positioned at the end of the topics it did not read yet.
    /// Refused: "not authorized", or "topic filter invalid" when the topic is refused.
    async fn start_subscription(
        &mut self,
        start: SubscriptionStart,
    ) -> Result<(), SubscribeReasonCode> {
        let group = match &start.target {
            Target::Shared { group } => group.as_str(),
            Target::Plain { group, .. } => group,
        };
        if !self
            .access
            .may_subscribe(start.core_topic.as_deref(), &start.filter, group)
        {
            tracing::debug!(client = %self.machine.client_id(), "MQTT subscription not authorized");
            return Err(SubscribeReasonCode::NotAuthorized);
        }
        let broker = &self.shared.broker;
        if let Some(t) = &start.core_topic {
            if self.shared.ensure_topic(t).is_err() {
                return Err(SubscribeReasonCode::TopicFilterInvalid);
            }
        }
        let topics = match start.core_topic {
            Some(t) => vec![t],
            None => visible_topics(&self.shared),
        };
        match start.target {
            Target::Shared { group } => {
                if ensure_group(broker, &group) {
                    for t in &topics {
                        let _ = broker.consumer().pop_from_end(&group, t).await;
                    }
                }
            }
            Target::Plain { group, covered } => {
                let covered = covered.resolve(|| visible_topics(&self.shared));
                ensure_group(broker, &group);
                for t in topics.iter().filter(|t| !covered.contains(*t)) {
                    if let Err(e) = broker.consumer().pop_from_end(&group, t).await {
                        tracing::warn!(error = %e, topic = %t, "could not start an MQTT subscription");
                    }
                }
            }
        }
        Ok(())
    }

    fn retained(
        &self,
        requests: Vec<RetainedRequest>,
    ) -> Vec<(RetainedRequest, Vec<rocketgate_core::StoredMessage>)> {
        requests
            .into_iter()
            .map(|r| {
                let mut found = self.shared.retained_matching(&r.filter);
                found.retain(|m| self.access.may_receive(m));
                (r, found)
            })
            .collect()
    }

    /// Starts and stops delivery feeds (a core subscription and its forwarding task per
    /// (group, topic)) to match the subscriptions; one that ended is started again.
    fn refresh_pollers(&mut self) {
        let access = &self.access;
        let want = subscribe::wanted_pollers(
            self.machine.subscriptions(),
            self.machine.group(),
            || visible_topics(&self.shared),
            |group, topic, filter| access.may_read(group, topic, filter),
        );
        self.pollers.retain(|k, h| {
            let keep = want.contains_key(k) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        let invisible = Duration::from_secs(self.shared.config.delivery_invisible_secs.max(1));
        for (k, shared) in want {
            if self.pollers.contains_key(&k) {
                continue;
            }
            if shared.is_some() {
                ensure_group(&self.shared.broker, &k.0);
            }
            let feed = Feed {
                group: k.0.clone(),
                topic: k.1.clone(),
                shared,
                invisible,
            };
            match self.inbox.subscribe(&self.shared.broker, feed) {
                Ok(h) => {
                    self.pollers.insert(k, h);
                }
                Err(e) => {
                    tracing::debug!(error = %e, group = %k.0, topic = %k.1, "MQTT subscription refused");
                }
            }
        }
    }

    fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        let broker = self.shared.broker.clone();
        tokio::spawn(async move {
            let mut by_group: HashMap<Arc<str>, Vec<String>> = HashMap::new();
            for (g, r) in acks {
                by_group.entry(g).or_default().push(r);
            }
            for (g, handles) in by_group {
                let refs: Vec<&str> = handles.iter().map(String::as_str).collect();
                if let Err(e) = broker.consumer().ack_batch(&g, &refs).await {
                    tracing::warn!(error = %e, group = %g, "could not acknowledge MQTT deliveries");
                }
            }
        });
    }

    /// Stops the delivery feeds, lets the client publishes being stored complete, closes the
    /// socket, stores the session's fate and sends the will. The session guard is released
    /// last, after a delayed will was registered in the slot.
    async fn finish(mut self, end: End) {
        for (_, h) in self.pollers.drain() {
            h.abort();
        }
        // Core acknowledgements of deliveries the client acknowledged.
        self.flush_acks();
        self.complete_stores().await;
        let _ = self.stream.shutdown().await;
        let mut queued = Vec::new();
        while let Some(d) = self.inbox.try_recv() {
            queued.push(d);
        }
        tracing::info!(client = %self.machine.client_id(), end = ?end, "MQTT client disconnected");
        let finished = self
            .machine
            .finish(end, queued, self.shared.broker.now_ms());
        let shared = &self.shared;
        if finished.session_ends {
            if let Some(r) = &finished.record {
                let _ = session::persist(&shared.broker, &shared.sessions, r).await;
            }
            let group = self.machine.group();
            if shared.broker.groups().get(group).is_ok() {
                let _ = shared.broker.groups().delete(group);
            }
            shared.sessions.remove(self.machine.client_id(), &self.slot);
        } else if let Some(r) = &finished.record {
            if let Err(e) = session::persist(&shared.broker, &shared.sessions, r).await {
                tracing::error!(error = %e, "could not persist an MQTT session");
            }
        }
        if let Some((w, delay)) = finished.will {
            let shared = self.shared.clone();
            let access = self.access.clone();
            let client = self.machine.client_id().to_owned();
            let task = tokio::spawn(async move {
                if delay > 0 {
                    tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
                }
                publish_will(&shared, &access, &client, w).await;
            });
            if delay > 0 && !finished.session_ends {
                *self.slot.will.lock() = Some(task.abort_handle());
            }
        }
        drop(self.machine);
    }
}

impl<S> Driver<S> {
    /// Waits for every client publish still being stored: a packet read before the end (QoS 0
    /// publishes right before a DISCONNECT, say) is stored, never dropped half-way. They are
    /// bounded as while serving (no read while `receive_maximum` are being stored); their
    /// acknowledgements are not sent (the connection is ending: a QoS 1/2 client resends, and
    /// the copy it resends is a duplicate at worst). Before the socket closes, so a client
    /// that sees the close after its DISCONNECT knows everything it sent is in the core.
    async fn complete_stores(&mut self) {
        while let Some((pkid, _, r)) = self.publishes.next().await {
            if let Err(Refused(reason)) = r {
                tracing::debug!(
                    pkid,
                    ?reason,
                    "MQTT publish refused while the connection ended"
                );
            }
        }
    }
}

fn stored((pkid, qos, r): (u16, QoS, Result<(), Refused>)) -> Stored {
    Stored {
        pkid,
        qos,
        result: r.map_err(|Refused(reason)| reason),
    }
}

async fn publish_will(shared: &Shared, access: &Access, client: &str, w: LastWill) {
    let p = connect::will_publish(w);
    let Ok(topic) = std::str::from_utf8(&p.topic) else {
        return;
    };
    if topic::core_topic_of_name(topic) == Err(topic::TopicError::Reserved) {
        tracing::debug!(client = %client, "MQTT will on a reserved topic dropped");
        return;
    }
    if !access.may_publish(topic) {
        tracing::info!(client = %client, "MQTT will not published: not authorized any more");
        return;
    }
    let topic = topic.to_owned();
    if let Err(Refused(r)) = shared.publish(client, &p, &topic).await {
        tracing::warn!(reason = ?r, client = %client, "MQTT will not published");
    }
}
