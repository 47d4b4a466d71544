//! Short fuzz runs of the cluster admin services (issue 14): `BrokerAdmin` and `AccessAdmin`
//! requests, from the corpora of the cargo-fuzz targets `grpc_admin` and `grpc_access` and
//! their mutations (`fuzz.rs`), signed as a super user, a normal user, nobody or a forger and
//! handed to the real services on a real broker with authentication on
//! ([`rocketgate_gateway_grpc::fuzz::admin::AdminFuzz`]), without the network. No input may
//! panic; every refusal is a status of the services' table with a bounded message; nobody,
//! a forger and the normal user change nothing (the harness checks the broker before and
//! after). Each test closes its broker.

use rocketgate_gateway_grpc::fuzz::admin::AdminFuzz;
use rocketgate_gateway_grpc::fuzz::admin_seeds;

use crate::fuzz::{check_seeds, short_run, PROTO_TOKENS};

#[test]
fn mutated_broker_admin_requests_keep_the_invariants() {
    check_seeds("grpc_admin", admin_seeds::broker_admin());
    let dir = tempfile::tempdir().unwrap();
    let mut h = AdminFuzz::start(dir.path()).unwrap();
    let before = h.broker().storage().health().log.end;
    short_run("grpc_admin", 30_000, PROTO_TOKENS, |input| {
        h.broker_admin(input)
    });
    // The super user's seeds reached the core: its sends were stored.
    let after = h.broker().storage().health().log.end;
    h.close().unwrap();
    assert!(after > before, "no seed message was stored");
}

#[test]
fn mutated_access_admin_requests_keep_the_invariants() {
    check_seeds("grpc_access", admin_seeds::access_admin());
    let dir = tempfile::tempdir().unwrap();
    let mut h = AdminFuzz::start(dir.path()).unwrap();
    short_run("grpc_access", 4_000, PROTO_TOKENS, |input| {
        h.access_admin(input)
    });
    // The super user's seeds reached the core: users were created beside the two fuzz users.
    let users = h.broker().auth().users().len();
    h.close().unwrap();
    assert!(users > 2, "no seed user was created");
}
