//! The Router's model table: names → models → routes → endpoints, and the weighted choice.
//! Pure data plus atomics, so routing decisions are testable without actors.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;

use super::backend::{BackendActor, Wake};
use super::endpoint::{Endpoint, Refusal};
use super::lease::Lease;
use crate::config::{ModelDef, Registry};
use crate::engines::{ApiOp, AuthStyle, BackendKind};
use crate::redact::Redactor;

/// An endpoint and the actor that owns it.
#[derive(Clone)]
pub struct EndpointHandle {
    pub endpoint: Arc<Endpoint>,
    pub actor: Addr<BackendActor>,
}

/// Identity of an endpoint: same base URL, kind and credentials ⇒ same actor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub api_base: String,
    pub kind: BackendKind,
    pub auth: Option<(AuthStyle, u64)>,
    pub health_path: Option<String>,
}

/// A caller limited to some models, as the Router sees it: access is decided on the resolved
/// model (its id and every alias, so an alias cannot get around the list) in the same lookup
/// that picks the route.
pub trait ModelAccess: Send + Sync {
    fn may_use(&self, def: &ModelDef) -> bool;
    /// The key's name (never the key), for the refusal's message.
    fn key_id(&self) -> &str;
}

pub struct ModelEntry {
    pub def: Arc<ModelDef>,
    /// Parallel to `def.routes`; `None` for disabled routes.
    pub endpoints: Vec<Option<EndpointHandle>>,
}

