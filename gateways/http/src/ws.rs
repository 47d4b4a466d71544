//! The WebSocket gateway at `/v1/ws`, on axum's WebSocket support (tokio-tungstenite
//! underneath): JSON text frames to subscribe with credits, receive messages with receipt
//! handles, ack / nack them, grant credits and publish.
//!
//! Protocol (see `docs/http.md` for every frame):
//! - client → server: `subscribe {subscription, group, topic, filter?, credits, invisible_ms?}`,
//!   `credit {subscription, credits}`, `ack {subscription, receipt_handle}`,
//!   `nack {subscription, receipt_handle, delay_ms?}`, `unsubscribe {subscription}`,
//!   `publish {request_id, topic, message}`; each may carry a `request_id`, answered by a
//!   `reply` (or `error`) frame with the same id.
//! - server → client: `subscribed`, `message {subscription, receipt_handle, attempt, ...}`,
//!   `reply {request_id, result?}`, `error {request_id?, subscription?, code, detail}`.
//!
//! Invariants (flow control): a subscription delivers a message only against a credit; credits
//! held are at most `http.ws_max_credits`; frames queued for a connection are at most
//! `http.ws_outbound_frames`. So a client that never grants credits receives at most its
//! initial credits and costs the server a bounded amount of memory, however much is published.
//! Messages delivered and not acknowledged become visible again after their invisible duration.
//!
//! Close codes: 1003 binary frame, 1007 a frame that is not a valid command, 1009 a message over
//! `http.ws_max_frame_bytes`, 1001 server shutdown or a client silent for two ping intervals,
//! 1008 (policy violation) credentials no longer valid.
//! A cross-origin upgrade (an `Origin` that is neither the server's own nor in
//! `http.allowed_origins`) is refused before the upgrade (`403`, `origin.rs`); limits on subscriptions and
//! credits answer error frames and keep the connection. Other connections are never affected.
//!
//! Authentication (`auth.enabled`): the upgrade is authenticated like any request (`auth.rs`:
//! `Authorization`, or `?access_token=` since browsers cannot set headers), `401` before any
//! upgrade; the connection keeps that identity while the core says it is valid, and every
//! `subscribe` (`Sub` on topic and group), `publish` (`Pub` on the topic), `ack` and `nack`
//! (`Sub` on the group and the handle's topic) is asked of the core against the current
//! policy — a refusal is an `error` frame (`forbidden`) and the connection stays; every
//! delivery of a subscription is asked again, and one refused ends that subscription with an
//! `error` frame. What the connection asks of the core goes through a broker handle carrying
//! its principal and address (`Broker::as_caller`), so a group created on first use by a
//! `subscribe` needs `Create` on it. When the identity stops being valid (its user disabled,
//! deleted or changed, its token revoked or expired: `Auth::invalidated`), the connection gets
//! an `error` frame (`unauthenticated`, the reason as its detail) and is closed with 1008.
//!
//! Concurrency: per connection one reader (this task), one writer task owning the socket sink
//! (`ws/outbox.rs`: frames from a queue bounded in frames and bytes, pings on a timer, every
//! write within `http.ws_write_timeout_ms`; the connection ends when the writer does, and the
//! writer is aborted when the connection ends), and per subscription the core's delivery loop
//! (`Consumer::subscribe`: credit- and byte-bounded pops) with one task that turns what it yields
//! into message and error frames; credit frames grant the core subscription's credits. Both are
//! aborted when the subscription or the connection ends; a pop cut short leaves its messages to
//! reappear after their invisible duration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rocketgate_core::{
    Broker, Credits, FilterExpression, PopRequest, SendRequest, Subscription as CoreSubscription,
    SubscriptionCredits, SubscriptionRequest,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use rocketgate_core::auth::{Action, Resource};

use crate::auth::Caller;
use crate::error::ApiError;

mod outbox;

