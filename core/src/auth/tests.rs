//! Tests of the `Auth` service on a real broker: users, policies and tokens survive a restart;
//! each kind of credential authenticates (or not); the decision (super, allow, deny wins,
//! sources, default deny); authentication off allows everything.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{
    sign, Action, Credentials, Decision, PolicyEntry, Principal, Resource, UserKind, UserStatus,
    UserUpdate,
};
use crate::clock::ManualClock;
use crate::{Broker, Config, Error, Reason};

const T0: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.store.segment_size = 1 << 20;
    c.auth.enabled = true;
    c.auth.bootstrap_access_key = Some("root".into());
    c.auth.bootstrap_secret_key = Some("root-secret".into());
    c
}

fn open(dir: &std::path::Path, clock: &ManualClock) -> Broker {
    Broker::open_with_clock(config(dir), Arc::new(clock.clone())).unwrap()
}

fn secret<'a>(ak: &'a str, sk: &'a str) -> Credentials<'a> {
    Credentials::Secret {
        access_key: ak,
        secret_key: sk,
    }
}

fn entry(
    resources: &[&str],
    actions: &[Action],
    decision: Decision,
    sources: &[&str],
) -> PolicyEntry {
    PolicyEntry {
        resources: resources.iter().map(|r| r.parse().unwrap()).collect(),
        actions: actions.to_vec(),
        decision,
        sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

#[test]
fn users_policies_and_tokens_are_durable_and_secrets_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let token;
    {
        let b = open(dir.path(), &clock);
        let auth = b.auth();
        auth.create_user("app", "app-secret", UserKind::Normal)
            .unwrap();
        assert_eq!(
            auth.create_user("app", "other-secret", UserKind::Normal)
                .unwrap_err()
                .reason(),
            Reason::UserExists
        );
        assert_eq!(
            auth.create_user("bad name", "app-secret", UserKind::Normal)
                .unwrap_err()
                .reason(),
            Reason::IllegalField
        );
        auth.set_policy(
            "app",
            vec![entry(
                &["Topic:orders*"],
                &[Action::Pub],
                Decision::Allow,
                &[],
            )],
        )
        .unwrap();
        token = auth
            .issue_token("app", Some(Duration::from_secs(60)))
            .unwrap();
        assert!(token.token.starts_with(crate::auth::TOKEN_PREFIX));
        let users = auth.users();
        assert_eq!(
            users
                .iter()
                .map(|u| u.access_key.as_str())
                .collect::<Vec<_>>(),
            ["app", "root"]
        );
        let shown = format!("{users:?} {:?}", auth.tokens(None));
        assert!(
            !shown.contains("app-secret") && !shown.contains(&token.token),
            "{shown}"
        );
        b.shutdown().unwrap();
    }
    let b = open(dir.path(), &clock);
    let auth = b.auth();
    let who = auth.authenticate(Credentials::Token(&token.token)).unwrap();
    assert_eq!(who.user(), Some("app"));
    assert_eq!(auth.policy("app").unwrap().len(), 1);
    assert!(auth
        .authorize(&who, &Resource::topic("orders-eu"), Action::Pub, None)
        .is_ok());
    // Expired after its lifetime (the broker's clock).
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        auth.authenticate(Credentials::Token(&token.token))
            .unwrap_err()
            .reason(),
        Reason::Unauthenticated
    );
    // Deleting the user takes its policy and tokens with it.
    let t2 = auth.issue_token("app", None).unwrap();
    auth.delete_user("app").unwrap();
    assert!(auth.authenticate(Credentials::Token(&t2.token)).is_err());
    assert!(auth.tokens(Some("app")).is_empty());
    assert_eq!(
        auth.policy("app").unwrap_err().reason(),
        Reason::UserNotFound
    );
}

