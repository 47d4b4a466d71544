//! Unit tests of the wire checks: valid requests of every RPC pass, each count is refused one
//! past its limit (and not at it), merged fields count together, the size rule, and bytes
//! the walk cannot read.

use prost::Message as _;
use rocketgate_proto::apache::rocketmq::v2 as pb;
use tonic::Code;

use super::*;

const SMALL: DecodeLimits = DecodeLimits {
    max_batch: 3,
    max_properties: 4,
    max_keys: 2,
};

fn len_field(number: u64, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for mut v in [number << 3 | 2, inner.len() as u64] {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    out.extend_from_slice(inner);
    out
}

fn code(schema_of: &str, bytes: &[u8], limits: &DecodeLimits) -> Result<(), Code> {
    let schema = schema(schema_of).ok_or(Code::NotFound)?;
    check(schema, bytes, limits).map_err(|s| s.code())
}

#[test]
fn every_seed_request_passes_with_the_default_limits() {
    let limits = DecodeLimits::new(&LimitsConfig::default());
    for (name, input) in crate::fuzz::seeds() {
        let rpc = crate::fuzz::RPCS[usize::from(input[0]) % crate::fuzz::RPCS.len()];
        if let Some(schema) = schema(rpc) {
            let checked = check(schema, &input[1..], &limits).map_err(|s| s.code());
            // Only the seed cut short on purpose is not protobuf.
            let expected = if name.starts_with("truncated") {
                Err(Code::InvalidArgument)
            } else {
                Ok(())
            };
            assert_eq!(checked, expected, "{name}");
        }
    }
}

#[test]
fn counts_are_refused_one_past_their_limit() {
    let message = |props: usize, keys: usize| pb::Message {
        topic: Some(pb::Resource {
            resource_namespace: String::new(),
            name: "t".into(),
        }),
        user_properties: (0..props).map(|i| (format!("k{i}"), "v".into())).collect(),
        system_properties: Some(pb::SystemProperties {
            keys: (0..keys).map(|i| format!("key{i}")).collect(),
            message_id: "01ID".into(),
            ..Default::default()
        }),
        body: b"hello".to_vec(),
    };
    let send = |n: usize, props: usize, keys: usize| {
        pb::SendMessageRequest {
            messages: (0..n).map(|_| message(props, keys)).collect(),
        }
        .encode_to_vec()
    };
    assert_eq!(code("SendMessage", &send(3, 4, 2), &SMALL), Ok(()));
    assert_eq!(
        code("SendMessage", &send(4, 0, 0), &SMALL),
        Err(Code::InvalidArgument)
    );
    assert_eq!(
        code("SendMessage", &send(1, 5, 0), &SMALL),
        Err(Code::InvalidArgument)
    );
    assert_eq!(
        code("SendMessage", &send(1, 0, 3), &SMALL),
        Err(Code::InvalidArgument)
    );
    let ack = |n: usize| {
        pb::AckMessageRequest {
            group: None,
            topic: None,
            entries: (0..n)
                .map(|i| pb::AckMessageEntry {
                    message_id: format!("id{i}"),
                    receipt_handle: "h".into(),
                })
                .collect(),
        }
        .encode_to_vec()
    };
    assert_eq!(code("AckMessage", &ack(3), &SMALL), Ok(()));
    let err = check(&ACK, &ack(4), &SMALL).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("AckMessageRequest.entries")
            && err.message().contains("limits.max_batch"),
        "{err:?}"
    );
}

#[test]
fn occurrences_of_a_singular_field_merge_and_count_together() {
    // Two `system_properties` of 2 keys each decode to one with 4 keys.
    let sys = len_field(3, &[len_field(2, b"a"), len_field(2, b"b")].concat());
    let message = [sys.clone(), sys].concat();
    let decoded = pb::Message::decode(message.as_slice()).unwrap();
    assert_eq!(decoded.system_properties.unwrap().keys.len(), 4);
    assert_eq!(
        code("SendMessage", &len_field(1, &message), &SMALL),
        Err(Code::InvalidArgument)
    );
    // ...while two messages of 2 keys each are two messages.
    let one = len_field(3, &[len_field(2, b"a"), len_field(2, b"b")].concat());
    let two = [len_field(1, &one), len_field(1, &one)].concat();
    assert_eq!(code("SendMessage", &two, &SMALL), Ok(()));
}

