//! Whether a principal a gateway holds is still what it was proven to be: what a principal
//! remembers of its proof ([`Proof`]: its user's incarnation, the version of the secret key or
//! the token it was proven by, and that token's expiry), the per-user versions the user store
//! keeps in memory ([`Versions`]), the decision ([`check`]), and why a principal stopped being
//! valid ([`Invalidation`]).
//!
//! Rules: a principal of a user stops being valid when the user is deleted (also when a user of
//! the same name was created since), disabled, changed kind (a super user made normal keeps no
//! super principal, and the reverse), or — for a principal proven by the secret key or a
//! signature made with it — given a new secret key; a principal proven by a token also when
//! the token is revoked or expires. A principal without a user (anonymous) has nothing to
//! revoke. Policy changes are not invalidations: every request is authorized against the
//! current policy anyway.
//!
//! Pure data and one pure function: no I/O, no locks, no clock (the caller passes `now_ms`).
//! Called by `state.rs` under its read lock; the `Auth` service (`broker/auth.rs`) turns it into
//! the future gateways wait on.

use std::fmt;

use super::model::{StoredUser, UserKind, UserStatus};
use super::state::TokenInfo;

/// Why a principal a gateway holds stopped being valid (its connection should close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalidation {
    /// The token it was proven by expired.
    Expired,
    /// The token it was proven by was revoked.
    Revoked,
    /// Its user was disabled.
    Disabled,
    /// Its user was deleted.
    Deleted,
    /// Its user's kind changed, or the secret key it was proven by was replaced.
    Changed,
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "credentials expired",
            Self::Revoked => "credentials revoked",
            Self::Disabled => "user disabled",
            Self::Deleted => "user deleted",
            Self::Changed => "credentials changed",
        })
    }
}

/// The versions of one user the store keeps in memory (never stored: a restart closes every
/// connection anyway). Both come from one counter of the store, so a user deleted and created
/// again has a new incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    /// Set when the user is created (or loaded).
    pub(crate) incarnation: u64,
    /// Set when the user is created and whenever its secret key changes.
    pub(crate) secret: u64,
}

/// A token a principal was proven by: its hash (the store's key) and its expiry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenProof {
    pub(crate) hash: String,
    pub(crate) expires_ms: i64,
}

impl fmt::Debug for TokenProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The id (a prefix of the hash), as the API lists it: never more of the hash.
        f.debug_struct("TokenProof")
            .field("id", &self.hash.get(..16).unwrap_or(""))
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// What a principal was proven by (a private part of `Principal`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Proof {
    /// The incarnation of its user when it was proven.
    pub(crate) incarnation: u64,
    /// The version of the secret key it was proven by (a secret or a signature).
    pub(crate) secret: Option<u64>,
    /// The token it was proven by.
    pub(crate) token: Option<TokenProof>,
}

/// Whether a principal of `superuser` kind with `proof` is still valid at `now_ms`, given what
/// the store has now: the user and its versions (`None`: deleted) and the token of the proof
/// (`None`: revoked, or never issued).
///
/// # Errors
/// Why it is not, first match in this order: deleted, disabled, changed, expired, revoked.
pub(crate) fn check(
    proof: &Proof,
    superuser: bool,
    user: Option<(&StoredUser, &Versions)>,
    token: Option<&TokenInfo>,
    now_ms: i64,
) -> Result<(), Invalidation> {
    let Some((user, versions)) = user else {
        return Err(Invalidation::Deleted);
    };
    if versions.incarnation != proof.incarnation {
        return Err(Invalidation::Deleted);
    }
    if user.status != UserStatus::Enabled {
        return Err(Invalidation::Disabled);
    }
    if (user.kind == UserKind::Super) != superuser
        || proof.secret.is_some_and(|s| s != versions.secret)
    {
        return Err(Invalidation::Changed);
    }
    if let Some(t) = &proof.token {
        if t.expires_ms <= now_ms {
            return Err(Invalidation::Expired);
        }
        if token.is_none() {
            return Err(Invalidation::Revoked);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(kind: UserKind, status: UserStatus) -> StoredUser {
        StoredUser {
            secret_key: "secret-key".into(),
            kind,
            status,
            created_ms: 0,
        }
    }

    fn token() -> TokenInfo {
        TokenInfo {
            id: "0123456789abcdef".into(),
            access_key: "app".into(),
            created_ms: 0,
            expires_ms: 100,
        }
    }

    #[test]
    fn each_change_of_the_store_invalidates_what_it_should() {
        let v = Versions {
            incarnation: 3,
            secret: 5,
        };
        let enabled = user(UserKind::Normal, UserStatus::Enabled);
        let by_secret = Proof {
            incarnation: 3,
            secret: Some(5),
            token: None,
        };
        let by_token = Proof {
            incarnation: 3,
            secret: None,
            token: Some(TokenProof {
                hash: "0123456789abcdef0123".into(),
                expires_ms: 100,
            }),
        };
        let t = token();
        assert_eq!(
            check(&by_secret, false, Some((&enabled, &v)), None, 50),
            Ok(())
        );
        assert_eq!(
            check(&by_token, false, Some((&enabled, &v)), Some(&t), 50),
            Ok(())
        );
        // Deleted, or deleted and created again.
        assert_eq!(
            check(&by_secret, false, None, None, 50),
            Err(Invalidation::Deleted)
        );
        let again = Versions {
            incarnation: 9,
            secret: 9,
        };
        assert_eq!(
            check(&by_token, false, Some((&enabled, &again)), Some(&t), 50),
            Err(Invalidation::Deleted)
        );
        let disabled = user(UserKind::Normal, UserStatus::Disabled);
        assert_eq!(
            check(&by_token, false, Some((&disabled, &v)), Some(&t), 50),
            Err(Invalidation::Disabled)
        );
        // Made super, or made normal.
        assert_eq!(
            check(&by_secret, true, Some((&enabled, &v)), None, 50),
            Err(Invalidation::Changed)
        );
        // A new secret ends the principals it proved, not those of a token.
        let rotated = Versions {
            incarnation: 3,
            secret: 7,
        };
        assert_eq!(
            check(&by_secret, false, Some((&enabled, &rotated)), None, 50),
            Err(Invalidation::Changed)
        );
        assert_eq!(
            check(&by_token, false, Some((&enabled, &rotated)), Some(&t), 50),
            Ok(())
        );
        // The token's end: at its expiry (even once it is gone), or revoked.
        assert_eq!(
            check(&by_token, false, Some((&enabled, &v)), Some(&t), 100),
            Err(Invalidation::Expired)
        );
        assert_eq!(
            check(&by_token, false, Some((&enabled, &v)), None, 100),
            Err(Invalidation::Expired)
        );
        assert_eq!(
            check(&by_token, false, Some((&enabled, &v)), None, 99),
            Err(Invalidation::Revoked)
        );
    }

    #[test]
    fn a_token_proof_shows_only_the_token_id() {
        let p = TokenProof {
            hash: "0123456789abcdef".repeat(4),
            expires_ms: 1,
        };
        let shown = format!("{p:?}");
        assert!(shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("0123456789abcdef0"), "{shown}");
    }
}
