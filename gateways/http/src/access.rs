//! What each route asks of the core's `Auth` service: one table from (method, route template)
//! to a [`Rule`], read by the authentication middleware (`auth.rs`) before the handler runs.
//!
//! | routes | needs |
//! |---|---|
//! | `/healthz`, `/readyz`, `/openapi.json`, `/docs`, `/ui` (static pages) | nothing: public |
//! | publish, batch publish, half message | `Pub` on the topic |
//! | commit / rollback a transaction | `Pub` on its topic (the handler asks, from the core) |
//! | transaction callback of a producer group | `Pub` on `Group:<producer group>` |
//! | receive | `Sub` on the group (and on the body's topic, in the handler) |
//! | ack, nack, invisibility, dead-letter | `Sub` on the group (and on the handle's topic, in the handler) |
//! | pull, offsets, commit offset | `Sub` on the topic and the group |
//! | lag | `Sub` on the group (and on each topic read, in the handler) |
//! | topic route | `Pub` or `Sub` on the topic |
//! | topic, group, DLQ, scheduled, offset-reset admin; message search and queries; `/health`, `/metrics` | `Cluster:*` with `Create` / `Update` / `Delete` / `Get` / `List`, as the gRPC `BrokerAdmin` |
//! | `/v1/auth/…` (users, policies, tokens) | a super user |
//! | `/v1/ws` | authentication; every frame is authorized (`ws.rs`) |
//! | no route (`404`) | authentication |
//!
//! A route missing from the table is refused (`403`), so a new route is closed until it is
//! given a rule. Owns no state; decides nothing itself: every decision is the core's.

use axum::http::Method;
use rocketgate_core::auth::{Action, Resource};

/// What one request asks for: each item is satisfied by any one of its actions.
pub(crate) type Needs = Vec<(Resource, &'static [Action])>;

const PUB: &[Action] = &[Action::Pub];
const SUB: &[Action] = &[Action::Sub];
const PUB_OR_SUB: &[Action] = &[Action::Pub, Action::Sub];
const CREATE: &[Action] = &[Action::Create];
const UPDATE: &[Action] = &[Action::Update];
const DELETE: &[Action] = &[Action::Delete];
const GET: &[Action] = &[Action::Get];
const LIST: &[Action] = &[Action::List];

/// How a route is admitted.
#[derive(Debug)]
pub(crate) enum Rule {
    /// No credentials needed.
    Public,
    /// Authenticated, and each of these allowed (an empty list: authentication only; the
    /// handler may ask for more).
    Needs(Needs),
    /// Authenticated as a super user.
    Super,
    /// No rule: refused.
    Unknown,
}

fn cluster(actions: &'static [Action]) -> Rule {
    Rule::Needs(vec![(Resource::cluster(), actions)])
}

/// The rule of `method` on the route template `route` (`None`: no route matched), with the
/// path parameters by name.
pub(crate) fn rule(method: &Method, route: Option<&str>, param: impl Fn(&str) -> String) -> Rule {
    let Some(route) = route else {
        return Rule::Needs(Vec::new());
    };
    let topic = || (Resource::topic(param("topic")), SUB);
    let group = || (Resource::group(param("group")), SUB);
    // HEAD is answered by the GET route.
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    match (m, route) {
        ("GET", "/healthz" | "/readyz" | "/openapi.json" | "/docs" | "/ui") => Rule::Public,
        ("GET", "/health" | "/metrics") => cluster(GET),
        ("GET", "/v1/ws") => Rule::Needs(Vec::new()),
        (
            "POST",
            "/v1/topics/{topic}/messages"
            | "/v1/topics/{topic}/messages/batch"
            | "/v1/topics/{topic}/transactions",
        ) => Rule::Needs(vec![(Resource::topic(param("topic")), PUB)]),
        ("POST", "/v1/transactions/{id}/commit" | "/v1/transactions/{id}/rollback") => {
            Rule::Needs(Vec::new())
        }
        ("GET" | "PUT" | "DELETE", "/v1/producers/{group}/callback") => {
            Rule::Needs(vec![(Resource::group(param("group")), PUB)])
        }
        (
            "POST",
            "/v1/groups/{group}/receive"
            | "/v1/groups/{group}/ack"
            | "/v1/groups/{group}/nack"
            | "/v1/groups/{group}/invisibility"
            | "/v1/groups/{group}/dead-letter",
        )
        | ("GET", "/v1/groups/{group}/lag") => Rule::Needs(vec![group()]),
        ("GET", "/v1/groups/{group}/topics/{topic}/queues/{queue}/messages")
        | ("GET", "/v1/groups/{group}/topics/{topic}/offsets")
        | ("PUT", "/v1/groups/{group}/topics/{topic}/queues/{queue}/offset") => {
            Rule::Needs(vec![topic(), group()])
        }
        ("POST", "/v1/groups/{group}/topics/{topic}/offsets/reset") => cluster(UPDATE),
        ("GET", "/v1/topics/{topic}/route") => {
            Rule::Needs(vec![(Resource::topic(param("topic")), PUB_OR_SUB)])
        }
        ("POST", "/v1/topics" | "/v1/groups") => cluster(CREATE),
        ("GET", "/v1/topics" | "/v1/groups" | "/v1/groups/{group}/dlq" | "/v1/scheduled") => {
            cluster(LIST)
        }
        (
            "GET",
            "/v1/topics/{topic}"
            | "/v1/topics/{topic}/messages"
            | "/v1/groups/{group}"
            | "/v1/groups/{group}/clients"
            | "/v1/groups/{group}/retry-policy"
            | "/v1/messages/{id}"
            | "/v1/messages/{id}/trace",
        ) => cluster(GET),
        ("PATCH", "/v1/topics/{topic}")
        | ("PUT", "/v1/groups/{group}/retry-policy")
        | ("POST", "/v1/groups/{group}/dlq/resend") => cluster(UPDATE),
        (
            "DELETE",
            "/v1/topics/{topic}"
            | "/v1/groups/{group}"
            | "/v1/groups/{group}/dlq"
            | "/v1/scheduled/{id}",
        ) => cluster(DELETE),
        (_, r) if r == "/v1/auth" || r.starts_with("/v1/auth/") => Rule::Super,
        _ => Rule::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_routes_are_refused_and_probes_are_public() {
        let p = |_: &str| "x".to_owned();
        assert!(matches!(
            rule(&Method::GET, Some("/healthz"), p),
            Rule::Public
        ));
        assert!(matches!(
            rule(&Method::HEAD, Some("/healthz"), p),
            Rule::Public
        ));
        assert!(matches!(
            rule(&Method::POST, Some("/healthz"), p),
            Rule::Unknown
        ));
        assert!(matches!(
            rule(&Method::GET, Some("/v1/new-route"), p),
            Rule::Unknown
        ));
        assert!(matches!(
            rule(&Method::GET, Some("/v1/auth/users"), p),
            Rule::Super
        ));
        match rule(&Method::POST, Some("/v1/topics/{topic}/messages"), p) {
            Rule::Needs(n) => assert_eq!(n, vec![(Resource::topic("x"), PUB)]),
            r => panic!("{r:?}"),
        }
    }
}