/// Why no lease could be given.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    UnknownModel(String),
    /// The caller's key may not use this model; `model` is the name the caller gave.
    ModelNotAllowed {
        model: String,
        key_id: String,
    },
    WrongEndpoint {
        model: String,
        model_type: crate::config::ModelType,
    },
    /// No route's backend kind implements the operation (TGI has no embeddings).
    Unsupported {
        model: String,
        kinds: Vec<String>,
    },
    /// Every route was excluded after failing in this request.
    Exhausted {
        model: String,
    },
    NoCapacity {
        model: String,
        reason: CapacityReason,
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityReason {
    /// Every endpoint is still loading (no successful probe yet).
    Loading,
    /// Endpoints are down or their circuits are open.
    Unavailable,
    /// Every route is weight 0 or disabled.
    NoEnabledRoute,
    RateLimited,
    /// Every endpoint is at its in-flight cap.
    Saturated,
}

pub struct RouteTable {
    pub models: Vec<ModelEntry>,
    by_name: HashMap<String, usize>,
    /// Every endpoint, keyed for reuse across reloads, in a stable order.
    pub endpoints: Vec<(EndpointKey, EndpointHandle)>,
    /// The registry's backend credentials, handed to every lease so whatever reads a backend's
    /// error can take them out.
    pub redactor: Arc<Redactor>,
}

/// Builds endpoints (and their actors) for keys not seen before.
pub trait EndpointFactory {
    fn create(
        &mut self,
        key: &EndpointKey,
        name: String,
        base: &crate::engines::BaseUrl,
        route: &crate::config::RouteDef,
    ) -> EndpointHandle;
}

impl RouteTable {
    /// Build a table, reusing endpoints from `previous` whose key is unchanged so their health,
    /// buckets and in-flight counts survive reloads and weight changes.
    pub fn build(
        registry: &Registry,
        previous: Option<&RouteTable>,
        factory: &mut dyn EndpointFactory,
    ) -> RouteTable {
        let mut endpoints: Vec<(EndpointKey, EndpointHandle)> = Vec::new();
        let mut index: HashMap<EndpointKey, usize> = HashMap::new();
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut models = Vec::with_capacity(registry.models.len());
        let mut by_name = HashMap::new();
        // Per endpoint slot: does any route give it weight? (Remote ones with none sleep.)
        let mut weighted: Vec<bool> = Vec::new();
        for def in &registry.models {
            let mut handles = Vec::with_capacity(def.routes.len());
            for route in &def.routes {
                let (Some(base), true) = (&route.base_url, route.disabled_reason.is_none()) else {
                    handles.push(None);
                    continue;
                };
                let health_path = match route.health_path.as_deref() {
                    Some("none") => None,
                    Some(p) => Some(p.to_string()),
                    None => Some(route.kind.health_path().to_string()),
                };
                let key = EndpointKey {
                    api_base: base.api_base().to_string(),
                    kind: route.kind,
                    auth: route.api_key.as_ref().map(|k| {
                        let mut h = DefaultHasher::new();
                        k.expose().hash(&mut h);
                        (route.auth, h.finish())
                    }),
                    health_path,
                };
                let slot = match index.get(&key) {
                    Some(&i) => i,
                    None => {
                        let reused = previous.and_then(|p| {
                            p.endpoints
                                .iter()
                                .find(|(k, _)| *k == key)
                                .map(|(_, h)| h.clone())
                        });
                        let handle = match reused {
                            Some(h) => h,
                            None => {
                                let base_name = format!("{}@{}", route.kind_name, base.authority());
                                let n = names.entry(base_name.clone()).or_insert(0);
                                *n += 1;
                                let name = if *n == 1 {
                                    base_name
                                } else {
                                    format!("{base_name}#{n}")
                                };
                                factory.create(&key, name, base, route)
                            }
                        };
                        endpoints.push((key.clone(), handle));
                        weighted.push(false);
                        index.insert(key, endpoints.len() - 1);
                        endpoints.len() - 1
                    }
                };
                if route.weight > 0.0 {
                    weighted[slot] = true;
                }
                handles.push(Some(endpoints[slot].1.clone()));
            }
            let i = models.len();
            by_name.insert(def.id.clone(), i);
            for alias in &def.aliases {
                by_name.entry(alias.clone()).or_insert(i);
            }
            models.push(ModelEntry {
                def: Arc::new(def.clone()),
                endpoints: handles,
            });
        }
        for ((_, handle), weighted) in endpoints.iter().zip(weighted) {
            let dormant = !weighted && !handle.endpoint.base.is_on_this_machine();
            if handle.endpoint.set_dormant(dormant) {
                handle.actor.do_send(Wake);
            }
        }
        RouteTable {
            models,
            by_name,
            endpoints,
            redactor: Arc::new(Redactor::new(registry.backend_secrets())),
        }
    }

    pub fn resolve(&self, name: &str) -> Option<&ModelEntry> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    /// Pick a route by weight among those that can take the request now, skipping `exclude`
    /// (route indices that already failed for this request). A `caller` limited to some
    /// models is refused any other before a route is considered.
    pub fn acquire(
        &self,
        name: &str,
        op: ApiOp,
        est_tokens: u64,
        exclude: &[usize],
        caller: Option<&dyn ModelAccess>,
    ) -> Result<Lease, RouteError> {
        let entry = self
            .resolve(name)
            .ok_or_else(|| RouteError::UnknownModel(name.to_string()))?;
        let def = &entry.def;
        if let Some(caller) = caller.filter(|c| !c.may_use(def)) {
            return Err(RouteError::ModelNotAllowed {
                model: name.to_string(),
                key_id: caller.key_id().to_string(),
            });
        }
        if !def.model_type.accepts(op) {
            return Err(RouteError::WrongEndpoint {
                model: def.id.clone(),
                model_type: def.model_type,
            });
        }
        if !def.routes.iter().any(|r| r.serves(op)) {
            let mut kinds: Vec<String> = def.routes.iter().map(|r| r.kind_name.clone()).collect();
            kinds.dedup();
            return Err(RouteError::Unsupported {
                model: def.id.clone(),
                kinds,
            });
        }
        let mut candidates: Vec<(usize, f64)> = def
            .routes
            .iter()
            .enumerate()
            .filter(|(j, r)| {
                r.weight > 0.0
                    && r.serves(op)
                    && entry.endpoints[*j].is_some()
                    && !exclude.contains(j)
            })
            .map(|(j, r)| (j, r.weight))
            .collect();
        if candidates.is_empty() {
            return Err(if exclude.is_empty() {
                RouteError::NoCapacity {
                    model: def.id.clone(),
                    reason: CapacityReason::NoEnabledRoute,
                    retry_after: Duration::from_secs(30),
                }
            } else {
                RouteError::Exhausted {
                    model: def.id.clone(),
                }
            });
        }
        let now = Instant::now();
        let mut refusals = Vec::with_capacity(candidates.len());
        while !candidates.is_empty() {
            let pick = weighted_pick(&candidates);
            let (j, _) = candidates.swap_remove(pick);
            let Some(handle) = &entry.endpoints[j] else {
                continue;
            };
            match handle.endpoint.try_acquire(est_tokens, now) {
                Ok(permit) => {
                    return Ok(Lease::new(
                        def.clone(),
                        j,
                        handle.endpoint.clone(),
                        permit,
                        est_tokens,
                        self.redactor.clone(),
                    ))
                }
                Err(refusal) => refusals.push(refusal),
            }
        }
        let (reason, retry_after) = classify(&refusals);
        Err(RouteError::NoCapacity {
            model: def.id.clone(),
            reason,
            retry_after,
        })
    }
}

impl RouteTable {
    /// A lease on the route named `route_name`, whatever its weight: follow-up calls on a
    /// backend's job (polls, downloads, cancels) must reach the backend that holds the job, and a
    /// route drained to weight 0 still finishes the jobs it has. A route that is gone or disabled
    /// gives `Exhausted`.
    pub fn acquire_route(
        &self,
        name: &str,
        op: ApiOp,
        route_name: &str,
        est_tokens: u64,
    ) -> Result<Lease, RouteError> {
        let entry = self
            .resolve(name)
            .ok_or_else(|| RouteError::UnknownModel(name.to_string()))?;
        let def = &entry.def;
        let exhausted = || RouteError::Exhausted {
            model: def.id.clone(),
        };
        let j = def
            .routes
            .iter()
            .position(|r| r.name == route_name && r.serves(op))
            .ok_or_else(exhausted)?;
        let handle = entry.endpoints[j].as_ref().ok_or_else(exhausted)?;
        match handle.endpoint.try_acquire(est_tokens, Instant::now()) {
            Ok(permit) => Ok(Lease::new(
                def.clone(),
                j,
                handle.endpoint.clone(),
                permit,
                est_tokens,
                self.redactor.clone(),
            )),
            Err(refusal) => {
                let (reason, retry_after) = classify(&[refusal]);
                Err(RouteError::NoCapacity {
                    model: def.id.clone(),
                    reason,
                    retry_after,
                })
            }
        }
    }
}

fn weighted_pick(candidates: &[(usize, f64)]) -> usize {
    let total: f64 = candidates.iter().map(|(_, w)| w).sum();
    let mut point = fastrand::f64() * total;
    for (i, (_, w)) in candidates.iter().enumerate() {
        if point < *w {
            return i;
        }
        point -= w;
    }
    candidates.len() - 1
}

/// Rate limits and saturation clear soonest (429); loading and outages are 503s.
fn classify(refusals: &[Refusal]) -> (CapacityReason, Duration) {
    let min_wait =
        |pred: &dyn Fn(&Refusal) -> Option<Duration>| refusals.iter().filter_map(pred).min();
    if let Some(wait) = min_wait(&|r| match r {
        Refusal::RateLimited { retry_after } => Some(*retry_after),
        _ => None,
    }) {
        return (CapacityReason::RateLimited, wait);
    }
    if refusals.contains(&Refusal::Saturated) {
        return (CapacityReason::Saturated, Duration::from_secs(1));
    }
    if refusals.iter().all(|r| *r == Refusal::Starting) {
        return (CapacityReason::Loading, Duration::from_secs(5));
    }
    let wait = min_wait(&|r| match r {
        Refusal::CircuitOpen { retry_after } => Some(*retry_after),
        Refusal::Starting => Some(Duration::from_secs(5)),
        _ => None,
    })
    .unwrap_or(Duration::from_secs(10));
    (CapacityReason::Unavailable, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pick_follows_weights() {
        let candidates = [(0, 3.0), (1, 1.0)];
        let mut counts = [0u32; 2];
        for _ in 0..20_000 {
            counts[weighted_pick(&candidates)] += 1;
        }
        let share = counts[0] as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }

    #[test]
    fn classification_prefers_rate_limits() {
        let (r, wait) = classify(&[
            Refusal::Down,
            Refusal::RateLimited {
                retry_after: Duration::from_secs(3),
            },
        ]);
        assert_eq!(r, CapacityReason::RateLimited);
        assert_eq!(wait, Duration::from_secs(3));
        assert_eq!(
            classify(&[Refusal::Starting, Refusal::Starting]).0,
            CapacityReason::Loading
        );
        assert_eq!(
            classify(&[Refusal::Starting, Refusal::Down]).0,
            CapacityReason::Unavailable
        );
    }
}
