//! Issue 14's scenario table: one broker with authentication on behind every gateway (the
//! RocketMQ 5 gRPC endpoint, REST, WebSocket and MQTT), and one table of *who × credential ×
//! action* run over all four protocols, each cell compared with the answer expected in that
//! protocol's own terms (a gRPC status code, an HTTP status and problem code, a WebSocket frame,
//! an MQTT reason code). The table is rendered into `docs/security.md` ("Scenario table"), and
//! a test keeps the two equal.
//!
//! - Users (made through the core): `pub` may `Pub` on `Topic:orders`; `sub` may `Sub` on
//!   `Topic:orders`, `Group:g*` and `Group:mqtt-sub-*` (its MQTT sessions' groups) but not
//!   `Create`; `admin` is the bootstrap super user; `nobody` has no policy; `disabled` has
//!   `pub`'s policy and is disabled. Topics `orders` and `payments` and the group `g1` exist.
//! - Credentials: a user's access key and secret key, `pub`'s bearer token, none, a wrong
//!   secret, `pub`'s expired token (issued for 60 s; the broker's clock is then moved past it:
//!   `server::SteppedClock`, no waiting).
//! - gRPC is the official Rust SDK (`rocketmq` 5.0.0) signing with the access key and secret
//!   key; administration is `BrokerAdmin`; the SDK cannot carry a token, so its "expired" cell
//!   is a request signed an hour ago in the SDK's RFC 3339 format (past the 15 min skew
//!   window), through the generated stub.
//!
//! On any differing cell the test fails and prints the whole matrix (`✓` what was expected,
//! `✗ want ≠ got`). Each cell is bounded ([`CELL_LIMIT`]); the table takes about a second.
//! Layout: `server.rs` (broker, gateways, users), `grpc.rs`, `http.rs` (REST and WebSocket),
//! `mqtt.rs` (5.0 and 3.1.1): one runner per column. Concurrency: the cells run one after
//! another on the test's runtime, against the one server.

mod grpc;
mod http;
mod mqtt;
mod server;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use server::{Server, G1, ORDERS, PAYMENTS};

/// Bound on one cell (a gRPC receive may hold for the gateway's 5 s long poll).
const CELL_LIMIT: Duration = Duration::from_secs(20);

/// The users of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// `Pub` on `Topic:orders`.
    Pub,
    /// `Sub` on `Topic:orders`, `Group:g*`, `Group:mqtt-sub-*`.
    Sub,
    /// The bootstrap super user.
    Admin,
    /// No policy.
    Nobody,
    /// `pub`'s policy, disabled.
    Disabled,
}

impl User {
    /// Its access key.
    pub fn access_key(self) -> &'static str {
        match self {
            Self::Pub => "pub",
            Self::Sub => "sub",
            Self::Admin => "admin",
            Self::Nobody => "nobody",
            Self::Disabled => "disabled",
        }
    }

    /// Its secret key.
    pub fn secret_key(self) -> &'static str {
        match self {
            Self::Pub => "pub-secret-1",
            Self::Sub => "sub-secret-1",
            Self::Admin => "admin-secret-1",
            Self::Nobody => "nobody-secret-1",
            Self::Disabled => "disabled-secret-1",
        }
    }
}

/// The credential a row presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    /// The user's access key and secret key.
    Secret(User),
    /// `pub`'s bearer token.
    Token,
    /// Nothing.
    Nothing,
    /// `pub`'s access key with a wrong secret.
    WrongSecret,
    /// `pub`'s expired token (gRPC: a stale signature of `pub`).
    Expired,
}

/// What a row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Publish to `orders`.
    PublishOrders,
    /// Publish to `payments`.
    PublishOther,
    /// Receive from `orders` as the existing group `g1` (MQTT: SUBSCRIBE `orders/#`).
    ReceiveG1,
    /// Receive from `orders` as a group that does not exist yet (`g2-…`).
    ReceiveNewGroup,
    /// Create a topic, then delete it.
    AdminTopic,
}

/// The protocol-neutral outcome a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    Refused,
    Unauthenticated,
}

/// The columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Grpc,
    Rest,
    Ws,
    Mqtt,
}

const PROTOS: [Proto; 4] = [Proto::Grpc, Proto::Rest, Proto::Ws, Proto::Mqtt];

impl Proto {
    fn slug(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Rest => "rest",
            Self::Ws => "ws",
            Self::Mqtt => "mqtt",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Grpc => "gRPC (SDK; BrokerAdmin)",
            Self::Rest => "REST",
            Self::Ws => "WebSocket `/v1/ws`",
            Self::Mqtt => "MQTT 5 · 3.1.1",
        }
    }
}

/// A credential as the runners present it.
#[derive(Debug, Clone)]
pub enum Login {
    /// No credentials.
    Anonymous,
    /// An access key and secret key.
    Secret { ak: String, sk: String },
    /// A bearer token of the user `ak`.
    Token { ak: String, token: String },
    /// An expired token of `ak`; over gRPC, a stale signature with `sk`.
    Expired {
        ak: String,
        sk: String,
        token: String,
    },
}

