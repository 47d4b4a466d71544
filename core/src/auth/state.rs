//! The user store and the decisions: users, their policies and bearer tokens, kept in memory
//! and in the KV store (namespaces `auth.users`, `auth.policies`, `auth.tokens`, one record per
//! user, policy or token, each change durable before it returns); authentication of every kind
//! of credential and the authorization decision.
//!
//! Invariants:
//! - A token is stored only as its BLAKE3 hash; the token itself is returned once, at issue.
//! - Deleting a user deletes its policy and tokens; disabling it refuses its secret and tokens.
//! - Authorization: a super user may do everything; a normal user what a matching `Allow`
//!   entry of its policy allows, unless a matching `Deny` entry exists (deny wins); nothing
//!   matching is a denial. With authentication off every request is allowed.
//! - Secrets are compared in constant time, and an unknown access key costs the same HMAC as
//!   a known one.
//!
//! - A principal remembers what proved it (`validity.rs`); every user update, user deletion
//!   and token revocation bumps the generation (`changes`, a `watch`), after which holders of
//!   principals ask [`AuthState::invalidation`] again.
//!
//! Concurrency: one `RwLock` over the three tables (and the in-memory user versions), read by
//! every request; writers are serialised by `write` and change memory only after the KV write
//! succeeded; the generation is bumped after memory changed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::model::{
    check_access_key, check_policy, check_secret_key, Action, Decision, PolicyEntry, Resource,
    StoredUser, UserInfo, UserKind, UserStatus, UserUpdate,
};
use super::mqtt_topic::Placeholders;
use super::sign;
use super::validity::{self, Invalidation, Proof, TokenProof, Versions};
use crate::config::AuthConfig;
use crate::error::{Error, Result};
use crate::kv::KvStore;

const NS_USERS: &str = "auth.users";
const NS_POLICIES: &str = "auth.policies";
const NS_TOKENS: &str = "auth.tokens";
/// Prefix of every bearer token (so a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "rgt_";

/// Who a request is, as a gateway authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    user: Option<String>,
    superuser: bool,
    client_id: Option<String>,
    /// What proved it (`Auth::still_valid` compares it with the store).
    proof: Proof,
}

impl Principal {
    /// No credentials: allowed everything while authentication is off, nothing while it is on.
    pub fn anonymous() -> Self {
        Self {
            user: None,
            superuser: false,
            client_id: None,
            proof: Proof::default(),
        }
    }

    /// The same principal on an MQTT connection of client `id`: what `${clientid}` stands
    /// for in its policy's `MqttTopic:` patterns.
    #[must_use]
    pub fn with_client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The MQTT client id given by [`Principal::with_client_id`].
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The access key of the user, `None` for anonymous.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether it is a super user.
    pub fn is_super(&self) -> bool {
        self.superuser
    }

    /// When the token it was proven by expires (ms since the epoch, the broker's clock);
    /// `None` when it was not proven by a token.
    pub fn expires_ms(&self) -> Option<i64> {
        self.proof.token.as_ref().map(|t| t.expires_ms)
    }
}

/// A credential as a gateway received it.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// Access key and secret key (HTTP Basic, MQTT username/password).
    Secret {
        /// The access key.
        access_key: &'a str,
        /// The secret key.
        secret_key: &'a str,
    },
    /// A bearer token issued by the broker (REST, WebSocket, MQTT password).
    Token(&'a str),
    /// The common name of a client certificate the listener's TLS handshake verified against
    /// the configured client CA (mTLS): the access key of the user it authenticates. Only a
    /// listener that verified the certificate may pass it.
    Certificate(&'a str),
    /// A RocketMQ 5 signature: the `authorization` header and the `x-mq-date-time` it signs.
    Signature {
        /// The `authorization` header.
        authorization: &'a str,
        /// The signed `x-mq-date-time` header.
        date_time: &'a str,
    },
}

/// A token as the API lists it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Its id (a prefix of its hash): what `revoke_token` takes.
    pub id: String,
    /// The user it authenticates.
    pub access_key: String,
    /// When it was issued (ms, the broker's clock).
    pub created_ms: i64,
    /// When it stops working (ms, the broker's clock).
    pub expires_ms: i64,
}

/// A newly issued token: the only time the token itself is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// What the broker keeps of it.
    pub info: TokenInfo,
}

