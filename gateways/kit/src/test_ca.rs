//! A throw-away certificate authority for tests of TLS listeners (feature `test-ca`): it
//! issues server certificates for `localhost` / `127.0.0.1` and client certificates with a
//! chosen common name, and writes them as PEM files into a directory the test owns.
//!
//! Test support only: never compiled into the binary.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A CA and the directory its files go to.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
    /// The CA certificate (PEM file).
    pub ca_pem: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM file).
    pub cert: PathBuf,
    /// Its private key (PEM file).
    pub key: PathBuf,
}

fn fail(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl TestCa {
    /// A new CA named `name`, writing into `dir`.
    ///
    /// # Errors
    /// Key generation or file writes failing.
    pub fn new(dir: &Path, name: &str) -> std::io::Result<Self> {
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).map_err(fail)?;
        let ca_pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_pem, cert.pem())?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            dir: dir.to_owned(),
            ca_pem,
        })
    }

    fn issue(
        &self,
        file: &str,
        names: Vec<String>,
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> std::io::Result<Issued> {
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::new(names).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        let issued = Issued {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&issued.cert, cert.pem())?;
        std::fs::write(&issued.key, key.serialize_pem())?;
        Ok(issued)
    }

    /// A server certificate for `localhost` and `127.0.0.1`, written as `<file>.pem` and
    /// `<file>-key.pem` (overwriting: a reload test issues again under the same name).
    ///
    /// # Errors
    /// Signing or file writes failing.
    pub fn server(&self, file: &str) -> std::io::Result<Issued> {
        self.issue(
            file,
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose common name is `cn`.
    ///
    /// # Errors
    /// Signing or file writes failing.
    pub fn client(&self, file: &str, cn: &str) -> std::io::Result<Issued> {
        self.issue(file, Vec::new(), cn, ExtendedKeyUsagePurpose::ClientAuth)
    }
}