#[test]
fn each_credential_authenticates_only_when_right() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock);
    let auth = b.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    assert_eq!(
        auth.authenticate(secret("app", "app-secret"))
            .unwrap()
            .user(),
        Some("app")
    );
    assert!(auth
        .authenticate(secret("root", "root-secret"))
        .unwrap()
        .is_super());
    for (ak, sk) in [
        ("app", "wrong-secret"),
        ("ghost", "app-secret"),
        ("app", ""),
    ] {
        let e = auth.authenticate(secret(ak, sk)).unwrap_err();
        assert_eq!(e.reason(), Reason::Unauthenticated);
        assert_eq!(
            e.to_string(),
            "unauthenticated: invalid credentials",
            "no hint"
        );
    }
    // The RocketMQ 5 signature, in the SDKs' time formats.
    for date in [
        "20240501T100000Z",
        "2024-05-01T10:00:00.5Z",
        "20240501T180000Z",
    ] {
        let header = format!(
            "MQv2-HMAC-SHA1 Credential=app, SignedHeaders=x-mq-date-time, Signature={}",
            sign::sign(b"app-secret", date)
        );
        let who = auth.authenticate(Credentials::Signature {
            authorization: &header,
            date_time: date,
        });
        assert_eq!(who.unwrap().user(), Some("app"), "{date}");
    }
    let forged = format!(
        "MQv2-HMAC-SHA1 Credential=app, SignedHeaders=x-mq-date-time, Signature={}",
        sign::sign(b"not-the-secret", "20240501T100000Z")
    );
    assert!(auth
        .authenticate(Credentials::Signature {
            authorization: &forged,
            date_time: "20240501T100000Z"
        })
        .is_err());
    // A replayed signature from an hour ago is refused.
    let old = format!(
        "MQv2-HMAC-SHA1 Credential=app, SignedHeaders=x-mq-date-time, Signature={}",
        sign::sign(b"app-secret", "2024-05-01T09:00:00Z")
    );
    assert!(auth
        .authenticate(Credentials::Signature {
            authorization: &old,
            date_time: "2024-05-01T09:00:00Z"
        })
        .is_err());
    // A disabled user is refused, a new secret replaces the old one.
    auth.update_user(
        "app",
        UserUpdate {
            status: Some(UserStatus::Disabled),
            ..UserUpdate::default()
        },
    )
    .unwrap();
    assert!(auth.authenticate(secret("app", "app-secret")).is_err());
    auth.update_user(
        "app",
        UserUpdate {
            status: Some(UserStatus::Enabled),
            secret_key: Some("new-app-secret".into()),
            ..UserUpdate::default()
        },
    )
    .unwrap();
    assert!(auth.authenticate(secret("app", "app-secret")).is_err());
    assert!(auth.authenticate(secret("app", "new-app-secret")).is_ok());
}

#[test]
fn deny_wins_sources_count_and_nothing_matching_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock);
    let auth = b.auth();
    auth.create_user("app", "app-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy(
        "app",
        vec![
            entry(
                &["Topic:orders*", "Group:billing"],
                &[Action::Pub, Action::Sub],
                Decision::Allow,
                &[],
            ),
            entry(
                &["Topic:orders-secret"],
                &[Action::All],
                Decision::Deny,
                &[],
            ),
            entry(
                &["Topic:local"],
                &[Action::Pub],
                Decision::Allow,
                &["127.0.0.0/8"],
            ),
        ],
    )
    .unwrap();
    let who = auth.authenticate(secret("app", "app-secret")).unwrap();
    let ok = |r: Resource, a: Action, src: Option<&str>| {
        auth.authorize(&who, &r, a, src.map(|s| s.parse::<IpAddr>().unwrap()))
    };
    assert!(ok(Resource::topic("orders"), Action::Pub, None).is_ok());
    assert!(ok(Resource::group("billing"), Action::Sub, None).is_ok());
    let denied = ok(Resource::topic("orders-secret"), Action::Pub, None).unwrap_err();
    assert_eq!(denied.reason(), Reason::Denied);
    assert_eq!(denied.to_string(), "`app` may not Pub Topic:orders-secret");
    assert_eq!(
        ok(Resource::topic("orders"), Action::Delete, None)
            .unwrap_err()
            .reason(),
        Reason::Denied
    );
    assert_eq!(
        ok(Resource::topic("other"), Action::Pub, None)
            .unwrap_err()
            .reason(),
        Reason::Denied
    );
    assert!(ok(Resource::topic("local"), Action::Pub, Some("127.0.0.1")).is_ok());
    assert!(ok(Resource::topic("local"), Action::Pub, Some("10.0.0.1")).is_err());
    assert!(ok(Resource::cluster(), Action::Create, None).is_err());
    let root = auth.authenticate(secret("root", "root-secret")).unwrap();
    assert!(auth
        .authorize(&root, &Resource::cluster(), Action::Delete, None)
        .is_ok());
    let anon = Principal::anonymous();
    assert!(matches!(
        auth.authorize(&anon, &Resource::topic("orders"), Action::Pub, None),
        Err(Error::Unauthenticated(_))
    ));
}

