//! Fuzz entry points of the cluster admin services (issue 14): [`AdminFuzz::broker_admin`] and
//! [`AdminFuzz::access_admin`] decode arbitrary bytes as the protobuf request of one
//! `rocketgate.cluster.v1.BrokerAdmin` or `AccessAdmin` RPC and call the real [`AdminService`]
//! or [`AccessAdminService`] with it, signed as one of four principals, on a real broker with
//! authentication on, without the network.
//!
//! Input: `[principal][rpc][protobuf request]`. The principal (modulo 4, [`PRINCIPALS`]) is the
//! super user, a normal user whose policy allows `Get` and `List` on `Cluster:*` only, no
//! credentials, or the normal user's access key signed with a wrong secret; the RPC is an
//! index into [`BROKER_ADMIN_RPCS`] or [`ACCESS_ADMIN_RPCS`] (modulo their number).
//!
//! Checked beyond "never panics" (a violation panics, naming it):
//! - every refusal is a gRPC status of the services' table (`crate::status`): never
//!   `INTERNAL`, `UNKNOWN` or `UNAVAILABLE` on a healthy broker, never with an empty message,
//!   and with a message short enough for a `grpc-message` header ([`MAX_STATUS_MESSAGE`]);
//! - an answer keeps to the service's encoding limit (`AccessAdmin`: the 4 MiB tonic's clients
//!   decode by default);
//! - no credentials or a forged signature: `UNAUTHENTICATED`; the normal user: every
//!   `AccessAdmin` call and every `BrokerAdmin` change ([`BROKER_ADMIN_CHANGES`]) is
//!   `PERMISSION_DENIED`; and whatever such a principal calls leaves the broker as it was
//!   (topics, groups, users, policies, live tokens, the CommitLog's end, the seed group's
//!   offsets).
//!
//! The super user may change anything, its own account included: after each of its
//! `AccessAdmin` changes the harness restores both fuzz users (secret, kind, status, policy).
//!
//! Used only by the cargo-fuzz targets `grpc_admin` and `grpc_access` (`fuzz/`) and the short
//! runs in the `tests` crate; calls the services' public traits and reaches into no module.
//! Concurrency: as the messaging harness, a two-thread runtime owned by the harness, one call
//! awaited at a time.

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use rocketgate_core::auth::{
    sign, Action, Decision, PolicyEntry, UserKind, UserStatus, UserUpdate,
};
use rocketgate_core::{Broker, GroupConfig, ManualClock, TopicConfig};
use rocketgate_proto::cluster::v1 as pb;
use rocketgate_proto::cluster::v1::access_admin_server::AccessAdmin as _;
use rocketgate_proto::cluster::v1::broker_admin_server::BrokerAdmin as _;
use tonic::{Code, Response, Status};

use super::{FuzzError, GROUP, TOPICS};
use crate::access_admin::AccessAdminService;
use crate::AdminService;

/// The principals an input may pick with its first byte, in this order.
pub const PRINCIPALS: [&str; 4] = ["super", "normal", "anonymous", "forged"];

/// The super user's access key.
pub const SUPER_USER: &str = "fuzz-admin";
/// The normal user's access key (`Get` and `List` on `Cluster:*`).
pub const NORMAL_USER: &str = "fuzz-user";
const SECRET: &str = "fuzz-secret-key";

/// The `BrokerAdmin` RPCs an input may pick with its second byte, in this order.
pub const BROKER_ADMIN_RPCS: [&str; 17] = [
    "GetBrokerInfo",
    "CreateTopic",
    "UpdateTopic",
    "DeleteTopic",
    "ListTopics",
    "GetTopicStatus",
    "ListGroups",
    "GetGroupStatus",
    "ResetOffset",
    "QueryMessageById",
    "QueryMessagesByKey",
    "QueryMessagesByTime",
    "ListDeadLetters",
    "ResendDeadLetters",
    "SendMessage",
    "PullMessages",
    "CommitOffset",
];

/// The `BrokerAdmin` RPCs that change the broker: they need `Create`, `Update` or `Delete` on
/// the cluster (docs/admin.md), which the normal user lacks.
pub const BROKER_ADMIN_CHANGES: [&str; 7] = [
    "CreateTopic",
    "UpdateTopic",
    "DeleteTopic",
    "ResetOffset",
    "ResendDeadLetters",
    "SendMessage",
    "CommitOffset",
];

/// The `AccessAdmin` RPCs an input may pick with its second byte, in this order.
pub const ACCESS_ADMIN_RPCS: [&str; 9] = [
    "CreateUser",
    "UpdateUser",
    "DeleteUser",
    "ListUsers",
    "SetPolicy",
    "GetPolicy",
    "IssueToken",
    "RevokeToken",
    "ListTokens",
];

