//! The outbound HTTP clients. awc clients are `!Send`, so each worker thread builds its own;
//! routes with their own connect timeout or outbound profile (CA, client certificate, proxy)
//! share one client per (thread, timeout, profile), so their connection pools are reused like
//! the default client's. Every client connects through [`EgressConnector`] (the environment's
//! or the route's proxy) with the TLS configuration of its profile ([`super::tls`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::egress::EgressConnector;
use super::proxy_env::EnvProxies;
use crate::config::{Outbound, RouteDef};

/// Router-wide outbound settings, installed once at start by the wiring.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// `UPSTREAM_CA_FILE`: trusted by every route besides the bundled and system roots.
    pub ca_file: Option<PathBuf>,
    pub proxies: Arc<EnvProxies>,
    /// The connect timeout of routes that set none.
    pub connect_timeout: Duration,
}

impl Default for OutboundSettings {
    fn default() -> OutboundSettings {
        OutboundSettings {
            ca_file: None,
            proxies: Arc::default(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

static SETTINGS: OnceLock<OutboundSettings> = OnceLock::new();

/// Install the router-wide settings; must run before the first client is built (a later call
/// is ignored: clients already built would disagree with it).
pub fn configure(settings: OutboundSettings) {
    if SETTINGS.set(settings).is_err() {
        tracing::warn!("outbound settings were already in place; the new ones are ignored");
    }
}

fn settings() -> &'static OutboundSettings {
    SETTINGS.get_or_init(OutboundSettings::default)
}

/// A client with a connect timeout and a connection cap (0 = no cap), for the default profile.
/// Redirects are not followed: an inference backend that redirects is misconfigured, and
/// following could leak credentials to another host.
pub fn build(connect_timeout: Duration, max_connections: usize) -> awc::Client {
    build_for(connect_timeout, max_connections, &Outbound::default())
}

fn build_for(
    connect_timeout: Duration,
    max_connections: usize,
    outbound: &Outbound,
) -> awc::Client {
    install_crypto_provider();
    let settings = settings();
    let connector = awc::Connector::new()
        .connector(EgressConnector::new(
            outbound.proxy.clone(),
            settings.proxies.clone(),
        ))
        .rustls_0_23(super::tls::client_config(
            outbound,
            settings.ca_file.as_ref(),
        ))
        .timeout(connect_timeout)
        .handshake_timeout(connect_timeout)
        .limit(max_connections)
        // Idle pooled connections are dropped before the backends' own idle timeout (actix
        // and uvicorn close after 5 s): reusing one the backend is closing fails the write
        // ("broken pipe") on an otherwise healthy route.
        .conn_keep_alive(Duration::from_secs(3))
        .conn_lifetime(Duration::from_secs(300));
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .add_default_header((
            "user-agent",
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        ))
        // Per-request timeouts are set on every call; this is only the outer bound.
        .timeout(Duration::from_secs(3600))
        .finish()
}

thread_local! {
    static BY_PROFILE: RefCell<HashMap<(Duration, Outbound), awc::Client>> =
        RefCell::new(HashMap::new());
}

/// This thread's client for calls with `connect` timeout and `outbound` profile.
pub fn for_profile(connect: Duration, outbound: &Outbound) -> awc::Client {
    BY_PROFILE.with(|cell| {
        let mut clients = cell.borrow_mut();
        if let Some(client) = clients.get(&(connect, outbound.clone())) {
            return client.clone();
        }
        let client = build_for(connect, 0, outbound);
        clients.insert((connect, outbound.clone()), client.clone());
        client
    })
}

/// The client of this thread for routes whose connect timeout is `connect`.
pub fn with_connect_timeout(connect: Duration) -> awc::Client {
    for_profile(connect, &Outbound::default())
}

/// The client a call on `route` takes: `default` (the worker's own, with its connection cap)
/// unless the route has its own connect timeout or outbound profile.
pub fn for_route(default: &awc::Client, route: &RouteDef) -> awc::Client {
    match (route.timeouts.connect, route.outbound.is_default()) {
        (None, true) => default.clone(),
        (connect, _) => for_profile(
            connect.unwrap_or(settings().connect_timeout),
            &route.outbound,
        ),
    }
}

/// rustls needs a process-wide crypto provider when more than one could be compiled in.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