#[derive(Debug, Default)]
struct Tables {
    users: BTreeMap<String, StoredUser>,
    policies: BTreeMap<String, Vec<PolicyEntry>>,
    /// Hash (hex) → token.
    tokens: BTreeMap<String, TokenInfo>,
    /// User → its versions (memory only, `validity.rs`).
    versions: BTreeMap<String, Versions>,
    /// The last version handed out.
    serial: u64,
}

impl Tables {
    fn next_version(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Gives `ak` a new incarnation (created, or loaded).
    fn incarnate(&mut self, ak: &str) {
        let v = self.next_version();
        self.versions.insert(
            ak.to_owned(),
            Versions {
                incarnation: v,
                secret: v,
            },
        );
    }
}

/// The state of the `Auth` service.
#[derive(Debug)]
pub(crate) struct AuthState {
    kv: Arc<KvStore>,
    config: AuthConfig,
    tables: RwLock<Tables>,
    write: Mutex<()>,
    limiter: super::limiter::FailureLimiter,
    /// The generation of users and tokens: bumped by every update, deletion and revocation.
    changes: watch::Sender<u64>,
}

fn corrupt(ns: &str, e: impl std::fmt::Display) -> Error {
    Error::Metadata {
        path: Path::new(ns).to_path_buf(),
        reason: e.to_string(),
    }
}

fn to_bytes<T: Serialize>(ns: &str, v: &T) -> Result<Bytes> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| corrupt(ns, e))
}

fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

fn unauthenticated() -> Error {
    // One answer for every failure: no hint whether the user exists.
    Error::Unauthenticated("invalid credentials".into())
}

impl AuthState {
    /// The per-source limit of failed authentications.
    pub(crate) fn limiter(&self) -> &super::limiter::FailureLimiter {
        &self.limiter
    }

    /// Loads the tables; creates or updates the bootstrap super user of the configuration.
    ///
    /// # Errors
    /// Records that do not parse; a bad bootstrap user; KV faults.
    pub(crate) fn load(kv: Arc<KvStore>, config: AuthConfig, now_ms: i64) -> Result<Self> {
        let t = scan_tables(&kv)?;
        let state = Self {
            kv,
            limiter: super::limiter::FailureLimiter::new(
                config.failure_burst,
                config.failure_refill_ms,
            ),
            config,
            tables: RwLock::new(t),
            write: Mutex::new(()),
            changes: watch::channel(0).0,
        };
        if let (Some(ak), Some(sk)) = (
            state.config.bootstrap_access_key.clone(),
            state.config.bootstrap_secret_key.clone(),
        ) {
            state.bootstrap(&ak, &sk, now_ms)?;
        }
        Ok(state)
    }

    /// Replaces the tables by what the KV store holds now (a slave's read-only broker, after
    /// replicated changes); connections authenticated before are checked again.
    ///
    /// # Errors
    /// A record that does not parse.
    pub(crate) fn reload(&self) -> Result<()> {
        let t = scan_tables(&self.kv)?;
        *self.tables.write() = t;
        self.changes.send_modify(|c| *c += 1);
        Ok(())
    }

