//! The REST and WebSocket columns of the authorization scenarios: reqwest against the HTTP
//! gateway's `/v1` routes, tokio-tungstenite against `/v1/ws`.
//!
//! Credentials: an access key and secret key as HTTP Basic, a token as `Authorization:
//! Bearer` (REST) or `?access_token=` (the WebSocket upgrade, as browsers send it).
//! Answers in the protocol's own terms: REST `2xx`, `403 forbidden` (the problem's `code`),
//! `401 + WWW-Authenticate`; WebSocket `upgrade 401`, a `reply` or `message` frame, or an
//! `error` frame with its `code`. Every request and frame wait is bounded.
//!
//! Used by `auth_scenarios` only; no state of its own.

use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::server::{Server, ORDERS};
use super::{Act, Cell, Login};

/// Bound on one request or one awaited frame.
const WAIT: Duration = Duration::from_secs(8);
/// How long a WebSocket subscription may stay silent before the cell gives up on a message.
const QUIET: Duration = Duration::from_secs(3);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn basic(ak: &str, sk: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{ak}:{sk}"));
    format!("Basic {pair}")
}

/// The `Authorization` header of a login, if it has one.
fn authorization(login: &Login) -> Option<String> {
    match login {
        Login::Anonymous => None,
        Login::Secret { ak, sk } => Some(basic(ak, sk)),
        Login::Token { token, .. } | Login::Expired { token, .. } => {
            Some(format!("Bearer {token}"))
        }
    }
}

/// A REST call: its status and its JSON answer (a problem on failure).
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    login: &Login,
    body: Option<Value>,
) -> Result<(u16, Value, bool), String> {
    let mut r = http.request(method, url);
    if let Some(a) = authorization(login) {
        r = r.header("authorization", a);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let answer = r.send().await.map_err(|e| format!("request: {e}"))?;
    let status = answer.status().as_u16();
    let challenged = answer.headers().contains_key("www-authenticate");
    let text = answer.text().await.map_err(|e| format!("body: {e}"))?;
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, v, challenged))
}

/// A REST answer in the table's terms.
fn rest_answer(status: u16, body: &Value, challenged: bool) -> String {
    match status {
        200..=299 => "2xx".into(),
        401 if challenged => "401 + WWW-Authenticate".into(),
        401 => "401 without WWW-Authenticate".into(),
        _ => format!("{status} {}", body["code"].as_str().unwrap_or("?")),
    }
}

/// Runs one REST cell.
pub async fn rest(s: &Server, http: &reqwest::Client, cell: &Cell) -> String {
    let base = format!("http://{}", s.http);
    let login = &cell.login;
    let post = reqwest::Method::POST;
    let r = match cell.act {
        Act::PublishOrders | Act::PublishOther => {
            let url = format!("{base}/v1/topics/{}/messages", cell.topic);
            call(http, post, url, login, Some(json!({"body": "from REST"}))).await
        }
        Act::ReceiveG1 | Act::ReceiveNewGroup => {
            let url = format!("{base}/v1/groups/{}/receive", cell.group);
            let body = json!({"topic": ORDERS, "max": 1, "wait_ms": 2000, "invisible_ms": 30000});
            match call(http, post.clone(), url, login, Some(body)).await {
                Ok((200, got, _)) => {
                    return match got["messages"][0]["receipt_handle"].as_str() {
                        None => "200, but no message".into(),
                        Some(handle) => {
                            let url = format!("{base}/v1/groups/{}/ack", cell.group);
                            let body = json!({ "receipt_handle": handle });
                            match call(http, post, url, login, Some(body)).await {
                                Ok((200..=299, _, _)) => "2xx".into(),
                                Ok((st, b, c)) => format!("ack: {}", rest_answer(st, &b, c)),
                                Err(e) => e,
                            }
                        }
                    };
                }
                other => other,
            }
        }
        Act::AdminTopic => {
            let url = format!("{base}/v1/topics");
            let body = json!({"name": cell.scratch_topic, "queue_count": 1});
            match call(http, post, url, login, Some(body)).await {
                Ok((200..=299, _, _)) => {
                    let url = format!("{base}/v1/topics/{}", cell.scratch_topic);
                    return match call(http, reqwest::Method::DELETE, url, login, None).await {
                        Ok((200..=299, _, _)) => "2xx".into(),
                        Ok((st, b, c)) => format!("created, then {}", rest_answer(st, &b, c)),
                        Err(e) => e,
                    };
                }
                other => other,
            }
        }
    };
    match r {
        Ok((status, body, challenged)) => rest_answer(status, &body, challenged),
        Err(e) => e,
    }
}

