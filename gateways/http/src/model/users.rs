//! The JSON shapes of access administration (`/v1/auth/…`): users, policies and tokens, and
//! their conversions from the core's auth types. Secrets are only ever read (a user's secret
//! key in a create or update); the one thing handed out once is a new token. No I/O, no locks.

use rocketgate_core::auth::{PolicyEntry, TokenInfo, UserInfo, UserKind, UserStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Access key (the user's name).
    pub access_key: String,
    /// Whether it is a super user (every action, user management).
    #[serde(rename = "super")]
    pub superuser: bool,
    /// Whether it may authenticate.
    pub enabled: bool,
    /// When it was created (ms).
    pub created_ms: i64,
}

impl From<UserInfo> for UserView {
    fn from(u: UserInfo) -> Self {
        Self {
            access_key: u.access_key,
            superuser: u.kind == UserKind::Super,
            enabled: u.status == UserStatus::Enabled,
            created_ms: u.created_ms,
        }
    }
}

/// Users.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    /// By access key.
    pub users: Vec<UserView>,
}

/// A new user.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Access key: the user's name.
    pub access_key: String,
    /// Secret key (8 to 256 printable characters). Never shown again.
    pub secret_key: String,
    /// A super user (false by default).
    #[serde(default, rename = "super")]
    pub superuser: bool,
}

/// Changes to a user; absent fields stay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new secret key.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Super (true) or normal (false).
    #[serde(default, rename = "super")]
    pub superuser: Option<bool>,
    /// Enabled or disabled (a disabled user and its tokens are refused).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A user's policy (RocketMQ ACL 2.0 entries, deny wins; see docs/security.md).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyView {
    /// Entries: `{"resources": ["Topic:orders*"], "actions": ["Pub"], "decision": "Allow",
    /// "sources": ["10.0.0.0/8"]}`.
    #[schema(value_type = Vec<Object>)]
    #[serde(deserialize_with = "crate::extract::object::list")]
    pub entries: Vec<PolicyEntry>,
}

/// A token to issue.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// Lifetime in ms (default `auth.token_ttl_ms`; at most `auth.max_token_ttl_ms`).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Id: what revoking takes.
    pub id: String,
    /// The user it authenticates.
    pub access_key: String,
    /// Issued at (ms).
    pub created_ms: i64,
    /// Stops working at (ms).
    pub expires_ms: i64,
}

impl From<TokenInfo> for TokenView {
    fn from(t: TokenInfo) -> Self {
        Self {
            id: t.id,
            access_key: t.access_key,
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
        }
    }
}

/// Tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Oldest first.
    pub tokens: Vec<TokenView>,
}

/// A new token: the only time it is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedTokenView {
    /// The bearer token (`rgt_…`): keep it, it is not shown again.
    pub token: String,
    /// What the broker keeps of it.
    #[serde(flatten)]
    pub info: TokenView,
}
