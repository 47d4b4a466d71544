//! The outbound side of one WebSocket connection: the queue of frames to send ([`Outbox`],
//! bounded in frames and in bytes) and the writer task that owns the socket's sink.
//!
//! Invariants: at most `http.ws_outbound_frames` frames and `http.ws_outbound_bytes` bytes
//! wait for one connection (a producer waits for room: a frame holds its bytes' permits until
//! it is written; one larger than the bound takes the whole bound), so a client that does not
//! read costs the server a bounded amount of memory; every write (a frame, a ping, the close)
//! must complete within `http.ws_write_timeout_ms`, or the writer stops — the connection ends
//! (`connection` in `ws.rs` watches the writer) and its socket is dropped. The writer also
//! closes (1001) a client silent for two ping intervals.
//!
//! Concurrency: the writer is the only task that touches the sink; producers (the reader
//! task's replies, one task per subscription) hold an [`Outbox`] clone. When the writer ends it
//! closes the byte semaphore, so no producer stays blocked.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::rest::publish::now_ms;

/// A frame to send.
pub(super) enum Outbound {
    /// A JSON text frame.
    Text(String),
    /// A close frame with its code and reason; the writer stops after it.
    Close(u16, String),
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Close(_, r) => r.len() + 2,
        }
    }
}

/// The sending side of a connection's queue (cheap to clone).
#[derive(Clone)]
pub(super) struct Outbox {
    tx: mpsc::Sender<(Outbound, OwnedSemaphorePermit)>,
    bytes: Arc<Semaphore>,
    max: usize,
}

/// The connection has no writer any more.
#[derive(Debug)]
pub(super) struct Gone;

impl Outbox {
    /// Queues a frame, waiting for room (see the module doc).
    ///
    /// # Errors
    /// [`Gone`] once the writer has stopped.
    pub(super) async fn send(&self, out: Outbound) -> Result<(), Gone> {
        let n = u32::try_from(out.len().clamp(1, self.max)).unwrap_or(u32::MAX);
        let permit = self
            .bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| Gone)?;
        self.tx.send((out, permit)).await.map_err(|_| Gone)
    }
}

/// The writer's settings.
pub(super) struct Limits {
    pub frames: usize,
    pub bytes: usize,
    pub write_timeout: Duration,
    pub ping: Duration,
}

/// Starts the writer of `sink`: the queue to feed it and its task. `seen` is the time (ms) the
/// client last sent anything.
pub(super) fn start(
    mut sink: SplitSink<WebSocket, WsMessage>,
    limits: Limits,
    seen: Arc<AtomicI64>,
) -> (Outbox, JoinHandle<()>) {
    let max = limits
        .bytes
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let bytes = Arc::new(Semaphore::new(max));
    let (tx, mut rx) = mpsc::channel::<(Outbound, OwnedSemaphorePermit)>(limits.frames);
    let outbox = Outbox {
        tx,
        bytes: bytes.clone(),
        max,
    };
    let timeout = limits.write_timeout;
    let ping = limits.ping;
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(ping);
        tick.tick().await;
        loop {
            let out = tokio::select! {
                out = rx.recv() => out.map(|(o, _permit)| o),
                _ = tick.tick() => {
                    let silent = now_ms() - seen.load(Ordering::Relaxed);
                    if silent > 2 * i64::try_from(ping.as_millis()).unwrap_or(i64::MAX) {
                        Some(Outbound::Close(1001, "no pong within two ping intervals".into()))
                    } else {
                        if !write(&mut sink, timeout, WsMessage::Ping(bytes::Bytes::new())).await {
                            break;
                        }
                        continue;
                    }
                }
            };
            match out {
                Some(Outbound::Text(t)) => {
                    if !write(&mut sink, timeout, WsMessage::Text(t.into())).await {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    metrics::counter!("rocketgate_ws_closed_total", "code" => code.to_string())
                        .increment(1);
                    let frame = WsMessage::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    }));
                    if write(&mut sink, timeout, frame).await {
                        let _ = tokio::time::timeout(timeout, sink.close()).await;
                    }
                    break;
                }
                None => break,
            }
        }
        bytes.close();
    });
    (outbox, task)
}

/// Sends one message within `timeout`; false when it failed or timed out.
async fn write(
    sink: &mut SplitSink<WebSocket, WsMessage>,
    timeout: Duration,
    m: WsMessage,
) -> bool {
    match tokio::time::timeout(timeout, sink.send(m)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            metrics::counter!("rocketgate_ws_closed_total", "code" => "write_timeout").increment(1);
            tracing::debug!("websocket write timed out: closing the connection");
            false
        }
    }
}
