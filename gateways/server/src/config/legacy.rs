//! The deprecated `[listen]` and `[gateways]` sections: every listen address and on/off switch
//! now lives in its listener's own section (`[grpc] listen`, `[http] enabled`, …), and these
//! older names keep working so that no existing configuration file breaks.
//!
//! Rules (documented in `docs/configuration.md`):
//! - an old key fills the new one when the new one is absent;
//! - an old key and its new name both set is an error naming both (never a silent choice);
//! - the old keys used are reported once, by [`warn`], as one `WARN` line at start.
//!
//! The flags and environment variables (`--grpc-addr`, `ROCKETGATE_GRPC_ADDR`, …) are not
//! affected: they override the result either way. Called by `config.rs` only; no I/O besides
//! that one log line.

use std::net::SocketAddr;

use serde::Deserialize;

use super::section::{GrpcKeys, HttpKeys, ListenKeys, MqttKeys};

/// `[listen]` (deprecated): `nameserver`, `grpc`, `http`, `mqtt`, `mqtt_ws`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Listen {
    nameserver: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    mqtt: Option<SocketAddr>,
    mqtt_ws: Option<SocketAddr>,
}

/// `[gateways]` (deprecated): `http`, `mqtt`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Gateways {
    http: Option<bool>,
    mqtt: Option<bool>,
}

/// A deprecated key that was used, and its new name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Renamed {
    /// E.g. `listen.grpc`.
    pub old: &'static str,
    /// E.g. `grpc.listen`.
    pub new: &'static str,
}

/// The new sections' keys, as written, that the old ones may fill.
pub(crate) struct Targets<'a> {
    pub nameserver: &'a mut ListenKeys,
    pub grpc: &'a mut GrpcKeys,
    pub http: &'a mut HttpKeys,
    pub mqtt: &'a mut MqttKeys,
}

/// Moves every old key into its new place; returns the old keys used.
///
/// # Errors
/// An old key whose new name is set too.
pub(crate) fn apply(
    listen: Option<Listen>,
    gateways: Option<Gateways>,
    to: Targets<'_>,
) -> anyhow::Result<Vec<Renamed>> {
    let mut used = Vec::new();
    let listen = listen.unwrap_or_default();
    let gateways = gateways.unwrap_or_default();
    let u = &mut used;
    move_key(
        u,
        "listen.nameserver",
        listen.nameserver,
        "nameserver.listen",
        &mut to.nameserver.listen,
    )?;
    move_key(
        u,
        "listen.grpc",
        listen.grpc,
        "grpc.listen",
        &mut to.grpc.listen,
    )?;
    move_key(
        u,
        "listen.http",
        listen.http,
        "http.listen",
        &mut to.http.listen,
    )?;
    move_key(
        u,
        "listen.mqtt",
        listen.mqtt,
        "mqtt.listen",
        &mut to.mqtt.listen,
    )?;
    move_key(
        u,
        "listen.mqtt_ws",
        listen.mqtt_ws,
        "mqtt.ws_listen",
        &mut to.mqtt.ws_listen,
    )?;
    move_key(
        u,
        "gateways.http",
        gateways.http,
        "http.enabled",
        &mut to.http.enabled,
    )?;
    move_key(
        u,
        "gateways.mqtt",
        gateways.mqtt,
        "mqtt.enabled",
        &mut to.mqtt.enabled,
    )?;
    Ok(used)
}

fn move_key<T>(
    used: &mut Vec<Renamed>,
    old: &'static str,
    value: Option<T>,
    new: &'static str,
    slot: &mut Option<T>,
) -> anyhow::Result<()> {
    let Some(value) = value else {
        return Ok(());
    };
    if slot.is_some() {
        anyhow::bail!(
            "invalid configuration `{old}`: it is the deprecated name of `{new}`, which is set \
             too; keep only `{new}`"
        );
    }
    *slot = Some(value);
    used.push(Renamed { old, new });
    Ok(())
}

/// Logs the deprecated keys used, if any, as one line.
pub(crate) fn warn(used: &[Renamed]) {
    if used.is_empty() {
        return;
    }
    let list: Vec<String> = used
        .iter()
        .map(|r| format!("`{}` is now `{}`", r.old, r.new))
        .collect();
    tracing::warn!(
        "deprecated configuration keys, still honoured: {}; the [listen] and [gateways] \
         sections will be removed in a later release",
        list.join(", ")
    );
}
