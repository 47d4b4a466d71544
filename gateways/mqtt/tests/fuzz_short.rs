//! A short mutation-fuzz run of the MQTT packet decoder on the stable toolchain, so every test
//! run (and CI) fuzzes a little beyond the fixed corpus: each seed of `fuzz/corpus/decode` is
//! mutated (bit flips, byte overwrites with boundary values, truncation, duplication, splicing
//! with another seed) by a fixed-seed xorshift generator and fed to
//! [`rocketgate_gateway_mqtt::fuzz_decode`], the entry point of the cargo-fuzz target. A panic
//! fails the test and prints the input (add it to the corpus as a regression seed).
//!
//! `RG_MQTT_FUZZ_ITERATIONS` changes the number of mutated inputs (200,000 by default, about a
//! second); `RG_MQTT_FUZZ_SEED` the generator's seed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mutate(rng: &mut XorShift, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    const BOUNDARY: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x30, 0x10];
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
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
            _ => input.push(BOUNDARY[rng.below(BOUNDARY.len())]),
        }
    }
}

#[test]
fn mutated_corpus_inputs_never_panic_the_decoder() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no corpus in {}", dir.display());
    let iterations = env_u64("RG_MQTT_FUZZ_ITERATIONS", 200_000);
    let seed = env_u64("RG_MQTT_FUZZ_SEED", 0x5eed_4d51_5454);
    println!("fuzzing the decoder: {iterations} inputs, RG_MQTT_FUZZ_SEED={seed}");
    let mut rng = XorShift(seed.max(1));
    for _ in 0..iterations {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &seeds, &mut input);
        let shown = input.clone();
        let outcome =
            std::panic::catch_unwind(move || rocketgate_gateway_mqtt::fuzz_decode(&input));
        assert!(outcome.is_ok(), "the decoder panicked on {shown:02x?}");
    }
}