    fn bootstrap(&self, ak: &str, sk: &str, now_ms: i64) -> Result<()> {
        let exists = self.tables.read().users.contains_key(ak);
        let update = UserUpdate {
            secret_key: Some(sk.to_owned()),
            kind: Some(UserKind::Super),
            status: Some(UserStatus::Enabled),
        };
        if exists {
            self.update_user(ak, update)
        } else {
            self.create_user(ak, sk, UserKind::Super, now_ms)
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The generation of users and tokens (see the module doc).
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Why `who` is no longer what it was proven to be at `now_ms` (`validity.rs`); `None`
    /// while it is, for a principal without a user, and with authentication off.
    pub(crate) fn invalidation(&self, who: &Principal, now_ms: i64) -> Option<Invalidation> {
        if !self.config.enabled {
            return None;
        }
        let ak = who.user.as_deref()?;
        let t = self.tables.read();
        let user = t.users.get(ak).zip(t.versions.get(ak));
        let token = who.proof.token.as_ref().and_then(|p| t.tokens.get(&p.hash));
        validity::check(&who.proof, who.superuser, user, token, now_ms).err()
    }

    pub(crate) fn create_user(
        &self,
        ak: &str,
        sk: &str,
        kind: UserKind,
        now_ms: i64,
    ) -> Result<()> {
        check_access_key(ak)?;
        check_secret_key(sk)?;
        let _w = self.write.lock();
        if self.tables.read().users.len() >= self.config.max_users {
            return Err(Error::InvalidArgument(format!(
                "at most {} users (auth.max_users)",
                self.config.max_users
            )));
        }
        if self.tables.read().users.contains_key(ak) {
            return Err(Error::UserExists(ak.to_owned()));
        }
        let user = StoredUser {
            secret_key: sk.to_owned(),
            kind,
            status: UserStatus::Enabled,
            created_ms: now_ms,
        };
        self.kv
            .put(NS_USERS, ak.as_bytes(), to_bytes(NS_USERS, &user)?)?;
        let mut t = self.tables.write();
        t.incarnate(ak);
        t.users.insert(ak.to_owned(), user);
        Ok(())
    }

    pub(crate) fn update_user(&self, ak: &str, change: UserUpdate) -> Result<()> {
        if let Some(sk) = &change.secret_key {
            check_secret_key(sk)?;
        }
        let _w = self.write.lock();
        let mut user = self
            .tables
            .read()
            .users
            .get(ak)
            .cloned()
            .ok_or_else(|| Error::UserNotFound(ak.to_owned()))?;
        let mut new_secret = false;
        if let Some(sk) = change.secret_key {
            new_secret = sk != user.secret_key;
            user.secret_key = sk;
        }
        if let Some(k) = change.kind {
            user.kind = k;
        }
        if let Some(s) = change.status {
            user.status = s;
        }
        self.kv
            .put(NS_USERS, ak.as_bytes(), to_bytes(NS_USERS, &user)?)?;
        {
            let mut t = self.tables.write();
            if new_secret {
                let v = t.next_version();
                if let Some(versions) = t.versions.get_mut(ak) {
                    versions.secret = v;
                }
            }
            t.users.insert(ak.to_owned(), user);
        }
        self.changed();
        Ok(())
    }

    pub(crate) fn delete_user(&self, ak: &str) -> Result<()> {
        let _w = self.write.lock();
        if !self.tables.read().users.contains_key(ak) {
            return Err(Error::UserNotFound(ak.to_owned()));
        }
        let tokens: Vec<String> = self
            .tables
            .read()
            .tokens
            .iter()
            .filter(|(_, t)| t.access_key == ak)
            .map(|(h, _)| h.clone())
            .collect();
        let mut changes = vec![
            crate::kv::Change {
                ns: NS_USERS,
                key: ak.as_bytes(),
                value: None,
            },
            crate::kv::Change {
                ns: NS_POLICIES,
                key: ak.as_bytes(),
                value: None,
            },
        ];
        changes.extend(tokens.iter().map(|h| crate::kv::Change {
            ns: NS_TOKENS,
            key: h.as_bytes(),
            value: None,
        }));
        self.kv.write_batch(&changes)?;
        {
            let mut t = self.tables.write();
            t.users.remove(ak);
            t.versions.remove(ak);
            t.policies.remove(ak);
            for h in &tokens {
                t.tokens.remove(h);
            }
        }
        self.changed();
        Ok(())
    }

    pub(crate) fn users(&self) -> Vec<UserInfo> {
        self.tables
            .read()
            .users
            .iter()
            .map(|(ak, u)| UserInfo {
                access_key: ak.clone(),
                kind: u.kind,
                status: u.status,
                created_ms: u.created_ms,
            })
            .collect()
    }

    pub(crate) fn set_policy(&self, ak: &str, entries: Vec<PolicyEntry>) -> Result<()> {
        check_policy(&entries)?;
        let _w = self.write.lock();
        if !self.tables.read().users.contains_key(ak) {
            return Err(Error::UserNotFound(ak.to_owned()));
        }
        self.kv
            .put(NS_POLICIES, ak.as_bytes(), to_bytes(NS_POLICIES, &entries)?)?;
        self.tables.write().policies.insert(ak.to_owned(), entries);
        Ok(())
    }

    pub(crate) fn policy(&self, ak: &str) -> Result<Vec<PolicyEntry>> {
        let t = self.tables.read();
        if !t.users.contains_key(ak) {
            return Err(Error::UserNotFound(ak.to_owned()));
        }
        Ok(t.policies.get(ak).cloned().unwrap_or_default())
    }

    pub(crate) fn issue_token(
        &self,
        ak: &str,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<IssuedToken> {
        let ttl = ttl_ms.unwrap_or(self.config.token_ttl_ms as i64);
        if ttl <= 0 || ttl > self.config.max_token_ttl_ms as i64 {
            return Err(Error::InvalidArgument(format!(
                "token lifetime must be between 1 and {} ms (auth.max_token_ttl_ms)",
                self.config.max_token_ttl_ms
            )));
        }
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).map_err(|e| Error::Metadata {
            path: Path::new(NS_TOKENS).into(),
            reason: format!("no randomness: {e}"),
        })?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
        let hash = token_hash(&token);
        let info = TokenInfo {
            id: hash[..16].to_owned(),
            access_key: ak.to_owned(),
            created_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl),
        };
        let _w = self.write.lock();
        if !self.tables.read().users.contains_key(ak) {
            return Err(Error::UserNotFound(ak.to_owned()));
        }
        let live = self
            .tables
            .read()
            .tokens
            .values()
            .filter(|t| t.access_key == ak && t.expires_ms > now_ms)
            .count();
        if live >= self.config.max_tokens_per_user {
            return Err(Error::InvalidArgument(format!(
                "at most {} live tokens per user (auth.max_tokens_per_user): revoke one",
                self.config.max_tokens_per_user
            )));
        }
        // Expired tokens of this user go with the write.
        let expired: Vec<String> = self
            .tables
            .read()
            .tokens
            .iter()
            .filter(|(_, t)| t.access_key == ak && t.expires_ms <= now_ms)
            .map(|(h, _)| h.clone())
            .collect();
        let value = to_bytes(NS_TOKENS, &info)?;
        let mut changes: Vec<crate::kv::Change<'_>> = expired
            .iter()
            .map(|h| crate::kv::Change {
                ns: NS_TOKENS,
                key: h.as_bytes(),
                value: None,
            })
            .collect();
        changes.push(crate::kv::Change {
            ns: NS_TOKENS,
            key: hash.as_bytes(),
            value: Some(value),
        });
        self.kv.write_batch(&changes)?;
        let mut t = self.tables.write();
        for h in &expired {
            t.tokens.remove(h);
        }
        t.tokens.insert(hash, info.clone());
        Ok(IssuedToken { token, info })
    }

    pub(crate) fn revoke_token(&self, id: &str) -> Result<()> {
        let _w = self.write.lock();
        let hash = self
            .tables
            .read()
            .tokens
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(h, _)| h.clone())
            .ok_or_else(|| Error::InvalidArgument(format!("no token with id `{id}`")))?;
        self.kv.delete(NS_TOKENS, hash.as_bytes())?;
        self.tables.write().tokens.remove(&hash);
        self.changed();
        Ok(())
    }

