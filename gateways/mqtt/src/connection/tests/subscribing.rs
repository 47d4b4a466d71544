//! SUBSCRIBE / UNSUBSCRIBE: one filter's core work at a time, reason codes in order, retain
//! handling, retained messages, the session record, and the delivery feeds wanted.

use std::collections::{BTreeMap, HashSet};

use rumqttc::v5::mqttbytes::v5::{SubscribeReasonCode, UnsubAckReason, Unsubscribe};

use super::*;
use crate::codec;
use crate::connection::subscribe::{
    wanted_pollers, Coverage, RetainedRequest, SubscriptionStart, Target,
};
use crate::session::Subscription;
use crate::topic::{session_group, shared_group};

fn plain(filter: &str, core_topic: Option<&str>, topics: &[&str], every_visible: bool) -> Action {
    Action::StartSubscription(SubscriptionStart {
        filter: filter.into(),
        core_topic: core_topic.map(str::to_owned),
        target: Target::Plain {
            group: Arc::from(session_group(CLIENT)),
            covered: Coverage {
                topics: topics.iter().map(|t| (*t).to_owned()).collect(),
                every_visible,
            },
        },
    })
}

#[test]
fn filters_start_one_at_a_time_and_the_suback_keeps_their_order() {
    let mut m = v5();
    let filters = vec![
        filter("a/#", QoS::AtLeastOnce),
        filter("bad/#/x", QoS::AtMostOnce),
        filter("$share/g/b/+", QoS::ExactlyOnce),
        filter("#", QoS::AtMostOnce),
        filter("c/d", QoS::AtLeastOnce),
    ];
    assert_eq!(
        packet(&mut m, subscribe_packet(5, Some(9), filters)),
        vec![plain("a/#", Some("a"), &[], false)]
    );
    // `bad/#/x` does not parse: no core work, its code is kept for the SUBACK.
    assert_eq!(
        step(&mut m, Input::SubscriptionStarted(Ok(()))),
        vec![Action::StartSubscription(SubscriptionStart {
            filter: "b/+".into(),
            core_topic: Some("b".into()),
            target: Target::Shared {
                group: shared_group("g", "b/+"),
            },
        })]
    );
    // Later filters see the earlier ones: `a` is read already; shared ones do not count.
    assert_eq!(
        step(&mut m, Input::SubscriptionStarted(Ok(()))),
        vec![plain("#", None, &["a"], false)]
    );
    assert_eq!(
        step(&mut m, Input::SubscriptionStarted(Ok(()))),
        vec![plain("c/d", Some("c"), &["a"], true)]
    );
    // The core refuses `c` (e.g. topic creation off).
    assert_eq!(
        step(
            &mut m,
            Input::SubscriptionStarted(Err(SubscribeReasonCode::TopicFilterInvalid))
        ),
        vec![
            Action::Send(codec::suback(
                5,
                vec![
                    SubscribeReasonCode::Success(QoS::AtLeastOnce),
                    SubscribeReasonCode::TopicFilterInvalid,
                    SubscribeReasonCode::Success(QoS::ExactlyOnce),
                    SubscribeReasonCode::Success(QoS::AtMostOnce),
                    SubscribeReasonCode::TopicFilterInvalid,
                ]
            )),
            Action::RefreshPollers,
            // Retained messages: plain subscriptions only, with the subscription id.
            Action::SendRetained(vec![
                RetainedRequest {
                    filter: "a/#".into(),
                    qos: 1,
                    id: Some(9),
                },
                RetainedRequest {
                    filter: "#".into(),
                    qos: 0,
                    id: Some(9),
                },
            ]),
        ]
    );
    let subs: Vec<&str> = m.subscriptions().keys().map(String::as_str).collect();
    assert_eq!(subs, vec!["#", "$share/g/b/+", "a/#"]);
    assert_eq!(m.subscriptions()["a/#"].id, Some(9));
    // A clean session's record is never stored.
    assert!(m.take_dirty_record().is_none());
}

