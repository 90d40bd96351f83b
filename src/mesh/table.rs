//! The Router's model table: names → models → routes → endpoints, and the routing decision:
//! the candidates' views handed to the model's policy (`policy/`), capacity taken from the
//! chosen endpoint. Pure data plus atomics, so routing decisions are testable without actors.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;

use super::backend::{BackendActor, Wake};
use super::endpoint::{Endpoint, Refusal};
use super::lease::{CacheFeedback, Lease, SlotRequest};
use super::policy::{self, Candidate, PrefixTree, Reason, RoutingHints, SlotView};
use crate::config::{ModelDef, PolicySettings, Registry, RoutingPolicy, SlotWait};
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
    /// Where the engine's load is read; `None` = not read.
    pub metrics_path: Option<String>,
    /// Another CA, client certificate or proxy makes another endpoint.
    pub outbound: crate::config::Outbound,
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
    /// The policy in force (the model's own or the registry's default).
    pub policy: RoutingPolicy,
    /// Parallel to `def.routes`: each route's identity for consistent hashing, from its name
    /// (unique in the model, the same on every replica).
    identities: Vec<u64>,
    /// `prefix_cache` models: the routing history's prefix tree. One per model, shared by
    /// every worker's RouterActor through the table: per-worker trees would split the history
    /// by whichever thread accepted the connection, and the lock is held for one walk of at
    /// most a few hundred hashes.
    pub prefix_tree: Option<Arc<Mutex<PrefixTree>>>,
}

impl ModelEntry {
    fn new(
        def: &ModelDef,
        endpoints: Vec<Option<EndpointHandle>>,
        settings: &PolicySettings,
        previous: Option<&RouteTable>,
    ) -> ModelEntry {
        let policy = def.policy_or(settings.default_policy);
        let prefix_tree = (policy == RoutingPolicy::PrefixCache).then(|| {
            previous
                .and_then(|p| p.reusable_tree(def, settings))
                .unwrap_or_else(|| {
                    Arc::new(Mutex::new(PrefixTree::new(settings.prefix_tree_max_bytes)))
                })
        });
        ModelEntry {
            identities: def
                .routes
                .iter()
                .map(|r| policy::stable_id(&r.name))
                .collect(),
            def: Arc::new(def.clone()),
            endpoints,
            policy,
            prefix_tree,
        }
    }
}

/// Lock a prefix tree; a panic elsewhere cannot leave it worse than stale, so a poisoned lock
/// is used as is.
fn lock_tree(tree: &Mutex<PrefixTree>) -> std::sync::MutexGuard<'_, PrefixTree> {
    tree.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        op: ApiOp,
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