/// The longest status message allowed: it travels in the `grpc-message` header, percent-encoded
/// (up to three bytes per byte), and HTTP/2 clients refuse header blocks over 16 KiB by
/// default (the service cuts its messages to `status::MAX_MESSAGE_BYTES`, half of this).
pub const MAX_STATUS_MESSAGE: usize = 4096;

/// What an input's principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Super,
    Normal,
    Anonymous,
    Forged,
}

/// The answer of one call: the encoded size of the response, or the refusal.
type Answer = Result<usize, Status>;

fn answer<T: prost::Message>(r: Result<Response<T>, Status>) -> Answer {
    r.map(|resp| resp.get_ref().encoded_len())
}

/// What a refused or harmless call must leave unchanged.
#[derive(Debug)]
struct Snapshot {
    topics: Vec<TopicConfig>,
    groups: Vec<GroupConfig>,
    users: Vec<rocketgate_core::auth::UserInfo>,
    policies: Vec<Vec<PolicyEntry>>,
    tokens: Vec<rocketgate_core::auth::TokenInfo>,
    log_end: u64,
    offsets: Vec<Option<u64>>,
}

impl Snapshot {
    /// What differs in `after`, field by field (empty when nothing does).
    fn changes(&self, after: &Self) -> String {
        let mut out = String::new();
        let mut diff = |name: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            let (a, b) = (format!("{a:?}"), format!("{b:?}"));
            if a != b {
                out.push_str(&format!("{name}: {a} → {b}; "));
            }
        };
        diff("topics", &self.topics, &after.topics);
        diff("groups", &self.groups, &after.groups);
        diff("users", &self.users, &after.users);
        diff("policies", &self.policies, &after.policies);
        diff("tokens", &self.tokens, &after.tokens);
        diff("log end", &self.log_end, &after.log_end);
        diff("offsets", &self.offsets, &after.offsets);
        out
    }
}

/// Real `BrokerAdmin` and `AccessAdmin` services on a real broker with authentication on, fed
/// fuzz inputs.
pub struct AdminFuzz {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    admin: AdminService,
    access: AccessAdminService,
}

impl std::fmt::Debug for AdminFuzz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminFuzz").finish_non_exhaustive()
    }
}

impl AdminFuzz {
    /// Opens a broker in `dir` (authentication on, asynchronous flush, a CommitLog bounded to
    /// 256 MiB, at most 64 topics and 64 groups, a clock that stands still) with the seed
    /// topics, group and messages, the two fuzz users, and the services on it.
    ///
    /// # Errors
    /// [`FuzzError`] when the runtime or the broker cannot start.
    pub fn start(dir: &Path) -> Result<Self, FuzzError> {
        let runtime = super::runtime()?;
        let mut config = super::config(dir);
        config.consumer.max_wait_ms = 20;
        config.limits.max_topics = 64;
        config.limits.max_groups = 64;
        config.auth.enabled = true;
        config.auth.failure_burst = 0;
        let guard = runtime.enter();
        // Time stands still: no delayed message, check-back or token expiry changes the broker
        // between the two snapshots of a call (long polls wait on the runtime's timers).
        let clock = Arc::new(ManualClock::starting_now());
        let broker = Broker::open_with_clock(config, clock)?;
        super::create_seeds(&broker)?;
        runtime.block_on(super::send_seed_messages(&broker))?;
        restore_users(&broker)?;
        let node = super::node();
        let admin = AdminService::new(broker.clone(), node);
        let access = AccessAdminService::new(broker.clone());
        drop(guard);
        Ok(Self {
            runtime,
            broker,
            admin,
            access,
        })
    }

