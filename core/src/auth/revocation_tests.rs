//! Tests of revocation reaching held principals, on a real broker with a manual clock:
//! `Auth::still_valid` after each kind of change, the generation those changes bump, and the
//! `Auth::invalidated` future — woken by a change, or at a token's expiry on paused time.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Credentials, Invalidation, Principal, UserKind, UserStatus, UserUpdate};
use crate::clock::ManualClock;
use crate::{Broker, Config};

const T0: i64 = 1_714_557_600_000;

fn open(dir: &std::path::Path, clock: &ManualClock, enabled: bool) -> Broker {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.auth.enabled = enabled;
    c.auth.bootstrap_access_key = Some("root".into());
    c.auth.bootstrap_secret_key = Some("root-secret".into());
    Broker::open_with_clock(c, Arc::new(clock.clone())).unwrap()
}

fn by_secret(b: &Broker, ak: &str, sk: &str) -> Principal {
    b.auth()
        .authenticate(Credentials::Secret {
            access_key: ak,
            secret_key: sk,
        })
        .unwrap()
}

fn update(status: Option<UserStatus>, kind: Option<UserKind>, sk: Option<&str>) -> UserUpdate {
    UserUpdate {
        secret_key: sk.map(str::to_owned),
        kind,
        status,
    }
}

#[test]
fn each_change_ends_the_principals_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock, true);
    let auth = b.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    let mut generation = auth.generation();
    generation.borrow_and_update();

    let secret = by_secret(&b, "app", "app-secret");
    let issued = auth.issue_token("app", None).unwrap();
    let token = auth
        .authenticate(Credentials::Token(&issued.token))
        .unwrap();
    let cert = auth.authenticate(Credentials::Certificate("app")).unwrap();
    assert_eq!(token.expires_ms(), Some(issued.info.expires_ms));
    assert_eq!(secret.expires_ms(), None);
    for p in [&secret, &token, &cert] {
        assert!(auth.still_valid(p));
    }
    // Issuing and policies are no invalidation.
    assert!(!generation.has_changed().unwrap());

    // A revoked token ends its principal only.
    auth.revoke_token(&issued.info.id).unwrap();
    assert!(generation.has_changed().unwrap());
    generation.borrow_and_update();
    assert_eq!(auth.invalidation(&token), Some(Invalidation::Revoked));
    assert!(auth.still_valid(&secret) && auth.still_valid(&cert));

    // The same secret again changes nothing; a new one ends what the old one proved.
    auth.update_user("app", update(None, None, Some("app-secret")))
        .unwrap();
    assert!(auth.still_valid(&secret));
    auth.update_user("app", update(None, None, Some("new-secret")))
        .unwrap();
    assert_eq!(auth.invalidation(&secret), Some(Invalidation::Changed));
    assert!(auth.still_valid(&cert));
    let secret = by_secret(&b, "app", "new-secret");

    // Disabled: every principal of the user; enabled again, valid again.
    auth.update_user("app", update(Some(UserStatus::Disabled), None, None))
        .unwrap();
    assert_eq!(auth.invalidation(&secret), Some(Invalidation::Disabled));
    assert_eq!(auth.invalidation(&cert), Some(Invalidation::Disabled));
    auth.update_user("app", update(Some(UserStatus::Enabled), None, None))
        .unwrap();
    assert!(auth.still_valid(&secret));

    // Made super: a principal held as normal is stale.
    auth.update_user("app", update(None, Some(UserKind::Super), None))
        .unwrap();
    assert_eq!(auth.invalidation(&secret), Some(Invalidation::Changed));
    let root = by_secret(&b, "root", "root-secret");

    // Deleted, and a user of the same name created again: still not that principal.
    let cert = auth.authenticate(Credentials::Certificate("app")).unwrap();
    auth.delete_user("app").unwrap();
    assert_eq!(auth.invalidation(&cert), Some(Invalidation::Deleted));
    auth.create_user("app", "new-secret", UserKind::Super)
        .unwrap();
    assert_eq!(auth.invalidation(&cert), Some(Invalidation::Deleted));
    assert!(auth.still_valid(&root));
    assert!(auth.still_valid(&Principal::anonymous()));
    assert!(generation.has_changed().unwrap());
    b.shutdown().unwrap();
}

#[test]
fn with_authentication_off_every_principal_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock, false);
    let auth = b.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    let p = by_secret(&b, "app", "app-secret");
    auth.delete_user("app").unwrap();
    assert!(auth.still_valid(&p));
    assert!(auth.still_valid(&Principal::anonymous()));
    b.shutdown().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_future_completes_on_a_change_or_at_the_token_s_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock, true);
    let auth = b.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    let wait = Duration::from_secs(30);

    // A change: disabling the user wakes the waiter of a principal proven by its secret.
    let p = by_secret(&b, "app", "app-secret");
    let waiter = tokio::spawn(auth.invalidated(&p));
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    auth.update_user("app", update(Some(UserStatus::Disabled), None, None))
        .unwrap();
    let why = tokio::time::timeout(wait, waiter).await.unwrap().unwrap();
    assert_eq!(why, Invalidation::Disabled);
    auth.update_user("app", update(Some(UserStatus::Enabled), None, None))
        .unwrap();

    // Expiry: a token of 10 s ends its principal 10 s later, by the broker's clock.
    let issued = auth
        .issue_token("app", Some(Duration::from_secs(10)))
        .unwrap();
    let p = auth
        .authenticate(Credentials::Token(&issued.token))
        .unwrap();
    let mut ends = Box::pin(auth.invalidated(&p));
    let pending = Duration::from_millis(1);
    assert!(tokio::time::timeout(pending, &mut ends).await.is_err());
    clock.advance(Duration::from_secs(9));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(tokio::time::timeout(pending, &mut ends).await.is_err());
    // The timer fires while the broker's clock is behind: the waiter sleeps again.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(tokio::time::timeout(pending, &mut ends).await.is_err());
    clock.advance(Duration::from_secs(1));
    let why = tokio::time::timeout(Duration::from_secs(2), &mut ends)
        .await
        .unwrap();
    assert_eq!(why, Invalidation::Expired);

    // Already invalid: at once.
    let gone = tokio::time::timeout(wait, auth.invalidated(&p))
        .await
        .unwrap();
    assert_eq!(gone, Invalidation::Expired);
    b.shutdown().unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_authentication_off_the_future_never_completes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock, false);
    let p = Principal::anonymous();
    let r = tokio::time::timeout(Duration::from_secs(3600), b.auth().invalidated(&p)).await;
    assert!(r.is_err());
    b.shutdown().unwrap();
}