use crate::model::{Filter, PublishMessage, Published, ReceivedMessage};
use crate::rest::publish::now_ms;
use crate::state::AppState;
use outbox::{Outbound, Outbox};

/// Longest long poll of a subscription's pop.
const POLL: Duration = Duration::from_secs(10);
/// Longest subscription or request id.
const MAX_ID: usize = 128;

/// A filter as a string (tag expression) or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WsFilter {
    Tag(String),
    Full(Filter),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Subscribe {
        subscription: String,
        group: String,
        topic: String,
        #[serde(default)]
        filter: Option<WsFilter>,
        #[serde(default)]
        credits: u32,
        #[serde(default)]
        invisible_ms: Option<u64>,
        #[serde(default)]
        request_id: Option<String>,
    },
    Credit {
        subscription: String,
        credits: u32,
        #[serde(default)]
        request_id: Option<String>,
    },
    Ack {
        subscription: String,
        receipt_handle: String,
        #[serde(default)]
        request_id: Option<String>,
    },
    Nack {
        subscription: String,
        receipt_handle: String,
        #[serde(default)]
        delay_ms: Option<u64>,
        #[serde(default)]
        request_id: Option<String>,
    },
    Unsubscribe {
        subscription: String,
        #[serde(default)]
        request_id: Option<String>,
    },
    Publish {
        #[serde(default)]
        request_id: Option<String>,
        topic: String,
        message: PublishMessage,
    },
}

struct Subscription {
    group: String,
    credits: SubscriptionCredits,
    task: JoinHandle<()>,
}

/// Opens a WebSocket (`GET /v1/ws` with an upgrade). The protocol is described in
/// `docs/http.md`.
#[utoipa::path(get, path = "/v1/ws", tag = "websocket",
    params(
        ("Connection" = String, Header, description = "`Upgrade`"),
        ("Upgrade" = String, Header, description = "`websocket`"),
        ("Sec-WebSocket-Version" = String, Header, description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header, description = "16 random bytes in base64")),
    responses((status = 101, description = "Switching protocols: JSON text frames follow")))]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "websocket_upgrade_required",
                e.body_text(),
            )
            .into_response()
        }
    };
    let max = state.config.ws_max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(state, caller, socket))
}

struct Conn {
    state: AppState,
    caller: Caller,
    /// The broker, as this connection's caller (principal and address).
    broker: Broker,
    tx: Outbox,
    subs: HashMap<String, Subscription>,
}

