//! Bad input on purpose: random packets (valid, out of place, server-only, with bad topics,
//! filters, aliases and packet ids) and random events, fed the way the driver feeds them.
//! The machine never panics, and whatever the input its output keeps the rules: every packet
//! it sends encodes, no successful PUBACK/PUBREC leaves before the core stored the message,
//! only legal topics are stored, and nothing follows a close.

use std::collections::{HashSet, VecDeque};

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, PingReq, PingResp, PubAck, PubAckReason, PubComp, PubRec, PubRecReason,
    PubRel, UnsubAck, Unsubscribe,
};

use super::*;
use crate::codec::{self, DecodeError};
use crate::connection::subscribe::RetainedRequest;

/// xorshift64*: deterministic, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    fn qos(&mut self) -> QoS {
        self.pick(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
    }

    fn pkid(&mut self) -> u16 {
        self.below(6) as u16
    }
}

/// Legal topic names first: most publishes use one of these.
const LEGAL: usize = 3;

const TOPICS: &[&[u8]] = &[
    b"a",
    b"a/b",
    b"t/1",
    b"",
    b"$SYS/x",
    b"/a",
    b"a.b/c",
    b"a/+",
    b"#",
    b"mqtt_sys_retained",
    &[0xff, 0xfe],
];

const FILTERS: &[&str] = &[
    "a/#",
    "#",
    "+/b",
    "t/1",
    "$share/g/a/+",
    "$share/g/#",
    "$share//x",
    "a/#/b",
    "",
    "$SYS/#",
    "/+/b",
];

fn random_packet(rng: &mut Rng) -> Packet {
    match rng.below(12) {
        0..=3 => {
            let mut p = publish("a", rng.qos(), rng.pkid());
            p.topic = Bytes::from_static(match rng.below(30) {
                0 => rng.pick(TOPICS),
                _ => rng.pick(&TOPICS[..LEGAL]),
            });
            p.dup = rng.below(2) == 0;
            p.retain = rng.below(4) == 0;
            match rng.below(64) {
                0 => p = with_alias(p, rng.pick(&[0, 3])),
                1..=8 => p = with_alias(p, 1 + rng.below(2) as u16),
                9 => {
                    p = with_alias(p, 1 + rng.below(2) as u16);
                    p.topic = Bytes::new();
                }
                _ => {}
            }
            Packet::Publish(p)
        }
        4 => Packet::PubAck(PubAck::new(rng.pkid(), None)),
        5 => Packet::PubRec(PubRec::new(rng.pkid(), None)),
        6 => Packet::PubRel(PubRel::new(rng.pkid(), None)),
        7 => Packet::PubComp(PubComp::new(rng.pkid(), None)),
        8 => {
            let filters = (0..rng.below(4))
                .map(|_| Filter {
                    retain_forward_rule: match rng.below(3) {
                        0 => RetainForwardRule::OnEverySubscribe,
                        1 => RetainForwardRule::OnNewSubscribe,
                        _ => RetainForwardRule::Never,
                    },
                    nolocal: rng.below(2) == 0,
                    ..filter(rng.pick(FILTERS), rng.qos())
                })
                .collect();
            let id = (rng.below(2) == 0).then(|| rng.below(5) as usize + 1);
            subscribe_packet(rng.pkid(), id, filters)
        }
        9 => Packet::Unsubscribe(Unsubscribe {
            pkid: rng.pkid(),
            filters: vec![rng.pick(FILTERS).to_owned()],
            properties: None,
        }),
        10 if rng.below(8) != 0 => Packet::PingReq(PingReq),
        10 => match rng.below(6) {
            0 => {
                let reason = rng.pick(&[
                    DisconnectReasonCode::NormalDisconnection,
                    DisconnectReasonCode::DisconnectWithWillMessage,
                    DisconnectReasonCode::UnspecifiedError,
                ]);
                match rng.below(2) {
                    0 => Packet::Disconnect(Disconnect::new(reason)),
                    _ => disconnect_with_expiry(reason, rng.below(3) as u32 * 1_000_000),
                }
            }
            1 => Packet::ConnAck(codec::connack(ConnectReturnCode::Success, false)),
            2 => codec::suback(1, Vec::new()),
            3 => Packet::PingResp(PingResp),
            4 => Packet::UnsubAck(UnsubAck {
                pkid: 1,
                reasons: Vec::new(),
                properties: None,
            }),
            _ => Packet::Connect(connect_packet(CLIENT, true, None), None, None),
        },
        _ => {
            let mut p = publish("t/1", rng.qos(), 1 + rng.pkid());
            p.dup = true;
            Packet::Publish(p)
        }
    }
}

fn random_delivery(rng: &mut Rng) -> Delivery {
    let topic = rng.pick(&["t/1", "a/b", "a", "z"]);
    let mut d = delivery("r", message(topic, rng.below(3) as u8, b"m"));
    if rng.below(4) == 0 {
        d.shared = Some(Arc::from(rng.pick(&["$share/g/a/+", "$share/g/#"])));
    }
    d
}

