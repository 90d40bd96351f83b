//! Serving HTTPS (and HTTP/2 through ALPN) without a proxy in front: `TLS_CERT_FILE` and
//! `TLS_KEY_FILE` name PEM files, read at start and again on every reload (SIGHUP,
//! `POST /admin/reload`). The certificate lives behind a resolver that reload swaps, so new
//! handshakes see the new one while open connections keep the session they negotiated.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::VarSource;

/// Where the serving certificate (with its chain) and its private key are, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both (HTTPS) or neither (plain HTTP, the default);
    /// blank counts as unset, as a `.env` template leaves it.
    pub fn from_vars(vars: &dyn VarSource) -> Result<Option<TlsFiles>, String> {
        let path = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        match (path("TLS_CERT_FILE"), path("TLS_KEY_FILE")) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
            (Some(_), None) => Err(
                "TLS_CERT_FILE is set but TLS_KEY_FILE is not: HTTPS needs both (or neither, for plain HTTP)"
                    .to_string(),
            ),
            (None, Some(_)) => Err(
                "TLS_KEY_FILE is set but TLS_CERT_FILE is not: HTTPS needs both (or neither, for plain HTTP)"
                    .to_string(),
            ),
        }
    }
}

/// The crypto provider of every TLS config the router builds itself (the one the workspace
/// compiles in), given explicitly so no process-wide default has to be installed first.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check the pair: a certificate chain, a private key, and that the key is the
/// certificate's. The message names the file and what is wrong with it (never key bytes).
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "TLS_KEY_FILE {}: no usable PEM private key ({e})",
            files.key.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        format!(
            "TLS_CERT_FILE {} and TLS_KEY_FILE {} do not make a pair: {e}",
            files.cert.display(),
            files.key.display()
        )
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: &dyn std::fmt::Display| {
        format!(
            "TLS_CERT_FILE {}: no usable PEM certificate ({e})",
            path.display()
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&e))?;
    if chain.is_empty() {
        return Err(what(&"the file holds no CERTIFICATE block"));
    }
    Ok(chain)
}

/// The certificate the router serves, swapped in place by [`ServingCert::reload`].
pub struct ServingCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

// The key stays out of every `Debug` (settings are logged in tests and errors).
impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// Load the pair once; an error here stops the start.
    pub fn load(files: TlsFiles) -> Result<ServingCert, String> {
        let key = load_certified_key(&files)?;
        Ok(ServingCert {
            files,
            current: RwLock::new(Arc::new(key)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Check the files without serving them (reload validates everything before changing
    /// anything).
    pub fn check(&self) -> Result<Arc<CertifiedKey>, String> {
        load_certified_key(&self.files).map(Arc::new)
    }

    /// Serve `key` from now on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        // A poisoned lock still holds a valid Arc: no writer can leave it half-written.
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }

    fn served(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The resolver rustls asks on every handshake: whatever pair is current then.
#[derive(Debug)]
struct CurrentCert(Arc<ServingCert>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.served())
    }
}

/// The server side of HTTPS for `cert`. ALPN (`h2`, then `http/1.1`) is added by actix-web
/// when it takes the config, which is what offers HTTP/2.
pub fn server_config(cert: Arc<ServingCert>) -> Result<rustls::ServerConfig, String> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CurrentCert(cert)));
    Ok(config)
}

/// A certificate verifier that skips the certificate checks (issuer, expiry, name) for the
/// server names `accepts` allows and refuses the rest, while still checking the handshake's
/// signatures (the server holds the certificate's key). Used by the route setting
/// `tls_insecure_skip_verify` (any name) and by `switchyard healthcheck` (loopback only).
pub struct SkipCertificateChecks {
    provider: Arc<CryptoProvider>,
    accepts: fn(&rustls::pki_types::ServerName<'_>) -> bool,
    refusal: &'static str,
}

impl std::fmt::Debug for SkipCertificateChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkipCertificateChecks")
            .field("refusal", &self.refusal)
            .finish()
    }
}

impl SkipCertificateChecks {
    /// Any server name.
    pub fn for_any_server(provider: Arc<CryptoProvider>) -> SkipCertificateChecks {
        SkipCertificateChecks {
            provider,
            accepts: |_| true,
            refusal: "",
        }
    }

    /// 127.0.0.0/8, `::1` and `localhost` only.
    pub fn for_loopback(provider: Arc<CryptoProvider>) -> SkipCertificateChecks {
        SkipCertificateChecks {
            provider,
            accepts: |name| match name {
                rustls::pki_types::ServerName::IpAddress(ip) => {
                    std::net::IpAddr::from(*ip).is_loopback()
                }
                rustls::pki_types::ServerName::DnsName(name) => {
                    name.as_ref().eq_ignore_ascii_case("localhost")
                }
                _ => false,
            },
            refusal: "certificate checks are skipped for loopback only",
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for SkipCertificateChecks {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if (self.accepts)(server_name) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(self.refusal.into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn the_cert_and_key_come_as_a_pair_or_not_at_all() {
        /// Ok(whether files are set), or Err(what the message says).
        type Verdict = Result<bool, &'static str>;
        // (TLS_CERT_FILE, TLS_KEY_FILE, verdict)
        let cases: &[(Option<&str>, Option<&str>, Verdict)] = &[
            (None, None, Ok(false)),
            (Some(""), Some("  "), Ok(false)),
            (Some("c.pem"), Some("k.pem"), Ok(true)),
            (Some("c.pem"), None, Err("TLS_KEY_FILE is not")),
            (Some("c.pem"), Some(""), Err("TLS_KEY_FILE is not")),
            (None, Some("k.pem"), Err("TLS_CERT_FILE is not")),
        ];
        for (cert, key, expected) in cases {
            let mut pairs = Vec::new();
            if let Some(c) = cert {
                pairs.push(("TLS_CERT_FILE", *c));
            }
            if let Some(k) = key {
                pairs.push(("TLS_KEY_FILE", *k));
            }
            let got = TlsFiles::from_vars(&vars(&pairs));
            match (expected, got) {
                (Ok(set), Ok(files)) => assert_eq!(files.is_some(), *set, "{cert:?} {key:?}"),
                (Err(named), Err(message)) => {
                    assert!(message.contains(named), "{message}")
                }
                (expected, got) => panic!("{cert:?} {key:?}: {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn unreadable_or_unusable_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file").unwrap();
        let missing = dir.path().join("missing.pem");
        // (cert, key, what the message must say)
        let cases = [
            (&missing, &garbage, "TLS_CERT_FILE"),
            (&garbage, &garbage, "TLS_CERT_FILE"),
        ];
        for (cert, key, named) in cases {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let message = ServingCert::load(files).unwrap_err();
            assert!(message.contains(named), "{message}");
            assert!(message.contains(&cert.display().to_string()), "{message}");
        }
    }
}
