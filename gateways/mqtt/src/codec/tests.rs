use super::*;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

fn connect_v4() -> BytesMut {
    let mut c = v4::Connect::new("c1");
    c.keep_alive = 30;
    let mut b = BytesMut::new();
    c.write(&mut b).unwrap();
    b
}

#[test]
fn huge_remaining_length_is_refused_from_the_header() {
    let mut b = BytesMut::from(&[0x10u8, 0xff, 0xff, 0xff, 0x7f][..]);
    assert_eq!(
        decode(&mut b, None, 1 << 20),
        Err(DecodeError::TooLarge(268_435_455))
    );
    assert!(b.capacity() < 1 << 20);
    let mut b = BytesMut::from(&[0x10u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
    assert!(matches!(
        decode(&mut b, None, 1 << 20),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn only_connect_comes_first_and_its_level_picks_the_version() {
    let mut b = BytesMut::from(&[0xc0u8, 0][..]);
    assert_eq!(
        decode(&mut b, None, 1024),
        Err(DecodeError::Protocol("the first packet must be CONNECT"))
    );
    let mut b = connect_v4();
    let (p, v) = decode(&mut b, None, 1024).unwrap().unwrap();
    assert_eq!(v, Version::V4);
    assert!(matches!(p, Packet::Connect(c, None, None) if c.client_id == "c1"));
    assert!(b.is_empty());
}

#[test]
fn partial_frames_wait_for_more() {
    let full = connect_v4();
    for cut in 0..full.len() {
        let mut b = BytesMut::from(&full[..cut]);
        assert_eq!(decode(&mut b, None, 1024), Ok(None), "cut {cut}");
    }
}

#[test]
fn v5_empty_disconnect_and_invalid_utf8_topic() {
    let mut b = BytesMut::from(&[0xe0u8, 0][..]);
    let (p, _) = decode(&mut b, Some(Version::V5), 1024).unwrap().unwrap();
    assert!(
        matches!(p, Packet::Disconnect(d) if d.reason_code == DisconnectReasonCode::NormalDisconnection)
    );
    // PUBLISH QoS 0, topic 0xff 0xfe, no properties.
    let mut b = BytesMut::from(&[0x30u8, 5, 0, 2, 0xff, 0xfe, 0][..]);
    assert!(matches!(
        decode(&mut b, Some(Version::V5), 1024),
        Err(DecodeError::Malformed(_))
    ));
    let mut b = BytesMut::from(&[0x30u8, 4, 0, 2, 0xff, 0xfe][..]);
    assert!(matches!(
        decode(&mut b, Some(Version::V4), 1024),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn v4_publish_encodes_like_mqttbytes() {
    let p = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: Bytes::from_static(b"a/b"),
        pkid: 7,
        payload: Bytes::from_static(b"hello"),
        properties: None,
    };
    let mut ours = BytesMut::new();
    encode(&Packet::Publish(p), Version::V4, &mut ours).unwrap();
    let mut theirs = BytesMut::new();
    let mut q = v4::Publish::new("a/b", rumqttc::mqttbytes::QoS::AtLeastOnce, "hello");
    q.dup = true;
    q.retain = true;
    q.pkid = 7;
    q.write(&mut theirs).unwrap();
    assert_eq!(ours, theirs);
    let (back, _) = decode(&mut ours, Some(Version::V4), 1024).unwrap().unwrap();
    assert!(matches!(back, Packet::Publish(p) if p.pkid == 7 && p.dup && p.retain));
}

/// Replays every file of `fuzz/corpus/decode` (seeds and crash regressions) through the
/// decoder, as the fuzz target does, so CI covers them without nightly.
#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        crate::fuzz_decode(&data);
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}

#[test]
fn publish_size_is_the_encoded_size() {
    let props = PublishProperties {
        topic_alias: Some(3),
        user_properties: vec![("k".into(), "v".into())],
        ..PublishProperties::default()
    };
    for payload in [0usize, 100, 200, 20_000] {
        for (qos, pkid) in [
            (QoS::AtMostOnce, 0),
            (QoS::AtLeastOnce, 7),
            (QoS::ExactlyOnce, 9),
        ] {
            for properties in [None, Some(props.clone())] {
                let p = Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: Bytes::from_static(b"a/b"),
                    pkid,
                    payload: Bytes::from(vec![1u8; payload]),
                    properties,
                };
                for version in [Version::V4, Version::V5] {
                    let mut out = BytesMut::new();
                    let n = encode(&Packet::Publish(p.clone()), version, &mut out).unwrap();
                    assert_eq!(
                        publish_size(&p, version),
                        n,
                        "{version:?} {qos:?} {payload}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_server_disconnect_with_a_reason_is_well_formed() {
    for reason in [
        DisconnectReasonCode::NotAuthorized,
        DisconnectReasonCode::SessionTakenOver,
        DisconnectReasonCode::ServerShuttingDown,
    ] {
        let mut b = BytesMut::new();
        let n = encode(
            &Packet::Disconnect(Disconnect::new(reason)),
            Version::V5,
            &mut b,
        )
        .unwrap();
        assert_eq!((n, &b[..]), (4, &[0xe0, 2, reason as u8, 0][..]));
        // What a client reads back: the packet whole, nothing left over.
        match v5::Packet::read(&mut b, Some(1024)).unwrap() {
            v5::Packet::Disconnect(d) => assert_eq!(d.reason_code, reason),
            other => panic!("{other:?}"),
        }
        assert!(b.is_empty());
    }
}
