//! Health probes over HTTP: the [`HealthCheck`] the server wiring gives the mesh, which itself
//! knows nothing of HTTP. A probe is a `GET {base}{health path}` with the route's credentials.

use std::cell::RefCell;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tracing::warn;

use crate::engines::attach_credentials;
use crate::mesh::{Endpoint, HealthCheck, ProbeVerdict};

/// Probes endpoints with one awc client per thread.
pub struct HttpHealthCheck;

thread_local! {
    // awc clients are !Send: one per arbiter thread, shared by every BackendActor on it.
    static PROBE_CLIENT: RefCell<Option<awc::Client>> = const { RefCell::new(None) };
}

fn probe_client() -> awc::Client {
    PROBE_CLIENT.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| super::client::build(Duration::from_secs(5), 0))
            .clone()
    })
}

impl HealthCheck for HttpHealthCheck {
    fn check(
        &self,
        endpoint: &Endpoint,
        path: &str,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, ProbeVerdict> {
        let url = endpoint.base.probe_url(path);
        let req = attach_credentials(
            probe_client().get(&url).timeout(timeout),
            endpoint.credentials(),
        );
        let name = endpoint.name.clone();
        Box::pin(async move {
            match req.send().await {
                Ok(mut resp) => {
                    let status = resp.status();
                    // Drain a little so the connection can be reused.
                    let _ = resp.body().limit(64 * 1024).await;
                    if status.is_success() {
                        ProbeVerdict::Healthy
                    } else {
                        ProbeVerdict::Unhealthy(format!("HTTP {}", status.as_u16()))
                    }
                }
                Err(e) if super::upstream::is_local_failure(&e) => {
                    warn!(endpoint = %name, error = %e, "health probe not sent: the router is out of local resources");
                    ProbeVerdict::NotSent
                }
                Err(e) => ProbeVerdict::Unhealthy(e.to_string()),
            }
        })
    }
}
