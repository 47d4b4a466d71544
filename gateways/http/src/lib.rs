//! rocketgate-gateway-http: REST (JSON under `/v1`) and WebSocket access to the core `Broker`,
//! for curl, scripts and browsers.
//!
//! Will own (HTTP/WebSocket issue): the axum router, problem+json errors, the OpenAPI document,
//! `/metrics`, and the credit-based WebSocket protocol. Depends on `rocketgate-core` only, never on
//! another gateway. Not implemented yet.
