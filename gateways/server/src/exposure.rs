//! Secure by default off loopback: before a node binds anything, every listener it is about to
//! open is checked. A listener on a loopback address is fine; on any other address (a LAN
//! address, `0.0.0.0`, `::`) it must authenticate its clients — the RocketMQ gRPC endpoint (and
//! its admin services), REST/WebSocket and MQTT with `auth.enabled` on (MQTT also with its own
//! `allow_anonymous = false` while the core's authentication is off), the NameServer with a
//! cluster secret (brokers' registrations; route queries stay open), a master's replication
//! listener with the cluster secret (slaves sign their calls) — or the node refuses to
//! start with one line saying how to fix it. `--allow-unauthenticated-remote`
//! (`ROCKETGATE_ALLOW_UNAUTHENTICATED_REMOTE=1`) is the explicit opt-out: the node starts and
//! logs a warning per exposed listener.
//!
//! Pure: reads the configuration, logs, decides. Called by `node.rs` and `main.rs`.

use std::net::SocketAddr;

use crate::config::ServerConfig;

/// One listener a node is about to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Its endpoint name (`grpc`, `http`, `mqtt`, `mqtt-ws`, `nameserver`, `replication`).
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it authenticates its clients as configured.
    pub authenticates: bool,
}

/// The listeners of a broker node (`standalone` adds the NameServer).
pub fn node_listeners(cfg: &ServerConfig, standalone: bool) -> Vec<Listener> {
    let mut out = vec![Listener {
        name: "grpc",
        addr: cfg.grpc.listen,
        authenticates: cfg.auth.enabled,
    }];
    if cfg.http.enabled {
        out.push(Listener {
            name: "http",
            addr: cfg.http.listen,
            authenticates: cfg.auth.enabled,
        });
    }
    if cfg.mqtt.enabled {
        let mqtt_auth = cfg.auth.enabled || cfg.mqtt.config.allow_anonymous == Some(false);
        for (name, addr) in [("mqtt", cfg.mqtt.listen), ("mqtt-ws", cfg.mqtt.ws_listen)] {
            out.push(Listener {
                name,
                addr,
                authenticates: mqtt_auth,
            });
        }
    }
    if cfg.nats.enabled {
        out.push(Listener {
            name: "nats",
            addr: cfg.nats.listen,
            authenticates: cfg.auth.enabled,
        });
    }
    if standalone {
        out.push(nameserver_listener(cfg));
    }
    if cfg.replication.enabled && cfg.broker.id == 0 {
        out.push(Listener {
            name: "replication",
            addr: cfg.replication.listen,
            authenticates: cfg.replication.key.is_some(),
        });
    }
    out
}

/// The listener of a NameServer.
pub fn nameserver_listener(cfg: &ServerConfig) -> Listener {
    Listener {
        name: "nameserver",
        addr: cfg.nameserver.listen,
        authenticates: cfg.nameserver.config.cluster_secret.is_some(),
    }
}

/// The listener of a controller member, if `[controller]` is on.
pub fn controller_listener(cfg: &ServerConfig) -> Option<Listener> {
    if !cfg.controller.enabled {
        return None;
    }
    Some(Listener {
        name: "controller",
        addr: crate::config::controller_listen(&cfg.controller).ok()?,
        authenticates: cfg.controller_key.is_some(),
    })
}