#[test]
fn with_authentication_off_everything_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open({
        let mut c = config(dir.path());
        c.auth.enabled = false;
        c
    })
    .unwrap();
    assert!(!b.auth().enabled());
    assert!(b
        .auth()
        .authorize(
            &Principal::anonymous(),
            &Resource::cluster(),
            Action::Delete,
            None
        )
        .is_ok());
}

#[test]
fn a_half_configured_bootstrap_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.auth.bootstrap_secret_key = None;
    assert!(c.validate().is_err());
    c.auth.bootstrap_secret_key = Some("short".into());
    assert!(c.validate().is_err());
}

#[test]
fn mqtt_topic_patterns_limit_each_device_to_its_own_subtree() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock);
    let auth = b.auth();
    auth.create_user("fleet", "fleet-secret", UserKind::Normal)
        .unwrap();
    // One user for every device, as a policy file would say it (survives a restart below).
    let policy: Vec<PolicyEntry> = serde_json::from_str(
        r#"[
            {"resources": ["MqttTopic:devices/${clientid}/#", "MqttTopic:fleet/${username}/+"],
             "actions": ["Pub", "Sub"], "decision": "Allow"},
            {"resources": ["MqttTopic:devices/+/keys"], "actions": ["All"], "decision": "Deny"}
        ]"#,
    )
    .unwrap();
    auth.set_policy("fleet", policy).unwrap();
    let fleet = auth.authenticate(secret("fleet", "fleet-secret")).unwrap();
    let as_device = |id: &str| fleet.clone().with_client_id(id);
    let may = |who: &Principal, t: &str, a: Action| {
        auth.authorize_any(
            who,
            &[Resource::topic("devices"), Resource::mqtt_topic(t)],
            a,
            None,
        )
    };
    let d1 = as_device("d1");
    assert!(may(&d1, "devices/d1/temp", Action::Pub).is_ok());
    assert!(may(&d1, "devices/d1/temp/#", Action::Sub).is_ok());
    assert!(
        may(&d1, "fleet/fleet/x", Action::Pub).is_ok(),
        "${{username}}"
    );
    for (t, a) in [
        ("devices/d2/temp", Action::Pub),
        ("devices/d2/#", Action::Sub),
        ("devices/+/temp", Action::Sub),
        ("#", Action::Sub),
        ("devices/d1/temp", Action::Delete),
    ] {
        let e = may(&d1, t, a).unwrap_err();
        assert_eq!(e.reason(), Reason::Denied, "{t}");
    }
    // Deny wins, and a deny refuses a filter that could read what it denies.
    assert!(may(&d1, "devices/d1/keys", Action::Pub).is_err());
    assert!(may(&d1, "devices/d1/+", Action::Sub).is_err());
    assert!(may(&d1, "devices/d1/#", Action::Sub).is_err());
    // A client id cannot widen its pattern: it stands for one literal level.
    for id in ["+", "#", "d2/..", ""] {
        assert!(
            may(&as_device(id), "devices/d2/temp", Action::Pub).is_err(),
            "{id}"
        );
    }
    // Without a client id (not an MQTT connection) the pattern allows nothing.
    assert!(may(&fleet, "devices/d1/temp", Action::Pub).is_err());
    // A `Topic:` allow still allows every MQTT topic stored in it.
    auth.create_user("ops", "ops-secret", UserKind::Normal)
        .unwrap();
    auth.set_policy(
        "ops",
        vec![entry(
            &["Topic:devices"],
            &[Action::Sub],
            Decision::Allow,
            &[],
        )],
    )
    .unwrap();
    let ops = auth.authenticate(secret("ops", "ops-secret")).unwrap();
    assert!(may(&ops, "devices/d2/#", Action::Sub).is_ok());
    assert!(auth.authorize_any(&ops, &[], Action::Sub, None).is_err());
    drop(b);
    let b = open(dir.path(), &clock);
    assert_eq!(
        b.auth().policy("fleet").unwrap()[0].resources[0].to_string(),
        "MqttTopic:devices/${clientid}/#"
    );
    // Bounded: a pattern longer than a resource name is refused.
    let long = format!("MqttTopic:{}", "a/".repeat(200));
    assert!(long.parse::<crate::auth::ResourcePattern>().is_err());
}

