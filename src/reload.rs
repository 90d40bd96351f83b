//! The `ConfigActor`: owns the registry the files describe, the models discovery found, and the
//! key store's source, and is the only sender of `ApplyRegistry`. Hot reload (SIGHUP and
//! `POST /admin/reload`) validates everything first — a bad file changes nothing and every
//! error is reported — then swaps keys, registry and the served TLS certificate. Endpoints with an unchanged identity keep
//! their BackendActor and state; removed ones are retired and stop once drained.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::auth::{Auth, KeyStore};
use crate::config::{self, LoadOptions, ProcessEnv, Registry, RoutingPolicy};
use crate::discovery::{self, Discovered, DiscoveryKey, FetchError, ProbeRow};
use crate::mesh::{ApplyRegistry, GetTable, RouterActor};
use crate::tls::ServingCert;

/// Where the registry came from, so it can be read again.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub models: PathBuf,
    pub routing: Option<PathBuf>,
    pub routing_required: bool,
}

/// What a reload read and checked, before anything is changed.
struct Loaded {
    registry: Registry,
    keys: KeyStore,
    /// The freshly read certificate, when the router serves HTTPS.
    cert: Option<Arc<rustls::sign::CertifiedKey>>,
}

/// Change route weights and model policies at run time (`PUT /admin/routing`): the change is
/// made to the registry this actor composes, so later reloads of unchanged files and discovery
/// rounds keep it. Replies with the changes that could not be made (model not from the files).
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, ReloadFailure>")]
pub struct SetRouting {
    pub weights: Vec<WeightChange>,
    pub policies: Vec<PolicyChange>,
}

#[derive(Debug, Clone)]
pub struct PolicyChange {
    pub model_id: String,
    pub policy: RoutingPolicy,
}

#[derive(Debug, Clone)]
pub struct WeightChange {
    pub model_id: String,
    pub route_index: usize,
    pub weight: f64,
}

/// Re-read the files and apply them.
#[derive(Message)]
#[rtype(result = "Result<ReloadReport, ReloadFailure>")]
pub struct Reload;

#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub models: usize,
    pub endpoints_kept: usize,
    pub endpoints_added: usize,
    pub endpoints_retired: usize,
    pub keys: usize,
    /// The HTTPS certificate was read again (and is served to new connections); false when
    /// the router serves plain HTTP.
    pub tls_certificate_reloaded: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ReloadFailure {
    /// Started without config files (the demo): nothing to reload from.
    NoSource,
    Invalid {
        errors: Vec<String>,
        warnings: Vec<String>,
    },
    RouterDown,
}

pub struct ConfigActor {
    source: Option<ConfigSource>,
    /// The registry as the files describe it (before discovery).
    base: Registry,
    discovered: Discovered,
    /// The last query of each discovering or provider route, as its probe row.
    probes: std::collections::BTreeMap<DiscoveryKey, ProbeRow>,
    router: Addr<RouterActor>,
    auth: Arc<Auth>,
    discovery_interval: Duration,
    /// The certificate served over HTTPS (`None`: plain HTTP), re-read with the files.
    tls: Option<Arc<ServingCert>>,
}

impl ConfigActor {
    pub fn new(
        source: Option<ConfigSource>,
        base: Registry,
        router: Addr<RouterActor>,
        auth: Arc<Auth>,
        discovery_interval: Duration,
    ) -> ConfigActor {
        ConfigActor {
            source,
            base,
            discovered: Discovered::new(),
            probes: Default::default(),
            router,
            auth,
            discovery_interval,
            tls: None,
        }
    }

    /// Re-read `cert`'s files on every reload.
    pub fn with_tls(mut self, cert: Option<Arc<ServingCert>>) -> ConfigActor {
        self.tls = cert;
        self
    }

    /// Validate the files, keys and certificate without changing anything.
    fn load(&self) -> Result<Loaded, ReloadFailure> {
        let source = self.source.as_ref().ok_or(ReloadFailure::NoSource)?;
        let registry = config::load(&LoadOptions {
            models_path: &source.models,
            routing_path: source.routing.as_deref(),
            routing_required: source.routing_required,
            vars: &ProcessEnv,
        });
        let keys = KeyStore::load(&ProcessEnv, self.auth.keys_file.as_deref());
        let cert = self.tls.as_ref().map(|tls| tls.check()).transpose();
        match (registry, keys, cert) {
            (Ok(registry), Ok(keys), Ok(cert)) => Ok(Loaded {
                registry,
                keys,
                cert,
            }),
            (registry, keys, cert) => {
                let mut errors = Vec::new();
                let mut warnings = Vec::new();
                match registry {
                    Err(e) => {
                        errors.extend(e.messages());
                        warnings.extend(e.warnings);
                    }
                    Ok(r) => warnings.extend(r.warnings),
                }
                if let Err(e) = keys {
                    errors.extend(e);
                }
                if let Err(e) = cert {
                    errors.push(e);
                }
                Err(ReloadFailure::Invalid { errors, warnings })
            }
        }
    }

