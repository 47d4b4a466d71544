//! Helpers shared by the end-to-end tests in `it/` and by the child processes they start
//! (`src/bin/`): deterministic message payloads that can be checked byte for byte, and the
//! line protocols of the crash writer, the consumer crash child and the time-semantics child.
//!
//! Owns nothing on disk. It depends on `rocketgate-core` only through the public `Broker` API
//! types, like any client would.

pub mod consume;
pub mod crash;
pub mod kv_crash;
pub mod payload;
pub mod time;
