//! Health probes over HTTP: the [`HealthCheck`] the server wiring gives the mesh, which itself
//! knows nothing of HTTP. A probe is a `GET {base}{health path}` with the route's credentials;
//! the engine's load is a `GET {base}{metrics path}` the same way (llama.cpp without
//! `--metrics`: its `/slots` list instead; with it, the slot count from that list as well), read into [`EngineLoad`] by [`super::engine_signals`].

use std::cell::RefCell;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tracing::{debug, warn};

use super::engine_signals::{load_from_metrics, load_from_slots, MAX_SIGNAL_BYTES};
use crate::engines::{attach_credentials, BackendKind};
use crate::mesh::{Endpoint, EngineLoad, HealthCheck, ProbeVerdict};

/// Probes endpoints with one awc client per thread.
pub struct HttpHealthCheck;

thread_local! {
    // awc clients are !Send: one per arbiter thread, shared by every BackendActor on it.
    static PROBE_CLIENT: RefCell<Option<awc::Client>> = const { RefCell::new(None) };
}

/// The probe client for `endpoint`: its route's CA, client certificate and proxy, so a probe
/// fails or succeeds exactly as traffic would.
fn probe_client(endpoint: &Endpoint) -> awc::Client {
    if !endpoint.outbound.is_default() {
        return super::client::for_profile(PROBE_CONNECT_TIMEOUT, &endpoint.outbound);
    }
    PROBE_CLIENT.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| super::client::build(PROBE_CONNECT_TIMEOUT, 0))
            .clone()
    })
}

const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl HealthCheck for HttpHealthCheck {
    fn check(
        &self,
        endpoint: &Endpoint,
        path: &str,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, ProbeVerdict> {
        let url = endpoint.base.probe_url(path);
        let req = attach_credentials(
            probe_client(endpoint).get(&url).timeout(timeout),
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
                Err(e) => ProbeVerdict::Unhealthy(match super::tls_error::tls_failure(&e) {
                    Some(reason) => format!("TLS: {reason}"),
                    None => e.to_string(),
                }),
            }
        })
    }

    fn read_load(
        &self,
        endpoint: &Endpoint,
        path: &str,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Option<EngineLoad>> {
        let get = |path: &str| {
            attach_credentials(
                probe_client(endpoint)
                    .get(endpoint.base.probe_url(path))
                    .timeout(timeout),
                endpoint.credentials(),
            )
        };
        let metrics = get(path);
        // llama-server answers 501 on /metrics unless started with --metrics; its slot list
        // still tells how many requests it is computing, and with metrics on it is still the
        // only place that says how many slots there are (the capacity the load guard uses).
        let slots = (endpoint.kind == BackendKind::Llamacpp).then(|| get("/slots"));
        let kind = endpoint.kind;
        let name = endpoint.name.clone();
        Box::pin(async move {
            let from_metrics = match bounded_body(metrics).await {
                Some(body) => load_from_metrics(kind, &String::from_utf8_lossy(&body)),
                None => None,
            };
            let from_slots = match slots {
                Some(slots) => bounded_body(slots).await.and_then(|b| load_from_slots(&b)),
                None => None,
            };
            let load = match (from_metrics, from_slots) {
                (Some(metrics), slots) => Some(EngineLoad {
                    slots: slots.and_then(|s| s.slots),
                    ..metrics
                }),
                (None, slots) => slots,
            };
            if load.is_none() {
                debug!(endpoint = %name, "no load reading from the engine");
            }
            load
        })
    }
}

/// A successful answer's body, when it fits in [`MAX_SIGNAL_BYTES`].
async fn bounded_body(request: awc::ClientRequest) -> Option<bytes::Bytes> {
    let mut resp = request.send().await.ok()?;
    if !resp.status().is_success() {
        // Drain a little so the connection can be reused.
        let _ = resp.body().limit(64 * 1024).await;
        return None;
    }
    resp.body().limit(MAX_SIGNAL_BYTES).await.ok()
}
