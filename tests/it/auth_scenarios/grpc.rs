//! The gRPC column of the authorization scenarios: publish and receive with the official
//! RocketMQ 5 Rust SDK (`rocketmq` 5.0.0) signing with the cell's access key and secret key,
//! topic administration through `BrokerAdmin` signed the same way, and the one credential the
//! SDK cannot be given — a stale signature — as a signed `SendMessage` of the generated
//! `MessagingService` stub.
//!
//! Answers in the protocol's own terms: the v2 status code of a MessagingService answer as
//! the SDK reports it (`OK`, `FORBIDDEN`, `UNAUTHORIZED`), the gRPC status of a BrokerAdmin call
//! (`PERMISSION_DENIED`, `UNAUTHENTICATED`). Every call is bounded ([`bounded`]); a cell's
//! clients are shut down before it returns.
//!
//! Used by `auth_scenarios` only; no state of its own.

use std::future::Future;
use std::time::Duration;

use rocketgate_core::auth::sign;
use rocketgate_proto::apache::rocketmq::v2;
use rocketgate_proto::apache::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::broker_admin_client::BrokerAdminClient;
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::error::ClientError;
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use rocketmq::{Producer, SimpleConsumer};
use tonic::transport::{Channel, Endpoint};

use super::server::{Server, ORDERS, POLL};
use super::{Act, Cell, Login};

/// Bound on one SDK or stub call (the SDK's own unary deadline is 3 s).
const CALL: Duration = Duration::from_secs(8);
/// How far in the past a stale signature is dated: past the broker's 15 min skew window.
const STALE_BY_MS: i64 = 3_600_000;

/// Awaits `fut` for at most `limit`; a timeout is the cell's answer.
async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))
}

/// The v2 status code the SDK reports for a refused call, or the error itself.
fn code(e: &ClientError) -> String {
    e.context()
        .iter()
        .find(|(k, _)| *k == "code")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("error: {e}"))
}

/// Runs one cell.
pub async fn run(s: &Server, cell: &Cell) -> String {
    match (&cell.login, cell.act) {
        (Login::Token { .. }, _) => "n/a (no bearer tokens)".into(),
        (_, Act::AdminTopic) => admin(s, cell).await,
        (Login::Expired { .. }, _) => stale_send(s, cell).await,
        (_, Act::PublishOrders | Act::PublishOther) => publish(s, cell).await,
        (_, Act::ReceiveG1 | Act::ReceiveNewGroup) => receive(s, cell).await,
    }
}

fn client_option(s: &Server, login: &Login) -> ClientOption {
    let mut o = ClientOption::default();
    o.set_access_url(s.grpc.to_string());
    o.set_enable_tls(false);
    if let Login::Secret { ak, sk } = login {
        o.set_access_key(ak.as_str());
        o.set_secret_key(sk.as_str());
    }
    o
}

async fn publish(s: &Server, cell: &Cell) -> String {
    let mut o = ProducerOption::default();
    o.set_topics(vec![cell.topic]);
    let mut p = match Producer::new(o, client_option(s, &cell.login)) {
        Ok(p) => p,
        Err(e) => return format!("Producer::new: {e}"),
    };
    match bounded(CALL, p.start()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return code(&e),
        Err(t) => return t,
    }
    let m = match MessageBuilder::builder()
        .set_topic(cell.topic)
        .set_body(b"from the gRPC SDK".to_vec())
        .build()
    {
        Ok(m) => m,
        Err(e) => return format!("MessageBuilder: {e}"),
    };
    let sent = bounded(CALL, p.send(m)).await;
    let _ = bounded(CALL, p.shutdown()).await;
    match sent {
        Ok(Ok(_)) => "OK".into(),
        Ok(Err(e)) => code(&e),
        Err(t) => t,
    }
}

async fn receive(s: &Server, cell: &Cell) -> String {
    let mut o = SimpleConsumerOption::default();
    o.set_consumer_group(cell.group.as_str());
    o.set_topics(vec![ORDERS]);
    let mut c = match SimpleConsumer::new(o, client_option(s, &cell.login)) {
        Ok(c) => c,
        Err(e) => return format!("SimpleConsumer::new: {e}"),
    };
    match bounded(CALL, c.start()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return code(&e),
        Err(t) => return t,
    }
    let filter = FilterExpression::new(FilterType::Tag, "*");
    let got = bounded(
        POLL + CALL,
        c.receive_with(ORDERS, &filter, 1, Duration::from_secs(30)),
    )
    .await;
    let answer = match got {
        Ok(Ok(messages)) if messages.is_empty() => "OK, but no message".into(),
        Ok(Ok(messages)) => {
            let mut answer = "OK".to_owned();
            for m in &messages {
                match bounded(CALL, c.ack(m)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => answer = format!("ack: {}", code(&e)),
                    Err(t) => answer = format!("ack: {t}"),
                }
            }
            answer
        }
        Ok(Err(e)) => code(&e),
        Err(t) => t,
    };
    let _ = bounded(CALL, c.shutdown()).await;
    answer
}

