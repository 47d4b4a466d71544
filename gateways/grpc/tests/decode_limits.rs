//! Requests that would make protobuf decoding allocate far more than their size (issue 14, a
//! fuzzing finding): sent as raw bytes by a real tonic client to a real server on 127.0.0.1,
//! they are refused before prost decodes them, with a gRPC error naming the limit, and the
//! process's peak memory (VmHWM) stays bounded; the server keeps serving afterwards.
//!
//! The client sends pre-encoded bytes ([`Raw`]) so that the test itself never builds the
//! millions of messages the request describes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod messaging_support;

use std::marker::PhantomData;

use bytes::{BufMut as _, Bytes};
use messaging_support::*;
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

/// A codec sending pre-encoded request bytes and decoding the response as `R`.
struct Raw<R>(PhantomData<R>);

struct RawEncoder;
struct RawDecoder<R>(PhantomData<R>);

impl<R: prost::Message + Default + Send + 'static> Codec for Raw<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder<R>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder<R> {
        RawDecoder(PhantomData)
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl<R: prost::Message + Default> Decoder for RawDecoder<R> {
    type Item = R;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, tonic::Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// Calls the unary RPC `method` of the MessagingService with `body` as its request.
async fn call_raw<R: prost::Message + Default + Send + Sync + 'static>(
    port: u16,
    method: &'static str,
    body: Bytes,
) -> Result<R, tonic::Status> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(WAIT)
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static(method);
    bounded(grpc.unary(req(body), path, Raw::<R>(PhantomData)))
        .await
        .map(tonic::Response::into_inner)
}

/// `VmHWM` (peak resident memory) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// A field `number` of wire type LEN holding `inner`.
fn len_field(number: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 12);
    let mut put = |mut v: u64| loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    };
    put(u64::from(number << 3 | 2));
    put(inner.len() as u64);
    out.extend_from_slice(inner);
    out
}

/// Serializes the tests that measure the process's peak memory.
static PEAK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SEND: &str = "/apache.rocketmq.v2.MessagingService/SendMessage";
const ROUTE: &str = "/apache.rocketmq.v2.MessagingService/QueryRoute";
const ACK: &str = "/apache.rocketmq.v2.MessagingService/AckMessage";

/// The fuzzing finding: 1,048,576 empty messages in 2 MiB made prost allocate ~579 MB.
#[tokio::test]
async fn a_send_of_a_million_empty_messages_is_refused_before_decoding() {
    let _measuring = PEAK.lock().await;
    let srv = start().await;
    let before = peak_rss();
    let attack = Bytes::from(b"\x0a\x00".repeat(1 << 20));
    let err = call_raw::<pb::SendMessageResponse>(srv.port, SEND, attack)
        .await
        .expect_err("refused");
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak RSS growth for the 2 MiB request: {} MiB", grown >> 20);
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("limits.max_batch") && err.message().contains("1024"),
        "{err:?}"
    );
    assert!(
        grown < 64 << 20,
        "peak RSS grew by {} MiB for a 2 MiB request",
        grown >> 20
    );

    // The server still serves, and a batch at the limit is decoded.
    let mut c = srv.client.clone();
    let sent = bounded(c.send_message(req(pb::SendMessageRequest {
        messages: vec![message("normal", "ID-AFTER", pb::MessageType::Normal)],
    })))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(code(&sent.status), Code::Ok, "{sent:?}");
    let batch: Vec<u8> = (0..1024)
        .flat_map(|i| {
            len_field(
                1,
                &pb::Message {
                    topic: res("normal"),
                    ..message("normal", &format!("ID-{i}"), pb::MessageType::Normal)
                }
                .encode_to_vec(),
            )
        })
        .collect();
    let sent = call_raw::<pb::SendMessageResponse>(srv.port, SEND, batch.into())
        .await
        .unwrap();
    assert_eq!(code(&sent.status), Code::Ok, "{sent:?}");
    assert_eq!(sent.entries.len(), 1024);
    srv.stop().await;
}

/// 4,194,304 empty ack entries (8 MiB) are refused the same way.
#[tokio::test]
async fn an_ack_of_millions_of_entries_is_refused_before_decoding() {
    let srv = start().await;
    let mut body = len_field(1, &len_field(2, b"g"));
    body.extend(b"\x1a\x00".repeat(4 << 20));
    let err = call_raw::<pb::AckMessageResponse>(srv.port, ACK, body.into())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("limits.max_batch"), "{err:?}");
    srv.stop().await;
}

/// A message with 100,000 user-property entries (nested in the request) is refused.
#[tokio::test]
async fn a_message_with_a_huge_property_map_is_refused_before_decoding() {
    let srv = start().await;
    let msg = b"\x12\x00".repeat(100_000);
    let err = call_raw::<pb::SendMessageResponse>(srv.port, SEND, len_field(1, &msg).into())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("limits.max_properties"), "{err:?}");
    // 32 keys per message is the core's limit; 100,000 empty ones are refused too.
    let sys = len_field(3, &b"\x12\x00".repeat(100_000));
    let err = call_raw::<pb::SendMessageResponse>(srv.port, SEND, len_field(1, &sys).into())
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("limits.max_keys"), "{err:?}");
    srv.stop().await;
}

/// The largest decoding the limits let through — 2 Mi empty addresses (4 MiB) in a route
/// query, 64 MiB of entries — stays within a few hundred MB; one more address is refused.
#[tokio::test]
async fn the_largest_accepted_decoding_stays_bounded() {
    let _measuring = PEAK.lock().await;
    let srv = start().await;
    let route = |n: usize| Bytes::from(len_field(2, &b"\x12\x00".repeat(n)));
    let before = peak_rss();
    let answer = call_raw::<pb::QueryRouteResponse>(srv.port, ROUTE, route(2 << 20)).await;
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS growth for the largest accepted request: {} MiB",
        grown >> 20
    );
    assert!(answer.is_ok(), "{answer:?}");
    assert!(grown < 256 << 20, "peak RSS grew by {} MiB", grown >> 20);
    let err = call_raw::<pb::QueryRouteResponse>(srv.port, ROUTE, route((2 << 20) + 1))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    srv.stop().await;
}
