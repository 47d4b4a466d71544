//! One NATS connection: INFO, then CONNECT, then operations until the client leaves, breaks
//! the protocol, falls behind, or the gateway stops.
//!
//! Invariants:
//! - Operations are handled in the order they arrive, each to the end before the next: a PUB
//!   is in the core (`Producer::send` returned) before `+OK` (verbose) and before the next
//!   operation; a SUB has its core position (`pop_from_end`) before the next operation, so a
//!   message published after it — by anyone — is delivered to it.
//! - Nothing before CONNECT but PING is served; without CONNECT within `connect_timeout_ms`
//!   the connection ends with `-ERR 'Authentication Timeout'`.
//! - An error that ends the connection (see `ProtocolError::closes`) is sent last: nothing is
//!   read or stored after it.
//! - Deliveries: a connection reads through its own group (`nats-c-…`, broadcast: every plain
//!   subscription of every connection sees every message; deleted at close) and through one
//!   group per queue group (`nats-q-…`, load-balanced among members of every connection). A
//!   popped message becomes one MSG / HMSG per matching plain subscription, or one for a
//!   member of its queue group, and is acknowledged once written (`outbound.rs`).
//!
//! Concurrency: the connection's task owns the socket's read half, the subscriptions and the
//! feeds; the writer task owns the write half. Subscription handling is in `subs.rs`.

mod feeds;
mod outbound;
mod subs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rocketgate_core::{Broker, Caller, Gateway, QueueSelector, SendRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;

use crate::access::{self, Access};
use crate::encode;
use crate::error::ProtocolError;
use crate::parse::{ConnectOptions, Op, Parser, Publish};
use crate::shared::Shared;
use crate::subject;

use self::feeds::Feeds;
use self::outbound::Outbound;
use self::subs::Subs;

/// How often feeds that ended are started again.
const HEAL_EVERY: Duration = Duration::from_secs(1);
/// How long the writer may take to send what is queued after the connection ended.
const DRAIN: Duration = Duration::from_secs(2);

/// Serves one connection on `stream` (TLS done, if any) until it ends.
pub(crate) async fn run<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    certificate: Option<String>,
    stop: watch::Receiver<bool>,
    info_sent: bool,
    client_id: u64,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (out, writer) = outbound::start(write, shared.broker.clone());
    if !info_sent {
        out.send(info(&shared, peer, client_id), None);
    }
    let mut conn = Connection {
        parser: Parser {
            max_control_line: shared.config.max_control_line,
            max_payload: shared.config.max_payload,
            max_header_bytes: shared.config.max_header_bytes,
        },
        feeds: Feeds::new(
            shared.config.max_popped_messages,
            Duration::from_secs(shared.config.delivery_invisible_secs),
        ),
        subs: Subs::new(format!("{}-{client_id}", shared.server_id)),
        shared,
        out,
        options: ConnectOptions::default(),
        access: None,
        broker: None,
        peer,
        certificate,
    };
    let mut writer = writer;
    let end = conn.serve(read, stop, &mut writer).await;
    conn.close(end, writer).await;
}

/// The INFO for a connection from `peer`.
pub(crate) fn info(shared: &Shared, peer: SocketAddr, client_id: u64) -> Bytes {
    encode::info(&encode::Info {
        server_id: shared.server_id.clone(),
        server_name: "rocketgate".into(),
        version: env!("CARGO_PKG_VERSION"),
        proto: 1,
        go: "rust",
        host: "0.0.0.0".into(),
        port: 0,
        headers: true,
        max_payload: shared.config.max_payload,
        auth_required: shared.broker.auth().enabled(),
        tls_required: shared.tls,
        client_id,
        client_ip: peer.ip().to_string(),
    })
}

/// How a connection ended.
enum End {
    /// The client left, or the gateway stops.
    Quiet,
    /// With this error sent last.
    Error(ProtocolError),
    /// The writer failed (the socket is gone).
    Gone,
}