#[test]
fn a_source_that_keeps_failing_is_refused_unchecked_until_its_bucket_refills() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock);
    let auth = b.auth();
    let guesser: Option<IpAddr> = "192.0.2.7".parse().ok();
    let other: Option<IpAddr> = "192.0.2.8".parse().ok();
    let burst = config(dir.path()).auth.failure_burst;
    for i in 0..burst {
        let e = auth
            .authenticate_from(secret("root", &format!("guess-{i}")), guesser)
            .unwrap_err();
        assert_eq!(e.to_string(), "unauthenticated: invalid credentials");
    }
    // Now even the right secret is refused from that address: it is not looked at.
    let e = auth
        .authenticate_from(secret("root", "root-secret"), guesser)
        .unwrap_err();
    assert!(e.to_string().contains("too many failed"), "{e}");
    assert_eq!(e.reason(), Reason::Unauthenticated);
    // Other sources and in-process calls are not affected.
    assert!(auth
        .authenticate_from(secret("root", "root-secret"), other)
        .is_ok());
    assert!(auth.authenticate(secret("root", "root-secret")).is_ok());
    // One refill period later, one more try.
    let refill = i64::try_from(config(dir.path()).auth.failure_refill_ms).unwrap();
    clock.advance(Duration::from_millis(u64::try_from(refill - 1).unwrap()));
    assert!(auth
        .authenticate_from(secret("root", "root-secret"), guesser)
        .is_err());
    clock.advance(Duration::from_millis(1));
    assert!(auth
        .authenticate_from(secret("root", "root-secret"), guesser)
        .is_ok());
    b.shutdown().unwrap();
}

#[test]
fn a_verified_certificate_names_an_enabled_user() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let b = open(dir.path(), &clock);
    let auth = b.auth();
    auth.create_user("device-1", "device-secret", UserKind::Normal)
        .unwrap();
    let who = auth
        .authenticate(Credentials::Certificate("device-1"))
        .unwrap();
    assert_eq!(who.user(), Some("device-1"));
    assert!(!who.is_super());
    assert!(auth
        .authenticate(Credentials::Certificate("stranger"))
        .is_err());
    auth.update_user(
        "device-1",
        UserUpdate {
            status: Some(UserStatus::Disabled),
            ..UserUpdate::default()
        },
    )
    .unwrap();
    assert!(
        auth.authenticate(Credentials::Certificate("device-1"))
            .is_err(),
        "a disabled user's certificate is refused"
    );
    b.shutdown().unwrap();
}
