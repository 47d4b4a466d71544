//! Secure by default off loopback: before a node binds anything, every listener it is about to
//! open is checked. A listener on a loopback address is fine; on any other address (a LAN
//! address, `0.0.0.0`, `::`) it must authenticate its clients — the RocketMQ gRPC endpoint (and
//! its admin services) and REST/WebSocket with `auth.enabled` on, MQTT with
//! `allow_anonymous = false` — or the node
//! refuses to start with one line saying how to fix it. `--allow-unauthenticated-remote`
//! (`ROCKETGATE_ALLOW_UNAUTHENTICATED_REMOTE=1`) is the explicit opt-out: the node starts and
//! logs a warning per exposed listener.
//!
//! The NameServer does not authenticate yet (docs/security.md), so off loopback it always needs
//! the opt-out.
//!
//! Pure: reads the configuration, logs, decides. Called by `node.rs` and `main.rs`.

use std::net::SocketAddr;

use crate::config::ServerConfig;

/// One listener a node is about to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Its endpoint name (`grpc`, `http`, `mqtt`, `mqtt-ws`, `nameserver`).
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it authenticates its clients as configured.
    pub authenticates: bool,
    /// Whether it could authenticate (with `--auth` / `allow_anonymous = false`).
    pub can_authenticate: bool,
}

/// The listeners of a broker node (`standalone` adds the NameServer).
pub fn node_listeners(cfg: &ServerConfig, standalone: bool) -> Vec<Listener> {
    let mut out = vec![Listener {
        name: "grpc",
        addr: cfg.grpc.listen,
        authenticates: cfg.auth.enabled,
        can_authenticate: true,
    }];
    if cfg.http.enabled {
        out.push(Listener {
            name: "http",
            addr: cfg.http.listen,
            authenticates: cfg.auth.enabled,
            can_authenticate: true,
        });
    }
    if cfg.mqtt.enabled {
        let mqtt_auth = !cfg.mqtt.config.allow_anonymous;
        for (name, addr) in [("mqtt", cfg.mqtt.listen), ("mqtt-ws", cfg.mqtt.ws_listen)] {
            out.push(Listener {
                name,
                addr,
                authenticates: mqtt_auth,
                can_authenticate: true,
            });
        }
    }
    if standalone {
        out.push(nameserver_listener(cfg));
    }
    out
}

/// The listener of a NameServer.
pub fn nameserver_listener(cfg: &ServerConfig) -> Listener {
    Listener {
        name: "nameserver",
        addr: cfg.nameserver.listen,
        authenticates: false,
        can_authenticate: false,
    }
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
        let how = match (l.name, l.can_authenticate) {
            ("mqtt" | "mqtt-ws", _) => {
                "set mqtt.allow_anonymous = false with [mqtt.users]".to_owned()
            }
            (_, true) => "turn authentication on with --auth (docs/security.md)".to_owned(),
            (name, false) => format!("{name} does not authenticate yet (docs/security.md)"),
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
            can_authenticate: name != "nameserver",
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
        let err = check(&[l("nameserver", "10.1.2.3:9876", false)], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not authenticate yet"), "{err}");
        let err = check(&[l("mqtt", "[::]:1883", false)], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_anonymous"), "{err}");
        assert!(
            check(&[l("http", "0.0.0.0:8080", false)], true).is_ok(),
            "the opt-out"
        );
    }
}