    /// Send the composed registry to the Router and report what happened to the endpoints.
    fn apply(
        &self,
    ) -> impl std::future::Future<Output = Result<(usize, usize, usize), ReloadFailure>> {
        let (registry, notes) = discovery::merge(&self.base, &self.discovered);
        for note in notes {
            warn!("discovery: {note}");
        }
        let router = self.router.clone();
        async move {
            let before = router
                .send(GetTable)
                .await
                .map_err(|_| ReloadFailure::RouterDown)?;
            router
                .send(ApplyRegistry(registry))
                .await
                .map_err(|_| ReloadFailure::RouterDown)?;
            let after = router
                .send(GetTable)
                .await
                .map_err(|_| ReloadFailure::RouterDown)?;
            let existed = |h: &crate::mesh::EndpointHandle, t: &crate::mesh::RouteTable| {
                t.endpoints
                    .iter()
                    .any(|(_, o)| Arc::ptr_eq(&o.endpoint, &h.endpoint))
            };
            let kept = after
                .endpoints
                .iter()
                .filter(|(_, h)| existed(h, &before))
                .count();
            let added = after.endpoints.len() - kept;
            let retired = before
                .endpoints
                .iter()
                .filter(|(_, h)| !existed(h, &after))
                .count();
            Ok((kept, added, retired))
        }
    }

    fn discover_all(&mut self, ctx: &mut Context<Self>) {
        for target in discovery::targets(&self.base) {
            let fut = async move {
                let result = discovery::fetch(&target.route).await;
                let row = discovery::probe_row(&target.route, &result);
                (target.key, row, result)
            };
            ctx.spawn(fut.into_actor(self).map(|(key, row, result), act, ctx| {
                act.probes.insert(key.clone(), row);
                act.on_discovered(key, result, ctx)
            }));
        }
    }

    fn on_discovered(
        &mut self,
        key: DiscoveryKey,
        result: Result<Vec<String>, FetchError>,
        ctx: &mut Context<Self>,
    ) {
        let ids = match result {
            Ok(ids) => ids,
            Err(why) => {
                // Keep what an earlier query found: a flapping endpoint must not make its
                // models come and go.
                warn!(model = %key.0, route = %key.1, "discovery failed: {why}");
                return;
            }
        };
        // The route may have been removed by a reload while the query ran.
        if !discovery::targets(&self.base).iter().any(|t| t.key == key) {
            return;
        }
        if self.discovered.get(&key) == Some(&ids) {
            return;
        }
        info!(model = %key.0, route = %key.1, models = ids.len(), "discovery found a new model list");
        self.discovered.insert(key, ids);
        let apply = self.apply();
        ctx.wait(apply.into_actor(self).map(|result, _, _| {
            if result.is_err() {
                warn!("discovery: the router is not running");
            }
        }));
    }
}

impl Actor for ConfigActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if discovery::targets(&self.base).is_empty() {
            // Reload may add discovering routes later; the timer is cheap.
        }
        self.discover_all(ctx);
        ctx.run_interval(self.discovery_interval, |act, ctx| act.discover_all(ctx));
    }
}

impl Handler<SetRouting> for ConfigActor {
    type Result = AtomicResponse<Self, Result<Vec<String>, ReloadFailure>>;

    fn handle(&mut self, msg: SetRouting, _ctx: &mut Self::Context) -> Self::Result {
        let mut skipped = Vec::new();
        for change in msg.policies {
            match self.base.models.iter_mut().find(|m| m.id == change.model_id) {
                Some(model) => model.policy = Some(change.policy),
                None => skipped.push(format!(
                    "{}: discovered models follow the model that discovered them; policy not changed",
                    change.model_id
                )),
            }
        }
        for change in msg.weights {
            let route = self
                .base
                .models
                .iter_mut()
                .find(|m| m.id == change.model_id)
                .and_then(|m| m.routes.get_mut(change.route_index));
            match route {
                Some(route) => route.weight = change.weight,
                None => skipped.push(format!(
                    "{}: discovered models follow the route that discovered them; weight not changed",
                    change.model_id
                )),
            }
        }
        let apply = self.apply();
        AtomicResponse::new(Box::pin(
            apply
                .into_actor(self)
                .map(move |result, _, _| result.map(|_| skipped)),
        ))
    }
}

/// The probe rows of the discovering and provider endpoints, one per endpoint.
#[derive(Message)]
#[rtype(result = "Vec<ProbeRow>")]
pub struct GetProbes;

impl Handler<GetProbes> for ConfigActor {
    type Result = MessageResult<GetProbes>;

    fn handle(&mut self, _msg: GetProbes, _ctx: &mut Self::Context) -> Self::Result {
        let mut rows: Vec<ProbeRow> = Vec::new();
        for row in self.probes.values() {
            if !rows.iter().any(|r| r.endpoint == row.endpoint) {
                rows.push(row.clone());
            }
        }
        MessageResult(rows)
    }
}

