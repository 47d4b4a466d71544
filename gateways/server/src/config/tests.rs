//! The configuration file: the embedded default, the layering of flags, the one-line errors,
//! the per-listener sections and the deprecated `[listen]` / `[gateways]` aliases.

use super::*;

/// Parses `text` as a configuration file and resolves it.
fn parse(text: &str) -> anyhow::Result<(ServerConfig, Vec<legacy::Renamed>)> {
    toml::from_str::<FileConfig>(text)?.resolve()
}

/// Loads `text` through `load`, as `--config FILE` would.
fn load_text(text: &str) -> anyhow::Result<ServerConfig> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, text).unwrap();
    load(&RunArgs {
        config: Some(file),
        ..RunArgs::default()
    })
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn default_file_parses_to_defaults() {
    let (cfg, renamed) = parse(DEFAULT_CONFIG).unwrap();
    assert!(renamed.is_empty(), "{renamed:?}");
    assert_eq!(cfg.core(), rocketgate_core::Config::default());
    assert_eq!(cfg.nameserver, NameServerSection::default());
    assert_eq!(
        cfg.nameserver.config,
        rocketgate_nameserver::Config::default()
    );
    assert_eq!(cfg.broker, BrokerSection::default());
    assert_eq!(
        cfg.controller,
        rocketgate_nameserver::controller::ControllerConfig::default()
    );
    assert_eq!(cfg.tls, TlsSection::default());
    assert!(cfg.tls.settings().is_none(), "TLS is off by default");
    assert_eq!(cfg.grpc, GrpcSection::default());
    assert_eq!(
        cfg.grpc.messaging,
        rocketgate_gateway_grpc::MessagingConfig::default()
    );
    assert!(cfg.mqtt == MqttSection::default());
    assert!(cfg.mqtt.config == rocketgate_gateway_mqtt::MqttConfig::default());
    assert_eq!(cfg.http, HttpSection::default());
    assert_eq!(
        cfg.http.config,
        rocketgate_gateway_http::HttpConfig::default()
    );
}

#[test]
fn defaults_listen_on_the_usual_local_ports_with_every_gateway_on() {
    let cfg = ServerConfig::default();
    assert_eq!(cfg.nameserver.listen, addr("127.0.0.1:9876"));
    assert_eq!(cfg.grpc.listen, addr("127.0.0.1:8081"));
    assert_eq!(cfg.http.listen, addr("127.0.0.1:8080"));
    assert_eq!(cfg.mqtt.listen, addr("127.0.0.1:1883"));
    assert_eq!(cfg.mqtt.ws_listen, addr("127.0.0.1:8083"));
    assert!(cfg.http.enabled && cfg.mqtt.enabled);
}

#[test]
fn each_section_holds_its_listener_keys_beside_the_crates_settings() {
    let (cfg, renamed) = parse(
        "[nameserver]\nlisten = \"127.0.0.1:19876\"\nbroker_expiry_ms = 5000\n\
         [nameserver.limits]\nmax_brokers = 7\n\
         [grpc]\nmax_long_polls = 9\nlisten = \"127.0.0.1:18081\"\n\
         [http]\nenabled = false\nlisten = \"0.0.0.0:18080\"\nmax_batch = 3\n\
         [mqtt]\nenabled = false\nlisten = \"127.0.0.1:11883\"\nws_listen = \"[::1]:18083\"\n\
         max_inflight = 5\n[mqtt.users]\nalice = \"secret\"\n",
    )
    .unwrap();
    assert!(renamed.is_empty());
    assert_eq!(cfg.nameserver.listen, addr("127.0.0.1:19876"));
    assert_eq!(cfg.nameserver.config.broker_expiry_ms, 5000);
    assert_eq!(cfg.nameserver.config.limits.max_brokers, 7);
    assert_eq!(cfg.grpc.listen, addr("127.0.0.1:18081"));
    assert_eq!(cfg.grpc.messaging.max_long_polls, 9);
    assert!(!cfg.http.enabled);
    assert_eq!(cfg.http.listen, addr("0.0.0.0:18080"));
    assert_eq!(cfg.http.config.max_batch, 3);
    assert!(!cfg.mqtt.enabled);
    assert_eq!(cfg.mqtt.listen, addr("127.0.0.1:11883"));
    assert_eq!(cfg.mqtt.ws_listen, addr("[::1]:18083"));
    assert_eq!(cfg.mqtt.config.max_inflight, 5);
    assert_eq!(cfg.mqtt.config.users.len(), 1);
}

