//! Short fuzz run of the NameServer (issue 14): sequences of protobuf requests (register,
//! unregister, heartbeat, route and cluster queries, expiry scans) and of replies the broker
//! side decodes, from the corpus of the cargo-fuzz target `nameserver` and its mutations
//! (`fuzz.rs`), applied to a fresh in-memory service each
//! ([`rocketgate_nameserver::fuzz::NameServerFuzz`]). No input may panic; a refused
//! registration changes nothing; every answer decodes on the client side.

use rocketgate_nameserver::fuzz::NameServerFuzz;

use crate::fuzz::{check_seeds, short_run, PROTO_TOKENS};

#[test]
fn mutated_request_sequences_never_panic_the_nameserver() {
    check_seeds("nameserver", rocketgate_nameserver::fuzz::seeds());
    let mut h = NameServerFuzz::new().unwrap();
    short_run("nameserver", 50_000, PROTO_TOKENS, |input| h.run(input));
}
