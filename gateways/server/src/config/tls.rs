//! `[tls]`: TLS on every listener of a node (gRPC, HTTP/WebSocket, MQTT and MQTT over
//! WebSocket, the NameServer) from one certificate and key, optional client certificates
//! (mTLS, whose common name is the user), and the CA the node trusts for its own calls (broker
//! → NameServer). Off by default; `--tls-cert`/`--tls-key` turn it on.
//!
//! Pure data, parsing and validation; the acceptors are built by `node.rs` (one per listener,
//! each with its ALPN names) from [`TlsSection::settings`]. The files are read there, so a
//! missing file is an error of the start, not of the parse.

use std::path::PathBuf;
use std::time::Duration;

use rocketgate_gateway_kit::{ClientAuth, TlsSettings};
use serde::{Deserialize, Serialize};

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Serve every listener over TLS (plain TCP is then refused).
    pub enabled: bool,
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// The CA (PEM) that client certificates must chain to; needed unless `client_auth = "off"`.
    pub client_ca: PathBuf,
    /// `off`, `optional` or `required`: whether clients are asked for a certificate. A verified
    /// certificate whose common name is an enabled user authenticates as that user.
    pub client_auth: ClientAuthSetting,
    /// The CA (PEM) this node trusts when it calls others (a broker its NameServers); empty:
    /// its calls are plain TCP.
    pub ca: PathBuf,
    /// How long a client has to complete the handshake (ms).
    pub handshake_timeout_ms: u64,
    /// How often the files are checked for a new certificate (ms); a change is loaded without
    /// a restart, connections already open keep theirs.
    pub reload_interval_ms: u64,
}

/// `tls.client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthSetting {
    /// No client certificates.
    #[default]
    Off,
    /// Asked for; a client without one still connects.
    Optional,
    /// Every client must present one.
    Required,
}

super::any_case!(ClientAuthSetting {
    "off" => Off,
    "optional" => Optional,
    "required" => Required,
});

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            enabled: false,
            cert: PathBuf::new(),
            key: PathBuf::new(),
            client_ca: PathBuf::new(),
            client_auth: ClientAuthSetting::Off,
            ca: PathBuf::new(),
            handshake_timeout_ms: 10_000,
            reload_interval_ms: 10_000,
        }
    }
}

impl TlsSection {
    /// Checks the section (not the files: they are read when the listeners start).
    ///
    /// # Errors
    /// One line naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.enabled {
            for (key, path) in [("cert", &self.cert), ("key", &self.key)] {
                if path.as_os_str().is_empty() {
                    anyhow::bail!(
                        "invalid configuration `tls.{key}`: needed when tls.enabled is on \
                         (--tls-cert / --tls-key)"
                    );
                }
            }
        }
        if self.client_auth != ClientAuthSetting::Off && self.client_ca.as_os_str().is_empty() {
            anyhow::bail!(
                "invalid configuration `tls.client_ca`: needed when tls.client_auth is not off"
            );
        }
        for (key, value) in [
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("reload_interval_ms", self.reload_interval_ms),
        ] {
            if value == 0 {
                anyhow::bail!("invalid configuration `tls.{key}`: must be greater than 0");
            }
        }
        Ok(())
    }

    /// The listeners' settings, `None` when TLS is off.
    pub fn settings(&self) -> Option<TlsSettings> {
        self.enabled.then(|| TlsSettings {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: (!self.client_ca.as_os_str().is_empty()).then(|| self.client_ca.clone()),
            client_auth: match self.client_auth {
                ClientAuthSetting::Off => ClientAuth::Off,
                ClientAuthSetting::Optional => ClientAuth::Optional,
                ClientAuthSetting::Required => ClientAuth::Required,
            },
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
        })
    }

    /// How often the certificate files are checked.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }
}