#[test]
fn settings_name_a_bounded_number_of_topics() {
    let limits = DecodeLimits::new(&LimitsConfig::default());
    // Empty topics are 2 bytes on the wire, 48 in memory; a million took 26 s to answer.
    let telemetry = |topics: usize| {
        let publishing = len_field(5, &b"\x0a\x00".repeat(topics));
        len_field(2, &publishing)
    };
    assert_eq!(
        code("Telemetry", &telemetry(MAX_SETTINGS_TOPICS), &limits),
        Ok(())
    );
    let err = check(&TELEMETRY, &telemetry(MAX_SETTINGS_TOPICS + 1), &limits).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("Publishing.topics")
            && err.message().contains("MAX_SETTINGS_TOPICS"),
        "{err:?}"
    );
    assert_eq!(
        code("Telemetry", &telemetry(1 << 20), &limits),
        Err(Code::InvalidArgument)
    );
    let subscriptions = |n: usize| len_field(2, &len_field(6, &b"\x12\x00".repeat(n)));
    assert_eq!(
        code("Telemetry", &subscriptions(MAX_SETTINGS_TOPICS), &limits),
        Ok(())
    );
    assert_eq!(
        code(
            "Telemetry",
            &subscriptions(MAX_SETTINGS_TOPICS + 1),
            &limits
        ),
        Err(Code::InvalidArgument)
    );
}

#[test]
fn entries_that_decode_to_far_more_than_their_size_are_refused() {
    let limits = DecodeLimits::new(&LimitsConfig::default());
    // The cap holds whatever the size: 3 Mi addresses (32 bytes each) in a route query.
    let route = |n: usize| len_field(2, &b"\x12\x00".repeat(n));
    assert_eq!(code("QueryRoute", &route(1 << 20), &limits), Ok(()));
    let err = check(&QUERY_ROUTE, &route(3 << 20), &limits).unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at most 67108864"), "{err:?}");
}

#[test]
fn the_fuzzing_finding_is_refused_at_the_first_excess() {
    let limits = DecodeLimits::new(&LimitsConfig::default());
    let attack = b"\x0a\x00".repeat(1 << 20);
    let err = check(&SEND, &attack, &limits).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err
        .message()
        .contains("more than 1024 entries (limits.max_batch)"));
}

#[test]
fn unknown_fields_and_groups_are_skipped_as_prost_skips_them() {
    let limits = DecodeLimits::new(&LimitsConfig::default());
    // Field 9, a group holding a varint and a nested group, then a fixed64 and a fixed32.
    let unknown = [
        0x4b, 0x08, 0x01, 0x53, 0x54, 0x4c, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x55, 1, 2, 3, 4,
    ];
    let message = [len_field(1, &unknown), unknown.to_vec()].concat();
    pb::SendMessageRequest::decode(message.as_slice()).unwrap();
    assert_eq!(code("SendMessage", &message, &limits), Ok(()));
    // Unknown fields that are not well formed are refused, as prost refuses them.
    for bad in [
        &b"\x0a\x05\x00"[..],
        b"\x0a",
        b"\x4b\x08\x01",
        b"\x4b\x54",
        b"\x0f",
    ] {
        assert!(pb::SendMessageRequest::decode(bad).is_err(), "{bad:?}");
        assert_eq!(
            code("SendMessage", bad, &limits),
            Err(Code::InvalidArgument),
            "{bad:?}"
        );
    }
    // Methods without repeated fields are not walked.
    assert_eq!(code("Heartbeat", b"", &limits), Err(Code::NotFound));
}