#[test]
fn deprecated_listen_and_gateways_sections_still_load_and_are_reported() {
    let (cfg, renamed) = parse(
        "[listen]\nnameserver = \"127.0.0.1:19876\"\ngrpc = \"127.0.0.1:18081\"\n\
         http = \"127.0.0.1:18080\"\nmqtt = \"127.0.0.1:11883\"\nmqtt_ws = \"127.0.0.1:18083\"\n\
         [gateways]\nhttp = false\nmqtt = false\n",
    )
    .unwrap();
    assert_eq!(cfg.nameserver.listen, addr("127.0.0.1:19876"));
    assert_eq!(cfg.grpc.listen, addr("127.0.0.1:18081"));
    assert_eq!(cfg.http.listen, addr("127.0.0.1:18080"));
    assert_eq!(cfg.mqtt.listen, addr("127.0.0.1:11883"));
    assert_eq!(cfg.mqtt.ws_listen, addr("127.0.0.1:18083"));
    assert!(!cfg.http.enabled && !cfg.mqtt.enabled);
    let pairs: Vec<(&str, &str)> = renamed.iter().map(|r| (r.old, r.new)).collect();
    assert_eq!(
        pairs,
        [
            ("listen.nameserver", "nameserver.listen"),
            ("listen.grpc", "grpc.listen"),
            ("listen.http", "http.listen"),
            ("listen.mqtt", "mqtt.listen"),
            ("listen.mqtt_ws", "mqtt.ws_listen"),
            ("gateways.http", "http.enabled"),
            ("gateways.mqtt", "mqtt.enabled"),
        ]
    );
    // Old and new names of different keys mix; flags still override the result.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.toml");
    std::fs::write(
        &file,
        "[listen]\ngrpc = \"127.0.0.1:18081\"\n[http]\nlisten = \"127.0.0.1:18080\"\n",
    )
    .unwrap();
    let cfg = load(&RunArgs {
        config: Some(file),
        http_addr: Some("127.0.0.1:0".into()),
        ..RunArgs::default()
    })
    .unwrap();
    assert_eq!(cfg.grpc.listen, addr("127.0.0.1:18081"));
    assert_eq!(cfg.http.listen, addr("127.0.0.1:0"));
}