#[test]
fn filters_with_an_empty_first_level_read_the_slash_topic() {
    let slash = crate::topic::EMPTY_FIRST_LEVEL_TOPIC;
    let mut m = v4();
    let filters = vec![
        filter("/TopicA", QoS::AtLeastOnce),
        filter("/+/b", QoS::AtLeastOnce),
        filter("/#", QoS::AtLeastOnce),
    ];
    assert_eq!(
        packet(&mut m, subscribe_packet(1, None, filters)),
        vec![plain("/TopicA", Some(slash), &[], false)]
    );
    assert_eq!(
        step(&mut m, Input::SubscriptionStarted(Ok(()))),
        vec![plain("/+/b", Some(slash), &[slash], false)]
    );
    assert_eq!(
        step(&mut m, Input::SubscriptionStarted(Ok(()))),
        vec![plain("/#", Some(slash), &[slash], false)]
    );
    let actions = step(&mut m, Input::SubscriptionStarted(Ok(())));
    assert_eq!(
        actions[0],
        Action::Send(codec::suback(
            1,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 3]
        ))
    );
}

#[test]
fn a_subscribe_with_only_invalid_filters_is_answered_at_once() {
    let mut m = v4();
    assert_eq!(
        packet(
            &mut m,
            subscribe_packet(
                1,
                None,
                vec![
                    filter("$SYS/#", QoS::AtMostOnce),
                    filter("a/#/b", QoS::AtMostOnce),
                    filter("$share//a", QoS::AtMostOnce),
                    filter("", QoS::AtMostOnce),
                ]
            )
        ),
        vec![
            Action::Send(codec::suback(
                1,
                vec![
                    SubscribeReasonCode::NotAuthorized,
                    SubscribeReasonCode::TopicFilterInvalid,
                    SubscribeReasonCode::TopicFilterInvalid,
                    SubscribeReasonCode::TopicFilterInvalid,
                ]
            )),
            Action::RefreshPollers,
        ]
    );
    assert!(m.subscriptions().is_empty());
}

#[test]
fn retain_handling_decides_which_retained_messages_are_asked_for() {
    let mut m = v5();
    let rule = |path: &str, rule| Filter {
        retain_forward_rule: rule,
        ..filter(path, QoS::ExactlyOnce)
    };
    let asked = |actions: &[Action]| actions.iter().any(|a| matches!(a, Action::SendRetained(_)));
    assert!(asked(&subscribe(
        &mut m,
        1,
        vec![rule("r/x", RetainForwardRule::OnNewSubscribe)]
    )));
    assert!(!asked(&subscribe(
        &mut m,
        2,
        vec![rule("r/x", RetainForwardRule::OnNewSubscribe)]
    )));
    assert!(asked(&subscribe(
        &mut m,
        3,
        vec![rule("r/x", RetainForwardRule::OnEverySubscribe)]
    )));
    assert!(!asked(&subscribe(
        &mut m,
        4,
        vec![rule("r/y", RetainForwardRule::Never)]
    )));
}

#[test]
fn retained_messages_go_out_with_retain_set_unless_expired() {
    let mut m = v5();
    subscribe(&mut m, 1, vec![filter("r/#", QoS::AtLeastOnce)]);
    let mut expired = message("r/old", 1, b"old");
    expired
        .properties
        .insert("mqttExpiresAt".into(), "999".into());
    let request = RetainedRequest {
        filter: "r/#".into(),
        qos: 1,
        id: Some(4),
    };
    let actions = step(
        &mut m,
        Input::Retained {
            found: vec![(request, vec![message("r/x", 2, b"on"), expired])],
            now_ms: 1_000,
        },
    );
    let sent = publishes(&actions);
    assert_eq!(actions.len(), 1, "{actions:?}");
    let p = sent[0];
    assert!(p.retain);
    assert_eq!(
        (p.qos, p.pkid, &p.topic[..]),
        (QoS::AtLeastOnce, 1, &b"r/x"[..])
    );
    assert_eq!(
        p.properties
            .as_ref()
            .map(|x| x.subscription_identifiers.clone()),
        Some(vec![4])
    );
    // In flight without a core acknowledgement: its PUBACK acknowledges nothing in the core.
    assert_eq!(
        packet(
            &mut m,
            Packet::PubAck(rumqttc::v5::mqttbytes::v5::PubAck::new(1, None))
        ),
        vec![]
    );
}