struct Connection {
    shared: Arc<Shared>,
    parser: Parser,
    out: Outbound,
    feeds: Feeds,
    subs: Subs,
    options: ConnectOptions,
    access: Option<Access>,
    /// The core as this client (after CONNECT).
    broker: Option<Broker>,
    peer: SocketAddr,
    certificate: Option<String>,
}

impl Connection {
    async fn serve<R: AsyncRead + Unpin>(
        &mut self,
        mut read: R,
        mut stop: watch::Receiver<bool>,
        writer: &mut tokio::task::JoinHandle<()>,
    ) -> End {
        let config = &self.shared.config;
        let mut buf = BytesMut::with_capacity(8 << 10);
        let connect_deadline = tokio::time::sleep(Duration::from_millis(config.connect_timeout_ms));
        tokio::pin!(connect_deadline);
        let ping_every = Duration::from_millis(config.ping_interval_ms);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let max_pings_out = config.max_pings_out;
        let mut pings_out = 0u32;
        let mut topics = self.shared.broker.topics().changed();
        let mut heal = tokio::time::interval(HEAL_EVERY);
        let mut invalidated: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
            Box::pin(std::future::pending());
        loop {
            tokio::select! {
                _ = stop.changed() => return End::Quiet,
                _ = &mut *writer => return End::Gone,
                () = &mut connect_deadline, if self.access.is_none() => {
                    return End::Error(ProtocolError::AuthTimeout);
                }
                why = &mut invalidated => {
                    tracing::info!(target: "audit", reason = %why, "NATS connection closed: credentials no longer valid");
                    return End::Error(ProtocolError::Authorization);
                }
                r = read.read_buf(&mut buf) => {
                    match r {
                        Ok(0) | Err(_) => return End::Quiet,
                        Ok(_) => {}
                    }
                    pings_out = 0;
                    let connected = self.access.is_some();
                    if let Err(e) = self.operations(&mut buf).await {
                        return End::Error(e);
                    }
                    if !connected {
                        if let Some(a) = &self.access {
                            invalidated = Box::pin(a.invalidated());
                        }
                    }
                    if buf.capacity() > 64 << 10 && buf.is_empty() {
                        buf = BytesMut::with_capacity(8 << 10);
                    }
                }
                Some(d) = self.feeds.recv() => {
                    if let Err(e) = self.deliver(d) {
                        return End::Error(e);
                    }
                }
                r = topics.changed(), if self.subs.reads_every_topic() => {
                    if r.is_err() {
                        return End::Quiet;
                    }
                    self.shared.forget_topics();
                    self.refresh_feeds();
                }
                _ = heal.tick() => {
                    if self.feeds.any_ended() {
                        self.refresh_feeds();
                    }
                }
                _ = ping.tick() => {
                    if pings_out >= max_pings_out {
                        return End::Error(ProtocolError::Stale);
                    }
                    pings_out += 1;
                    self.out.send(Bytes::from_static(encode::PING), None);
                }
            }
        }
    }

    /// Handles every complete operation in `buf`, in order; an error that ends the connection
    /// stops there, others are sent as `-ERR` and the next operation is handled.
    async fn operations(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        while let Some(op) = self.parser.next(buf)? {
            metrics::counter!("rocketgate_packets_received_total", "gateway" => "nats")
                .increment(1);
            if let Err(e) = self.handle(op).await {
                if e.closes() {
                    return Err(e);
                }
                self.out.send(encode::err(&e.to_string()), None);
            }
        }
        Ok(())
    }

