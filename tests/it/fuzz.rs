//! The short mutation-fuzz runs of the network decoders on the stable toolchain (issue 14), one
//! mutator for all of them: every test run (and CI) replays each cargo-fuzz target's corpus
//! (`fuzz/corpus/<target>/`: the seeds and every finding kept as a regression input) and then
//! feeds it a fixed number of mutated inputs, so a little fuzzing happens beyond the corpus
//! without nightly. The targets are `fuzz_http` (REST and WebSocket), `fuzz_grpc` (messaging
//! requests and Telemetry streams), `fuzz_admin` (`BrokerAdmin`, `AccessAdmin`),
//! `fuzz_nameserver`, and `fuzz_mqtt` (MQTT's decoder and its own corpus in
//! `gateways/mqtt/fuzz/`, through this mutator too); the long runs are `cargo +nightly fuzz run <target>` in `fuzz/`
//! (`docs/testing.md`).
//!
//! Mutations (from a fixed-seed xorshift generator): bit flips, bytes overwritten with boundary
//! values, truncation, duplication of a slice, splicing with another seed, insertion of a token
//! of the target's dictionary (JSON syntax, big numbers, odd escapes; protobuf varints). An input
//! that panics fails the test and prints the input in hex and as text: add it to the corpus.
//!
//! `RG_FUZZ_ITERATIONS` sets the number of mutated inputs of every target (each has its own
//! default, about a second of work); `RG_FUZZ_SEED` the generator's seed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// The generator: xorshift64, reproducible from its seed.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Tokens every text target gets: JSON structure, numbers at the edges of their types, odd
/// escapes and Unicode.
pub const JSON_TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"\"\"",
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"1e309",
    b"0.5",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"\xf0\x9f\x92\xa9",
    b"\xff",
    b"%",
    b"%00",
    b"%zz",
    b"&",
    b"=",
    b"\n",
    b"\"base64\"",
    b"\"SQL\"",
    b"\"TAG\"",
    b"\"*\"",
];

/// Tokens of protobuf inputs: varints at the edges, length prefixes, field keys.
pub const PROTO_TOKENS: &[&[u8]] = &[
    b"\x00",
    b"\x7f",
    b"\x80\x01",
    b"\xff\xff\xff\xff\x0f",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\x0a\x00",
    b"\x12\x00",
    b"\x1a\x00",
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x0f",
];

/// Mutates `input` in place with 1 to 4 operations.
pub fn mutate(rng: &mut XorShift, seeds: &[Vec<u8>], tokens: &[&[u8]], input: &mut Vec<u8>) {
    const BOUNDARY: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, b'"', b'{', b'\n', b'9'];
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = BOUNDARY[rng.below(BOUNDARY.len())];
            }
            2 if !input.is_empty() => {
                let keep = rng.below(input.len());
                input.truncate(keep);
            }
            3 if !input.is_empty() && input.len() < 1 << 16 => {
                let start = rng.below(input.len());
                let end = start + rng.below(input.len() - start);
                let chunk = input[start..end].to_vec();
                let at = rng.below(input.len());
                input.splice(at..at, chunk);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(input.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[rng.below(other.len() + 1)..]);
            }
            5 | 6 if !tokens.is_empty() => {
                let token = tokens[rng.below(tokens.len())];
                let at = rng.below(input.len() + 1);
                if rng.below(2) == 0 || input.is_empty() {
                    input.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(input.len());
                    input.splice(at..end, token.iter().copied());
                }
            }
            _ => input.push(BOUNDARY[rng.below(BOUNDARY.len())]),
        }
    }
}

/// The corpus in `dir`, sorted (so a seed replays the same run).
pub fn corpus(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("no corpus at {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "empty corpus in {}", dir.display());
    seeds
}

pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Replays the corpus of `target` (`fuzz/corpus/<target>/`) through `run`, then
/// `default_iterations` mutated inputs (or `RG_FUZZ_ITERATIONS`). A panic fails with the input.
pub fn short_run(target: &str, default_iterations: u64, tokens: &[&[u8]], run: impl FnMut(&[u8])) {
    short_run_in(target, &corpus_dir(target), default_iterations, tokens, run);
}

/// [`short_run`] with the corpus in `dir`.
pub fn short_run_in(
    target: &str,
    dir: &std::path::Path,
    default_iterations: u64,
    tokens: &[&[u8]],
    mut run: impl FnMut(&[u8]),
) {
    let seeds = corpus(dir);
    let iterations = env_u64("RG_FUZZ_ITERATIONS").unwrap_or(default_iterations);
    let seed = env_u64("RG_FUZZ_SEED").unwrap_or(0x5eed_f022_1400);
    println!(
        "fuzzing {target}: {} corpus inputs, then {iterations} mutated, RG_FUZZ_SEED={seed}",
        seeds.len()
    );
    let mut check = |input: &[u8]| {
        let outcome = catch_unwind(AssertUnwindSafe(|| run(input)));
        assert!(
            outcome.is_ok(),
            "{target} panicked on {input:02x?} ({:?}); add it to {}",
            String::from_utf8_lossy(input),
            dir.display()
        );
    };
    for input in &seeds {
        check(input);
    }
    let mut rng = XorShift::new(seed);
    let started = std::time::Instant::now();
    for _ in 0..iterations {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &seeds, tokens, &mut input);
        check(&input);
    }
    println!(
        "fuzzed {target}: {iterations} inputs in {:?}",
        started.elapsed()
    );
}

/// Checks that the corpus of `target` holds every built-in seed of its crate (the valid
/// requests its fuzz module encodes); with `RG_FUZZ_WRITE_SEEDS=1`, writes them there first.
pub fn check_seeds(target: &str, seeds: Vec<(String, Vec<u8>)>) {
    let dir = corpus_dir(target);
    if std::env::var("RG_FUZZ_WRITE_SEEDS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in seeds {
        let stored = std::fs::read(dir.join(&name)).unwrap_or_default();
        assert_eq!(
            stored,
            bytes,
            "seed {name} of {target} differs from {}: rerun with RG_FUZZ_WRITE_SEEDS=1",
            dir.display()
        );
    }
}

/// The short run reports a panicking input (the check every target relies on).
#[test]
#[should_panic(expected = "panicked on")]
fn a_panicking_input_fails_the_short_run() {
    let dir = corpus_dir("nameserver");
    short_run_in("self-test", &dir, 100, &[], |input| {
        assert!(input.len() < 2, "a long input");
    });
}