async fn channel(s: &Server) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{}", s.grpc))
        .map_err(|e| e.to_string())?
        .connect_timeout(CALL)
        .timeout(CALL);
    endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// A request signed as the SDKs sign one (`MQv2-HMAC-SHA1` over `x-mq-date-time`), dated now
/// — or an hour ago, in the Rust SDK's format, for an expired credential; unsigned without
/// credentials.
fn signed<T>(msg: T, login: &Login) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let now = rocketgate_core::now_ms();
    let (ak, sk, date_time) = match login {
        Login::Secret { ak, sk } => (ak, sk, sign::compact_time(now)),
        Login::Expired { ak, sk, .. } => (ak, sk, rfc3339(now - STALE_BY_MS)),
        Login::Anonymous | Login::Token { .. } => return r,
    };
    let header = format!(
        "MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, Signature={}",
        sign::sign(sk.as_bytes(), &date_time)
    );
    let m = r.metadata_mut();
    m.insert("authorization", header.parse().unwrap());
    m.insert("x-mq-date-time", date_time.parse().unwrap());
    m.insert("x-mq-client-id", "auth-scenarios".parse().unwrap());
    r
}

/// `ms` as RFC 3339 in UTC (`2026-12-07T10:30:00Z`), as the Rust SDK writes `x-mq-date-time`.
/// (A compact `yyyyMMdd'T'HHmmss'Z'` time is accepted up to 14 h off — a client's local time
/// zone — so an hour-old one would still pass; docs/security.md.)
fn rfc3339(ms: i64) -> String {
    let c = sign::compact_time(ms);
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &c[0..4],
        &c[4..6],
        &c[6..8],
        &c[9..11],
        &c[11..13],
        &c[13..15]
    )
}

/// The canonical name of a gRPC status code.
fn grpc_code(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::PermissionDenied => "PERMISSION_DENIED".into(),
        tonic::Code::Unauthenticated => "UNAUTHENTICATED".into(),
        other => format!("{other:?}: {}", status.message()),
    }
}

/// `BrokerAdmin` CreateTopic, then DeleteTopic of the cell's scratch topic.
async fn admin(s: &Server, cell: &Cell) -> String {
    let mut c = match bounded(CALL, channel(s)).await {
        Ok(Ok(ch)) => BrokerAdminClient::new(ch),
        Ok(Err(e)) | Err(e) => return e,
    };
    let create = pb::CreateTopicRequest {
        topic: Some(pb::TopicSpec {
            name: cell.scratch_topic.clone(),
            queue_count: 1,
            ..pb::TopicSpec::default()
        }),
    };
    match bounded(CALL, c.create_topic(signed(create, &cell.login))).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => return grpc_code(&status),
        Err(t) => return t,
    }
    let delete = pb::DeleteTopicRequest {
        name: cell.scratch_topic.clone(),
    };
    match bounded(CALL, c.delete_topic(signed(delete, &cell.login))).await {
        Ok(Ok(_)) => "OK".into(),
        Ok(Err(status)) => format!("created, then delete: {}", grpc_code(&status)),
        Err(t) => t,
    }
}

/// `SendMessage` to the cell's topic signed an hour ago: the v2 status of the answer.
async fn stale_send(s: &Server, cell: &Cell) -> String {
    let mut c = match bounded(CALL, channel(s)).await {
        Ok(Ok(ch)) => MessagingServiceClient::new(ch),
        Ok(Err(e)) | Err(e) => return e,
    };
    let request = v2::SendMessageRequest {
        messages: vec![v2::Message {
            topic: Some(v2::Resource {
                resource_namespace: String::new(),
                name: cell.topic.into(),
            }),
            body: b"signed an hour ago".to_vec(),
            ..v2::Message::default()
        }],
    };
    match bounded(CALL, c.send_message(signed(request, &cell.login))).await {
        Ok(Ok(r)) => match r.into_inner().status {
            Some(st) => match v2::Code::try_from(st.code) {
                Ok(v2::Code::Unauthorized) => "UNAUTHORIZED".into(),
                Ok(c) => format!("{}: {}", c.as_str_name(), st.message),
                Err(_) => format!("code {}: {}", st.code, st.message),
            },
            None => "no status".into(),
        },
        Ok(Err(status)) => format!("gRPC {:?}", status.code()),
        Err(t) => t,
    }
}
