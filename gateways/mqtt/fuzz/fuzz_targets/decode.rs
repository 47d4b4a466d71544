//! Fuzzes the MQTT decoder (fixed header, remaining length, every packet type of 3.1.1 and
//! 5.0, properties) and the topic name/filter validators.
//!
//! Run (the first directory is libFuzzer's scratch corpus, `corpus/decode` the kept seeds):
//! `cd gateways/mqtt/fuzz && mkdir -p /tmp/mqtt-corpus && cargo +nightly fuzz run decode
//! /tmp/mqtt-corpus corpus/decode -- -max_total_time=60 -rss_limit_mb=512 -timeout=2`.
//! A crash found is copied into `corpus/decode/` as a regression seed; the crate's test
//! `codec::tests::fuzz_corpus_replays_without_panics` replays them on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rocketgate_gateway_mqtt::fuzz_decode(data);
});