async fn connection(state: AppState, caller: Caller, socket: WebSocket) {
    metrics::gauge!("rocketgate_connections_active", "gateway" => "ws").increment(1.0);
    let (sink, mut stream) = socket.split();
    let last_seen = Arc::new(AtomicI64::new(now_ms()));
    let cfg = &state.config;
    let write_timeout = Duration::from_millis(cfg.ws_write_timeout_ms);
    let (tx, mut writer) = outbox::start(
        sink,
        outbox::Limits {
            frames: cfg.ws_outbound_frames,
            bytes: cfg.ws_outbound_bytes,
            write_timeout,
            ping: Duration::from_millis(cfg.ws_ping_interval_ms),
        },
        last_seen.clone(),
    );
    let broker = state.broker.as_caller(rocketgate_core::Caller::client(
        Some(caller.principal.clone()),
        caller.source,
    ));
    let invalidated = state.broker.auth().invalidated(&caller.principal);
    tokio::pin!(invalidated);
    let mut conn = Conn {
        state: state.clone(),
        caller,
        broker,
        tx: tx.clone(),
        subs: HashMap::new(),
    };
    let user = conn.caller.principal.user().unwrap_or("-").to_owned();
    let peer = conn.caller.source;
    tracing::info!(user = %user, peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()), "WebSocket client connected");
    let mut stopping = state.stopping();
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            // The writer stopped (a write timed out, the socket failed): the connection ends.
            _ = &mut writer => break,
            () = stopped(&mut stopping) => {
                let _ = tx.send(Outbound::Close(1001, "server shutting down".into())).await;
                break;
            }
            why = &mut invalidated => {
                revoked(&tx, &why.to_string()).await;
                break;
            }
        };
        let frame = match frame {
            None => break,
            Some(Err(e)) => {
                // tungstenite's `Error::Capacity`: "Space limit exceeded: Message too long".
                let text = e.to_string();
                if text.contains("Space limit exceeded") {
                    let _ = tx
                        .send(Outbound::Close(1009, "message too big".into()))
                        .await;
                } else {
                    tracing::debug!(error = %e, "websocket read failed");
                }
                break;
            }
            Some(Ok(f)) => f,
        };
        last_seen.store(now_ms(), Ordering::Relaxed);
        match frame {
            WsMessage::Text(t) => {
                metrics::counter!("rocketgate_ws_frames_in_total").increment(1);
                match serde_json::from_str::<ClientFrame>(t.as_str()) {
                    Ok(f) => conn.handle(f).await,
                    Err(e) => {
                        let mut reason = format!("malformed frame: {e}");
                        truncate(&mut reason, 120);
                        let _ = tx.send(Outbound::Close(1007, reason)).await;
                        break;
                    }
                }
            }
            WsMessage::Binary(_) => {
                let _ = tx
                    .send(Outbound::Close(
                        1003,
                        "binary frames are not supported".into(),
                    ))
                    .await;
                break;
            }
            WsMessage::Close(_) => break,
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
        }
    }
    tracing::info!(
        user = %user,
        peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
        subscriptions = conn.subs.len(),
        "WebSocket client disconnected"
    );
    for (_, s) in conn.subs.drain() {
        s.task.abort();
    }
    drop(conn);
    drop(tx);
    // Let the writer send what is queued (a close frame) within one write timeout, then end it.
    if !writer.is_finished()
        && tokio::time::timeout(write_timeout, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    metrics::gauge!("rocketgate_connections_active", "gateway" => "ws").decrement(1.0);
}

/// Ends a connection whose credentials stopped being valid: an `error` frame saying why, then
/// close 1008 (policy violation). Bounded: the writer gives up on a client that does not read
/// within its write timeout, and then these sends fail at once.
async fn revoked(tx: &Outbox, why: &str) {
    tracing::info!(target: "audit", action = "websocket.close", reason = why, "credentials no longer valid");
    let e = ApiError::unauthenticated(why);
    let _ = tx.send(Outbound::Text(error_frame(None, None, &e))).await;
    let _ = tx.send(Outbound::Close(1008, why.to_owned())).await;
}

/// Completes once the server stops (never, if the signal is gone).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn error_frame(request_id: Option<&str>, subscription: Option<&str>, e: &ApiError) -> String {
    json!({
        "type": "error",
        "request_id": request_id,
        "subscription": subscription,
        "code": e.code,
        "status": e.status.as_u16(),
        "detail": e.detail,
    })
    .to_string()
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(detail)
}

impl Conn {
    async fn send(&self, text: String) {
        let _ = self.tx.send(Outbound::Text(text)).await;
    }

    async fn reply(&self, request_id: Option<&str>, result: Result<Value, ApiError>) {
        match result {
            Ok(v) => {
                if let Some(id) = request_id {
                    self.send(json!({"type": "reply", "request_id": id, "result": v}).to_string())
                        .await;
                }
            }
            Err(e) => self.send(error_frame(request_id, None, &e)).await,
        }
    }