#[test]
fn an_old_key_and_its_new_name_together_are_an_error_naming_both() {
    for (text, old, new) in [
        (
            "[listen]\ngrpc = \"127.0.0.1:1\"\n[grpc]\nlisten = \"127.0.0.1:2\"\n",
            "listen.grpc",
            "grpc.listen",
        ),
        (
            "[gateways]\nmqtt = false\n[mqtt]\nenabled = true\n",
            "gateways.mqtt",
            "mqtt.enabled",
        ),
        (
            "[mqtt]\nws_listen = \"127.0.0.1:2\"\n[listen]\nmqtt_ws = \"127.0.0.1:2\"\n",
            "listen.mqtt_ws",
            "mqtt.ws_listen",
        ),
    ] {
        let err = load_text(text).unwrap_err().to_string();
        assert!(err.contains(old) && err.contains(new), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn flags_override_listen_addresses_and_nameservers() {
    let args = RunArgs {
        grpc_addr: Some("127.0.0.1:0".into()),
        mqtt_ws_addr: Some("127.0.0.1:0".into()),
        nameserver_addr: Some("0.0.0.0:19876".into()),
        namesrv: vec!["10.0.0.1:9876;10.0.0.2:9876".into(), "ns3:9876".into()],
        ..RunArgs::default()
    };
    let cfg = load(&args).unwrap();
    assert_eq!(cfg.grpc.listen.port(), 0);
    assert_eq!(cfg.mqtt.ws_listen.port(), 0);
    assert_eq!(cfg.nameserver.listen.port(), 19876);
    assert_eq!(
        cfg.broker.namesrv,
        ["10.0.0.1:9876", "10.0.0.2:9876", "ns3:9876"]
    );
}

#[test]
fn malformed_addresses_name_the_flag_or_key() {
    let args = RunArgs {
        http_addr: Some("localhost".into()),
        ..RunArgs::default()
    };
    let err = load(&args).unwrap_err().to_string();
    assert!(
        err.contains("--http-addr") && err.contains("localhost"),
        "{err}"
    );
    let args = RunArgs {
        namesrv: vec!["nohost".into()],
        ..RunArgs::default()
    };
    let err = load(&args).unwrap_err().to_string();
    assert!(err.contains("nohost"), "{err}");
    for text in [
        "[grpc]\nlisten = \"1.2.3.4\"\n",
        "[mqtt]\nmax_inflight = 5\nws_listen = \"1.2.3.4\"\n",
        "[listen]\ngrpc = \"1.2.3.4\"\n",
    ] {
        let err = load_text(text).unwrap_err().to_string();
        assert!(err.contains("= \"1.2.3.4\"`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn unknown_key_is_named() {
    for (text, key) in [
        ("[store]\nbogus = 1\n", "bogus"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("[grpc]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n", "bogus"),
        ("[http]\nenabled = true\nlisten_addr = 1\n", "listen_addr"),
        ("[mqtt]\nwslisten = \"127.0.0.1:1\"\n", "wslisten"),
        ("[nameserver]\nenabled = true\n", "enabled"),
        ("[listen]\nweb = \"127.0.0.1:1\"\n", "web"),
        ("[gateways]\ngrpc = true\n", "grpc"),
    ] {
        let err = toml::from_str::<FileConfig>(text).unwrap_err();
        assert!(
            err.message().contains(&format!("unknown field `{key}`")),
            "{text}: {}",
            err.message()
        );
        let err = load_text(text).unwrap_err().to_string();
        assert!(err.contains("line "), "{text}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // Inside a listener's section the error points at the key's own line, and the keys it
    // lists include the server's (`listen`, `enabled`) beside the crate's.
    let err = load_text("[http]\nmax_batch = 3\nlisten_addr = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3 (`listen_addr = 1`)"), "{err}");
    assert!(
        err.contains("`max_batch`") && err.contains("`enabled`, `listen`"),
        "{err}"
    );
}

#[test]
fn connection_limits_of_the_grpc_and_nameserver_listeners() {
    let (cfg, _) = parse(
        "[grpc]\nlisten = \"127.0.0.1:1\"\n[grpc.connections]\nmax_connections = 7\n\
         idle_timeout_ms = 1000\n[nameserver.connections]\nhandshake_timeout_ms = 500\n",
    )
    .unwrap();
    assert_eq!(cfg.grpc.connections.max_connections, 7);
    assert_eq!(cfg.grpc.connections.idle_timeout_ms, 1000);
    assert_eq!(cfg.grpc.connections.handshake_timeout_ms, 10_000);
    assert_eq!(cfg.nameserver.config.connections.handshake_timeout_ms, 500);
    let err = load_text("[grpc.connections]\nhandshake_timeout_ms = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`grpc.connections.handshake_timeout_ms`: must be greater than 0"),
        "{err}"
    );
    let err = load_text("[nameserver.connections]\nmax_connections = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nameserver.connections.max_connections"),
        "{err}"
    );
    let err = load_text("[grpc.connections]\nbogus = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn mqtt_users_beside_the_core_s_authentication_are_one_line_errors() {
    let err = load_text("[auth]\nenabled = true\n[mqtt.users]\nalice = \"secret\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mqtt.users") && err.contains("auth.enabled"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    let err = load_text("[auth]\nenabled = true\n[mqtt]\nallow_anonymous = true\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mqtt.allow_anonymous"), "{err}");
    assert!(load_text("[auth]\nenabled = true\n[mqtt]\nallow_anonymous = false\n").is_ok());
    // A disabled gateway's leftovers do not stop the node.
    assert!(load_text(
        "[auth]\nenabled = true\n[mqtt]\nenabled = false\n[mqtt.users]\na = \"b\"\n"
    )
    .is_ok());
}

#[test]
fn tls_is_turned_on_by_the_flags_and_checked_in_one_line() {
    let cfg = load(&RunArgs {
        tls_cert: Some("/etc/rg/cert.pem".into()),
        tls_key: Some("/etc/rg/key.pem".into()),
        ..RunArgs::default()
    })
    .unwrap();
    let settings = cfg.tls.settings().unwrap();
    assert_eq!(settings.cert, std::path::Path::new("/etc/rg/cert.pem"));
    assert_eq!(
        settings.client_auth,
        rocketgate_gateway_kit::ClientAuth::Off
    );
    assert_eq!(
        settings.handshake_timeout,
        std::time::Duration::from_secs(10)
    );

    let err = load(&RunArgs {
        tls_cert: Some("/etc/rg/cert.pem".into()),
        ..RunArgs::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("`tls.key`") && !err.contains('\n'), "{err}");

    let err = load_text("[tls]\nclient_auth = \"required\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`tls.client_ca`"), "{err}");
    let err = load_text("[tls]\nclient_auth = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sometimes"), "{err}");
    let cfg = load_text(
        "[tls]\nenabled = true\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"optional\"\nclient_ca = \"ca.pem\"\n",
    )
    .unwrap();
    let settings = cfg.tls.settings().unwrap();
    assert_eq!(
        settings.client_auth,
        rocketgate_gateway_kit::ClientAuth::Optional
    );
    assert_eq!(
        settings.client_ca.as_deref(),
        Some(std::path::Path::new("ca.pem"))
    );
}

#[test]
fn cors_comes_from_its_table_or_the_flag_and_any_origin_needs_authentication_off() {
    let cfg = load_text(
        "[http.cors]\nallowed_origins = [\"https://app.example\"]\nmax_age_secs = 60\n\
         allow_credentials = true\n",
    )
    .unwrap();
    assert_eq!(
        cfg.http.config.cors.allowed_origins,
        ["https://app.example"]
    );
    assert_eq!(cfg.http.config.cors.max_age_secs, 60);
    assert!(cfg.http.config.cors.allow_credentials);

    let args = RunArgs {
        http_cors_origins: Some("https://a.example, http://localhost:5173".into()),
        ..RunArgs::default()
    };
    let cfg = load(&args).unwrap();
    assert_eq!(
        cfg.http.config.cors.allowed_origins,
        ["https://a.example", "http://localhost:5173"]
    );

    let err = load_text("[http.cors]\nallowed_origins = [\"https://a.example/path\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cors.allowed_origins"), "{err}");
    let err = load_text("[http.cors]\nallowed = []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("allowed"), "{err}");

    load_text("[http.cors]\nallowed_origins = [\"*\"]\n").unwrap();
    let err = load_text("[auth]\nenabled = true\n[http.cors]\nallowed_origins = [\"*\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cors.allowed_origins") && err.contains("authentication"),
        "{err}"
    );
}

#[test]
fn replication_is_off_by_default_and_turned_on_by_its_flags() {
    let (cfg, _) = parse(DEFAULT_CONFIG).unwrap();
    assert_eq!(
        toml::to_string(&cfg.replication).unwrap(),
        toml::to_string(&ReplicationSection::default()).unwrap()
    );
    assert!(!cfg.replication.enabled);
    let cfg = load(&RunArgs {
        broker_id: Some(1),
        master_addr: Some("127.0.0.1:10912".into()),
        ..RunArgs::default()
    })
    .unwrap();
    assert_eq!(cfg.broker.id, 1);
    assert!(cfg.replication.enabled);
    assert_eq!(cfg.replication.master_addr, "127.0.0.1:10912");
    let cfg = load(&RunArgs {
        replication_addr: Some("127.0.0.1:0".into()),
        ..RunArgs::default()
    })
    .unwrap();
    assert!(cfg.replication.enabled);
    assert_eq!(cfg.replication.listen, addr("127.0.0.1:0"));
}

#[test]
fn a_slave_needs_its_master_and_a_frame_holds_the_largest_record() {
    let err = load_text("[broker]\nid = 2\n[replication]\nenabled = true\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("replication.master_addr"), "{err}");
    let err = load_text("[replication]\nenabled = true\nmax_frame_bytes = 1024\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("replication.max_frame_bytes"), "{err}");
    for (text, key) in [
        (
            "min_in_sync_replicas = 0",
            "replication.min_in_sync_replicas",
        ),
        (
            "min_in_sync_replicas = 18",
            "replication.min_in_sync_replicas",
        ),
        ("in_sync_max_lag_ms = 0", "replication.in_sync_max_lag_ms"),
    ] {
        let err = load_text(&format!("[replication]\nenabled = true\n{text}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{text}: {err}");
    }
    let err = load_text("[replication]\nmode = \"semi\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("semi"), "{err}");
}

#[test]
fn the_replication_mode_is_async_or_sync_in_any_case() {
    use super::ReplicationMode;
    for (text, mode) in [
        ("sync", ReplicationMode::Sync),
        ("SYNC", ReplicationMode::Sync),
        ("SYNC_MASTER", ReplicationMode::Sync),
        ("async", ReplicationMode::Async),
        ("ASYNC", ReplicationMode::Async),
    ] {
        let cfg = load_text(&format!("[replication]\nmode = \"{text}\"\n")).unwrap();
        assert_eq!(cfg.replication.mode, mode, "{text}");
        assert_eq!(text.parse::<ReplicationMode>(), Ok(mode), "{text}");
    }
    let cfg = load(&RunArgs {
        replication_mode: Some(ReplicationMode::Sync),
        ..RunArgs::default()
    })
    .unwrap();
    assert_eq!(cfg.replication.mode, ReplicationMode::Sync);
    let p = cfg.replication.policy(rocketgate_core::FlushMode::Sync);
    assert!(p.flushed);
    assert_eq!(p.min_in_sync_replicas, 1);
}

#[test]
fn the_replication_key_comes_from_the_cluster_secret_of_the_file() {
    let cfg = load_text("[nameserver]\ncluster_secret = \"0123456789abcdef0123\"\n").unwrap();
    assert!(cfg.replication.key.is_some());
    assert!(load_text("").unwrap().replication.key.is_none());
}

#[test]
fn enum_values_take_any_case_in_the_file_and_the_flags() {
    for (text, want) in [
        ("sync", rocketgate_core::FlushMode::Sync),
        ("SYNC", rocketgate_core::FlushMode::Sync),
        ("Sync_Flush", rocketgate_core::FlushMode::Sync),
        ("async", rocketgate_core::FlushMode::Async),
    ] {
        let (cfg, _) = parse(&format!("[store]\nflush_mode = \"{text}\"\n")).unwrap();
        assert_eq!(cfg.store.flush_mode, want, "{text}");
        let cfg = load(&RunArgs {
            flush_mode: Some(text.into()),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(cfg.store.flush_mode, want, "--flush-mode {text}");
    }
    let e = parse("[store]\nflush_mode = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected SYNC or ASYNC"), "{e}");
    let e = load(&RunArgs {
        flush_mode: Some("sometimes".into()),
        ..RunArgs::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--flush-mode") && e.contains("expected SYNC or ASYNC"),
        "{e}"
    );
    let (cfg, _) =
        parse("[tls]\nclient_auth = \"OPTIONAL\"\n[replication]\nmode = \"Async\"\n").unwrap();
    assert_eq!(cfg.tls.client_auth, tls::ClientAuthSetting::Optional);
    let e = parse("[tls]\nclient_auth = \"maybe\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("off, optional, required"), "{e}");
    // The canonical spelling is what generate-config and the file's own keys print.
    assert!(DEFAULT_CONFIG.contains("flush_mode = \"ASYNC\""));
}

#[test]
fn the_controller_section_is_checked_only_when_on_and_signed_with_the_cluster_secret() {
    let three = r#"
        [nameserver]
        cluster_secret = "a-long-enough-cluster-secret"
        [controller]
        enabled = true
        id = 2
        members = { 1 = "127.0.0.1:9001", 2 = "127.0.0.1:9002", 3 = "127.0.0.1:9003" }
        heartbeat_timeout_ms = 1500
    "#;
    let cfg = load_text(three).unwrap();
    assert_eq!(cfg.controller.heartbeat_timeout_ms, 1500);
    assert!(cfg.controller_key.is_some());
    assert_eq!(
        controller_listen(&cfg.controller).unwrap(),
        addr("127.0.0.1:9002")
    );
    let exposed = crate::exposure::controller_listener(&cfg).unwrap();
    assert!(exposed.authenticates);

    let two = three.replace(", 3 = \"127.0.0.1:9003\"", "");
    let err = load_text(&two).unwrap_err().to_string();
    assert!(
        err.contains("controller.members") && err.contains("1 or 3"),
        "{err}"
    );
    let named = three.replace("127.0.0.1:9002", "ctl-2.example:9002");
    let err = load_text(&named).unwrap_err().to_string();
    assert!(err.contains("controller.listen"), "{err}");
    let off = "[controller]\nmembers = { 1 = \"x\", 2 = \"y\" }\n";
    let cfg = load_text(off).unwrap();
    assert!(crate::exposure::controller_listener(&cfg).is_none());
    let err = load_text("[controller]\nenabeld = true\n").unwrap_err();
    assert!(err.to_string().contains("enabeld"), "{err}");
}