/// Feeds `input` and executes the way the driver does: completions right away.
fn drive(m: &mut Machine, input: Input, rng: &mut Rng) -> Vec<Action> {
    m.handle(input);
    let mut all = Vec::new();
    while let Some(a) = m.poll_action() {
        match &a {
            Action::StartSubscription(_) => {
                m.handle(Input::SubscriptionStarted(match rng.below(4) {
                    0 => Err(SubscribeReasonCode::TopicFilterInvalid),
                    1 => Err(SubscribeReasonCode::NotAuthorized),
                    _ => Ok(()),
                }));
            }
            Action::SendRetained(requests) => {
                let found: Vec<(RetainedRequest, Vec<StoredMessage>)> = requests
                    .iter()
                    .map(|r| (r.clone(), vec![message("a/b", rng.below(3) as u8, b"r")]))
                    .collect();
                m.handle(Input::Retained { found, now_ms: 1 });
            }
            _ => {}
        }
        all.push(a);
    }
    all
}

fn run(seed: u64, version: Version) {
    let mut rng = Rng(seed);
    let config = MqttConfig {
        receive_maximum: 6,
        max_inflight: 2,
        topic_alias_maximum: 2,
        ..MqttConfig::default()
    };
    let connect = match rng.below(2) {
        0 => connect_packet(CLIENT, true, None),
        _ => connect_packet(CLIENT, false, Some(expiry_props(60))),
    };
    let (mut m, _, _) = start_with(&config, version, connect, None, SessionState::new(CLIENT));
    // Stores and answers in flight, in order; an answer's completion is its own result.
    type Fixed = Option<Result<(), PubAckReason>>;
    let mut storing: VecDeque<(u16, QoS, Fixed)> = VecDeque::new();
    // QoS 2 ids stored and not released: only these may be PUBREC'd on a PUBLISH.
    let mut unreleased: HashSet<u16> = HashSet::new();
    for turn in 0..400 {
        let input = match rng.below(12) {
            0..=5 => Input::Packet(random_packet(&mut rng)),
            6 | 7 if !storing.is_empty() => {
                let n = 1 + rng.below(storing.len() as u64) as usize;
                let done = storing
                    .drain(..n)
                    .map(|(pkid, qos, fixed)| {
                        let result = fixed.unwrap_or_else(|| match rng.below(20) {
                            0 => Err(rng.pick(&[
                                PubAckReason::QuotaExceeded,
                                PubAckReason::NotAuthorized,
                                PubAckReason::ImplementationSpecificError,
                            ])),
                            _ => Ok(()),
                        });
                        stored(pkid, qos, result)
                    })
                    .collect();
                Input::Stored(done)
            }
            8 => Input::Delivery {
                delivery: random_delivery(&mut rng),
                now_ms: 1,
            },
            9 => Input::Backlog { now_ms: 1 },
            _ => match rng.below(400) {
                0 => Input::Undecodable(DecodeError::Malformed("bad".into())),
                1 => Input::KeepAliveExpired,
                2 => Input::TakenOver,
                3 => Input::Shutdown,
                _ => Input::Packet(Packet::PingReq(PingReq)),
            },
        };
        let (publish_id, stored_ok, released) = match &input {
            Input::Packet(Packet::Publish(p)) => (Some(p.pkid), Vec::new(), None),
            Input::Stored(done) => (
                None,
                done.iter()
                    .filter(|s| s.result.is_ok() && s.qos == QoS::ExactlyOnce)
                    .map(|s| s.pkid)
                    .collect(),
                None,
            ),
            Input::Packet(Packet::PubRel(r)) => (None, Vec::new(), Some(r.pkid)),
            _ => (None, Vec::new(), None),
        };
        let completing = matches!(input, Input::Stored(_));
        let context = format!("seed {seed} {version:?} turn {turn} input {input:?}");
        let actions = drive(&mut m, input, &mut rng);
        let mut closed = false;
        for a in &actions {
            assert!(!closed, "an action after Close: {context}: {actions:?}");
            match a {
                Action::Close(_) => closed = true,
                Action::Store { publish, topic } => {
                    assert!(crate::topic::core_topic_of_name(topic).is_ok(), "{context}");
                    assert_eq!(publish.topic, topic.as_bytes(), "{context}");
                    storing.push_back((publish.pkid, publish.qos, None));
                }
                Action::Answer { pkid, qos, result } => {
                    storing.push_back((*pkid, *qos, Some(*result)));
                }
                Action::Send(p) => {
                    let mut out = BytesMut::new();
                    assert!(
                        codec::encode(p, version, &mut out).is_ok(),
                        "{context}: {p:?}"
                    );
                    match p {
                        Packet::PubAck(ack) if ack.reason == PubAckReason::Success => {
                            assert!(completing, "PUBACK before the store: {context}");
                        }
                        Packet::PubRec(rec) if rec.reason == PubRecReason::Success => {
                            let again =
                                publish_id == Some(rec.pkid) && unreleased.contains(&rec.pkid);
                            assert!(completing || again, "PUBREC before the store: {context}");
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        unreleased.extend(stored_ok);
        if let Some(id) = released {
            unreleased.remove(&id);
        }
        if closed {
            assert_eq!(step(&mut m, Input::Shutdown), vec![], "{context}");
            break;
        }
    }
    let _ = m.finish(End::Abnormal, vec![random_delivery(&mut rng)], 1);
}

#[test]
fn random_input_never_panics_and_keeps_the_rules() {
    for seed in 1..=500u64 {
        for version in [Version::V4, Version::V5] {
            run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), version);
        }
    }
}