    async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Subscribe {
                subscription,
                group,
                topic,
                filter,
                credits,
                invisible_ms,
                request_id,
            } => {
                let r = self.subscribe(
                    subscription.clone(),
                    group,
                    topic,
                    filter,
                    credits,
                    invisible_ms,
                );
                match r {
                    Ok(()) => {
                        self.send(
                            json!({"type": "subscribed", "subscription": subscription, "request_id": request_id})
                                .to_string(),
                        )
                        .await;
                    }
                    Err(e) => {
                        self.send(error_frame(request_id.as_deref(), Some(&subscription), &e))
                            .await;
                    }
                }
            }
            ClientFrame::Credit {
                subscription,
                credits,
                request_id,
            } => {
                let r = self
                    .grant(&subscription, credits)
                    .map(|held| json!({ "credits": held }));
                self.reply(request_id.as_deref(), r).await;
            }
            ClientFrame::Ack {
                subscription,
                receipt_handle,
                request_id,
            } => {
                let r = match self.group_of(&subscription).and_then(|g| {
                    self.may_settle(&g, &receipt_handle)?;
                    Ok(g)
                }) {
                    Ok(g) => self
                        .broker
                        .consumer()
                        .ack(&g, &receipt_handle)
                        .await
                        .map(|()| json!({"acked": true}))
                        .map_err(ApiError::from),
                    Err(e) => Err(e),
                };
                self.reply(request_id.as_deref(), r).await;
            }
            ClientFrame::Nack {
                subscription,
                receipt_handle,
                delay_ms,
                request_id,
            } => {
                let r = match self.group_of(&subscription).and_then(|g| {
                    self.may_settle(&g, &receipt_handle)?;
                    Ok(g)
                }) {
                    Ok(g) => self
                        .broker
                        .consumer()
                        .nack(&g, &receipt_handle, delay_ms.map(Duration::from_millis))
                        .await
                        .map(|()| json!({"nacked": true}))
                        .map_err(ApiError::from),
                    Err(e) => Err(e),
                };
                self.reply(request_id.as_deref(), r).await;
            }
            ClientFrame::Unsubscribe {
                subscription,
                request_id,
            } => {
                let r = match self.subs.remove(&subscription) {
                    Some(s) => {
                        s.task.abort();
                        Ok(json!({"unsubscribed": subscription}))
                    }
                    None => Err(unknown_subscription(&subscription)),
                };
                self.reply(request_id.as_deref(), r).await;
            }
            ClientFrame::Publish {
                request_id,
                topic,
                message,
            } => {
                let queue = message.queue_id;
                let allowed =
                    self.caller
                        .need(&self.state, &Resource::topic(&topic), &[Action::Pub]);
                let r = match allowed
                    .and_then(|()| message.into_message(&topic, self.broker.now_ms()))
                {
                    Ok(m) => self
                        .broker
                        .producer()
                        .send(SendRequest::new(
                            m,
                            queue.map_or(
                                rocketgate_core::QueueSelector::Auto,
                                rocketgate_core::QueueSelector::Queue,
                            ),
                        ))
                        .await
                        .map_err(ApiError::from)
                        .and_then(|r| {
                            serde_json::to_value(Published::from(r)).map_err(|e| bad(e.to_string()))
                        }),
                    Err(e) => Err(e),
                };
                self.reply(request_id.as_deref(), r).await;
            }
        }
    }

    /// Whether the caller may still consume as `group` and settle this handle (`Sub` on the
    /// group and on the handle's topic; the policy may have changed since the subscribe).
    fn may_settle(&self, group: &str, handle: &str) -> Result<(), ApiError> {
        self.caller
            .need(&self.state, &Resource::group(group), &[Action::Sub])?;
        self.caller.need_handle(&self.state, group, handle)
    }

    fn group_of(&self, subscription: &str) -> Result<String, ApiError> {
        self.subs
            .get(subscription)
            .map(|s| s.group.clone())
            .ok_or_else(|| unknown_subscription(subscription))
    }

    fn grant(&self, subscription: &str, credits: u32) -> Result<u32, ApiError> {
        let s = self
            .subs
            .get(subscription)
            .ok_or_else(|| unknown_subscription(subscription))?;
        let held = u32::try_from(s.credits.available()).unwrap_or(u32::MAX);
        let max = self.state.config.ws_max_credits;
        if held.saturating_add(credits) > max {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "too_many_credits",
                format!("a subscription holds at most {max} credits"),
            ));
        }
        s.credits.grant(credits);
        Ok(held + credits)
    }

    fn subscribe(
        &mut self,
        subscription: String,
        group: String,
        topic: String,
        filter: Option<WsFilter>,
        credits: u32,
        invisible_ms: Option<u64>,
    ) -> Result<(), ApiError> {
        let cfg = &self.state.config;
        if subscription.is_empty() || subscription.len() > MAX_ID {
            return Err(bad("subscription: 1 to 128 bytes"));
        }
        if self.subs.contains_key(&subscription) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "subscription_exists",
                format!("subscription `{subscription}` exists on this connection"),
            ));
        }
        if self.subs.len() >= cfg.ws_max_subscriptions {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_subscriptions",
                format!(
                    "at most {} subscriptions per connection",
                    cfg.ws_max_subscriptions
                ),
            ));
        }
        if credits > cfg.ws_max_credits {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "too_many_credits",
                format!(
                    "a subscription holds at most {} credits",
                    cfg.ws_max_credits
                ),
            ));
        }
        self.caller
            .need(&self.state, &Resource::topic(&topic), &[Action::Sub])?;
        self.caller
            .need(&self.state, &Resource::group(&group), &[Action::Sub])?;
        let broker = &self.broker;
        let filter: Option<FilterExpression> = filter.map(|f| match f {
            WsFilter::Tag(t) => FilterExpression::tag(t),
            WsFilter::Full(f) => f.into(),
        });
        let invisible = Duration::from_millis(invisible_ms.unwrap_or(cfg.ws_invisible_ms));
        let consumer = &broker.config().consumer;
        let sub = broker.consumer().subscribe(SubscriptionRequest {
            pop: PopRequest {
                group: group.clone(),
                topic: topic.clone(),
                filter,
                max: consumer.max_pop_batch.max(1),
                invisible,
                wait: POLL.min(Duration::from_millis(consumer.max_wait_ms)),
            },
            credits: Credits::Own(credits),
            max_buffered_bytes: consumer.max_pop_bytes,
        })?;
        let credits = sub.credit_handle();
        let (state, caller) = (self.state.clone(), self.caller.clone());
        let (topic, group_name) = (Resource::topic(topic), Resource::group(&group));
        let allowed = move || {
            caller.need(&state, &topic, &[Action::Sub])?;
            caller.need(&state, &group_name, &[Action::Sub])
        };
        let task = tokio::spawn(forward(sub, self.tx.clone(), subscription.clone(), allowed));
        self.subs.insert(
            subscription,
            Subscription {
                group,
                credits,
                task,
            },
        );
        Ok(())
    }
}

fn unknown_subscription(s: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_subscription",
        format!("no subscription `{s}` on this connection"),
    )
}

/// One subscription: the core's credit-bounded delivery loop, as message and error frames.
/// Every delivery is authorized again (`allowed`): a subscription whose user lost `Sub` ends
/// with an error frame, and what it had popped reappears after its invisible duration.
async fn forward(
    mut sub: CoreSubscription,
    tx: Outbox,
    subscription: String,
    allowed: impl Fn() -> Result<(), ApiError> + Send,
) {
    while let Some(item) = sub.next().await {
        if let Err(e) = allowed() {
            let _ = tx
                .send(Outbound::Text(error_frame(None, Some(&subscription), &e)))
                .await;
            return;
        }
        let frame = match item {
            Ok(p) => {
                let mut frame = match serde_json::to_value(ReceivedMessage::new(p, false)) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                frame["type"] = json!("message");
                frame["subscription"] = json!(subscription);
                metrics::counter!("rocketgate_ws_messages_out_total").increment(1);
                frame.to_string()
            }
            Err(e) => error_frame(None, Some(&subscription), &ApiError::from(e)),
        };
        if tx.send(Outbound::Text(frame)).await.is_err() {
            return;
        }
    }
}