impl Handler<Reload> for ConfigActor {
    type Result = AtomicResponse<Self, Result<ReloadReport, ReloadFailure>>;

    fn handle(&mut self, _msg: Reload, _ctx: &mut Self::Context) -> Self::Result {
        let Loaded {
            registry,
            keys,
            cert,
        } = match self.load() {
            Ok(loaded) => loaded,
            Err(failure) => return AtomicResponse::new(Box::pin(fut::ready(Err(failure)))),
        };
        // New handshakes get the new certificate; open connections keep their session.
        let tls_certificate_reloaded = match (&self.tls, cert) {
            (Some(tls), Some(cert)) => {
                tls.swap(cert);
                true
            }
            _ => false,
        };
        let warnings = registry.warnings.clone();
        let models = registry.models.len();
        let key_count = keys.len();
        // Discoveries of routes that no longer exist are forgotten.
        let keep: Vec<DiscoveryKey> = discovery::targets(&registry)
            .into_iter()
            .map(|t| t.key)
            .collect();
        self.discovered.retain(|k, _| keep.contains(k));
        self.probes.retain(|k, _| keep.contains(k));
        self.base = registry;
        self.auth.replace_store(keys);
        let apply = self.apply();
        AtomicResponse::new(Box::pin(apply.into_actor(self).map(
            move |result, act, ctx| {
                // Newly added discovering routes are queried at once.
                act.discover_all(ctx);
                result.map(|(kept, added, retired)| ReloadReport {
                    models,
                    endpoints_kept: kept,
                    endpoints_added: added,
                    endpoints_retired: retired,
                    keys: key_count,
                    tls_certificate_reloaded,
                    warnings,
                })
            },
        )))
    }
}

/// Log the outcome of a reload the way an operator reading logs needs it.
pub fn log_outcome(trigger: &str, outcome: &Result<ReloadReport, ReloadFailure>) {
    match outcome {
        Ok(r) => {
            for w in &r.warnings {
                warn!("{w}");
            }
            info!(
                trigger,
                models = r.models,
                endpoints_kept = r.endpoints_kept,
                endpoints_added = r.endpoints_added,
                endpoints_retired = r.endpoints_retired,
                keys = r.keys,
                tls_certificate_reloaded = r.tls_certificate_reloaded,
                "configuration reloaded"
            );
        }
        Err(ReloadFailure::Invalid { errors, .. }) => {
            for e in errors {
                tracing::error!(trigger, "reload rejected: {e}");
            }
            warn!(
                trigger,
                errors = errors.len(),
                "configuration NOT reloaded; the running configuration is unchanged"
            );
        }
        Err(ReloadFailure::NoSource) => {
            warn!(
                trigger,
                "reload ignored: this router was not started from config files"
            )
        }
        Err(ReloadFailure::RouterDown) => {
            tracing::error!(trigger, "reload failed: router not running")
        }
    }
}

/// Reload on every SIGHUP until the system stops.
pub fn listen_for_sighup(control: Addr<ConfigActor>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        actix_rt::spawn(async move {
            while hangups.recv().await.is_some() {
                info!("SIGHUP: reloading configuration");
                match control.send(Reload).await {
                    Ok(outcome) => log_outcome("sighup", &outcome),
                    Err(_) => break,
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = control;
    Ok(())
}

/// `POST /admin/reload` (admin scope): 200 with what changed, or 422 listing every error.
pub async fn admin_reload(control: web::Data<Addr<ConfigActor>>) -> HttpResponse {
    let outcome = match control.send(Reload).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ReloadFailure::RouterDown),
    };
    log_outcome("admin", &outcome);
    match outcome {
        Ok(report) => HttpResponse::Ok().json(json!({"status": "reloaded", "report": report})),
        Err(ReloadFailure::Invalid { errors, warnings }) => {
            HttpResponse::UnprocessableEntity().json(json!({
                "error": {
                    "message": format!(
                        "The configuration was not reloaded ({} error(s)); the running configuration is unchanged: {}",
                        errors.len(),
                        errors.join("; ")
                    ),
                    "type": "invalid_request_error",
                    "param": null,
                    "code": "invalid_configuration",
                },
                "errors": errors,
                "warnings": warnings,
            }))
        }
        Err(ReloadFailure::NoSource) => HttpResponse::Conflict().json(json!({
            "error": {
                "message": "This router was not started from config files; there is nothing to reload.",
                "type": "invalid_request_error",
                "param": null,
                "code": "no_config_source",
            }
        })),
        Err(ReloadFailure::RouterDown) => HttpResponse::InternalServerError().json(json!({
            "error": {
                "message": "The router is not running.",
                "type": "server_error",
                "param": null,
                "code": "internal_error",
            }
        })),
    }
}
