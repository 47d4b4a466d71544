//! A broker's registration with every NameServer, kept alive by a background heartbeat task.
//!
//! Owns: the registration to send (behind the round lock, a `tokio::sync::Mutex` held for a
//! whole round so rounds never interleave and a NameServer never gets an older topic list after a
//! newer one) and, per NameServer, whether it holds the latest registration. One task per
//! [`Registration`] owns the heartbeat timer; each round calls every NameServer concurrently in a
//! `JoinSet`, each call bounded by the client's `rpc_timeout_ms`. A NameServer that fails, or
//! answers a heartbeat with `known = false`, gets the full registration again.
//!
//! Per NameServer it also keeps the registration id that NameServer returned (a
//! `parking_lot::Mutex<String>`, held only to copy or replace it), presented on every renewal,
//! heartbeat and unregistration; a heartbeat refused with PERMISSION_DENIED voids it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rocketgate_proto::cluster::v1 as pb;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tonic::Code;
use tracing::{debug, info, warn};

use super::{ClientError, NameServerClient};
use crate::config::Limits;
use crate::convert;
use crate::model::{BrokerIdentity, BrokerRegistration, TopicConfig};

/// Registers with every NameServer once, then starts the heartbeat task (see
/// [`NameServerClient::register`]).
pub(super) async fn start(
    client: NameServerClient,
    registration: BrokerRegistration,
) -> Result<Registration, ClientError> {
    let n = client.inner.servers.len();
    let shared = Arc::new(Shared {
        client,
        identity: registration.identity.clone(),
        request: tokio::sync::Mutex::new(convert::registration_to_proto(&registration)),
        registered: (0..n).map(|_| AtomicBool::new(false)).collect(),
        ids: (0..n).map(|_| Mutex::new(String::new())).collect(),
    });
    let errors = shared.round(Round::Register).await;
    if let Some(err) = errors.into_iter().find(|e| {
        matches!(
            e.code(),
            Some(Code::InvalidArgument | Code::Unauthenticated)
        )
    }) {
        return Err(err);
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(heartbeat_loop(shared.clone(), stopped));
    Ok(Registration {
        shared,
        stop,
        task: Some(task),
    })
}

/// What a round sends to a NameServer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// A full registration to every NameServer.
    Register,
    /// A heartbeat where registered; a registration elsewhere or where it is unknown.
    KeepAlive,
}

/// State shared by a [`Registration`] handle and its heartbeat task.
#[derive(Debug)]
struct Shared {
    client: NameServerClient,
    identity: BrokerIdentity,
    /// The registration to send; locked for a whole round so rounds never interleave.
    request: tokio::sync::Mutex<pb::RegisterBrokerRequest>,
    /// Per NameServer: whether it accepted the latest registration and has not failed since.
    registered: Vec<AtomicBool>,
    /// Per NameServer: the registration id it returned (empty: none).
    ids: Vec<Mutex<String>>,
}

impl Shared {
    /// One round to every NameServer concurrently; returns the failures (already logged).
    async fn round(self: &Arc<Self>, kind: Round) -> Vec<ClientError> {
        let request = self.request.lock().await;
        let mut calls = JoinSet::new();
        for i in 0..self.client.inner.servers.len() {
            let shared = self.clone();
            let request = request.clone();
            calls.spawn(async move { shared.keep_alive(i, kind, request).await });
        }
        let mut errors = Vec::new();
        while let Some(joined) = calls.join_next().await {
            if let Ok(Err(err)) = joined {
                errors.push(err);
            }
        }
        errors
    }

    async fn keep_alive(
        &self,
        i: usize,
        kind: Round,
        request: pb::RegisterBrokerRequest,
    ) -> Result<(), ClientError> {
        let (Some(server), Some(registered), Some(id)) = (
            self.client.inner.servers.get(i),
            self.registered.get(i),
            self.ids.get(i),
        ) else {
            return Ok(());
        };
        let broker = &self.identity;
        if kind == Round::KeepAlive && registered.load(Ordering::Acquire) {
            let current = id.lock().clone();
            match server
                .heartbeat(convert::identity_to_proto(broker), current)
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    info!(nameserver = %server.address, broker = %broker, "NameServer does not know this broker; registering again");
                }
                Err(err) if err.code() == Some(Code::PermissionDenied) => {
                    // Our registration is gone and someone else registered this identity.
                    id.lock().clear();
                    registered.store(false, Ordering::Release);
                    warn!(nameserver = %server.address, broker = %broker, error = %err, "this broker's registration was replaced");
                    return Err(err);
                }
                Err(err) => {
                    registered.store(false, Ordering::Release);
                    warn!(nameserver = %server.address, broker = %broker, error = %err, "heartbeat failed");
                    return Err(err);
                }
            }
        }
        registered.store(false, Ordering::Release);
        let current = id.lock().clone();
        match server.register(request, current).await {
            Ok((expiry_ms, new_id)) => {
                *id.lock() = new_id;
                registered.store(true, Ordering::Release);
                let interval = self.client.inner.heartbeat_interval;
                if interval >= Duration::from_millis(expiry_ms) {
                    warn!(nameserver = %server.address, broker = %broker, expiry_ms, interval_ms = interval.as_millis(), "heartbeat interval is not shorter than the NameServer's expiry");
                }
                debug!(nameserver = %server.address, broker = %broker, "registered");
                Ok(())
            }
            Err(err) => {
                warn!(nameserver = %server.address, broker = %broker, error = %err, "registration failed");
                Err(err)
            }
        }
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let period = shared.client.inner.heartbeat_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            _ = shared.round(Round::KeepAlive) => {}
        }
    }
}