/// Opens `/v1/ws` with the login: the socket, or the refused upgrade in the table's terms.
async fn open(s: &Server, login: &Login) -> Result<Ws, String> {
    let query = match login {
        Login::Token { token, .. } | Login::Expired { token, .. } => {
            format!("?access_token={token}")
        }
        Login::Anonymous | Login::Secret { .. } => String::new(),
    };
    let mut req = format!("ws://{}/v1/ws{query}", s.http)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Login::Secret { ak, sk } = login {
        let value = basic(ak, sk).parse().map_err(|e| format!("header: {e}"))?;
        req.headers_mut().insert("authorization", value);
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => {
            Err(format!("upgrade {}", r.status().as_u16()))
        }
        Ok(Err(e)) => Err(format!("upgrade: {e}")),
        Err(_) => Err(format!("no upgrade within {WAIT:?}")),
    }
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    tokio::time::timeout(WAIT, ws.send(Frame::text(v.to_string())))
        .await
        .map_err(|_| "send: timed out".to_owned())?
        .map_err(|e| format!("send: {e}"))
}

/// The next JSON frame within `limit`; `Ok(None)` when none came.
async fn next(ws: &mut Ws, limit: Duration) -> Result<Option<Value>, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("read: {e}")),
            Ok(Some(Ok(Frame::Text(t)))) => {
                return serde_json::from_str(t.as_str())
                    .map(Some)
                    .map_err(|e| format!("frame: {e}"))
            }
            Ok(Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) => {}
            Ok(Some(Ok(other))) => return Err(format!("unexpected frame {other:?}")),
        }
    }
}

fn error_frame(f: &Value) -> String {
    format!("error {}", f["code"].as_str().unwrap_or("?"))
}

/// Runs one WebSocket cell.
pub async fn ws(s: &Server, cell: &Cell) -> String {
    if cell.act == Act::AdminTopic {
        return "n/a (no admin frames)".into();
    }
    let mut ws = match open(s, &cell.login).await {
        Ok(ws) => ws,
        Err(e) => return e,
    };
    let answer = match frames(&mut ws, cell).await {
        Ok(a) | Err(a) => a,
    };
    let _ = tokio::time::timeout(WAIT, ws.close(None)).await;
    answer
}

async fn frames(ws: &mut Ws, cell: &Cell) -> Result<String, String> {
    if matches!(cell.act, Act::PublishOrders | Act::PublishOther) {
        let publish = json!({"type": "publish", "request_id": "p", "topic": cell.topic,
            "message": {"body": "from WebSocket"}});
        send(ws, publish).await?;
        let f = next(ws, WAIT).await?.ok_or("no answer to publish")?;
        return Ok(match f["type"].as_str() {
            Some("reply") => "reply".into(),
            Some("error") => error_frame(&f),
            _ => format!("unexpected {f}"),
        });
    }
    let subscribe = json!({"type": "subscribe", "request_id": "s", "subscription": "s",
        "group": cell.group, "topic": ORDERS, "credits": 1});
    send(ws, subscribe).await?;
    loop {
        let Some(f) = next(ws, QUIET).await? else {
            return Ok("subscribed, but no message".into());
        };
        match f["type"].as_str() {
            Some("subscribed") => {}
            Some("error") => return Ok(error_frame(&f)),
            Some("message") => {
                let handle = f["receipt_handle"].as_str().unwrap_or_default();
                let ack = json!({"type": "ack", "request_id": "a", "subscription": "s",
                    "receipt_handle": handle});
                send(ws, ack).await?;
                let r = next(ws, WAIT).await?.ok_or("no answer to ack")?;
                return Ok(match r["type"].as_str() {
                    Some("reply") => "message".into(),
                    _ => format!("message, then ack: {r}"),
                });
            }
            _ => return Ok(format!("unexpected {f}")),
        }
    }
}