/// One cell as a runner sees it.
pub struct Cell {
    /// The credential.
    pub login: Login,
    /// The action.
    pub act: Act,
    /// The topic a publish goes to.
    pub topic: &'static str,
    /// The group a receive uses (not MQTT's).
    pub group: String,
    /// The topic an admin cell creates and deletes.
    pub scratch_topic: String,
    /// The MQTT client id's stem (`-v5` / `-v4` follow).
    pub client: String,
}

struct Row {
    cred: Cred,
    act: Act,
    expect: Expect,
}

const fn row(cred: Cred, act: Act, expect: Expect) -> Row {
    Row { cred, act, expect }
}

use Act::{AdminTopic, PublishOrders, PublishOther, ReceiveG1, ReceiveNewGroup};
use Expect::{Allowed, Refused, Unauthenticated};

/// The table. `sub` receiving as a new group is refused because it lacks `Create` on the
/// group: the group must not be created on first use.
const ROWS: &[Row] = &[
    row(Cred::Secret(User::Pub), PublishOrders, Allowed),
    row(Cred::Secret(User::Pub), PublishOther, Refused),
    row(Cred::Secret(User::Pub), ReceiveG1, Refused),
    row(Cred::Secret(User::Pub), AdminTopic, Refused),
    row(Cred::Token, PublishOrders, Allowed),
    row(Cred::Secret(User::Sub), PublishOrders, Refused),
    row(Cred::Secret(User::Sub), PublishOther, Refused),
    row(Cred::Secret(User::Sub), ReceiveG1, Allowed),
    row(Cred::Secret(User::Sub), ReceiveNewGroup, Refused),
    row(Cred::Secret(User::Sub), AdminTopic, Refused),
    row(Cred::Secret(User::Admin), PublishOrders, Allowed),
    row(Cred::Secret(User::Admin), PublishOther, Allowed),
    row(Cred::Secret(User::Admin), ReceiveG1, Allowed),
    row(Cred::Secret(User::Admin), ReceiveNewGroup, Allowed),
    row(Cred::Secret(User::Admin), AdminTopic, Allowed),
    row(Cred::Secret(User::Nobody), PublishOrders, Refused),
    row(Cred::Secret(User::Nobody), ReceiveG1, Refused),
    row(Cred::Secret(User::Nobody), AdminTopic, Refused),
    row(Cred::Nothing, PublishOrders, Unauthenticated),
    row(Cred::WrongSecret, PublishOrders, Unauthenticated),
    row(Cred::Expired, PublishOrders, Unauthenticated),
    row(Cred::Secret(User::Disabled), PublishOrders, Unauthenticated),
];

impl Row {
    fn who(&self) -> &'static str {
        match self.cred {
            Cred::Secret(u) => u.access_key(),
            Cred::Nothing => "anon",
            Cred::Token | Cred::WrongSecret | Cred::Expired => User::Pub.access_key(),
        }
    }

    fn cred_label(&self) -> String {
        match self.cred {
            Cred::Secret(u) => format!("`{}` (ak/sk)", u.access_key()),
            Cred::Token => "`pub` (token)".into(),
            Cred::Nothing => "no credentials".into(),
            Cred::WrongSecret => "`pub`, wrong secret".into(),
            Cred::Expired => "`pub`, expired token".into(),
        }
    }

    fn act_label(&self) -> &'static str {
        match self.act {
            PublishOrders => "publish to `orders`",
            PublishOther => "publish to `payments`",
            ReceiveG1 => "receive `orders` as `g1`",
            ReceiveNewGroup => "receive as a new group `g2-…`",
            AdminTopic => "create + delete a topic",
        }
    }

    /// The answer expected over `p`, in its own terms; `None` where the protocol has no such
    /// request.
    fn expected(&self, p: Proto) -> Option<&'static str> {
        let receive = matches!(self.act, ReceiveG1 | ReceiveNewGroup);
        Some(match p {
            Proto::Grpc => match (self.cred, self.act, self.expect) {
                (Cred::Token, _, _) => return None,
                (_, _, Allowed) => "OK",
                (_, AdminTopic, Refused) => "PERMISSION_DENIED",
                (_, AdminTopic, Unauthenticated) => "UNAUTHENTICATED",
                (_, _, Refused) => "FORBIDDEN",
                (_, _, Unauthenticated) => "UNAUTHORIZED",
            },
            Proto::Rest => match self.expect {
                Allowed => "2xx",
                Refused => "403 forbidden",
                Unauthenticated => "401 + WWW-Authenticate",
            },
            Proto::Ws => match (self.act, self.expect) {
                (AdminTopic, _) => return None,
                (_, Unauthenticated) => "upgrade 401",
                (_, Refused) => "error forbidden",
                (_, Allowed) if receive => "message",
                (_, Allowed) => "reply",
            },
            Proto::Mqtt => match (self.cred, self.act, self.expect) {
                (_, AdminTopic | ReceiveNewGroup, _) => return None,
                (Cred::Nothing, _, Unauthenticated) => "CONNACK 0x87 · CONNACK 5",
                (_, _, Unauthenticated) => "CONNACK 0x86 · CONNACK 4",
                (_, _, Allowed) if receive => "SUBACK 0x01, PUBLISH · SUBACK 1, PUBLISH",
                (_, _, Refused) if receive => "SUBACK 0x87 · SUBACK 0x80",
                (_, _, Allowed) => "PUBACK 0x00 · PUBACK",
                (_, _, Refused) => "PUBACK 0x87 · closed",
            },
        })
    }

    fn cell(&self, s: &Server, index: usize, p: Proto) -> Cell {
        let pub_user = User::Pub;
        let login = match self.cred {
            Cred::Secret(u) => Login::Secret {
                ak: u.access_key().into(),
                sk: u.secret_key().into(),
            },
            Cred::Token => Login::Token {
                ak: pub_user.access_key().into(),
                token: s.token.clone(),
            },
            Cred::Nothing => Login::Anonymous,
            Cred::WrongSecret => Login::Secret {
                ak: pub_user.access_key().into(),
                sk: "not-the-secret".into(),
            },
            Cred::Expired => Login::Expired {
                ak: pub_user.access_key().into(),
                sk: pub_user.secret_key().into(),
                token: s.expired_token.clone(),
            },
        };
        Cell {
            login,
            act: self.act,
            topic: if self.act == PublishOther {
                PAYMENTS
            } else {
                ORDERS
            },
            group: match self.act {
                ReceiveNewGroup => format!("g2-{}-{}", p.slug(), self.who()),
                _ => G1.into(),
            },
            scratch_topic: format!("scratch-{}-{index}", p.slug()),
            client: format!("{}-{index}", self.who()),
        }
    }
}

