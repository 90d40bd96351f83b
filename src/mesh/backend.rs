//! `BackendActor`: one per distinct endpoint. It shares the endpoint's state ([`Endpoint`]),
//! probes the kind's health path on a jittered interval, and drains the endpoint when a reload
//! retires it. Outcomes of finished requests are folded into that state by the lease's `Drop`
//! itself ([`Endpoint::fold_outcome`]): a message per request would wake the actor's thread
//! for every request, which measured as a context switch per request on two cores.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, info, warn};

use super::endpoint::{Endpoint, Health};
use crate::engines::attach_credentials;

/// How often and how patiently endpoints are probed.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed probes after which a ready endpoint is marked down.
    pub unhealthy_threshold: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            unhealthy_threshold: 2,
        }
    }
}

/// How a request that held a lease ended, as far as the endpoint's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The backend rejected the request itself (4xx other than 429): the backend is healthy.
    ClientError,
    /// Connect error, timeout, 5xx, broken stream: counts towards opening the circuit.
    Failure,
    /// Upstream 429 (or 503 with Retry-After): pause the endpoint, not a health failure.
    RateLimited {
        retry_after: Option<Duration>,
    },
    /// The client went away before an answer; says nothing about the backend.
    Canceled,
    /// The router itself ran out of a local resource (file descriptors, local ports, socket
    /// buffers) before reaching the backend: the router's fault, never the backend's.
    LocalFailure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::Failure => "error",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Canceled => "canceled",
            Outcome::LocalFailure => "local_failure",
        }
    }
}

/// How a lease ended, folded into its endpoint's state when the lease is dropped.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub latency: Duration,
    pub est_tokens: u64,
    pub actual_tokens: Option<u64>,
    pub trial: bool,
}

/// Stop probing (endpoint removed by a reload); the actor ends once its in-flight count is 0.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

pub struct BackendActor {
    endpoint: Arc<Endpoint>,
    probe: ProbeSettings,
    probe_failures: u32,
    retired: bool,
}

thread_local! {
    // awc clients are !Send: one per arbiter thread, shared by every BackendActor on it.
    static PROBE_CLIENT: RefCell<Option<awc::Client>> = const { RefCell::new(None) };
}

fn probe_client() -> awc::Client {
    PROBE_CLIENT.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| crate::relay::client::build(Duration::from_secs(5), 0))
            .clone()
    })
}

impl BackendActor {
    pub fn new(endpoint: Arc<Endpoint>, probe: ProbeSettings) -> BackendActor {
        BackendActor {
            endpoint,
            probe,
            probe_failures: 0,
            retired: false,
        }
    }

    fn schedule_probe(&self, ctx: &mut Context<Self>, first: bool) {
        if self.retired || self.endpoint.health_path.is_none() {
            return;
        }
        // Jitter keeps many replicas and endpoints from probing in lock-step.
        let base = self.probe.interval.as_secs_f64();
        let delay = if first {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(base * (0.8 + 0.4 * fastrand::f64()))
        };
        ctx.run_later(delay, |act, ctx| act.probe(ctx));
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(path) = self.endpoint.health_path.clone() else {
            return;
        };
        let url = self.endpoint.base.probe_url(&path);
        let req = attach_credentials(
            probe_client().get(&url).timeout(self.probe.timeout),
            self.endpoint.credentials(),
        );
        let name = self.endpoint.name.clone();
        // `None`: no verdict, because the router itself is out of local resources.
        let fut = async move {
            match req.send().await {
                Ok(mut resp) => {
                    let status = resp.status();
                    // Drain a little so the connection can be reused.
                    let _ = resp.body().limit(64 * 1024).await;
                    if status.is_success() {
                        Some(Ok(()))
                    } else {
                        Some(Err(format!("HTTP {}", status.as_u16())))
                    }
                }
                Err(e) if crate::relay::upstream::is_local_failure(&e) => {
                    warn!(endpoint = %name, error = %e, "health probe not sent: the router is out of local resources");
                    None
                }
                Err(e) => Some(Err(e.to_string())),
            }
        };
        ctx.spawn(fut.into_actor(self).map(|verdict, act, ctx| {
            if let Some(result) = verdict {
                act.on_probe(result);
            }
            act.schedule_probe(ctx, false);
        }));
    }

    fn on_probe(&mut self, result: Result<(), String>) {
        let before = self.endpoint.health();
        let after = match result {
            Ok(()) => {
                self.probe_failures = 0;
                Health::Ready
            }
            Err(ref why) => {
                self.probe_failures = self.probe_failures.saturating_add(1);
                debug!(endpoint = %self.endpoint.name, error = %why, "health probe failed");
                match before {
                    // Loading engines refuse connections or answer 503 until they are ready.
                    Health::Starting => Health::Starting,
                    _ if self.probe_failures >= self.probe.unhealthy_threshold => Health::Down,
                    _ => Health::Degraded,
                }
            }
        };
        if after != before {
            self.endpoint.set_health(after);
            match after {
                Health::Ready => {
                    info!(endpoint = %self.endpoint.name, from = before.as_str(), "endpoint ready")
                }
                _ => {
                    warn!(endpoint = %self.endpoint.name, from = before.as_str(), to = after.as_str(), "endpoint health changed")
                }
            }
        }
    }
}

impl Actor for BackendActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Leases never message this actor (they fold outcomes into the Endpoint in `Drop`).
        self.schedule_probe(ctx, true);
    }
}

impl Handler<Retire> for BackendActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Self::Context) {
        self.retired = true;
        // Probing ends now; the actor stays until the requests still holding leases on this
        // endpoint have finished (their outcomes are still folded in), then stops.
        info!(endpoint = %self.endpoint.name, in_flight = self.endpoint.in_flight(), "endpoint retired; draining");
        ctx.run_interval(Duration::from_millis(100), |act, ctx| {
            if act.endpoint.in_flight() == 0 {
                info!(endpoint = %act.endpoint.name, "retired endpoint drained; stopping");
                ctx.stop();
            }
        });
    }
}