/// A broker's live registration: heartbeats run until [`Self::unregister`], [`Self::stop`] or
/// drop.
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// The registered instance.
    pub fn identity(&self) -> &BrokerIdentity {
        &self.shared.identity
    }

    /// How many NameServers hold the latest registration (as far as this client knows).
    pub fn registered_count(&self) -> usize {
        self.shared
            .registered
            .iter()
            .filter(|r| r.load(Ordering::Acquire))
            .count()
    }

    /// Replaces the topic list and registers it with every NameServer now.
    ///
    /// The list is checked here first (names once each, not both queue counts 0). If a NameServer
    /// still refuses it as invalid (its limits are lower), the previous list is restored and
    /// registered again, so the broker never drops out of the routes over a bad update.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] when the list is invalid (nothing is sent), or the
    /// [`ClientError::Rpc`] `InvalidArgument` of a NameServer that refused it. Otherwise `Ok`
    /// with the other failures of this round (those NameServers are retried on the next
    /// heartbeat).
    pub async fn update_topics(
        &self,
        topics: Vec<TopicConfig>,
    ) -> Result<Vec<ClientError>, ClientError> {
        let new_topics = convert::registration_to_proto(&BrokerRegistration {
            identity: self.shared.identity.clone(),
            endpoints: Vec::new(),
            topics,
        })
        .topics;
        let mut candidate = self.shared.request.lock().await.clone();
        candidate.topics.clone_from(&new_topics);
        let unbounded = Limits {
            max_topics_per_registration: usize::MAX,
            max_queues_per_topic: u32::MAX,
            ..Limits::default()
        };
        convert::registration_from_proto(candidate, &unbounded)?;

        let old_topics = {
            let mut request = self.shared.request.lock().await;
            std::mem::replace(&mut request.topics, new_topics.clone())
        };
        let errors = self.shared.round(Round::Register).await;
        let Some(refused) = errors
            .iter()
            .find(|e| e.code() == Some(Code::InvalidArgument))
            .cloned()
        else {
            return Ok(errors);
        };
        warn!(broker = %self.shared.identity, error = %refused, "topic update refused; registering the previous topics again");
        {
            let mut request = self.shared.request.lock().await;
            if request.topics == new_topics {
                request.topics = old_topics;
            }
        }
        self.shared.round(Round::Register).await;
        Err(refused)
    }

    async fn stop_task(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            if let Err(err) = task.await {
                warn!(error = %err, "heartbeat task ended abnormally");
            }
        }
    }

    /// Stops heartbeating without unregistering: the NameServers drop the broker after their
    /// expiry (what a crash looks like to them).
    pub async fn stop(mut self) {
        self.stop_task().await;
    }

    /// Stops heartbeating and unregisters from every NameServer; returns how many removed it.
    pub async fn unregister(mut self) -> usize {
        self.stop_task().await;
        let broker = convert::identity_to_proto(&self.shared.identity);
        let mut calls = JoinSet::new();
        for (server, id) in self
            .shared
            .client
            .inner
            .servers
            .iter()
            .zip(&self.shared.ids)
        {
            let server = server.clone();
            let broker = broker.clone();
            let id = std::mem::take(&mut *id.lock());
            calls.spawn(async move { (server.unregister(broker, id).await, server.address) });
        }
        let mut removed = 0;
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((Ok(true), _)) => removed += 1,
                Ok((Ok(false), _)) => {}
                Ok((Err(err), address)) => {
                    warn!(nameserver = %address, error = %err, "unregister failed");
                }
                Err(err) => warn!(error = %err, "unregister task failed"),
            }
        }
        for r in &self.shared.registered {
            r.store(false, Ordering::Release);
        }
        info!(broker = %self.shared.identity, removed, "unregistered");
        removed
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