/// Refuses (one line) a listener off loopback that does not authenticate, unless `allow`; with
/// `allow`, warns once per such listener.
///
/// # Errors
/// The first exposed listener, with what to do.
pub fn check(listeners: &[Listener], allow: bool) -> anyhow::Result<()> {
    for l in listeners {
        if l.addr.ip().is_loopback() || l.authenticates {
            continue;
        }
        if allow {
            tracing::warn!(
                endpoint = l.name,
                address = %l.addr,
                "listening off loopback without authentication (--allow-unauthenticated-remote): \
                 anyone who reaches this port can use it"
            );
            continue;
        }
        let how = match l.name {
            "nats" => "turn authentication on with --auth (docs/security.md)".to_owned(),
            "mqtt" | "mqtt-ws" => "turn authentication on with --auth (docs/security.md), or \
                                         set mqtt.allow_anonymous = false with [mqtt.users]"
                .to_owned(),
            "nameserver" | "replication" | "controller" => {
                "give it a cluster secret for brokers to sign with \
                 (ROCKETGATE_CLUSTER_SECRET, docs/cluster.md)"
                    .to_owned()
            }
            _ => "turn authentication on with --auth (docs/security.md)".to_owned(),
        };
        anyhow::bail!(
            "refusing to listen on {} ({}) without authentication: {how}; bind it to 127.0.0.1, \
             or pass --allow-unauthenticated-remote to accept the risk",
            l.addr,
            l.name
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn l(name: &'static str, addr: &str, authenticates: bool) -> Listener {
        Listener {
            name,
            addr: addr.parse().unwrap(),
            authenticates,
        }
    }

    #[test]
    fn loopback_is_fine_exposed_needs_authentication_or_the_opt_out() {
        assert!(check(
            &[
                l("grpc", "127.0.0.1:8081", false),
                l("http", "[::1]:8080", false)
            ],
            false
        )
        .is_ok());
        assert!(check(&[l("grpc", "0.0.0.0:8081", true)], false).is_ok());
        let err = check(&[l("grpc", "0.0.0.0:8081", false)], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0.0.0.0:8081 (grpc)") && err.contains("--auth"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let err = check(&[l("http", "10.1.2.3:8080", false)], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--auth"), "{err}");
        assert!(check(&[l("http", "10.1.2.3:8080", true)], false).is_ok());
        let err = check(&[l("mqtt", "[::]:1883", false)], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_anonymous"), "{err}");
        assert!(
            check(&[l("http", "0.0.0.0:8080", false)], true).is_ok(),
            "the opt-out"
        );
        let err = check(&[l("nameserver", "0.0.0.0:9876", false)], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ROCKETGATE_CLUSTER_SECRET"), "{err}");
        assert!(check(&[l("nameserver", "0.0.0.0:9876", true)], false).is_ok());
    }

    #[test]
    fn a_nameserver_authenticates_with_a_cluster_secret() {
        let mut cfg = ServerConfig::default();
        cfg.nameserver.listen = "0.0.0.0:9876".parse().unwrap();
        let err = check(&[nameserver_listener(&cfg)], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.0.0.0:9876 (nameserver)"), "{err}");
        cfg.nameserver.config.cluster_secret =
            Some(rocketgate_nameserver::ClusterSecret::new("a-long-enough-secret").unwrap());
        check(&[nameserver_listener(&cfg)], false).unwrap();
        cfg.grpc.listen = "0.0.0.0:8081".parse().unwrap();
        assert!(
            check(&node_listeners(&cfg, true), false).is_err(),
            "grpc still needs --auth"
        );
    }

    #[test]
    fn a_master_s_replication_listener_needs_the_cluster_secret_off_loopback() {
        let mut cfg = ServerConfig::default();
        cfg.replication.enabled = true;
        cfg.replication.listen = "0.0.0.0:10912".parse().unwrap();
        let err = check(&node_listeners(&cfg, false), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("(replication)"), "{err}");
        assert!(err.contains("ROCKETGATE_CLUSTER_SECRET"), "{err}");
        cfg.replication.key = Some(crate::replication::auth::Key::derive(
            "a-long-enough-secret",
        ));
        check(&node_listeners(&cfg, false), false).unwrap();
        cfg.replication.key = None;
        cfg.broker.id = 1;
        check(&node_listeners(&cfg, false), false).unwrap();
    }

    #[test]
    fn mqtt_authenticates_with_the_core_s_authentication_on() {
        let mut cfg = ServerConfig::default();
        cfg.mqtt.listen = "0.0.0.0:1883".parse().unwrap();
        cfg.mqtt.ws_listen = "0.0.0.0:8083".parse().unwrap();
        let mqtt = |cfg: &ServerConfig| {
            node_listeners(cfg, false)
                .into_iter()
                .filter(|l| l.name.starts_with("mqtt"))
                .map(|l| l.authenticates)
                .collect::<Vec<_>>()
        };
        assert_eq!(mqtt(&cfg), [false, false]);
        cfg.auth.enabled = true;
        assert_eq!(mqtt(&cfg), [true, true]);
        cfg.auth.enabled = false;
        cfg.mqtt.config.allow_anonymous = Some(false);
        assert_eq!(mqtt(&cfg), [true, true]);
    }
}