    pub(crate) fn tokens(&self, ak: Option<&str>) -> Vec<TokenInfo> {
        self.tables
            .read()
            .tokens
            .values()
            .filter(|t| ak.is_none_or(|a| t.access_key == a))
            .cloned()
            .collect()
    }

    /// Checks a credential; the principal it proves.
    pub(crate) fn authenticate(&self, creds: Credentials<'_>, now_ms: i64) -> Result<Principal> {
        let t = self.tables.read();
        // What proved it: the user's incarnation, the secret's version when `by_secret`, the
        // token (`validity.rs`).
        let principal = |ak: &str, u: &StoredUser, by_secret: bool, token: Option<TokenProof>| {
            let versions = t.versions.get(ak);
            Principal {
                user: Some(ak.to_owned()),
                superuser: u.kind == UserKind::Super,
                client_id: None,
                proof: Proof {
                    incarnation: versions.map_or(0, |v| v.incarnation),
                    secret: versions.filter(|_| by_secret).map(|v| v.secret),
                    token,
                },
            }
        };
        match creds {
            Credentials::Secret {
                access_key,
                secret_key,
            } => {
                let user = t.users.get(access_key);
                // The same comparison whether or not the user exists.
                let expected = user.map_or(&[0u8; 32][..], |u| u.secret_key.as_bytes());
                let same: bool = expected.ct_eq(secret_key.as_bytes()).into();
                match user {
                    Some(u) if same && u.status == UserStatus::Enabled => {
                        Ok(principal(access_key, u, true, None))
                    }
                    _ => Err(unauthenticated()),
                }
            }
            Credentials::Token(token) => {
                let hash = token_hash(token);
                let info = t.tokens.get(&hash).filter(|i| i.expires_ms > now_ms);
                match info.and_then(|i| t.users.get(&i.access_key).map(|u| (i, u))) {
                    Some((i, u)) if u.status == UserStatus::Enabled => {
                        let proof = TokenProof {
                            expires_ms: i.expires_ms,
                            hash,
                        };
                        Ok(principal(&i.access_key, u, false, Some(proof)))
                    }
                    _ => Err(unauthenticated()),
                }
            }
            Credentials::Certificate(subject) => match t.users.get(subject) {
                Some(u) if u.status == UserStatus::Enabled => {
                    Ok(principal(subject, u, false, None))
                }
                _ => Err(unauthenticated()),
            },
            Credentials::Signature {
                authorization,
                date_time,
            } => {
                let Some(signed) = sign::parse_authorization(authorization) else {
                    return Err(Error::Unauthenticated(
                        "malformed authorization header (MQv2-HMAC-SHA1 Credential=<ak>, \
                         SignedHeaders=x-mq-date-time, Signature=<hex>)"
                            .into(),
                    ));
                };
                let user = t.users.get(&signed.access_key);
                let key = user.map_or(&b"rocketgate-no-such-user"[..], |u| u.secret_key.as_bytes());
                let good = sign::verify(key, date_time, &signed.signature);
                if !sign::fresh(
                    date_time,
                    now_ms,
                    self.config.max_clock_skew_ms as i64,
                    self.config.local_time_signatures,
                ) {
                    return Err(Error::Unauthenticated(
                        "x-mq-date-time is outside the allowed clock skew".into(),
                    ));
                }
                match user {
                    Some(u) if good && u.status == UserStatus::Enabled => {
                        Ok(principal(&signed.access_key, u, true, None))
                    }
                    _ => Err(unauthenticated()),
                }
            }
        }
    }