    /// The broker behind the services.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// One `BrokerAdmin` call (see the module doc for the input and the checks).
    ///
    /// # Panics
    /// When an answer breaks one of the invariants of the module doc.
    pub fn broker_admin(&mut self, data: &[u8]) {
        let Some((who, pick, body)) = split(data) else {
            return;
        };
        let rpc = BROKER_ADMIN_RPCS[pick % BROKER_ADMIN_RPCS.len()];
        let before = (who != Who::Super).then(|| self.snapshot());
        let admin = &self.admin;
        let broker = &self.broker;
        let outcome = self.runtime.block_on(async move {
            macro_rules! call {
                ($ty:ident, $method:ident) => {{
                    let req = pb::$ty::decode(body).ok()?;
                    Some(answer(admin.$method(request(broker, who, req)).await))
                }};
            }
            match rpc {
                "GetBrokerInfo" => call!(GetBrokerInfoRequest, get_broker_info),
                "CreateTopic" => call!(CreateTopicRequest, create_topic),
                "UpdateTopic" => call!(UpdateTopicRequest, update_topic),
                "DeleteTopic" => call!(DeleteTopicRequest, delete_topic),
                "ListTopics" => call!(ListTopicsRequest, list_topics),
                "GetTopicStatus" => call!(GetTopicStatusRequest, get_topic_status),
                "ListGroups" => call!(ListGroupsRequest, list_groups),
                "GetGroupStatus" => call!(GetGroupStatusRequest, get_group_status),
                "ResetOffset" => call!(ResetOffsetRequest, reset_offset),
                "QueryMessageById" => call!(QueryMessageByIdRequest, query_message_by_id),
                "QueryMessagesByKey" => call!(QueryMessagesByKeyRequest, query_messages_by_key),
                "QueryMessagesByTime" => {
                    call!(QueryMessagesByTimeRequest, query_messages_by_time)
                }
                "ListDeadLetters" => call!(ListDeadLettersRequest, list_dead_letters),
                "ResendDeadLetters" => call!(ResendDeadLettersRequest, resend_dead_letters),
                "SendMessage" => call!(SendMessageRequest, send_message),
                "PullMessages" => call!(PullMessagesRequest, pull_messages),
                _ => call!(CommitOffsetRequest, commit_offset),
            }
        });
        let Some(outcome) = outcome else {
            return;
        };
        let encode_limit = crate::admin::response_budget(&self.broker)
            .saturating_add(crate::admin::request_limit(&self.broker));
        self.check(rpc, who, &outcome, encode_limit, before);
        if who == Who::Normal && BROKER_ADMIN_CHANGES.contains(&rpc) {
            expect_code(rpc, who, &outcome, Code::PermissionDenied);
        }
    }

    /// One `AccessAdmin` call (see the module doc for the input and the checks).
    ///
    /// # Panics
    /// When an answer breaks one of the invariants of the module doc.
    pub fn access_admin(&mut self, data: &[u8]) {
        let Some((who, pick, body)) = split(data) else {
            return;
        };
        let rpc = ACCESS_ADMIN_RPCS[pick % ACCESS_ADMIN_RPCS.len()];
        let before = (who != Who::Super).then(|| self.snapshot());
        let access = &self.access;
        let broker = &self.broker;
        let outcome = self.runtime.block_on(async move {
            macro_rules! call {
                ($ty:ident, $method:ident) => {{
                    let req = pb::$ty::decode(body).ok()?;
                    Some(answer(access.$method(request(broker, who, req)).await))
                }};
            }
            match rpc {
                "CreateUser" => call!(CreateUserRequest, create_user),
                "UpdateUser" => call!(UpdateUserRequest, update_user),
                "DeleteUser" => call!(DeleteUserRequest, delete_user),
                "ListUsers" => call!(ListUsersRequest, list_users),
                "SetPolicy" => call!(SetPolicyRequest, set_policy),
                "GetPolicy" => call!(GetPolicyRequest, get_policy),
                "IssueToken" => call!(IssueTokenRequest, issue_token),
                "RevokeToken" => call!(RevokeTokenRequest, revoke_token),
                _ => call!(ListTokensRequest, list_tokens),
            }
        });
        let Some(outcome) = outcome else {
            return;
        };
        // The service has no encoding limit of its own: what tonic's clients decode by default.
        self.check(rpc, who, &outcome, 4 << 20, before);
        if who == Who::Normal {
            expect_code(rpc, who, &outcome, Code::PermissionDenied);
        }
        let changes_users = matches!(
            rpc,
            "CreateUser" | "UpdateUser" | "DeleteUser" | "SetPolicy"
        );
        if who == Who::Super && changes_users && outcome.is_ok() {
            if let Err(e) = restore_users(&self.broker) {
                panic!("the fuzz users cannot be restored: {e}");
            }
        }
    }

