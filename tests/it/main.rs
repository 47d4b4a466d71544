//! Acceptance tests of rocketgate, one binary so that the workspace links once.
//!
//! - `store_rolling`: segment rolling with 10,000 messages of mixed sizes; segment ends.
//! - `store_crash`: T1a/T1b, `kill -9` of a SYNC/ASYNC writer process, repeatedly.
//! - `store_recovery`: T2a, torn and corrupt CommitLog tails.
//! - `store_derived`: T2d, ConsumeQueue and index loss.
//! - `store_limits`: T7 (disk limit, real ENOSPC, watermark) and T1d (flush failure).
//! - `api_validation`: bad input to the `Broker` API; the directory lock.
//! - `architecture`: the core stays free of wire-protocol crates.
//!
//! Randomised tests print their seed; `RG_TEST_SEED=<seed>` replays one. Longer runs (nightly):
//! `RG_T1A_ROUNDS`, `RG_T1B_ROUNDS`, `RG_T1D_RUNS`, `RG_T2A_CASES` raise the repetition counts
//! (defaults 12, 6, 24, 400). The tmpfs tests mount a filesystem and are skipped, with a note,
//! where that is not permitted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api_validation;
mod architecture;
mod store_crash;
mod store_derived;
mod store_limits;
mod store_recovery;
mod store_rolling;