#[test]
fn unsubscribe_acks_each_filter_and_marks_a_persistent_record() {
    let (mut m, _) = persistent_v5(&MqttConfig::default(), 60);
    subscribe(&mut m, 1, vec![filter("a", QoS::AtLeastOnce)]);
    let record = m.take_dirty_record().cloned().unwrap();
    assert!(record.subscriptions.contains_key("a"));
    assert!(m.take_dirty_record().is_none(), "stored once");
    assert_eq!(
        packet(
            &mut m,
            Packet::Unsubscribe(Unsubscribe {
                pkid: 2,
                filters: vec!["a".into(), "zz".into()],
                properties: None,
            })
        ),
        vec![
            Action::Send(codec::unsuback(
                2,
                vec![
                    UnsubAckReason::Success,
                    UnsubAckReason::NoSubscriptionExisted
                ]
            )),
            Action::RefreshPollers,
        ]
    );
    assert!(m.take_dirty_record().unwrap().subscriptions.is_empty());
}

#[test]
fn wanted_pollers_cover_plain_and_shared_subscriptions() {
    let sub = |filter: &str| Subscription {
        filter: filter.into(),
        qos: 1,
        no_local: false,
        retain_as_published: false,
        id: None,
    };
    let subs: BTreeMap<String, Subscription> = ["a/#", "b", "$share/g/c/+", "$share/h/#", "x/#/y"]
        .into_iter()
        .map(|f| (f.to_owned(), sub(f)))
        .collect();
    let own: Arc<str> = Arc::from("mqtt-dev");
    let mut calls = 0;
    let want = wanted_pollers(
        &subs,
        &own,
        || {
            calls += 1;
            vec!["a".into(), "z".into()]
        },
        |_, _, _| true,
    );
    let expect: HashSet<(String, String, Option<&str>)> = [
        ("mqtt-dev".to_owned(), "a", None),
        ("mqtt-dev".to_owned(), "b", None),
        (shared_group("g", "c/+"), "c", Some("$share/g/c/+")),
        (shared_group("h", "#"), "a", Some("$share/h/#")),
        (shared_group("h", "#"), "z", Some("$share/h/#")),
    ]
    .into_iter()
    .map(|(g, t, s)| (g, t.to_owned(), s))
    .collect();
    let got: HashSet<(String, String, Option<&str>)> = want
        .iter()
        .map(|((g, t), s)| (g.to_string(), t.clone(), s.as_deref()))
        .collect();
    assert_eq!(got, expect);
    assert_eq!(calls, 1, "only the shared wildcard needs the topic list");
    // A plain wildcard reads every visible topic.
    let subs: BTreeMap<String, Subscription> = [("#".to_owned(), sub("#"))].into();
    let want = wanted_pollers(&subs, &own, || vec!["a".into(), "z".into()], |_, _, _| true);
    assert_eq!(want.len(), 2);
    assert!(want.values().all(Option::is_none));
    // A feed no subscription may read (the core's authorization) is not wanted; one that some
    // subscription may read is.
    let subs: BTreeMap<String, Subscription> = ["#", "z/x"]
        .into_iter()
        .map(|f| (f.to_owned(), sub(f)))
        .collect();
    let want = wanted_pollers(
        &subs,
        &own,
        || vec!["a".into(), "z".into()],
        |_, topic, filter| filter == "z/x" && topic == "z",
    );
    let topics: Vec<&str> = want.keys().map(|(_, t)| t.as_str()).collect();
    assert_eq!(topics, ["z"]);
}
