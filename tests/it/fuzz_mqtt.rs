//! The MQTT packet decoder through the shared mutator (`fuzz.rs`): the corpus of its cargo-fuzz
//! target (`gateways/mqtt/fuzz/corpus/decode/`) replayed, then mutated inputs fed to
//! [`rocketgate_gateway_mqtt::fuzz_decode`]. The gateway's own short run
//! (`gateways/mqtt/tests/fuzz_short.rs`) stays; this one adds the dictionary mutations.

use crate::fuzz::{short_run_in, PROTO_TOKENS};

#[test]
fn mutated_mqtt_packets_never_panic_the_decoder() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateways/mqtt/fuzz/corpus/decode");
    short_run_in("mqtt_decode", &dir, 100_000, PROTO_TOKENS, |input| {
        rocketgate_gateway_mqtt::fuzz_decode(input)
    });
}
