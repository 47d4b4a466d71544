//! Identity and authorization, decided once for every gateway: the model (users, policies,
//! resources, actions), the RocketMQ 5 request signature, and the state behind the `Auth`
//! service (`broker/auth.rs`).
//!
//! Owns: `model` (pure data and checks), `mqtt_topic` (MQTT topic-filter resources with
//! `${clientid}` / `${username}` placeholders), `sign` (the MQv2-HMAC-SHA1 header and the signed
//! time), `limiter` (the per-source limit of failed authentications), `state` (users, policies
//! and tokens in memory and in the KV store; authentication and the authorization decision),
//! `validity` (whether a principal a gateway holds is still what it was proven to be: what
//! makes revocation reach open connections). Must not touch: any wire protocol — gateways
//! turn their credentials into [`Credentials`] and the answers into their protocol's refusals.

mod limiter;
mod model;
mod mqtt_topic;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod revocation_tests;
pub mod sign;
mod state;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
mod validity;

pub use model::{
    check_access_key, check_secret_key, Action, Decision, PolicyEntry, Resource, ResourcePattern,
    ResourceType, Source, UserInfo, UserKind, UserStatus, UserUpdate,
};
pub use mqtt_topic::{Placeholders, CLIENT_ID, USERNAME};
pub(crate) use state::AuthState;
pub use state::{Credentials, IssuedToken, Principal, TokenInfo, TOKEN_PREFIX};
pub use validity::Invalidation;
