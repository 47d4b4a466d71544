//! The seed corpora of the admin targets `grpc_admin` and `grpc_access`: valid requests of
//! every RPC by the super user, the changes a normal user must not make, a few unsigned and
//! forged calls, and edge values (written to `fuzz/corpus/<target>/` by the `tests` crate).
//!
//! Pure encoding, no I/O.

use rocketgate_proto::cluster::v1 as pb;

use super::admin::{ACCESS_ADMIN_RPCS, BROKER_ADMIN_RPCS, NORMAL_USER, SUPER_USER};
use super::GROUP;

const SUPER: u8 = 0;
const NORMAL: u8 = 1;
const ANONYMOUS: u8 = 2;
const FORGED: u8 = 3;

/// `[who][the index of rpc in rpcs][the request]`.
fn seed(rpcs: &[&str], who: u8, rpc: &str, request: Vec<u8>) -> Vec<u8> {
    let index = rpcs.iter().position(|r| *r == rpc);
    let mut out = vec![
        who,
        index.and_then(|i| u8::try_from(i).ok()).unwrap_or_default(),
    ];
    out.extend(request);
    out
}

fn e<M: prost::Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

fn named(seeds: Vec<(&str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect()
}

/// The seeds of `grpc_admin` (`BrokerAdmin`), with the name of each.
pub fn broker_admin() -> Vec<(String, Vec<u8>)> {
    let s = |who, rpc, request| seed(&BROKER_ADMIN_RPCS, who, rpc, request);
    let topic = |name: &str, queues, message_type, permission| pb::CreateTopicRequest {
        topic: Some(pb::TopicSpec {
            name: name.into(),
            queue_count: queues,
            message_type,
            permission,
        }),
    };
    let send = pb::SendMessageRequest {
        topic: "fuzz".into(),
        body: b"hello".to_vec(),
        tag: "t".into(),
        keys: vec!["k1".into(), "k2".into()],
        message_group: String::new(),
        properties: [("color".to_owned(), "red".to_owned())].into(),
        queue_id: Some(0),
        delay_level: 0,
        deliver_at_ms: 0,
    };
    let pull = |group: &str, max, wait_ms| pb::PullMessagesRequest {
        group: group.into(),
        topic: "fuzz".into(),
        queue_id: 0,
        offset: None,
        max,
        filter: String::new(),
        wait_ms,
    };
    named(vec![
        (
            "info",
            s(SUPER, "GetBrokerInfo", e(&pb::GetBrokerInfoRequest {})),
        ),
        (
            "create",
            s(SUPER, "CreateTopic", e(&topic("fuzz-new", 2, 0, 0))),
        ),
        (
            "create_fifo_read",
            s(SUPER, "CreateTopic", e(&topic("fuzz-f", 1, 2, 2))),
        ),
        (
            "create_edges",
            s(SUPER, "CreateTopic", e(&topic("%DLQ%x", u32::MAX, 99, -1))),
        ),
        (
            "update",
            s(SUPER, "UpdateTopic", {
                e(&pb::UpdateTopicRequest {
                    name: "fuzz-new".into(),
                    queue_count: Some(8),
                    message_type: Some(1),
                    permission: Some(4),
                })
            }),
        ),
        (
            "update_unspecified",
            s(SUPER, "UpdateTopic", {
                e(&pb::UpdateTopicRequest {
                    name: "fuzz".into(),
                    queue_count: Some(0),
                    message_type: Some(0),
                    permission: Some(0),
                })
            }),
        ),
        (
            "delete",
            s(
                SUPER,
                "DeleteTopic",
                e(&pb::DeleteTopicRequest {
                    name: "fuzz-new".into(),
                }),
            ),
        ),
        (
            "list_topics",
            s(SUPER, "ListTopics", e(&pb::ListTopicsRequest {})),
        ),
        (
            "topic_status",
            s(SUPER, "GetTopicStatus", {
                e(&pb::GetTopicStatusRequest {
                    name: "fuzz".into(),
                })
            }),
        ),
        (
            "list_groups",
            s(SUPER, "ListGroups", e(&pb::ListGroupsRequest {})),
        ),
        (
            "group_status",
            s(NORMAL, "GetGroupStatus", {
                e(&pb::GetGroupStatusRequest {
                    group: GROUP.into(),
                    topic: String::new(),
                })
            }),
        ),
        (
            "reset",
            s(SUPER, "ResetOffset", {
                e(&pb::ResetOffsetRequest {
                    group: GROUP.into(),
                    topic: "fuzz".into(),
                    timestamp_ms: i64::MIN,
                })
            }),
        ),
        (
            "by_id",
            s(NORMAL, "QueryMessageById", {
                e(&pb::QueryMessageByIdRequest {
                    message_id: "01FUZZ".into(),
                })
            }),
        ),
        (
            "by_key",
            s(SUPER, "QueryMessagesByKey", {
                e(&pb::QueryMessagesByKeyRequest {
                    topic: "fuzz".into(),
                    key: "k1".into(),
                    begin_ms: 0,
                    end_ms: 0,
                    max: 0,
                })
            }),
        ),
        (
            "by_time",
            s(NORMAL, "QueryMessagesByTime", {
                e(&pb::QueryMessagesByTimeRequest {
                    topic: "fuzz".into(),
                    begin_ms: i64::MIN,
                    end_ms: i64::MAX,
                    max: u32::MAX,
                })
            }),
        ),
        (
            "dead_letters",
            s(SUPER, "ListDeadLetters", {
                e(&pb::ListDeadLettersRequest {
                    group: GROUP.into(),
                    offset: u64::MAX,
                    max: 1024,
                })
            }),
        ),
        (
            "resend_all",
            s(SUPER, "ResendDeadLetters", {
                e(&pb::ResendDeadLettersRequest {
                    group: GROUP.into(),
                    message_ids: Vec::new(),
                    all: true,
                })
            }),
        ),
        (
            "resend_ids_and_all",
            s(SUPER, "ResendDeadLetters", {
                e(&pb::ResendDeadLettersRequest {
                    group: GROUP.into(),
                    message_ids: vec!["01FUZZ".into(), String::new()],
                    all: true,
                })
            }),
        ),
        ("send", s(SUPER, "SendMessage", e(&send))),
        (
            "send_delay_and_time",
            s(SUPER, "SendMessage", {
                e(&pb::SendMessageRequest {
                    delay_level: 3,
                    deliver_at_ms: -1,
                    queue_id: Some(u32::MAX),
                    ..send.clone()
                })
            }),
        ),
        ("pull", s(SUPER, "PullMessages", e(&pull(GROUP, 8, 10)))),
        (
            "pull_new_group",
            s(NORMAL, "PullMessages", e(&pull("fuzz-new-group", 0, 0))),
        ),
        (
            "pull_edges",
            s(NORMAL, "PullMessages", e(&pull(GROUP, u32::MAX, u32::MAX))),
        ),
        (
            "commit",
            s(SUPER, "CommitOffset", {
                e(&pb::CommitOffsetRequest {
                    group: GROUP.into(),
                    topic: "fuzz".into(),
                    queue_id: 1,
                    offset: 3,
                })
            }),
        ),
        (
            "send_long_property_key",
            s(
                SUPER,
                "SendMessage",
                e(&pb::SendMessageRequest {
                    properties: [(format!("__RG_{}", "k".repeat(6000)), "v".to_owned())].into(),
                    ..send.clone()
                }),
            ),
        ),
        // What the normal user, nobody and a forger must not do.
        (
            "normal_create",
            s(NORMAL, "CreateTopic", e(&topic("fuzz-mine", 1, 0, 0))),
        ),
        (
            "normal_delete",
            s(
                NORMAL,
                "DeleteTopic",
                e(&pb::DeleteTopicRequest {
                    name: "fuzz".into(),
                }),
            ),
        ),
        ("normal_send", s(NORMAL, "SendMessage", e(&send))),
        (
            "normal_commit",
            s(NORMAL, "CommitOffset", {
                e(&pb::CommitOffsetRequest {
                    group: GROUP.into(),
                    topic: "fuzz".into(),
                    queue_id: 0,
                    offset: u64::MAX,
                })
            }),
        ),
        (
            "anonymous_list",
            s(ANONYMOUS, "ListTopics", e(&pb::ListTopicsRequest {})),
        ),
        (
            "forged_delete",
            s(
                FORGED,
                "DeleteTopic",
                e(&pb::DeleteTopicRequest {
                    name: "fuzz".into(),
                }),
            ),
        ),
    ])
}

/// The seeds of `grpc_access` (`AccessAdmin`), with the name of each.
pub fn access_admin() -> Vec<(String, Vec<u8>)> {
    fn s<M: prost::Message>(who: u8, rpc: &str, request: &M) -> Vec<u8> {
        seed(&ACCESS_ADMIN_RPCS, who, rpc, e(request))
    }
    let user = |ak: &str, kind| pb::CreateUserRequest {
        access_key: ak.into(),
        secret_key: "another-secret".into(),
        kind,
    };
    let update = |ak: &str, secret: &str, kind, status| pb::UpdateUserRequest {
        access_key: ak.into(),
        secret_key: secret.into(),
        kind,
        status,
    };
    let entry = |resources: &[&str], actions: &[&str], decision, sources: &[&str]| {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        pb::PolicyEntry {
            resources: strings(resources),
            actions: strings(actions),
            decision,
            sources: strings(sources),
        }
    };
    let policy = |ak: &str, entries| pb::SetPolicyRequest {
        access_key: ak.into(),
        entries,
    };
    named(vec![
        (
            "create_user",
            s(SUPER, "CreateUser", &user("fuzz-new-user", 0)),
        ),
        (
            "create_super",
            s(SUPER, "CreateUser", &user("fuzz-new-super", 2)),
        ),
        (
            "create_bad_key",
            s(SUPER, "CreateUser", &user("bad key/", 7)),
        ),
        (
            "update_user",
            s(SUPER, "UpdateUser", &update("fuzz-new-user", "", 1, 2)),
        ),
        (
            "update_own_secret",
            s(
                SUPER,
                "UpdateUser",
                &update(SUPER_USER, "changed-secret", 0, 0),
            ),
        ),
        (
            "delete_user",
            s(
                SUPER,
                "DeleteUser",
                &pb::DeleteUserRequest {
                    access_key: "fuzz-new-user".into(),
                },
            ),
        ),
        (
            "list_users",
            s(SUPER, "ListUsers", &pb::ListUsersRequest {}),
        ),
        (
            "set_policy",
            s(
                SUPER,
                "SetPolicy",
                &policy(
                    NORMAL_USER,
                    vec![
                        entry(
                            &["Topic:fuzz*", "Group:*"],
                            &["Pub", "Sub"],
                            1,
                            &["127.0.0.1/8"],
                        ),
                        entry(&["Cluster:*"], &["All"], 2, &[]),
                        entry(&["MqttTopic:a/+/${clientid}"], &["Sub"], 1, &["::1"]),
                    ],
                ),
            ),
        ),
        (
            "set_policy_bad",
            s(
                SUPER,
                "SetPolicy",
                &policy(
                    NORMAL_USER,
                    vec![entry(
                        &["Nothing:x", "Cluster:y"],
                        &["Fly"],
                        0,
                        &["300.1.1.1/99"],
                    )],
                ),
            ),
        ),
        (
            "get_policy",
            s(
                SUPER,
                "GetPolicy",
                &pb::GetPolicyRequest {
                    access_key: NORMAL_USER.into(),
                },
            ),
        ),
        (
            "issue_token",
            s(
                SUPER,
                "IssueToken",
                &pb::IssueTokenRequest {
                    access_key: NORMAL_USER.into(),
                    ttl_ms: 3_600_000,
                },
            ),
        ),
        (
            "issue_token_forever",
            s(
                SUPER,
                "IssueToken",
                &pb::IssueTokenRequest {
                    access_key: NORMAL_USER.into(),
                    ttl_ms: u64::MAX,
                },
            ),
        ),
        (
            "revoke_token",
            s(
                SUPER,
                "RevokeToken",
                &pb::RevokeTokenRequest { id: "nope".into() },
            ),
        ),
        (
            "list_tokens",
            s(
                SUPER,
                "ListTokens",
                &pb::ListTokensRequest {
                    access_key: String::new(),
                },
            ),
        ),
        // Long strings echoed in the status message.
        (
            "delete_long_key",
            s(
                SUPER,
                "DeleteUser",
                &pb::DeleteUserRequest {
                    access_key: "é".repeat(3000),
                },
            ),
        ),
        (
            "revoke_long_id",
            s(
                SUPER,
                "RevokeToken",
                &pb::RevokeTokenRequest {
                    id: "x".repeat(6000),
                },
            ),
        ),
        (
            "set_policy_long_resource",
            s(
                SUPER,
                "SetPolicy",
                &policy(
                    NORMAL_USER,
                    vec![entry(
                        &[&format!("Topic:{}", "é".repeat(3000))],
                        &["Pub"],
                        1,
                        &[],
                    )],
                ),
            ),
        ),
        // A normal user granting itself more, nobody and a forger.
        (
            "normal_create_super",
            s(NORMAL, "CreateUser", &user("fuzz-mine", 2)),
        ),
        (
            "normal_promote_self",
            s(NORMAL, "UpdateUser", &update(NORMAL_USER, "", 2, 0)),
        ),
        (
            "normal_grant_self",
            s(
                NORMAL,
                "SetPolicy",
                &policy(NORMAL_USER, vec![entry(&["Cluster:*"], &["All"], 1, &[])]),
            ),
        ),
        (
            "anonymous_list",
            s(ANONYMOUS, "ListUsers", &pb::ListUsersRequest {}),
        ),
        (
            "forged_token",
            s(
                FORGED,
                "IssueToken",
                &pb::IssueTokenRequest {
                    access_key: SUPER_USER.into(),
                    ttl_ms: 0,
                },
            ),
        ),
    ])
}
