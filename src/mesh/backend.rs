//! `BackendActor`: one per distinct endpoint. It shares the endpoint's state ([`Endpoint`]),
//! probes the kind's health path on a jittered interval, and drains the endpoint when a reload
//! retires it. Outcomes of finished requests are folded into that state by the lease's `Drop`
//! itself ([`Endpoint::fold_outcome`]): a message per request would wake the actor's thread
//! for every request, which measured as a context switch per request on two cores.
//!
//! The mesh knows nothing of HTTP: the probe request itself is made by the [`HealthCheck`]
//! the server wiring passes to [`super::Mesh::start`] (the relay's HTTP client).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use tracing::{debug, info, warn};

use super::endpoint::{Endpoint, Health};
use super::engine_load::EngineLoad;

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

/// What one health probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeVerdict {
    Healthy,
    /// Why not (an HTTP status, a connect error): safe to log, never a credential.
    Unhealthy(String),
    /// Not sent: the router itself is out of local resources, which says nothing about the
    /// endpoint.
    NotSent,
}

/// Asks an endpoint whether it is healthy. One per mesh, shared by every [`BackendActor`];
/// called on the backend arbiter's thread, so the future need not be `Send`.
pub trait HealthCheck: Send + Sync + 'static {
    fn check(
        &self,
        endpoint: &Endpoint,
        path: &str,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, ProbeVerdict>;

    /// Reads the engine's own load at `path` (its metrics). `None` when it reports nothing the
    /// router understands (not exposed, unreadable, too large, no known metric): the previous
    /// reading then simply ages out. Only asked of endpoints that have a metrics path, right
    /// after a healthy probe.
    fn read_load(
        &self,
        endpoint: &Endpoint,
        path: &str,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Option<EngineLoad>> {
        let _ = (endpoint, path, timeout);
        Box::pin(std::future::ready(None))
    }
}

/// Probe now: the route table just gave weight to a dormant endpoint, whose first probe should
/// not wait for the next tick (until it answers, the endpoint is `starting` and takes nothing).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Stop probing (endpoint removed by a reload); the actor ends once its in-flight count is 0.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

pub struct BackendActor {
    endpoint: Arc<Endpoint>,
    probe: ProbeSettings,
    health_check: Arc<dyn HealthCheck>,
    probe_failures: u32,
    retired: bool,
    /// The scheduled next probe, cancelled by [`Wake`] so one chain of probes runs, never two.
    next_probe: Option<SpawnHandle>,
    /// A probe is awaiting its answer ([`Wake`] then has nothing to do).
    probing: bool,
}

impl BackendActor {
    pub fn new(
        endpoint: Arc<Endpoint>,
        probe: ProbeSettings,
        health_check: Arc<dyn HealthCheck>,
    ) -> BackendActor {
        BackendActor {
            endpoint,
            probe,
            health_check,
            probe_failures: 0,
            retired: false,
            next_probe: None,
            probing: false,
        }
    }

    fn schedule_probe(&mut self, ctx: &mut Context<Self>, first: bool) {
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
        self.next_probe = Some(ctx.run_later(delay, |act, ctx| {
            act.next_probe = None;
            act.probe(ctx);
        }));
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(path) = self.endpoint.health_path.clone() else {
            return;
        };
        if self.endpoint.is_dormant() {
            // Keep ticking (cheap: no traffic) so nothing is lost if a Wake is ever missed.
            self.schedule_probe(ctx, false);
            return;
        }
        self.probing = true;
        let checker = self.health_check.clone();
        let endpoint = self.endpoint.clone();
        let timeout = self.probe.timeout;
        // The load is read on the same timer, and only from an engine that just answered its
        // health probe: a failing engine's last reading ages out instead of being refreshed.
        let round = async move {
            let verdict = checker.check(&endpoint, &path, timeout).await;
            let load = match (&verdict, endpoint.metrics_path.as_deref()) {
                (ProbeVerdict::Healthy, Some(metrics)) => {
                    checker.read_load(&endpoint, metrics, timeout).await
                }
                _ => None,
            };
            (verdict, load.map(|load| (load, Instant::now())))
        };
        ctx.spawn(round.into_actor(self).map(|(verdict, load), act, ctx| {
            act.probing = false;
            match verdict {
                ProbeVerdict::Healthy => act.on_probe(Ok(())),
                ProbeVerdict::Unhealthy(why) => act.on_probe(Err(why)),
                ProbeVerdict::NotSent => {}
            }
            if let Some((load, at)) = load {
                // Probes are jittered up to 1.2 intervals apart: two intervals keep a live
                // engine's reading valid from one probe to the next, and drop a silent one's.
                let valid_for = act.probe.interval.saturating_mul(2);
                act.endpoint.engine_load.record(load, at, valid_for);
                act.endpoint.engine_slots.resize(load.slots);
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
                self.endpoint.note_error(format!("health probe: {why}"));
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

impl Handler<Wake> for BackendActor {
    type Result = ();

    fn handle(&mut self, _msg: Wake, ctx: &mut Self::Context) {
        if self.retired || self.probing {
            return;
        }
        if let Some(pending) = self.next_probe.take() {
            ctx.cancel_future(pending);
        }
        self.probe(ctx);
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