    /// The checks every answer passes (module doc).
    fn check(
        &self,
        rpc: &str,
        who: Who,
        outcome: &Answer,
        encode_limit: usize,
        before: Option<Snapshot>,
    ) {
        match outcome {
            Ok(size) => assert!(
                *size <= encode_limit,
                "{rpc}: a {size}-byte answer, over the encoding limit of {encode_limit}"
            ),
            Err(status) => {
                let allowed = [
                    Code::InvalidArgument,
                    Code::NotFound,
                    Code::AlreadyExists,
                    Code::PermissionDenied,
                    Code::ResourceExhausted,
                    Code::FailedPrecondition,
                    Code::Aborted,
                    Code::OutOfRange,
                    Code::Unauthenticated,
                ];
                assert!(
                    allowed.contains(&status.code()),
                    "{rpc}: answered {status:?}, not a refusal of the service's table"
                );
                assert!(
                    !status.message().is_empty(),
                    "{rpc}: {status:?} names nothing"
                );
                assert!(
                    status.message().len() <= MAX_STATUS_MESSAGE,
                    "{rpc}: a status message of {} bytes ({:?}…)",
                    status.message().len(),
                    status.message().chars().take(80).collect::<String>()
                );
            }
        }
        if matches!(who, Who::Anonymous | Who::Forged) {
            expect_code(rpc, who, outcome, Code::Unauthenticated);
        }
        if let Some(before) = before {
            let changed = before.changes(&self.snapshot());
            assert!(
                changed.is_empty(),
                "{rpc} by the {who:?} principal changed the broker: {changed}"
            );
        }
    }

    /// The state a call of a non-super principal must not change.
    fn snapshot(&self) -> Snapshot {
        let b = &self.broker;
        let auth = b.auth();
        let users = auth.users();
        Snapshot {
            topics: b.topics().list_user(),
            groups: b.groups().list(),
            policies: users
                .iter()
                .map(|u| auth.policy(&u.access_key).unwrap_or_default())
                .collect(),
            users,
            tokens: auth.tokens(None),
            log_end: b.storage().health().log.end,
            offsets: (0..4)
                .map(|q| {
                    b.consumer()
                        .committed_offset(GROUP, TOPICS[0].0, q)
                        .ok()
                        .flatten()
                })
                .collect(),
        }
    }

    /// Closes the broker.
    ///
    /// # Errors
    /// The broker's error at shutdown.
    pub fn close(self) -> Result<(), FuzzError> {
        self.runtime.block_on(self.broker.close())?;
        Ok(())
    }
}

fn expect_code(rpc: &str, who: Who, outcome: &Answer, code: Code) {
    match outcome {
        Err(s) if s.code() == code => {}
        other => panic!("{rpc} by the {who:?} principal answered {other:?}, not {code:?}"),
    }
}

/// The principal, the RPC index and the request of an input.
fn split(data: &[u8]) -> Option<(Who, usize, &[u8])> {
    let [who, rpc, body @ ..] = data else {
        return None;
    };
    let who = match who % 4 {
        0 => Who::Super,
        1 => Who::Normal,
        2 => Who::Anonymous,
        _ => Who::Forged,
    };
    Some((who, usize::from(*rpc), body))
}

/// A request as tonic hands it over, signed as `who` (MQv2-HMAC-SHA1 over `x-mq-date-time`,
/// as `rocketgate admin --ak/--sk` signs it).
fn request<T>(broker: &Broker, who: Who, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let (user, secret) = match who {
        Who::Super => (SUPER_USER, SECRET),
        Who::Normal => (NORMAL_USER, SECRET),
        Who::Forged => (NORMAL_USER, "not-the-secret"),
        Who::Anonymous => return req,
    };
    let date_time = sign::compact_time(broker.now_ms());
    let header = format!(
        "MQv2-HMAC-SHA1 Credential={user}, SignedHeaders=x-mq-date-time, Signature={}",
        sign::sign(secret.as_bytes(), &date_time)
    );
    for (name, value) in [("authorization", header), ("x-mq-date-time", date_time)] {
        if let Ok(value) = value.parse() {
            req.metadata_mut().insert(name, value);
        }
    }
    req
}

/// Makes both fuzz users what the harness expects: the super user and the normal user, enabled,
/// with the harness's secret, the normal user allowed `Get` and `List` on the cluster.
fn restore_users(broker: &Broker) -> Result<(), rocketgate_core::Error> {
    let auth = broker.auth();
    for (user, kind) in [
        (SUPER_USER, UserKind::Super),
        (NORMAL_USER, UserKind::Normal),
    ] {
        if !auth.users().iter().any(|u| u.access_key == user) {
            auth.create_user(user, SECRET, kind)?;
        }
        auth.update_user(
            user,
            UserUpdate {
                secret_key: Some(SECRET.into()),
                kind: Some(kind),
                status: Some(UserStatus::Enabled),
            },
        )?;
    }
    auth.set_policy(
        NORMAL_USER,
        vec![PolicyEntry {
            resources: vec!["Cluster:*".parse()?],
            actions: vec![Action::Get, Action::List],
            decision: Decision::Allow,
            sources: Vec::new(),
        }],
    )?;
    auth.set_policy(SUPER_USER, Vec::new())
}