    /// Whether `who` may do `action` on the thing `resources` name together (an MQTT topic
    /// and the RocketMQ topic it maps to, say) from `source`: allowed when an `Allow` entry
    /// applies to one of them and no `Deny` entry applies to any (deny wins).
    pub(crate) fn authorize(
        &self,
        who: &Principal,
        resources: &[Resource],
        action: Action,
        source: Option<IpAddr>,
    ) -> Result<()> {
        if !self.config.enabled || who.superuser {
            return Ok(());
        }
        let Some(user) = who.user.as_deref() else {
            return Err(Error::Unauthenticated("credentials are required".into()));
        };
        let vars = Placeholders {
            username: Some(user),
            client_id: who.client_id.as_deref(),
        };
        let t = self.tables.read();
        let entries = t.policies.get(user).map(Vec::as_slice).unwrap_or_default();
        let mut allowed = false;
        'entries: for e in entries {
            for r in resources {
                if e.applies(r, action, source, &vars) {
                    match e.decision {
                        Decision::Deny => {
                            allowed = false;
                            break 'entries;
                        }
                        Decision::Allow => allowed = true,
                    }
                }
            }
        }
        if allowed && !resources.is_empty() {
            Ok(())
        } else {
            Err(Error::Denied {
                user: user.to_owned(),
                action: action.to_string(),
                resource: resources
                    .iter()
                    .map(Resource::to_string)
                    .collect::<Vec<_>>()
                    .join(" / "),
            })
        }
    }
}

/// The users, policies and tokens the KV store holds.
fn scan_tables(kv: &KvStore) -> Result<Tables> {
    let mut t = Tables::default();
    for (k, v) in kv.scan(NS_USERS, b"", None, usize::MAX) {
        let user = serde_json::from_slice(&v).map_err(|e| corrupt(NS_USERS, e))?;
        let ak = String::from_utf8_lossy(&k).into_owned();
        t.incarnate(&ak);
        t.users.insert(ak, user);
    }
    for (k, v) in kv.scan(NS_POLICIES, b"", None, usize::MAX) {
        let p = serde_json::from_slice(&v).map_err(|e| corrupt(NS_POLICIES, e))?;
        t.policies
            .insert(String::from_utf8_lossy(&k).into_owned(), p);
    }
    for (k, v) in kv.scan(NS_TOKENS, b"", None, usize::MAX) {
        let tok = serde_json::from_slice(&v).map_err(|e| corrupt(NS_TOKENS, e))?;
        t.tokens
            .insert(String::from_utf8_lossy(&k).into_owned(), tok);
    }
    Ok(t)
}