impl RouteError {
    /// The configured model the refusal is about: routing found it, so its id is one of the
    /// table's (bounded, fit for a metric label and the request log's `model_id`). `None`
    /// when the name matched no model.
    pub fn known_model(&self) -> Option<&str> {
        match self {
            RouteError::UnknownModel(_) => None,
            RouteError::ModelNotAllowed { model, .. }
            | RouteError::WrongEndpoint { model, .. }
            | RouteError::Unsupported { model, .. }
            | RouteError::Exhausted { model }
            | RouteError::NoCapacity { model, .. } => Some(model),
        }
    }
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
    /// Model ids and aliases, looked up once per request: built from configuration only, so
    /// a fast hasher is safe (lookups insert nothing).
    by_name: foldhash::HashMap<String, usize>,
    /// Every endpoint, keyed for reuse across reloads, in a stable order.
    pub endpoints: Vec<(EndpointKey, EndpointHandle)>,
    /// The registry's backend credentials, handed to every lease so whatever reads a backend's
    /// error can take them out.
    pub redactor: Arc<Redactor>,
    /// The policies' tunables and the default policy.
    pub policy_settings: PolicySettings,
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
        let mut by_name = foldhash::HashMap::default();
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
                let metrics_path = match route.metrics_path.as_deref() {
                    Some("none") => None,
                    Some(p) => Some(p.to_string()),
                    None => route.kind.metrics_path().map(str::to_string),
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
                    metrics_path,
                    outbound: route.outbound.clone(),
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
            if def.discovery_template {
                // Its endpoint is probed (and shown) like any other; the models it
                // discovers are the public ones.
                continue;
            }
            let i = models.len();
            by_name.insert(def.id.clone(), i);
            for alias in &def.aliases {
                by_name.entry(alias.clone()).or_insert(i);
            }
            models.push(ModelEntry::new(
                def,
                handles,
                &registry.mesh.policy,
                previous,
            ));
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
            policy_settings: registry.mesh.policy,
        }
    }

    /// The prefix tree of this table's model `def.id` when the new definition can keep it:
    /// same routes in the same order (the tree names routes by index) and the same cap.
    fn reusable_tree(
        &self,
        def: &ModelDef,
        settings: &PolicySettings,
    ) -> Option<Arc<Mutex<PrefixTree>>> {
        let old = self.models.iter().find(|m| m.def.id == def.id)?;
        let same_routes = old.def.routes.len() == def.routes.len()
            && old.def.routes.iter().zip(&def.routes).all(|(a, b)| {
                a.name == b.name
                    && a.base_url.as_ref().map(|u| u.api_base())
                        == b.base_url.as_ref().map(|u| u.api_base())
            });
        let same_cap = self.policy_settings.prefix_tree_max_bytes == settings.prefix_tree_max_bytes;
        old.prefix_tree.clone().filter(|_| same_routes && same_cap)
    }

    pub fn resolve(&self, name: &str) -> Option<&ModelEntry> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    /// Whether routing `name` looks at the prompt (its policy is `prefix_cache`), so handlers
    /// render the prompt's head only when it is used.
    pub fn wants_prompt(&self, name: &str) -> bool {
        self.resolve(name).is_some_and(|m| m.prefix_tree.is_some())
    }

    /// Pick a route by the model's policy among those that can take the request now, highest
    /// tier first, skipping `exclude` (route indices that already failed for this request). A
    /// `caller` limited to some models is refused any other before a route is considered.
    pub fn acquire(
        &self,
        name: &str,
        op: ApiOp,
        est_tokens: u64,
        exclude: &[usize],
        caller: Option<&dyn ModelAccess>,
        hints: &RoutingHints,
    ) -> Result<Lease, RouteError> {
        let entry = self.servable(name, op, caller)?;
        let def = &entry.def;
        let now = Instant::now();
        let mut candidates = self.candidates(entry, op, exclude, now);
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
        let prefix = entry
            .prefix_tree
            .as_ref()
            .zip(hints.prompt.as_ref())
            .filter(|_| entry.policy == RoutingPolicy::PrefixCache);
        if let Some((tree, prompt)) = prefix {
            let matched = lock_tree(tree).matched_chunks(prompt);
            for (_, c) in &mut candidates {
                c.matched_chunks = matched.get(c.route).map_or(0, |m| usize::from(*m));
            }
            let slot_wait = self.policy_settings.slot_wait_ms;
            slot_views(entry, &mut candidates, prompt, slot_wait, now);
        }
        let queue_full =
            queue_full_above_lowest(&candidates, self.policy_settings.tier_queue_limit);
        let ctx = policy::Context {
            policy: entry.policy,
            settings: &self.policy_settings,
            session: hints.session,
            prompt_chunks: hints.prompt.as_ref().map_or(0, |p| p.chunks().len()),
        };
        let mut rng = fastrand::Rng::new();
        let mut refusals = Vec::with_capacity(candidates.len());
        let placed = policy::first_admitted(
            policy::by_priority(candidates),
            |remaining| policy::choose(remaining, &ctx, &mut rng),
            |c| {
                if queue_full.contains(&c.route) {
                    refusals.push(Refusal::Saturated);
                    return None;
                }
                let handle = entry.endpoints.get(c.route)?.as_ref()?;
                handle
                    .endpoint
                    .try_acquire(est_tokens, now)
                    .map_err(|refusal| refusals.push(refusal))
                    .ok()
                    .map(|permit| (handle.endpoint.clone(), permit))
            },
        );
        let Some(placed) = placed else {
            let (reason, retry_after) = classify(&refusals);
            return Err(RouteError::NoCapacity {
                model: def.id.clone(),
                reason,
                retry_after,
            });
        };
        let reason = if !exclude.is_empty() {
            Reason::Fallback
        } else if placed.tier > 0 {
            Reason::TierOverflow
        } else {
            placed.choice.reason
        };
        policy::count(entry.policy, reason);
        let (endpoint, permit) = placed.admitted;
        let wait_for = placed
            .candidate
            .slots
            .filter(|_| placed.choice.reason == Reason::SlotWait)
            .and_then(|v| Some((v.wait_slot?, Duration::from_millis(v.wait_ms))));
        let mut lease = Lease::new(
            def.clone(),
            placed.candidate.route,
            endpoint,
            permit,
            est_tokens,
            self.redactor.clone(),
            SlotRequest {
                prompt: hints.prompt.clone(),
                wait_for,
            },
        );
        if let Some((tree, prompt)) = prefix {
            // What the choice believed the route would serve from cache: an idle slot's
            // prompt where slots are modelled, else the tree's entry.
            let predicted = match placed.candidate.slots {
                Some(view) if view.has_idle() => view.idle_match,
                Some(_) => 0,
                None => placed.candidate.matched_chunks,
            };
            remember_prefix(&mut lease, tree, prompt, predicted);
        }
        Ok(lease)
    }

    /// The model `name` resolves to, when `caller` may use it and it serves `op`.
    fn servable(
        &self,
        name: &str,
        op: ApiOp,
        caller: Option<&dyn ModelAccess>,
    ) -> Result<&ModelEntry, RouteError> {
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
        if !def.accepts(op) {
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
                op,
            });
        }
        Ok(entry)
    }

    /// The routes of `entry` that may serve `op` now (weight above 0, enabled, not excluded),
    /// with their priority, as the policies see them.
    fn candidates(
        &self,
        entry: &ModelEntry,
        op: ApiOp,
        exclude: &[usize],
        now: Instant,
    ) -> Vec<(i32, Candidate)> {
        entry
            .def
            .routes
            .iter()
            .enumerate()
            .filter(|(j, r)| r.weight > 0.0 && r.serves(op) && !exclude.contains(j))
            .filter_map(|(j, r)| {
                let endpoint = &entry.endpoints.get(j)?.as_ref()?.endpoint;
                let engine = endpoint.engine_load.fresh(now);
                // The tighter of what the engine says it computes at once and what the
                // operator allows in flight.
                let capacity = match (
                    engine.and_then(|l| l.capacity()),
                    endpoint.limits.max_in_flight,
                ) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let candidate = Candidate {
                    route: j,
                    weight: r.weight,
                    in_flight: endpoint.in_flight(),
                    engine_waiting: engine.map(|l| l.waiting),
                    identity: entry.identities.get(j).copied().unwrap_or_default(),
                    matched_chunks: 0,
                    capacity,
                    slots: None,
                };
                Some((r.priority, candidate))
            })
            .collect()
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
                SlotRequest::default(),
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

/// Routes above the lowest tier whose engine already queues `limit` requests or more: they
/// count as saturated, so the tier below takes the request (the lowest tier is used whatever
/// its queue).
fn queue_full_above_lowest(candidates: &[(i32, Candidate)], limit: u64) -> Vec<usize> {
    let lowest = candidates.iter().map(|(p, _)| *p).min().unwrap_or(0);
    candidates
        .iter()
        .filter(|(p, c)| *p > lowest && c.engine_waiting.unwrap_or(0) >= limit)
        .map(|(_, c)| c.route)
        .collect()
}

/// Fill in the slot views of the candidates whose engine reports a fresh slot count and whose
/// slots are modelled (llama.cpp-style per-slot caches). A prompt the request would evict is
/// counted on the other candidates' engines first, each lock taken on its own (never two at
/// once), so a prompt kept elsewhere counts as a copy. Each view carries how long the request
/// may wait for a busy slot there (`slot_wait_ms`; with `auto`, the prompt's cold prefill at
/// the engine's learned speed).
fn slot_views(
    entry: &ModelEntry,
    candidates: &mut [(i32, Candidate)],
    prompt: &policy::PromptPrefix,
    slot_wait: SlotWait,
    now: Instant,
) {
    let prompt_tokens = policy::prompt_tokens_of_bytes(prompt.bytes());
    let endpoint_of = |route: usize| {
        entry
            .endpoints
            .get(route)
            .and_then(Option::as_ref)
            .map(|h| &h.endpoint)
    };
    let modelled: Vec<(usize, &Arc<Endpoint>)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(k, (_, c))| {
            let endpoint = endpoint_of(c.route)?;
            let reports_slots = endpoint
                .engine_load
                .fresh(now)
                .is_some_and(|l| l.slots.is_some());
            (reports_slots && !endpoint.engine_slots.is_empty()).then_some((k, endpoint))
        })
        .collect();
    for &(k, endpoint) in &modelled {
        let elsewhere = endpoint.engine_slots.evicted_by(prompt).map_or(0, |kept| {
            modelled
                .iter()
                .filter(|(_, other)| !Arc::ptr_eq(other, endpoint))
                .map(|(_, other)| other.engine_slots.holders_of(&kept))
                .sum()
        });
        let wait_ms =
            slot_wait.bound_ms(prompt_tokens, endpoint.engine_slots.prefill_ms_per_token());
        candidates[k].1.slots = endpoint
            .engine_slots
            .view(prompt, elsewhere)
            .map(|view| SlotView { wait_ms, ..view });
    }
}

/// Record `prompt` for the lease's route in the model's tree, count the match the choice was
/// made on, and let the lease correct the tree from the backend's cache report.
fn remember_prefix(
    lease: &mut Lease,
    tree: &Arc<Mutex<PrefixTree>>,
    prompt: &Arc<policy::PromptPrefix>,
    predicted_chunks: usize,
) {
    let route = lease.route_index();
    policy::decision_metrics()
        .prefix_match
        .observe((predicted_chunks * policy::CHUNK_BYTES).min(prompt.bytes()) as f64);
    lock_tree(tree).insert(prompt, route);
    lease.set_cache_feedback(CacheFeedback {
        tree: tree.clone(),
        prompt: prompt.clone(),
        route,
        predicted_chunks,
    });
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