    /// Handles one operation; an `Err` is sent as `-ERR` (and ends the connection when
    /// `closes()`).
    async fn handle(&mut self, op: Op) -> Result<(), ProtocolError> {
        if self.access.is_none() {
            match op {
                Op::Ping => {
                    self.out.send(Bytes::from_static(encode::PONG), None);
                    return Ok(());
                }
                Op::Connect(options) => return self.connect(*options),
                _ => return Err(ProtocolError::Authorization),
            }
        }
        match op {
            Op::Connect(_) => {
                // A second CONNECT changes nothing (nats-server takes it; clients send one).
                self.ok();
                Ok(())
            }
            Op::Ping => {
                self.out.send(Bytes::from_static(encode::PONG), None);
                Ok(())
            }
            Op::Pong => Ok(()),
            Op::Pub(p) => {
                metrics::counter!("rocketgate_publishes_received_total", "gateway" => "nats")
                    .increment(1);
                let r = self.publish(p).await;
                if r.is_err() {
                    metrics::counter!("rocketgate_publishes_refused_total", "gateway" => "nats")
                        .increment(1);
                }
                r.map(|()| self.ok())
            }
            Op::Sub {
                subject,
                queue,
                sid,
            } => {
                self.subscribe(subject, queue, sid).await?;
                self.ok();
                Ok(())
            }
            Op::Unsub { sid, max } => {
                self.subs.unsubscribe(&self.shared, &sid, max);
                self.refresh_feeds();
                self.ok();
                Ok(())
            }
        }
    }

    fn ok(&self) {
        if self.options.verbose {
            self.out.send(Bytes::from_static(encode::OK), None);
        }
    }

    fn connect(&mut self, options: ConnectOptions) -> Result<(), ProtocolError> {
        let access = access::authenticate(
            &self.shared.broker,
            &options,
            self.certificate.as_deref(),
            Some(self.peer.ip()),
        )
        .map_err(|()| ProtocolError::Authorization)?;
        let caller = Caller::client(Some(access.principal().clone()), Some(self.peer.ip()))
            .via(Gateway::Nats);
        self.broker = Some(self.shared.broker.as_caller(caller));
        self.access = Some(access);
        self.options = options;
        self.ok();
        Ok(())
    }

    fn client(&self) -> Result<(&Broker, &Access), ProtocolError> {
        match (&self.broker, &self.access) {
            (Some(b), Some(a)) => Ok((b, a)),
            _ => Err(ProtocolError::Authorization),
        }
    }

