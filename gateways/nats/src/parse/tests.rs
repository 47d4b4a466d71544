use bytes::BytesMut;

use super::*;

fn parser() -> Parser {
    Parser {
        max_control_line: 128,
        max_payload: 16,
        max_header_bytes: 12,
    }
}

fn all(input: &[u8]) -> (Vec<Op>, Result<(), ProtocolError>, usize) {
    let mut buf = BytesMut::from(input);
    let mut ops = Vec::new();
    loop {
        match parser().next(&mut buf) {
            Ok(Some(op)) => ops.push(op),
            Ok(None) => return (ops, Ok(()), buf.len()),
            Err(e) => return (ops, Err(e), buf.len()),
        }
    }
}

#[test]
fn operations_parse_case_insensitively_with_any_spacing() {
    let (ops, r, left) = all(
        b"CONNECT {\"verbose\":true,\"headers\":true,\"lang\":\"rust\",\"x\":1}\r\nping\r\n\
          PUB a.b 2\r\nhi\r\npub a.b  _INBOX.1\t0\r\n\r\nSUB a.* 1\r\nsub a.> q 2\r\n\
          UNSUB 1\r\nUNSUB 2 5\nPONG\r\nHPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
    );
    r.unwrap();
    assert_eq!(left, 0);
    assert!(matches!(&ops[0], Op::Connect(c) if c.verbose && c.headers && !c.pedantic));
    assert_eq!(ops[1], Op::Ping);
    assert!(
        matches!(&ops[2], Op::Pub(p) if p.subject == "a.b" && &p.payload[..] == b"hi" && p.reply.is_none())
    );
    assert!(
        matches!(&ops[3], Op::Pub(p) if p.reply.as_deref() == Some("_INBOX.1") && p.payload.is_empty())
    );
    assert_eq!(
        ops[4],
        Op::Sub {
            subject: "a.*".into(),
            queue: None,
            sid: "1".into()
        }
    );
    assert!(matches!(&ops[5], Op::Sub { queue: Some(q), .. } if q == "q"));
    assert_eq!(
        ops[7],
        Op::Unsub {
            sid: "2".into(),
            max: Some(5)
        }
    );
    assert_eq!(ops[8], Op::Pong);
    assert!(
        matches!(&ops[9], Op::Pub(p) if p.headers.as_deref() == Some(&b"NATS/1.0\r\n\r\n"[..]) && &p.payload[..] == b"hi")
    );
}

#[test]
fn partial_input_waits_and_completes() {
    let whole = b"PUB a 5\r\nhello\r\n";
    for cut in 0..whole.len() {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert_eq!(parser().next(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
        buf.extend_from_slice(&whole[cut..]);
        assert!(matches!(parser().next(&mut buf), Ok(Some(Op::Pub(_)))));
        assert!(buf.is_empty());
    }
}

#[test]
fn bad_input_is_refused_in_nats_words_before_buffering() {
    let cases: &[(&[u8], ProtocolError)] = &[
        (b"FOO bar\r\n", ProtocolError::UnknownOperation),
        (b"PUB a\r\n", ProtocolError::UnknownOperation),
        (b"PUB a x\r\n", ProtocolError::UnknownOperation),
        (b"PUB a -1\r\n", ProtocolError::UnknownOperation),
        (b"PUB a 2\r\nhiXX", ProtocolError::UnknownOperation),
        (b"PUB a 17\r\n", ProtocolError::MaxPayload),
        (
            b"PUB a 99999999999999999999\r\n",
            ProtocolError::UnknownOperation,
        ),
        (b"HPUB a 13 14\r\n", ProtocolError::MaxPayload),
        (b"HPUB a 5 4\r\n", ProtocolError::UnknownOperation),
        (b"SUB a\r\n", ProtocolError::UnknownOperation),
        (b"SUB a b c d\r\n", ProtocolError::UnknownOperation),
        (b"UNSUB\r\n", ProtocolError::UnknownOperation),
        (b"UNSUB 1 x\r\n", ProtocolError::UnknownOperation),
        (b"PING x\r\n", ProtocolError::UnknownOperation),
        (b"CONNECT {nope\r\n", ProtocolError::InvalidClientProtocol),
        (
            b"CONNECT {\"protocol\":9}\r\n",
            ProtocolError::InvalidClientProtocol,
        ),
        (b"\xff\xfe\r\n", ProtocolError::UnknownOperation),
    ];
    for (input, want) in cases {
        let (ops, r, left) = all(input);
        assert!(ops.is_empty(), "{input:?}");
        assert_eq!(r, Err(want.clone()), "{:?}", String::from_utf8_lossy(input));
        assert_eq!(left, input.len(), "the buffer is untouched");
    }
    // No line end within the control-line limit: refused without waiting for more.
    let long = vec![b'A'; 200];
    assert_eq!(all(&long).1, Err(ProtocolError::ControlLine));
    let mut line = b"SUB ".to_vec();
    line.extend(vec![b'a'; 150]);
    line.extend_from_slice(b" 1\r\n");
    assert_eq!(all(&line).1, Err(ProtocolError::ControlLine));
}

#[test]
fn header_blocks_parse_and_bad_ones_are_refused() {
    assert_eq!(
        headers(b"NATS/1.0\r\nA: 1\r\nB:two words \r\nA: 3\r\n\r\n").unwrap(),
        vec![
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "two words".to_owned()),
            ("A".to_owned(), "3".to_owned())
        ]
    );
    assert!(headers(b"NATS/1.0\r\n\r\n").unwrap().is_empty());
    for bad in [
        &b"HTTP/1.0\r\n\r\n"[..],
        b"NATS/1.0\r\nnocolon\r\n\r\n",
        b"NATS/1.0\r\nA: 1\r\n",
        b"NATS/1.0\r\n: v\r\n\r\n",
    ] {
        assert!(headers(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x9e37_79b9_u32;
    for _ in 0..2000 {
        let mut input = Vec::new();
        for _ in 0..(seed % 64) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let pick = b"PUBHSCNTGX 0123.*>\r\n{}\"";
            input.push(pick[(seed as usize) % pick.len()]);
        }
        let _ = all(&input);
    }
}