/// What one cell answered.
async fn run(s: &Server, http: &reqwest::Client, row: &Row, index: usize, p: Proto) -> String {
    let cell = row.cell(s, index, p);
    if matches!(row.act, ReceiveG1 | ReceiveNewGroup) {
        s.put_order().await;
    }
    let answer = tokio::time::timeout(CELL_LIMIT, async {
        match p {
            Proto::Grpc => grpc::run(s, &cell).await,
            Proto::Rest => http::rest(s, http, &cell).await,
            Proto::Ws => http::ws(s, &cell).await,
            Proto::Mqtt => mqtt::run(s, &cell).await,
        }
    })
    .await
    .unwrap_or_else(|_| format!("no answer within {CELL_LIMIT:?}"));
    if row.act == ReceiveNewGroup && row.expect == Refused && s.group_exists(&cell.group) {
        return format!("{answer}, and group `{}` was created", cell.group);
    }
    answer
}

/// The matrix as text: expected answers, or (with `got`) each cell marked.
fn render(got: Option<&[Vec<Option<String>>]>) -> String {
    let mut out = String::new();
    let head: Vec<&str> = PROTOS.iter().map(|p| p.title()).collect();
    let _ = writeln!(out, "| who / credential | action | {} |", head.join(" | "));
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (i, row) in ROWS.iter().enumerate() {
        let cells: Vec<String> = PROTOS
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let want = row.expected(*p);
                match (want, got.and_then(|g| g[i][j].as_deref())) {
                    (None, _) => "n/a".to_owned(),
                    (Some(w), None) => w.to_owned(),
                    (Some(w), Some(g)) if g == w => format!("✓ {w}"),
                    (Some(w), Some(g)) => format!("✗ want {w} ≠ got {g}"),
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row.cred_label(),
            row.act_label(),
            cells.join(" | ")
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_answers_the_scenario_table_in_its_own_terms() {
    let s = Server::start().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut got: Vec<Vec<Option<String>>> = Vec::new();
    let mut differ = 0;
    for (i, row) in ROWS.iter().enumerate() {
        let mut line = Vec::new();
        for p in PROTOS {
            let answer = match row.expected(p) {
                None => None,
                Some(want) => {
                    let answer = run(&s, &http, row, i, p).await;
                    differ += usize::from(answer != want);
                    Some(answer)
                }
            };
            line.push(answer);
        }
        got.push(line);
    }
    // Nothing refused was stored: `payments` holds only what `admin` published (MQTT twice).
    let payments: u64 = s
        .broker
        .topics()
        .describe(PAYMENTS)
        .await
        .unwrap()
        .queues
        .iter()
        .map(|q| q.max)
        .sum();
    let table = render(Some(&got));
    println!("{table}\n{:?} for the table", started.elapsed());
    s.stop().await;
    assert_eq!(differ, 0, "{differ} cells differ:\n{table}");
    assert_eq!(payments, 5, "messages in payments\n{table}");
}

#[test]
fn the_scenario_table_in_security_md_is_the_tested_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let table = render(None);
    assert!(
        doc.contains(&table),
        "docs/security.md (section \"Scenario table\") should contain:\n\n{table}"
    );
}
