//! The outbound HTTP client. awc clients are `!Send`, so each worker thread builds its own.

use std::time::Duration;

/// A client with a connect timeout and a connection cap (0 = no cap). Redirects are not
/// followed: an inference backend that redirects is misconfigured, and following could leak
/// credentials to another host.
pub fn build(connect_timeout: Duration, max_connections: usize) -> awc::Client {
    install_crypto_provider();
    let connector = awc::Connector::new()
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
    // awc clients are !Send: routes with their own connect timeout share one client per
    // (thread, timeout), so their connection pools are reused like the default client's.
    static BY_CONNECT_TIMEOUT: std::cell::RefCell<std::collections::HashMap<Duration, awc::Client>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The client of this thread for routes whose connect timeout is `connect`.
pub fn with_connect_timeout(connect: Duration) -> awc::Client {
    BY_CONNECT_TIMEOUT.with(|cell| {
        cell.borrow_mut()
            .entry(connect)
            .or_insert_with(|| build(connect, 0))
            .clone()
    })
}

/// rustls needs a process-wide crypto provider when more than one could be compiled in.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
