//! The rustls configuration of outbound calls: whom a backend's certificate may be signed by
//! (the bundled Mozilla roots, the system's trust store, `UPSTREAM_CA_FILE`, the route's
//! `ca_file`), the client certificate a route presents, and the one way to skip verification
//! (`tls_insecure_skip_verify`, per route, warned about at load). Configurations are built once
//! per distinct route profile and shared by every worker thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use tracing::{error, info, warn};

use crate::config::{read_ca_bundle, read_client_identity, Outbound};

/// The trust every route starts from: bundled roots, the system store and `UPSTREAM_CA_FILE`.
fn base_roots(global_ca: Option<&PathBuf>) -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = actix_tls::connect::rustls_0_23::webpki_roots_cert_store();
        let bundled = roots.len();
        let native = rustls_native_certs::load_native_certs();
        let (system_added, _) = roots.add_parsable_certificates(native.certs);
        if !native.errors.is_empty() {
            // A missing or partly unreadable system store is common in slim containers: the
            // bundled roots still work.
            warn!(errors = native.errors.len(), first = %native.errors[0], "some of the system's trusted certificates could not be read");
        }
        let mut extra = 0;
        if let Some(path) = global_ca {
            match read_ca_bundle(path) {
                Ok(certs) => extra = roots.add_parsable_certificates(certs).0,
                // Checked when the settings were read; a file gone since is logged, not fatal.
                Err(e) => error!(error = %e, "UPSTREAM_CA_FILE not used"),
            }
        }
        info!(bundled, system = system_added, upstream_ca_file = extra, "outbound TLS trust store ready");
        roots
    })
}

/// The rustls configuration for routes with `outbound`, built on first use and then shared.
/// A file that was valid at load but no longer is leaves the route with the base trust and no
/// client certificate (logged), so its calls fail visibly with a TLS error.
pub fn client_config(outbound: &Outbound, global_ca: Option<&PathBuf>) -> Arc<ClientConfig> {
    static BUILT: OnceLock<Mutex<HashMap<Outbound, Arc<ClientConfig>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(config) = built.get(outbound) {
        return config.clone();
    }
    let config = Arc::new(build(outbound, global_ca));
    built.insert(outbound.clone(), config.clone());
    config
}

fn build(outbound: &Outbound, global_ca: Option<&PathBuf>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ClientConfig::builder());
    let builder = if outbound.insecure_skip_verify {
        // Any certificate is taken for the backend's. Handshake signatures are still checked,
        // so the connection is encrypted to whoever holds the key of the certificate shown:
        // what is lost is knowing who that is.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                crate::tls::SkipCertificateChecks::for_any_server(provider),
            ))
    } else {
        let mut roots = base_roots(global_ca).clone();
        if let Some(path) = &outbound.ca_file {
            match read_ca_bundle(path) {
                Ok(certs) => {
                    roots.add_parsable_certificates(certs);
                }
                Err(e) => error!(error = %e, "a route's ca_file is not used"),
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &outbound.client_identity {
        None => builder.with_no_client_auth(),
        Some(files) => match read_client_identity(files).and_then(|(certs, key)| {
            builder
                .clone()
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())
        }) {
            Ok(config) => config,
            Err(e) => {
                error!(error = %e, "a route's client certificate is not used");
                builder.with_no_client_auth()
            }
        },
    };
    // What awc offers by default: HTTP/2 when the backend speaks it, else HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}