    async fn publish(&mut self, p: Publish) -> Result<(), ProtocolError> {
        let topic = subject::publish_topic(&p.subject)
            .map_err(|_| ProtocolError::InvalidPublishSubject)?
            .to_owned();
        if let Some(r) = &p.reply {
            subject::publish_topic(r).map_err(|_| ProtocolError::InvalidPublishSubject)?;
        }
        let headers = match &p.headers {
            Some(h) => crate::parse::headers(h)?,
            None => Vec::new(),
        };
        let (broker, access) = self.client()?;
        if !access.may_publish(&topic) {
            return Err(ProtocolError::PublishDenied(p.subject.clone()));
        }
        let broker = broker.clone();
        self.shared
            .ensure_topic(&broker, &topic)
            .map_err(|e| ProtocolError::of_publish(&e, &p.subject))?;
        let m = encode::to_message(&topic, &p, &headers);
        let req = SendRequest::new(m, QueueSelector::ShardingKey(p.subject.clone()));
        if let Err(e) = broker.producer().send(req).await {
            if e.reason() == rocketgate_core::Reason::TopicNotFound {
                // Deleted since it was seen: the next publish creates it again (if allowed).
                self.shared.forget_topics();
            }
            if matches!(
                e.kind(),
                rocketgate_core::ErrorKind::Internal | rocketgate_core::ErrorKind::Unavailable
            ) {
                tracing::error!(error = %e, topic = %topic, "NATS publish not stored");
            }
            return Err(ProtocolError::of_publish(&e, &p.subject));
        }
        if let Some(reply) = &p.reply {
            if self.options.no_responders
                && self.options.headers
                && !self.shared.has_interest(&p.subject)
            {
                for sid in self.subs.matching_sids(reply) {
                    self.out.send(encode::no_responders(reply, &sid), None);
                }
            }
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        subject: String,
        queue: Option<String>,
        sid: String,
    ) -> Result<(), ProtocolError> {
        let filter = subject::Filter::parse(&subject).map_err(|_| ProtocolError::InvalidSubject)?;
        if queue.as_deref().is_some_and(|q| !subject::queue_ok(q)) {
            return Err(ProtocolError::InvalidSubject);
        }
        if !self.subs.contains(&sid) && self.subs.len() >= self.shared.config.max_subscriptions {
            return Err(ProtocolError::MaxSubscriptions);
        }
        let (broker, access) = self.client()?;
        let (broker, access) = (broker.clone(), access.clone());
        self.subs
            .subscribe(&self.shared, &broker, &access, filter, queue, sid)
            .await?;
        self.refresh_feeds();
        Ok(())
    }

    /// Runs the feeds the subscriptions need.
    fn refresh_feeds(&mut self) {
        let Ok((broker, access)) = self.client() else {
            return;
        };
        let broker = broker.clone();
        let wanted = self.subs.wanted_feeds(access);
        let subs = &self.subs;
        self.feeds.set(&broker, &wanted, |g| subs.is_queue_group(g));
    }

    /// Writes a popped message to the subscriptions it is for.
    fn deliver(&mut self, d: feeds::Delivery) -> Result<(), ProtocolError> {
        let subject = subject::of_message(&d.message);
        let reply = subject::reply_of(&d.message).map(str::to_owned);
        let targets = self.subs.targets(&d.group, &d.message.topic, &subject);
        if targets.is_none() {
            // A queue group's member left while this was on its way: let another have it.
            if let Some(b) = &self.broker {
                let _ = b.consumer().change_invisible_duration(
                    &d.group,
                    &d.receipt,
                    Duration::from_millis(b.config().consumer.min_invisible_ms),
                );
            }
            return Ok(());
        }
        let sids = targets.unwrap_or_default();
        let headers = if self.options.headers {
            encode::header_block(&d.message)
        } else {
            None
        };
        let mut frames = BytesMut::new();
        for sid in &sids {
            frames.extend_from_slice(&encode::msg(
                &subject,
                sid,
                reply.as_deref(),
                headers.as_deref(),
                &d.message.body,
            ));
        }
        if !frames.is_empty()
            && self.out.pending() + frames.len() > self.shared.config.max_pending_bytes
        {
            tracing::info!(peer = %self.peer, pending = self.out.pending(), "NATS slow consumer disconnected");
            return Err(ProtocolError::SlowConsumer);
        }
        metrics::counter!("rocketgate_publishes_sent_total", "gateway" => "nats")
            .increment(sids.len() as u64);
        self.out.send(frames.freeze(), Some((d.group, d.receipt)));
        if self.subs.take_exhausted(&self.shared) {
            self.refresh_feeds();
        }
        Ok(())
    }

    /// Ends the connection: the last error, feeds stopped, what was popped and not written
    /// released, interest and the connection's group removed, the queue drained (bounded).
    async fn close(mut self, end: End, mut writer: tokio::task::JoinHandle<()>) {
        let error = match &end {
            End::Error(e) => {
                if !matches!(e, ProtocolError::SlowConsumer | ProtocolError::Stale) {
                    metrics::counter!("rocketgate_protocol_errors_total", "gateway" => "nats")
                        .increment(1);
                }
                tracing::debug!(peer = %self.peer, error = %e, "NATS connection closed");
                Some(e.to_string())
            }
            End::Quiet | End::Gone => None,
        };
        let left = self.feeds.stop();
        if let Some(b) = &self.broker {
            let min = Duration::from_millis(b.config().consumer.min_invisible_ms);
            for d in left {
                let _ = b
                    .consumer()
                    .change_invisible_duration(&d.group, &d.receipt, min);
            }
        }
        if let Some(e) = error {
            self.out.send(encode::err(&e), None);
        }
        let Connection {
            out,
            mut subs,
            shared,
            ..
        } = self;
        drop(out);
        // The writer drains (acknowledging what it wrote) and ends once the sender is gone; a
        // socket that takes nothing is cut off after `DRAIN`.
        if !matches!(end, End::Gone) && tokio::time::timeout(DRAIN, &mut writer).await.is_err() {
            writer.abort();
        }
        subs.clear(&shared);
    }
}
